//! `sluice run --iface lb0 --app lb --lb-config FILE` in the balancer of an [`LbBed`]: a client
//! reaching three backends through the VIPs 10.77.100.1 / fd77:100::1, over TCP and UDP, with
//! direct server return (the backends answer the client themselves) and IP-in-IP.
//!
//! Every flow's answer names the backend that served it ([`sluice_testbed::BackendService`]),
//! so the tests compare backends per flow: the share each gets, which flows move when one is
//! deleted, drained or fails its health check, and whether two balancers with the same
//! configuration pick the same backend for every flow.
//!
//! The health checker runs with `interval_ms = 200, timeout_ms = 100, rise = 2, fall = 2`,
//! so a change of a backend's health shows within about a second; the tests allow 10 s.

mod common;

use common::{Engine, assert_census, sluice_bin};
use serde_json::Value;
use sluice_testbed::{
    FlowOpts, FlowResult, IpTunnel, LbBed, LbBedOpts, Netns, PacketSocket, Sources, TcpSessions,
    count_by_backend, describe_failures, require_root, tcp_flows, udp_flows,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PORT: u16 = LbBed::SERVICE_PORT;
/// How long a backend's health may take to show in `backends list`: fall/rise 2 probes at
/// 200 ms make it about half a second; this is for a loaded CI machine.
const HEALTH_LIMIT: Duration = Duration::from_secs(10);
/// How long the engine may take from start to serving every VIP.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// One `[[vip]]` of the configuration file.
#[derive(Clone, Debug)]
struct VipSpec {
    addr: IpAddr,
    port: u16,
    proto: &'static str,
    forwarding: &'static str,
    /// `None`: the key is left out (the app's default).
    health: Option<&'static str>,
    /// (address, weight; `None` leaves the weight out).
    backends: Vec<(IpAddr, Option<u32>)>,
}

impl VipSpec {
    /// A DSR VIP of the family of `v6` on the service port, the three backends of that
    /// family with the default weight, a TCP VIP health-checked over TCP.
    fn dsr(bed: &LbBed, v6: bool, proto: &'static str) -> VipSpec {
        VipSpec {
            addr: LbBed::vip(v6),
            port: PORT,
            proto,
            forwarding: "dsr",
            health: (proto == "tcp").then_some("tcp"),
            backends: bed
                .backends()
                .iter()
                .map(|b| (LbBed::addr(b, v6), None))
                .collect(),
        }
    }

    /// `ADDRESS:PORT/PROTO`, as `sluice ctl` and `backends list` write it.
    fn name(&self) -> String {
        format!("{}/{}", self.target(), self.proto)
    }

    fn target(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    fn toml(&self) -> String {
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|(a, w)| match w {
                Some(w) => format!("{{ address = \"{a}\", weight = {w} }}"),
                None => format!("{{ address = \"{a}\" }}"),
            })
            .collect();
        let mut s = format!(
            "[[vip]]\naddress = \"{}\"\nport = {}\nprotocol = \"{}\"\nforwarding = \"{}\"\n",
            self.addr, self.port, self.proto, self.forwarding
        );
        if let Some(h) = self.health {
            s.push_str(&format!("health = \"{h}\"\n"));
        }
        s.push_str(&format!("backends = [ {} ]\n\n", backends.join(", ")));
        s
    }
}

/// A configuration file in the temporary directory, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(vips: &[VipSpec]) -> ConfigFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-lb-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut text =
            String::from("[health]\ninterval_ms = 200\ntimeout_ms = 100\nrise = 2\nfall = 2\n\n");
        for v in vips {
            text.push_str(&v.toml());
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        ConfigFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the engine on balancer `i`'s `lb0` with `cfg`.
fn start_lb(bed: &LbBed, i: usize, cfg: &ConfigFile) -> Engine {
    let path = cfg.path().to_str().expect("utf-8 temp path");
    Engine::start_in(
        bed.balancer(i).ns(),
        &["--iface", "lb0", "--app", "lb", "--lb-config", path],
    )
}

/// `sluice ctl --iface lb0 ARGS` in `ns`, as `uid` (and the same gid) if given.
fn ctl(ns: &Netns, uid: Option<u32>, args: &[&str]) -> Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["ctl", "--iface", "lb0"]).args(args);
    if let Some(u) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, u);
        std::os::unix::process::CommandExt::gid(&mut cmd, u);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ns.spawn(&mut cmd)
        .expect("spawning sluice ctl")
        .wait_with_output()
        .expect("waiting for sluice ctl")
}

/// `ctl ARGS` must succeed.
fn ctl_ok(ns: &Netns, args: &[&str]) {
    let out = ctl(ns, None, args);
    assert!(
        out.status.success(),
        "sluice ctl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ctl --json backends list`: the `{"vips":[…]}` object (unwrapped from the control reply's
/// `data` if the reply is printed whole), or what went wrong.
fn try_backends_list(ns: &Netns) -> Result<Value, String> {
    let out = ctl(ns, None, &["--json", "backends", "list"]);
    if !out.status.success() {
        return Err(format!(
            "backends list failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "backends list printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    Ok(if v.get("vips").is_none() && v.get("data").is_some() {
        v["data"].clone()
    } else {
        v
    })
}

/// [`try_backends_list`], which must succeed.
fn backends_list(ns: &Netns) -> Value {
    try_backends_list(ns).unwrap_or_else(|e| panic!("{e}"))
}

/// The entry of backend `addr` of VIP `vip` in a `backends list`.
fn backend_entry<'a>(list: &'a Value, vip: &str, addr: IpAddr) -> Option<&'a Value> {
    list["vips"].as_array()?.iter().find(|v| v["vip"] == vip)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"].as_str().and_then(|a| a.parse::<IpAddr>().ok()) == Some(addr))
}

/// Whether every backend of every VIP in the list takes new flows and is not down (up, or
/// unchecked for a VIP without health checks).
fn all_in_service(list: &Value) -> bool {
    list["vips"].as_array().is_some_and(|vips| {
        !vips.is_empty()
            && vips.iter().all(|v| {
                v["backends"].as_array().is_some_and(|bs| {
                    bs.iter().all(|b| {
                        b["in_table"] == true && (b["health"] == "up" || b["health"] == "unchecked")
                    })
                })
            })
    })
}

/// Polls `backends list` on balancer `i` every 50 ms until `pred` holds, at most `limit`;
/// returns the list that satisfied it. A list that can't be had (the engine still starting
/// its control socket) counts as not yet.
fn wait_list(
    bed: &LbBed,
    i: usize,
    engine: &mut Engine,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let end = Instant::now() + limit;
    loop {
        assert!(
            engine.is_running(),
            "sluice exited early; stderr:\n{}",
            engine.stderr_text()
        );
        let last = match try_backends_list(bed.balancer(i).ns()) {
            Ok(list) if pred(&list) => return list,
            Ok(list) => list.to_string(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < end,
            "{what}: not within {limit:?}; last list: {last}; stderr:\n{}",
            engine.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One flow of `vip`'s protocol from the client, short timeout.
fn probe(bed: &LbBed, vip: &VipSpec) -> FlowResult {
    let opts = FlowOpts {
        timeout: Duration::from_millis(300),
        udp_sends: 1,
        batch: 1,
    };
    let ns = bed.client().ns();
    let one = Sources::Ephemeral(1);
    let mut r = if vip.proto == "tcp" {
        tcp_flows(ns, vip.target(), &one, &opts)
    } else {
        udp_flows(ns, vip.target(), &one, &opts)
    }
    .expect("running flows in the client namespace");
    r.pop().expect("one result")
}

/// Waits until balancer `i` lists every backend in service and answers a flow on every VIP
/// (the client's routes must point at balancer `i`).
fn wait_ready(bed: &LbBed, i: usize, engine: &mut Engine, vips: &[VipSpec]) {
    wait_list(
        bed,
        i,
        engine,
        READY_LIMIT,
        "every backend in service",
        all_in_service,
    );
    for vip in vips {
        let end = Instant::now() + READY_LIMIT;
        loop {
            assert!(
                engine.is_running(),
                "sluice exited early; stderr:\n{}",
                engine.stderr_text()
            );
            let r = probe(bed, vip);
            if r.outcome.is_ok() {
                break;
            }
            assert!(
                Instant::now() < end,
                "{} never answered within {READY_LIMIT:?} (last: {r:?}); stderr:\n{}",
                vip.name(),
                engine.stderr_text()
            );
        }
    }
}

/// The flows of `vip` from the client: TCP or UDP as the VIP says.
fn flows(bed: &LbBed, vip: &VipSpec, sources: &Sources) -> Vec<FlowResult> {
    let ns = bed.client().ns();
    let opts = FlowOpts::default();
    if vip.proto == "tcp" {
        tcp_flows(ns, vip.target(), sources, &opts)
    } else {
        udp_flows(ns, vip.target(), sources, &opts)
    }
    .expect("running flows in the client namespace")
}

/// Every flow answered.
fn assert_all_answered(results: &[FlowResult], what: &str) {
    assert!(
        results.iter().all(|r| r.outcome.is_ok()),
        "{what}: {}",
        describe_failures(results)
    );
}

/// Each backend's share of `results` is within `tol` of `want` (backend name → share).
fn assert_shares(results: &[FlowResult], want: &[(&str, f64)], tol: f64, what: &str) {
    let counts = count_by_backend(results);
    let total = results.len() as f64;
    for (name, share) in want {
        let got = counts.get(*name).copied().unwrap_or(0) as f64 / total;
        assert!(
            (got - share).abs() <= tol,
            "{what}: {name} got {got:.3} of the flows, want {share:.3} ± {tol}; counts {counts:?}"
        );
    }
    let names: Vec<&str> = want.iter().map(|(n, _)| *n).collect();
    assert!(
        counts.keys().all(|k| names.contains(&k.as_str())),
        "{what}: unexpected backends in {counts:?}"
    );
}

/// Flow id → backend, for answered flows.
fn by_flow(results: &[FlowResult]) -> BTreeMap<usize, String> {
    results
        .iter()
        .filter_map(|r| r.backend().map(|b| (r.id, b.to_owned())))
        .collect()
}

#[test]
fn tcp_and_udp_flows_complete_v4_v6() {
    if !require_root("tcp_and_udp_flows_complete_v4_v6") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let vips: Vec<VipSpec> = [(false, "tcp"), (false, "udp"), (true, "tcp"), (true, "udp")]
        .into_iter()
        .map(|(v6, p)| VipSpec::dsr(&bed, v6, p))
        .collect();
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);

    // 2000 flows per VIP over 3 equal backends. A backend's share of n = 2000 flows is
    // binomial with p = 1/3: standard deviation sqrt(p(1-p)/n) = 0.0105. Maglev gives equal
    // backends equal table slots to within one slot of 65537, so that sampling noise is all
    // that moves the share (if the flow hash spreads consecutive source ports evenly, which is
    // what this checks). 25 % is 7.9 and 42 % 8.2 standard deviations from 1/3: a correct
    // balancer falls outside with probability below 1e-14 per backend.
    const N: usize = 2000;
    for vip in &vips {
        let what = format!("{N} flows to {}", vip.name());
        let results = flows(&bed, vip, &Sources::Ephemeral(N));
        assert_all_answered(&results, &what);
        let counts = count_by_backend(&results);
        assert_eq!(
            counts.keys().map(String::as_str).collect::<Vec<_>>(),
            ["be1", "be2", "be3"],
            "{what}"
        );
        for (name, n) in &counts {
            let share = *n as f64 / N as f64;
            assert!(
                (0.25..=0.42).contains(&share),
                "{what}: {name} got {share:.3} of the flows: {counts:?}"
            );
        }
    }
    assert_census(&engine.stop());
}

#[test]
fn weights_shape_the_share() {
    if !require_root("weights_shape_the_share") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let weighted = |v6, proto| {
        let mut v = VipSpec::dsr(&bed, v6, proto);
        for (i, b) in v.backends.iter_mut().enumerate() {
            b.1 = Some(i as u32 + 1);
        }
        v
    };
    let vips = [weighted(false, "udp"), weighted(true, "tcp")];
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);

    // n = 3000: the standard deviation of a share p is sqrt(p(1-p)/n), 0.0068 for 1/6 and
    // 0.0091 for 1/2. ±0.05 is 5.5 to 7.3 of them, with room for the table's own rounding
    // (Maglev fills slots in weighted turns; its shares are within a fraction of a percent
    // of the weights at 65537 slots).
    const N: usize = 3000;
    for vip in &vips {
        let what = format!("{N} flows to {} (weights 1, 2, 3)", vip.name());
        let results = flows(&bed, vip, &Sources::Ephemeral(N));
        assert_all_answered(&results, &what);
        assert_shares(
            &results,
            &[("be1", 1.0 / 6.0), ("be2", 2.0 / 6.0), ("be3", 3.0 / 6.0)],
            0.05,
            &what,
        );
    }
    let list = backends_list(bed.lb().ns());
    for (i, w) in [(0, 1), (1, 2), (2, 3)] {
        let e = backend_entry(&list, &vips[0].name(), bed.backend(i).ipv4().into())
            .unwrap_or_else(|| panic!("backend {i} missing: {list}"));
        assert_eq!(e["weight"], w, "{list}");
    }
    assert_census(&engine.stop());
}

#[test]
fn deleting_a_backend_moves_only_its_flows() {
    if !require_root("deleting_a_backend_moves_only_its_flows") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let vips = [
        VipSpec::dsr(&bed, false, "udp"),
        VipSpec::dsr(&bed, true, "udp"),
    ];
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);

    // Fixed source ports: the same 2000 5-tuples before and after (UDP: the same source port
    // is the same flow).
    const N: usize = 2000;
    let ns = bed.lb().ns();
    let mut before = Vec::new();
    for (k, vip) in vips.iter().enumerate() {
        let sources = Sources::range(20000 + (k * N) as u16, N);
        let r = flows(&bed, vip, &sources);
        assert_all_answered(&r, &format!("{} before", vip.name()));
        before.push((sources, by_flow(&r)));
    }

    let gone = 1; // be2
    for (vip, v6) in vips.iter().zip([false, true]) {
        let addr = LbBed::addr(bed.backend(gone), v6).to_string();
        ctl_ok(ns, &["backends", "del", &vip.name(), &addr]);
    }
    wait_list(&bed, 0, &mut engine, HEALTH_LIMIT, "be2 gone", |l| {
        vips.iter().zip([false, true]).all(|(v, v6)| {
            backend_entry(l, &v.name(), LbBed::addr(bed.backend(gone), v6)).is_none()
        })
    });

    for (vip, (sources, first)) in vips.iter().zip(&before) {
        let what = format!("{} after deleting be2", vip.name());
        let r = flows(&bed, vip, sources);
        assert_all_answered(&r, &what);
        let second = by_flow(&r);
        let mut moved: BTreeMap<String, usize> = BTreeMap::new();
        let mut stayed = 0;
        for (id, was) in first {
            let now = &second[id];
            if was == "be2" {
                assert_ne!(now, "be2", "{what}: flow {id} still on the deleted backend");
                *moved.entry(now.clone()).or_insert(0) += 1;
            } else {
                assert_eq!(now, was, "{what}: flow {id} moved from {was} to {now}");
                stayed += 1;
            }
        }
        let on_be2 = first.values().filter(|b| *b == "be2").count();
        assert!(on_be2 > 0, "{what}: be2 had no flows to begin with");
        assert_eq!(stayed + on_be2, N);
        // Maglev spreads the deleted backend's slots over all the others.
        assert!(
            moved.get("be1").is_some_and(|&n| n > 0) && moved.get("be3").is_some_and(|&n| n > 0),
            "{what}: be2's {on_be2} flows went to {moved:?}"
        );
    }
    assert_census(&engine.stop());
}

#[test]
fn draining_keeps_established_tcp() {
    if !require_root("draining_keeps_established_tcp") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let vips = [
        VipSpec::dsr(&bed, false, "tcp"),
        VipSpec::dsr(&bed, true, "tcp"),
    ];
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);

    let opts = FlowOpts::default();
    let mut open = Vec::new();
    for vip in &vips {
        let (sessions, first) = TcpSessions::open(
            bed.client().ns(),
            vip.target(),
            &Sources::Ephemeral(200),
            &opts,
        )
        .expect("running flows in the client namespace");
        assert_all_answered(
            &first,
            &format!("opening 200 connections to {}", vip.name()),
        );
        assert!(
            first.iter().any(|r| r.backend() == Some("be1")),
            "no connection to {} reached be1: {:?}",
            vip.name(),
            count_by_backend(&first)
        );
        open.push((sessions, by_flow(&first)));
    }

    let drained = 0; // be1
    for (vip, v6) in vips.iter().zip([false, true]) {
        let addr = LbBed::addr(bed.backend(drained), v6).to_string();
        ctl_ok(bed.lb().ns(), &["backends", "drain", &vip.name(), &addr]);
    }
    wait_list(&bed, 0, &mut engine, HEALTH_LIMIT, "be1 drained", |l| {
        vips.iter().zip([false, true]).all(|(v, v6)| {
            backend_entry(l, &v.name(), LbBed::addr(bed.backend(drained), v6))
                .is_some_and(|e| e["admin"] == "drained" && e["in_table"] == false)
        })
    });

    for (vip, (sessions, first)) in vips.iter().zip(open.iter_mut()) {
        let what = format!(
            "established connections to {} after draining be1",
            vip.name()
        );
        let again = sessions.exchange(1);
        assert_all_answered(&again, &what);
        for r in &again {
            assert_eq!(
                r.backend(),
                first.get(&r.id).map(String::as_str),
                "{what}: connection {} changed backend",
                r.id
            );
        }
        let new = flows(&bed, vip, &Sources::Ephemeral(300));
        let what = format!("new connections to {} after draining be1", vip.name());
        assert_all_answered(&new, &what);
        let counts = count_by_backend(&new);
        assert!(!counts.contains_key("be1"), "{what}: {counts:?}");
    }
    drop(open);
    assert_census(&engine.stop());
}

#[test]
fn health_checker_drains_and_restores() {
    if !require_root("health_checker_drains_and_restores") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let vips = [
        VipSpec::dsr(&bed, false, "tcp"),
        VipSpec::dsr(&bed, true, "tcp"),
    ];
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);

    let sick = 1; // be2
    let be2_is = |list: &Value, health: &str, in_table: bool| {
        vips.iter().zip([false, true]).all(|(v, v6)| {
            backend_entry(list, &v.name(), LbBed::addr(bed.backend(sick), v6))
                .is_some_and(|e| e["health"] == health && e["in_table"] == in_table)
        })
    };

    bed.stop_backend_service(sick);
    let t = Instant::now();
    wait_list(&bed, 0, &mut engine, HEALTH_LIMIT, "be2 down", |l| {
        be2_is(l, "down", false)
    });
    eprintln!("be2 seen down after {:?}", t.elapsed());
    for vip in &vips {
        let what = format!("new flows to {} while be2 is down", vip.name());
        let r = flows(&bed, vip, &Sources::Ephemeral(300));
        assert_all_answered(&r, &what);
        assert!(!count_by_backend(&r).contains_key("be2"), "{what}");
    }

    bed.start_backend_service(sick)
        .expect("restarting be2's service");
    let t = Instant::now();
    wait_list(&bed, 0, &mut engine, HEALTH_LIMIT, "be2 up again", |l| {
        be2_is(l, "up", true)
    });
    eprintln!("be2 seen up after {:?}", t.elapsed());
    for vip in &vips {
        let what = format!("new flows to {} after be2 came back", vip.name());
        let r = flows(&bed, vip, &Sources::Ephemeral(300));
        assert_all_answered(&r, &what);
        let counts = count_by_backend(&r);
        assert!(
            counts.get("be2").is_some_and(|&n| n > 0),
            "{what}: {counts:?}"
        );
    }
    assert_census(&engine.stop());
}

#[test]
fn the_balancer_resolves_its_backends_next_hops() {
    if !require_root("the_balancer_resolves_its_backends_next_hops") {
        return;
    }
    // No static neighbours, and UDP VIPs without health checks: nothing but the balancer's
    // resolver makes the kernel learn the backends' MACs (its packets never pass through the
    // kernel, so the kernel would never resolve them by itself).
    let bed = LbBed::new(LbBedOpts {
        static_neighbours: false,
        ..LbBedOpts::default()
    })
    .expect("building the lb bed");
    let vips: Vec<VipSpec> = [false, true]
        .into_iter()
        .map(|v6| VipSpec {
            health: Some("none"),
            ..VipSpec::dsr(&bed, v6, "udp")
        })
        .collect();
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);
    for vip in &vips {
        let what = format!("300 flows to {}", vip.name());
        let r = flows(&bed, vip, &Sources::Ephemeral(300));
        assert_all_answered(&r, &what);
        assert_eq!(count_by_backend(&r).len(), 3, "{what}");
    }
    let known = bed.lb().ns().neighbours("lb0").expect("neighbours of lb0");
    for b in bed.backends() {
        for v6 in [false, true] {
            let a = LbBed::addr(b, v6);
            assert!(
                known.iter().any(|n| n.ip == a && n.mac.is_some()),
                "the kernel of the balancer resolved {a}: {known:?}"
            );
        }
    }
    assert_census(&engine.stop());
}

#[test]
fn reload_and_vip_changes_apply_live() {
    if !require_root("reload_and_vip_changes_apply_live") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let mut vip = VipSpec {
        health: Some("none"),
        ..VipSpec::dsr(&bed, false, "udp")
    };
    let cfg = ConfigFile::new(std::slice::from_ref(&vip));
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, std::slice::from_ref(&vip));
    let ns = bed.lb().ns();
    let be3 = LbBed::addr(bed.backend(2), false);

    // SIGHUP re-reads the file: be3 is gone from it.
    vip.backends.retain(|(a, _)| *a != be3);
    let text = std::fs::read_to_string(cfg.path()).unwrap();
    let kept = ConfigFile::new(std::slice::from_ref(&vip));
    std::fs::copy(kept.path(), cfg.path()).unwrap();
    assert_ne!(text, std::fs::read_to_string(cfg.path()).unwrap());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_list(
        &bed,
        0,
        &mut engine,
        HEALTH_LIMIT,
        "be3 gone after SIGHUP",
        |l| {
            backend_entry(l, &vip.name(), be3).is_none()
                && backend_entry(l, &vip.name(), LbBed::addr(bed.backend(0), false)).is_some()
        },
    );
    let r = flows(&bed, &vip, &Sources::Ephemeral(300));
    assert_all_answered(&r, "flows after SIGHUP");
    let counts = count_by_backend(&r);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["be1", "be2"],
        "{counts:?}"
    );

    // A broken file: `ctl reload` fails naming the file and line; the running set stays.
    std::fs::write(
        cfg.path(),
        "[[vip]]\naddress = \"10.77.100.1\"\nport = oops\n",
    )
    .unwrap();
    let out = ctl(ns, None, &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a broken file is refused");
    let name = cfg.path().display().to_string();
    assert!(
        err.contains(&format!("{name}:3:")),
        "names the file and line: {err}"
    );
    let r = flows(&bed, &vip, &Sources::Ephemeral(100));
    assert_all_answered(&r, "flows after a refused reload");
    assert!(!count_by_backend(&r).contains_key("be3"));

    // vips del: the VIP's traffic goes back to the kernel (which does not forward here).
    ctl_ok(ns, &["vips", "del", &vip.name()]);
    let list = backends_list(ns);
    assert_eq!(list["vips"].as_array().map(Vec::len), Some(0), "{list}");
    assert!(
        probe(&bed, &vip).outcome.is_err(),
        "a deleted VIP is not served"
    );
    // vips add + backends add: served again, by the backends added.
    ctl_ok(
        ns,
        &[
            "vips",
            "add",
            &vip.name(),
            "--forwarding",
            "dsr",
            "--health",
            "none",
        ],
    );
    for i in [0, 2] {
        let a = LbBed::addr(bed.backend(i), false).to_string();
        ctl_ok(ns, &["backends", "add", &vip.name(), &a]);
    }
    wait_ready(&bed, 0, &mut engine, std::slice::from_ref(&vip));
    let r = flows(&bed, &vip, &Sources::Ephemeral(300));
    assert_all_answered(&r, "flows after vips add");
    let counts = count_by_backend(&r);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["be1", "be3"],
        "{counts:?}"
    );
    let fin = engine.stop();
    assert!(
        engine
            .stderr_text()
            .contains("SIGHUP: configuration reloaded"),
        "{}",
        engine.stderr_text()
    );
    assert_census(&fin);
}

#[test]
fn two_engines_agree_on_every_flow() {
    if !require_root("two_engines_agree_on_every_flow") {
        return;
    }
    let bed = LbBed::new(LbBedOpts {
        second_lb: true,
        ..Default::default()
    })
    .expect("building the lb bed");
    let vips = [
        VipSpec::dsr(&bed, false, "udp"),
        VipSpec::dsr(&bed, true, "udp"),
    ];
    let cfg = ConfigFile::new(&vips);
    let mut engines = [start_lb(&bed, 0, &cfg), start_lb(&bed, 1, &cfg)];
    for (i, e) in engines.iter_mut().enumerate() {
        bed.route_vips_via(i).expect("routing the VIPs");
        wait_ready(&bed, i, e, &vips);
    }

    // 10,000 IPv4 and 2,000 IPv6 flows (fixed source ports) through each balancer: a few
    // seconds in all. The same 5-tuple must reach the same backend through either.
    for (vip, n) in vips.iter().zip([10_000, 2_000]) {
        let sources = Sources::range(20000, n);
        let mut per_lb = Vec::new();
        for i in 0..2 {
            bed.route_vips_via(i).expect("routing the VIPs");
            let r = flows(&bed, vip, &sources);
            assert_all_answered(&r, &format!("{n} flows to {} via balancer {i}", vip.name()));
            per_lb.push(by_flow(&r));
        }
        let differ: Vec<_> = per_lb[0]
            .iter()
            .filter(|(id, b)| per_lb[1].get(id) != Some(b))
            .take(10)
            .collect();
        assert!(
            differ.is_empty(),
            "{}: flows the balancers disagree on (first 10, lb's choice): {differ:?}",
            vip.name()
        );
        assert_eq!(per_lb[0].len(), n);
    }
    for e in &mut engines {
        assert_census(&e.stop());
    }
}

/// The frames carrying the client's packets as they left `cl0` (outgoing), by the UDP source
/// port: IP packet bytes (from the IP header on).
fn client_packets(sock: &PacketSocket) -> BTreeMap<u16, Vec<u8>> {
    let mut out = BTreeMap::new();
    while let Some(f) = sock
        .recv(Duration::from_millis(50))
        .expect("capturing on cl0")
    {
        if !f.outgoing {
            continue;
        }
        let ip = &f.data[14..];
        let l4 = match f.data[12..14] {
            [0x08, 0x00] if ip[9] == 17 => usize::from(ip[0] & 0xf) * 4,
            [0x86, 0xdd] if ip[6] == 17 => 40,
            _ => continue,
        };
        let sport = u16::from_be_bytes([ip[l4], ip[l4 + 1]]);
        out.insert(sport, ip.to_vec());
    }
    out
}

/// Discards what a capture holds so far (bounded).
fn drain(sock: &PacketSocket) {
    for _ in 0..100_000 {
        match sock.recv(Duration::ZERO) {
            Ok(Some(_)) => {}
            _ => return,
        }
    }
}

/// What an IP-in-IP frame captured on a backend must look like.
struct Encap {
    lb_mac: [u8; 6],
    backend_mac: [u8; 6],
    outer_src: IpAddr,
    outer_dst: IpAddr,
    /// IPv4 protocol / IPv6 next header of the outer header: 4 (IPv4 inside) or 41 (IPv6).
    inner_proto: u8,
}

/// A frame from the balancer's MAC whose IP header says IPv4 or IPv6 inside: the candidates
/// for [`decode_encap`] (ARP, neighbour discovery and the like are not).
fn looks_encapsulated(f: &[u8], lb_mac: &[u8; 6]) -> bool {
    if f.len() < 14 + 40 || f[6..12] != *lb_mac {
        return false;
    }
    let proto = match f[12..14] {
        [0x08, 0x00] => f[14 + 9],
        [0x86, 0xdd] => f[14 + 6],
        _ => return false,
    };
    proto == 4 || proto == 41
}

/// Checks one captured frame against `want`; returns the inner packet.
fn decode_encap(frame: &[u8], want: &Encap) -> Result<Vec<u8>, String> {
    use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};
    if frame.len() < 14 {
        return Err("runt".into());
    }
    if frame[0..6] != want.backend_mac || frame[6..12] != want.lb_mac {
        return Err(format!(
            "MACs {:02x?} → {:02x?}",
            &frame[6..12],
            &frame[0..6]
        ));
    }
    let ip = &frame[14..];
    match want.outer_src {
        IpAddr::V4(_) => {
            if frame[12..14] != [0x08, 0x00] {
                return Err(format!("ethertype {:02x?}", &frame[12..14]));
            }
            let h = Ipv4HeaderSlice::from_slice(ip).map_err(|e| e.to_string())?;
            let hlen = h.slice().len();
            let total = usize::from(h.total_len());
            if total != ip.len() {
                return Err(format!("total length {total}, frame carries {}", ip.len()));
            }
            if h.protocol().0 != want.inner_proto {
                return Err(format!("protocol {}", h.protocol().0));
            }
            let expect_sum = h.to_header().calc_header_checksum();
            if h.header_checksum() != expect_sum {
                return Err(format!(
                    "header checksum {:#06x}, should be {expect_sum:#06x}",
                    h.header_checksum()
                ));
            }
            if IpAddr::V4(h.source_addr()) != want.outer_src
                || IpAddr::V4(h.destination_addr()) != want.outer_dst
            {
                return Err(format!(
                    "outer {} → {}",
                    h.source_addr(),
                    h.destination_addr()
                ));
            }
            if h.ttl() == 0 || h.is_fragmenting_payload() {
                return Err(format!("ttl {} / fragment", h.ttl()));
            }
            Ok(ip[hlen..total].to_vec())
        }
        IpAddr::V6(_) => {
            if frame[12..14] != [0x86, 0xdd] {
                return Err(format!("ethertype {:02x?}", &frame[12..14]));
            }
            let h = Ipv6HeaderSlice::from_slice(ip).map_err(|e| e.to_string())?;
            let payload = usize::from(h.payload_length());
            if 40 + payload != ip.len() {
                return Err(format!(
                    "payload length {payload}, frame carries {}",
                    ip.len() - 40
                ));
            }
            if h.next_header().0 != want.inner_proto {
                return Err(format!("next header {}", h.next_header().0));
            }
            if IpAddr::V6(h.source_addr()) != want.outer_src
                || IpAddr::V6(h.destination_addr()) != want.outer_dst
            {
                return Err(format!(
                    "outer {} → {}",
                    h.source_addr(),
                    h.destination_addr()
                ));
            }
            if h.hop_limit() == 0 {
                return Err("hop limit 0".into());
            }
            Ok(ip[40..].to_vec())
        }
    }
}

/// Creates a decapsulating tunnel on backend `i` for the outer family `v6`; `Err` says why
/// it can't be (no kernel module).
fn decap_on(bed: &LbBed, i: usize, v6: bool) -> Result<(), String> {
    let be = bed.backend(i);
    let (name, kind) = if v6 {
        ("lbt6", IpTunnel::Ip6Tnl)
    } else {
        ("lbt4", IpTunnel::Ipip)
    };
    be.ns()
        .add_ip_tunnel(name, kind, LbBed::addr(be, v6))
        .map_err(|e| {
            format!(
                "{e} ({})",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            )
        })
}

#[test]
fn ipip_frames_decode() {
    if !require_root("ipip_frames_decode") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let udp = |addr: IpAddr, port, backend: IpAddr| VipSpec {
        addr,
        port,
        proto: "udp",
        forwarding: "ipip",
        health: Some("none"),
        backends: vec![(backend, None)],
    };
    let (be1, be2) = (bed.backend(0), bed.backend(1));
    let v4 = IpAddr::V4(LbBed::VIP_V4);
    let v6 = IpAddr::V6(LbBed::VIP_V6);
    // IPIP (4in4) to be1, IP6IP6 to be1, 4in6 to be2 (its own port on the IPv4 VIP).
    let vips = [
        udp(v4, PORT, be1.ipv4().into()),
        udp(v6, PORT, be1.ipv6().into()),
        udp(v4, PORT + 1, be2.ipv6().into()),
    ];
    let cases = [
        (
            0,
            Encap {
                lb_mac: bed.lb().mac().octets(),
                backend_mac: be1.mac().octets(),
                outer_src: bed.lb().ipv4().into(),
                outer_dst: be1.ipv4().into(),
                inner_proto: 4,
            },
        ),
        (
            0,
            Encap {
                lb_mac: bed.lb().mac().octets(),
                backend_mac: be1.mac().octets(),
                outer_src: bed.lb().ipv6().into(),
                outer_dst: be1.ipv6().into(),
                inner_proto: 41,
            },
        ),
        (
            1,
            Encap {
                lb_mac: bed.lb().mac().octets(),
                backend_mac: be2.mac().octets(),
                outer_src: bed.lb().ipv6().into(),
                outer_dst: be2.ipv6().into(),
                inner_proto: 4,
            },
        ),
    ];
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_list(
        &bed,
        0,
        &mut engine,
        READY_LIMIT,
        "every backend in service",
        all_in_service,
    );

    let on_cl0 = PacketSocket::open(bed.client().ns(), "cl0").expect("capture on cl0");
    let opts = FlowOpts {
        timeout: Duration::from_millis(200),
        udp_sends: 1,
        batch: 16,
    };
    for (k, (vip, (backend, want))) in vips.iter().zip(&cases).enumerate() {
        let iface = bed.backend(*backend).iface();
        let on_backend =
            PacketSocket::open(bed.backend(*backend).ns(), iface).expect("capture on the backend");
        // The engine may attach a moment after it lists its backends: send (bounded) until
        // encapsulated frames arrive. Without a decapsulating tunnel on the backend nobody
        // answers, so the flows themselves time out; the frames are what is checked.
        let end = Instant::now() + READY_LIMIT;
        let sources = Sources::range(24000 + 10 * k as u16, 5);
        let (frames, sent) = loop {
            // Each round compares with its own sends only (the IPv4 ID differs between them).
            drain(&on_backend);
            drain(&on_cl0);
            let _ = udp_flows(bed.client().ns(), vip.target(), &sources, &opts)
                .expect("running flows in the client namespace");
            let sent = client_packets(&on_cl0);
            let frames = on_backend
                .collect_incoming(Duration::from_millis(300), 5, |f| {
                    looks_encapsulated(f, &want.lb_mac)
                })
                .expect("capturing on the backend");
            if frames.len() == 5 {
                break (frames, sent);
            }
            assert!(
                Instant::now() < end,
                "{}: {} of 5 encapsulated frames from the balancer on {iface} within \
                 {READY_LIMIT:?}; stderr:\n{}",
                vip.name(),
                frames.len(),
                engine.stderr_text()
            );
        };
        for f in &frames {
            let inner = decode_encap(f, want).unwrap_or_else(|e| {
                panic!(
                    "{}: a malformed frame on {iface}: {e}: {f:02x?}",
                    vip.name()
                )
            });
            let l4 = if want.inner_proto == 4 {
                usize::from(inner[0] & 0xf) * 4
            } else {
                40
            };
            let sport = u16::from_be_bytes([inner[l4], inner[l4 + 1]]);
            let original = sent.get(&sport).unwrap_or_else(|| {
                panic!(
                    "{}: inner packet from port {sport} was never sent",
                    vip.name()
                )
            });
            assert_eq!(
                &inner,
                original,
                "{}: the inner packet differs from what the client sent",
                vip.name()
            );
        }
    }

    // End to end where this kernel can decapsulate: the backend answers the client directly.
    let e2e = [(0, false, 0), (0, true, 1), (1, true, 2)];
    for (backend, outer_v6, vip) in e2e {
        let vip = &vips[vip];
        match decap_on(&bed, backend, outer_v6) {
            Err(why) => eprintln!(
                "ipip_frames_decode: skipping the end-to-end check of {} (outer IPv{}): \
                 no decapsulating tunnel on this kernel: {why}",
                vip.name(),
                if outer_v6 { 6 } else { 4 }
            ),
            Ok(()) => {
                let r = udp_flows(
                    bed.client().ns(),
                    vip.target(),
                    &Sources::Ephemeral(50),
                    &FlowOpts::default(),
                )
                .expect("running flows in the client namespace");
                assert_all_answered(&r, &format!("{} decapsulated end to end", vip.name()));
                let name = LbBed::backend_name(backend);
                assert!(r.iter().all(|f| f.backend() == Some(name.as_str())));
            }
        }
    }
    assert_census(&engine.stop());
}

#[test]
fn ctl_changes_need_admin_and_bad_input_is_refused() {
    if !require_root("ctl_changes_need_admin_and_bad_input_is_refused") {
        return;
    }
    let bed = LbBed::new(LbBedOpts::default()).expect("building the lb bed");
    let vips = [VipSpec::dsr(&bed, false, "tcp")];
    let cfg = ConfigFile::new(&vips);
    let mut engine = start_lb(&bed, 0, &cfg);
    wait_ready(&bed, 0, &mut engine, &vips);
    let ns = bed.lb().ns();
    let vip = vips[0].name();
    let be1 = bed.backend(0).ipv4().to_string();
    const NOBODY: u32 = 65534;

    // Reading is for everyone; changing is not.
    let out = ctl(ns, Some(NOBODY), &["--json", "backends", "list"]);
    assert!(
        out.status.success(),
        "an unprivileged backends list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(ns, Some(NOBODY), &["backends", "del", &vip, &be1]);
    assert!(
        !out.status.success(),
        "an unprivileged backends del succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
    let list = backends_list(ns);
    assert!(
        backend_entry(&list, &vip, bed.backend(0).ipv4().into()).is_some(),
        "the refused delete happened: {list}"
    );

    // Malformed VIPs are refused, naming what was wrong.
    for bad in [
        "10.77.100.1:99999/tcp",
        "10.77.100.1:8080/sctp",
        "not-a-vip",
    ] {
        let out = ctl(ns, None, &["backends", "add", bad, "10.77.0.14"]);
        assert!(!out.status.success(), "backends add {bad} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad), "the error does not name {bad:?}: {err}");
    }
    let out = ctl(ns, None, &["backends", "del", &vip, "not-an-address"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-an-address"), "{err}");

    // Still serving, with its three backends.
    assert!(engine.is_running(), "stderr:\n{}", engine.stderr_text());
    let list = backends_list(ns);
    for be in bed.backends() {
        assert!(
            backend_entry(&list, &vip, be.ipv4().into()).is_some(),
            "{list}"
        );
    }
    let r = flows(&bed, &vips[0], &Sources::Ephemeral(300));
    assert_all_answered(&r, "flows after the refused commands");
    assert_eq!(count_by_backend(&r).len(), 3, "{:?}", count_by_backend(&r));
    assert_census(&engine.stop());
}

#[test]
fn vip_strings_match_the_ctl_syntax() {
    // No privileges needed: the test's own helpers.
    let v4 = VipSpec {
        addr: Ipv4Addr::new(10, 77, 100, 1).into(),
        port: 8080,
        proto: "tcp",
        forwarding: "dsr",
        health: None,
        backends: vec![(Ipv4Addr::new(10, 77, 0, 11).into(), Some(2))],
    };
    assert_eq!(v4.name(), "10.77.100.1:8080/tcp");
    let v6 = VipSpec {
        addr: Ipv6Addr::new(0xfd77, 0x100, 0, 0, 0, 0, 0, 1).into(),
        ..v4.clone()
    };
    assert_eq!(v6.name(), "[fd77:100::1]:8080/tcp");
    let toml = v4.toml();
    assert!(
        toml.contains("backends = [ { address = \"10.77.0.11\", weight = 2 } ]"),
        "{toml}"
    );
    assert!(!toml.contains("health"), "{toml}");
    let list: Value = serde_json::from_str(
        r#"{"vips":[{"vip":"10.77.100.1:8080/tcp","forwarding":"dsr","backends":[{"address":"10.77.0.11","weight":1,"admin":"active","health":"up","in_table":true}]}]}"#,
    )
    .unwrap();
    assert!(all_in_service(&list));
    assert!(backend_entry(&list, "10.77.100.1:8080/tcp", "10.77.0.11".parse().unwrap()).is_some());
    assert!(backend_entry(&list, "10.77.100.1:8080/tcp", "10.77.0.12".parse().unwrap()).is_none());
}

#[test]
fn encap_decoder_accepts_good_frames_and_names_bad_ones() {
    // No privileges needed: the frame checks of `ipip_frames_decode`, against frames built
    // here with etherparse.
    use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder};
    let lb_mac = [2, 0, 0, 0, 0, 2];
    let be_mac = [2, 0, 0, 0, 0, 0x11];
    let inner4 = {
        let b = PacketBuilder::ipv4([10, 77, 0, 10], [10, 77, 100, 1], 64).udp(40000, 8080);
        let mut v = Vec::new();
        b.write(&mut v, b"flow 0").unwrap();
        v
    };
    let frame = |outer: &[u8], ethertype: [u8; 2], inner: &[u8]| {
        let mut f = be_mac.to_vec();
        f.extend_from_slice(&lb_mac);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(outer);
        f.extend_from_slice(inner);
        f
    };
    let v4_outer = |len: usize| {
        let h =
            Ipv4Header::new(len as u16, 64, IpNumber(4), [10, 77, 0, 2], [10, 77, 0, 11]).unwrap();
        let mut v = Vec::new();
        h.write(&mut v).unwrap();
        v
    };
    let want4 = Encap {
        lb_mac,
        backend_mac: be_mac,
        outer_src: Ipv4Addr::new(10, 77, 0, 2).into(),
        outer_dst: Ipv4Addr::new(10, 77, 0, 11).into(),
        inner_proto: 4,
    };
    let good = frame(&v4_outer(inner4.len()), [0x08, 0x00], &inner4);
    assert!(looks_encapsulated(&good, &lb_mac));
    assert_eq!(decode_encap(&good, &want4), Ok(inner4.clone()));

    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0xff;
    assert!(
        decode_encap(&bad_sum, &want4)
            .unwrap_err()
            .contains("checksum")
    );
    let short_len = frame(&v4_outer(inner4.len() - 1), [0x08, 0x00], &inner4);
    assert!(
        decode_encap(&short_len, &want4)
            .unwrap_err()
            .contains("total length")
    );
    let other_dst = Encap {
        outer_dst: Ipv4Addr::new(10, 77, 0, 12).into(),
        ..want4
    };
    assert!(
        decode_encap(&good, &other_dst)
            .unwrap_err()
            .contains("outer")
    );

    // 4in6: IPv6 outer, next header 4.
    let v6_outer = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: inner4.len() as u16,
        next_header: IpNumber(4),
        hop_limit: 64,
        source: "fd77::2".parse::<Ipv6Addr>().unwrap().octets(),
        destination: "fd77::12".parse::<Ipv6Addr>().unwrap().octets(),
    }
    .to_bytes();
    let want6 = Encap {
        lb_mac,
        backend_mac: be_mac,
        outer_src: "fd77::2".parse::<IpAddr>().unwrap(),
        outer_dst: "fd77::12".parse::<IpAddr>().unwrap(),
        inner_proto: 4,
    };
    let good6 = frame(&v6_outer, [0x86, 0xdd], &inner4);
    assert!(looks_encapsulated(&good6, &lb_mac));
    assert_eq!(decode_encap(&good6, &want6), Ok(inner4.clone()));
    let ip6ip6 = Encap {
        inner_proto: 41,
        ..want6
    };
    assert!(
        decode_encap(&good6, &ip6ip6)
            .unwrap_err()
            .contains("next header")
    );
    // Not from the balancer, or not IP in IP: not a candidate.
    assert!(!looks_encapsulated(&good6, &be_mac));
    let plain = frame(&[], [0x08, 0x00], &inner4);
    assert!(!looks_encapsulated(&plain, &lb_mac));
}
