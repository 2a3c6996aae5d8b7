//! End to end through `sluice run --app reflect` on a veth pair: kernel UDP clients in the peer
//! namespace get every datagram back byte for byte (the kernel verifies the checksums), multiple
//! queues share the load, and the frame census adds up afterwards.

mod common;

use common::*;
use sluice_testbed::require_root;
use std::time::Duration;

const PORT: u16 = 9000;

/// Sizes from 1 byte to the largest payload that fits the MTU, spread so every size class
/// (tiny, around 64-byte frames, around the MTU) is hit many times.
fn sizes(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=64).collect();
    v.extend((65..max).step_by(13));
    v.extend(max - 8..=max);
    v
}

fn echo_all_sizes(v6: bool) {
    let bed = bed(1);
    let mut engine = Engine::start(&bed, &["--udp", "9000", "--queues", "1"]);
    wait_echo_ready(&bed, &mut engine, v6, PORT);

    // MTU 1500: IPv4 20 + UDP 8 → 1472; IPv6 40 + UDP 8 → 1452.
    let max = if v6 { 1452 } else { 1472 };
    let mut cfg = echo_cfg(&bed, v6, PORT);
    cfg.sizes = sizes(max);
    cfg.count = Some(12_000);
    cfg.window = 64;
    cfg.flows = 4;
    let s = echo(&bed, cfg);
    assert_eq!(s.sent, 12_000);
    assert_eq!(s.echoed, 12_000, "every datagram must come back: {s:?}");
    assert_eq!(s.mismatched, 0, "{s:?}");
    assert_eq!(s.lost, 0, "{s:?}");

    let fin = engine.stop();
    assert_census(&fin);
    let total = &fin["total"];
    // Every steered frame was transmitted back; the probes count too.
    assert!(total["rx_packets"].as_u64().unwrap() >= 12_000, "{fin}");
    assert_eq!(total["rx_packets"], total["tx_packets"], "{fin}");
    assert_eq!(total["dropped"], 0, "{fin}");
    assert!(
        fin["xdp"]["redirected"].as_u64().unwrap() >= 12_000,
        "{fin}"
    );
    assert!(
        !xdp_attached(&bed),
        "XDP program left attached after SIGTERM"
    );
}

#[test]
fn udp_echo_ipv4_every_size_byte_identical() {
    if !require_root("udp_echo_ipv4_every_size_byte_identical") {
        return;
    }
    echo_all_sizes(false);
}

#[test]
fn udp_echo_ipv6_every_size_byte_identical() {
    if !require_root("udp_echo_ipv6_every_size_byte_identical") {
        return;
    }
    echo_all_sizes(true);
}

#[test]
fn two_queues_both_workers_receive_and_totals_add_up() {
    if !require_root("two_queues_both_workers_receive_and_totals_add_up") {
        return;
    }
    let bed = bed(2);
    let mut engine = start_ready(&bed, &["--udp", "9000", "--queues", "all"], PORT);
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.flows = 32; // many source ports: the peer's TX queue choice hashes the flow
    cfg.count = Some(6_000);
    cfg.sizes = vec![18, 200, 1000];
    let s = echo(&bed, cfg);
    assert_eq!((s.echoed, s.mismatched, s.lost), (6_000, 0, 0), "{s:?}");

    let fin = engine.stop();
    assert_census(&fin);
    let queues = fin["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2, "{fin}");
    let mut sum_rx = 0;
    let mut sum_tx = 0;
    for q in queues {
        let rx = q["counters"]["rx_packets"].as_u64().unwrap();
        assert!(rx > 0, "queue {} received nothing: {fin}", q["queue"]);
        sum_rx += rx;
        sum_tx += q["counters"]["tx_packets"].as_u64().unwrap();
    }
    assert_eq!(fin["total"]["rx_packets"].as_u64().unwrap(), sum_rx);
    assert_eq!(fin["total"]["tx_packets"].as_u64().unwrap(), sum_tx);
    assert!(sum_rx >= 6_000);
    assert_eq!(fin["xdp"]["redirected"].as_u64().unwrap(), sum_rx, "{fin}");
}

#[test]
fn drop_app_counts_and_recycles() {
    if !require_root("drop_app_counts_and_recycles") {
        return;
    }
    let bed = bed(1);
    let mut engine = Engine::start(&bed, &["--udp", "9000", "--app", "drop"]);
    // Nothing echoes: wait until the program is attached, then send.
    wait_until(&mut engine, Duration::from_secs(20), "XDP attached", || {
        xdp_attached(&bed)
    });
    std::thread::sleep(Duration::from_millis(300)); // sockets are registered right after attach
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.count = Some(20_000); // more than the 4096 UMEM frames: recycling must work
    cfg.window = 1_000; // bursts the 2048-entry RX ring absorbs
    cfg.timeout = Duration::from_millis(100); // no echo ever comes: each burst times out
    let s = echo(&bed, cfg);
    assert_eq!(s.echoed, 0, "the drop app must not send anything back");
    let fin = engine.stop();
    assert_census(&fin);
    let policy = fin["total"]["drops"]["policy"].as_u64().unwrap();
    let rx = fin["total"]["rx_packets"].as_u64().unwrap();
    assert_eq!(policy, rx, "{fin}");
    assert_eq!(fin["total"]["tx_packets"], 0);
    assert_eq!(s.sent, 20_000);
    // Every redirected frame reached the app or was dropped by the kernel at the socket
    // (RX ring full), and the latter is counted.
    let q = &fin["queues"][0];
    let kernel_drops =
        q["kernel"]["rx_ring_full"].as_u64().unwrap() + q["kernel"]["rx_dropped"].as_u64().unwrap();
    assert_eq!(
        fin["xdp"]["redirected"].as_u64().unwrap(),
        rx + kernel_drops,
        "{fin}"
    );
    assert!(
        rx >= 19_000,
        "only {rx} of 20000 reached the drop app: {fin}"
    );
}

#[test]
fn kernel_tuning_options_apply_and_echo_still_works() {
    if !require_root("kernel_tuning_options_apply_and_echo_still_works") {
        return;
    }
    // XDP_MAX_TX_SKB_BUDGET (6.17+) and preferred busy polling are set with setsockopt at
    // start-up: a kernel that refused them would fail the start, and a wrong value would break
    // the echo. Extra UMEM headroom moves every frame inside its chunk: the descriptors must
    // still be sliced, reflected and recycled right (the census checks the recycling).
    let bed = bed(1);
    let mut engine = Engine::start(
        &bed,
        &[
            "--udp",
            "9000",
            "--tx-budget",
            "256",
            "--napi-busy-poll",
            "20",
            "--busy-poll",
        ],
    );
    wait_echo_ready(&bed, &mut engine, false, PORT);
    let mut cfg = echo_cfg(&bed, false, PORT);
    cfg.count = Some(3_000);
    cfg.sizes = vec![18, 700, 1472];
    let s = echo(&bed, cfg);
    assert_eq!((s.echoed, s.lost, s.mismatched), (3_000, 0, 0), "{s:?}");
    let fin = engine.stop();
    assert_census(&fin);
    assert_eq!(fin["total"]["dropped"], 0, "{fin}");
}
