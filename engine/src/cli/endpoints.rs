//! `sluice run`'s flags for its endpoints: where metrics are served (`--metrics`), and what the
//! control socket's and the metrics endpoint's clients may hold.
//!
//! Parsing only: they become the metrics address, a [`CtlLimits`] and a [`metrics::Limits`],
//! checked with the rest of the [`crate::config::EngineConfig`].

use crate::config::{self, ConfigError};
use crate::control::{CtlLimits, metrics};
use clap::Args;
use std::net::SocketAddr;

/// The help heading they are listed under.
const LIMITS: &str = "Control socket and metrics limits";

/// `--metrics` and what control and metrics clients may hold (defaults: [`CtlLimits::default`],
/// [`metrics::Limits::default`]).
#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off by default). A bare PORT binds
    /// loopback, 127.0.0.1:PORT (this host only); give an address (`0.0.0.0:PORT`, `[::]:PORT`, an
    /// interface's) to serve other hosts. Bound after privileges are dropped: use a port >= 1024.
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = metrics::parse_listen_addr)]
    pub metrics: Option<SocketAddr>,

    /// Control socket: connections served at once.
    #[arg(long, value_name = "N", default_value_t = CtlLimits::default().max_connections,
          help_heading = LIMITS)]
    pub ctl_max_connections: usize,

    /// Control socket: how many of those only root and --admin-group may use.
    #[arg(long, value_name = "N", default_value_t = CtlLimits::default().admin_reserve,
          help_heading = LIMITS)]
    pub ctl_admin_reserve: usize,

    /// Control socket: connections one user outside root and --admin-group may hold at once.
    #[arg(long, value_name = "N", default_value_t = CtlLimits::default().max_per_user,
          help_heading = LIMITS)]
    pub ctl_max_per_user: usize,

    /// Control socket: close a connection that sends no request for this many seconds.
    #[arg(long, value_name = "SECS",
          default_value_t = CtlLimits::default().idle_timeout.as_secs_f64(), help_heading = LIMITS)]
    pub ctl_idle_timeout: f64,

    /// Metrics: connections open at once (a newcomer beyond it closes the oldest connection
    /// that has not sent its request yet).
    #[arg(long, value_name = "N", default_value_t = metrics::Limits::default().max_connections,
          help_heading = LIMITS)]
    pub metrics_max_connections: usize,

    /// Metrics: connections open at once from one address (likewise).
    #[arg(long, value_name = "N", default_value_t = metrics::Limits::default().max_per_address,
          help_heading = LIMITS)]
    pub metrics_max_per_address: usize,

    /// Metrics: seconds a client has to send its request head, and again to take the response.
    #[arg(long, value_name = "SECS",
          default_value_t = metrics::Limits::default().timeout.as_secs_f64(), help_heading = LIMITS)]
    pub metrics_header_timeout: f64,
}

impl EndpointArgs {
    /// The metrics address and the limits these flags ask for (not yet validated).
    pub fn to_config(
        &self,
    ) -> Result<(Option<SocketAddr>, CtlLimits, metrics::Limits), ConfigError> {
        let ctl = CtlLimits {
            max_connections: self.ctl_max_connections,
            admin_reserve: self.ctl_admin_reserve,
            max_per_user: self.ctl_max_per_user,
            idle_timeout: config::seconds("ctl-idle-timeout", self.ctl_idle_timeout)?,
        };
        let metrics = metrics::Limits {
            max_connections: self.metrics_max_connections,
            max_per_address: self.metrics_max_per_address,
            timeout: config::seconds("metrics-header-timeout", self.metrics_header_timeout)?,
            ..metrics::Limits::default()
        };
        Ok((self.metrics, ctl, metrics))
    }
}

#[cfg(test)]
mod test {
    use crate::cli::{Cli, Command};
    use crate::config::EngineConfig;
    use crate::control::{CtlLimits, metrics};
    use clap::Parser;
    use std::time::Duration;

    fn config(extra: &[&str]) -> Result<EngineConfig, String> {
        let mut args = vec!["sluice", "run", "--iface", "veth0", "--udp", "9000"];
        args.extend_from_slice(extra);
        let Command::Run(run) = Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        else {
            panic!("not run")
        };
        EngineConfig::try_from(&run).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_flags() {
        let c = config(&[]).unwrap();
        assert_eq!((c.metrics, c.ctl), (None, CtlLimits::default()));
        assert_eq!(c.metrics_limits, metrics::Limits::default());
        let c = config(&[
            "--metrics",
            "9464",
            "--ctl-max-connections",
            "10",
            "--ctl-admin-reserve",
            "3",
            "--ctl-max-per-user",
            "1",
            "--ctl-idle-timeout",
            "0.5",
            "--metrics-max-connections",
            "100",
            "--metrics-max-per-address",
            "7",
            "--metrics-header-timeout",
            "2",
        ])
        .unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            c.ctl,
            CtlLimits {
                max_connections: 10,
                admin_reserve: 3,
                max_per_user: 1,
                idle_timeout: Duration::from_millis(500),
            }
        );
        let m = c.metrics_limits;
        assert_eq!((m.max_connections, m.max_per_address), (100, 7));
        assert_eq!(m.timeout, Duration::from_secs(2));
        let c = config(&["--metrics", "[::]:9464"]).unwrap();
        assert_eq!(c.metrics, Some("[::]:9464".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (flags, field) in [
            (&["--ctl-admin-reserve", "32"][..], "--ctl-admin-reserve"),
            (&["--ctl-max-connections", "0"], "--ctl-max-connections"),
            (&["--ctl-max-per-user", "0"], "--ctl-max-per-user"),
            (&["--ctl-idle-timeout", "0"], "--ctl-idle-timeout"),
            (&["--ctl-idle-timeout=-1"], "--ctl-idle-timeout"),
            (
                &["--metrics-max-per-address", "300"],
                "--metrics-max-per-address",
            ),
            (
                &["--metrics-header-timeout", "0"],
                "--metrics-header-timeout",
            ),
            (&["--metrics", "localhost:9464"], "--metrics"),
        ] {
            let e = config(flags).unwrap_err();
            assert!(e.contains(field), "{flags:?}: {e}");
        }
    }
}
