//! Jumbo frames: UDP echo through `reflect` over a veth pair with a 9000-byte MTU, where frames
//! span several UMEM frames (AF_XDP multi-buffer), every datagram up to 8972 bytes returned
//! byte for byte.

mod common;

use common::*;
use sluice_testbed::require_root;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const PORT: u16 = 9000;

/// Datagram sizes: around every UMEM frame boundary (2048- and 4096-byte frames hold 1792 and
/// 3840 bytes of frame, 42 of which are headers) and up to the 9000-byte MTU's 8972.
const SIZES: &[usize] = &[
    1, 64, 1472, 1750, 1751, 3798, 3799, 3800, 5000, 7638, 7639, 8000, 8971, 8972,
];

fn echo_sizes(bed: &sluice_testbed::TestBed, rounds: usize) {
    let target = SocketAddr::new(bed.engine().ipv4().into(), PORT);
    let bind = SocketAddr::new(bed.peer().ipv4().into(), 0);
    bed.peer()
        .ns()
        .run(move || {
            let s = UdpSocket::bind(bind).unwrap();
            s.connect(target).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = vec![0u8; 16384];
            for round in 0..rounds {
                for (k, &size) in SIZES.iter().enumerate() {
                    let sent: Vec<u8> = (0..size).map(|i| (i * 7 + k * 13 + round) as u8).collect();
                    s.send(&sent).unwrap();
                    let n = s
                        .recv(&mut buf)
                        .unwrap_or_else(|e| panic!("no echo of {size} bytes: {e}"));
                    assert_eq!(n, size, "echo length");
                    assert!(buf[..n] == sent[..], "{size}-byte echo differs");
                }
            }
        })
        .unwrap();
}

#[test]
fn udp_echo_of_jumbo_datagrams_over_a_9000_mtu_veth_is_byte_identical() {
    for frame_size in ["2048", "4096"] {
        if !require_root("udp_echo_of_jumbo_datagrams_over_a_9000_mtu_veth_is_byte_identical") {
            return;
        }
        let bed = bed(1);
        for end in [bed.engine(), bed.peer()] {
            end.ns().set_mtu(end.iface(), 9000).unwrap();
        }
        let mut engine = Engine::start(
            &bed,
            &[
                "--udp",
                "9000",
                "--frame-size",
                frame_size,
                "--xdp-mode",
                "driver",
            ],
        );
        engine.wait_for_log("XDP_USE_SG", Duration::from_secs(10));
        wait_echo_ready(&bed, &mut engine, false, PORT);
        echo_sizes(&bed, 20);
        // Several in flight (the TX ring must take each multi-buffer packet whole however its
        // cached head lags); 8 × 8972 bytes stay within the client's default receive buffer.
        let mut cfg = echo_cfg(&bed, false, PORT);
        cfg.sizes = vec![8972, 5000, 1472];
        cfg.window = 8;
        cfg.count = Some(3000);
        let st = echo(&bed, cfg);
        assert_eq!((st.echoed, st.lost, st.mismatched), (3000, 0, 0), "{st:?}");
        let fin = engine.stop();
        assert_census(&fin);
        let total = &fin["total"];
        assert_eq!(total["dropped"], 0, "{fin}");
        assert_eq!(fin["queues"][0]["kernel"]["rx_dropped"], 0, "{fin}");
    }
}
