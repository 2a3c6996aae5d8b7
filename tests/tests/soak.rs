//! A short soak (`cargo xtask soak` compressed to 40 s): sluice reflects a paced echo load while
//! its link flaps every 10 s, a rule is added or removed every second, `ctl stats` and the
//! metrics endpoint are scraped back to back, and one hot upgrade happens halfway. At the end
//! every datagram is echoed or explained by a counter on its path, the census adds up, RSS grew
//! by less than 10 % + 2 MiB, no thread went away. See `bench/src/soak.rs` for what is checked.

mod common;

use common::*;
use sluice_bench::soak::{SoakConfig, run};
use sluice_testbed::require_root;
use std::time::Duration;

#[test]
fn short_soak_accounts_for_every_frame() {
    if !require_root("short_soak_accounts_for_every_frame") {
        return;
    }
    let cfg = SoakConfig {
        duration: Duration::from_secs(40),
        flap_every: Duration::from_secs(10),
        flap_down: Duration::from_millis(500),
        upgrade_every: Duration::from_secs(20),
        metrics_port: 9465,
        progress: Some(Duration::from_secs(10)),
        ..SoakConfig::minutes(sluice_bin(), 1)
    };
    let rep = run(&cfg).expect("soak");
    eprintln!("{}", rep.summary());
    assert_eq!(rep.upgrades, 1, "{}", rep.summary());
    assert!(rep.flaps >= 3, "{}", rep.summary());
    assert!(rep.problems.is_empty(), "{}", rep.summary());
}
