//! A UDP service on sluice, written only against its public API: every datagram to a steered
//! port is answered with its payload upper-cased (ASCII).
//!
//! ```sh
//! cargo run --release --example uppercase -- --iface eth1 --udp 9000
//! cargo test -p sluice --example uppercase
//! ```
//!
//! The reply is built in place in the received frame: MAC addresses, IP addresses and ports
//! swapped, VLAN tags kept, the payload rewritten. Swapping is checksum-neutral (the swapped
//! fields are summands of the same sums), so the IPv4 header checksum stays valid untouched; the
//! UDP checksum covers the payload, so it is updated incrementally (RFC 1624) from the payload's
//! sum before and after. An incremental update keeps a corrupt datagram corrupt — the client's
//! stack drops the reply — so nothing is verified here, and a zero IPv4 UDP checksum ("none")
//! stays zero.
//!
//! A responder must not be turned against third parties, so it answers only unicast to unicast:
//! frames to or from a group MAC address, datagrams to or from a multicast, broadcast or
//! unspecified IP address, and datagrams from port 0 are dropped (as `policy`). The reply is
//! exactly as long as the request, so it amplifies nothing.

use clap::Parser;
use sluice::apps::{App, Batch, DropReason, Verdict};
use sluice::config::{self, EngineConfig, QueueSpec};
use sluice::steer::{L4Proto, PortList};
use sluice::wire::{
    self, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket, checksum, vlan,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

/// Answers each UDP datagram with its payload upper-cased. One per worker; it has no state.
#[derive(Debug, Default)]
pub struct Uppercase;

impl App for Uppercase {
    fn name(&self) -> &'static str {
        "uppercase"
    }

    fn process(&mut self, batch: &mut Batch<'_, '_>) {
        for (frame, verdict) in batch.iter_mut() {
            *verdict = match answer(frame) {
                Ok(()) => Verdict::Tx,
                Err(reason) => Verdict::Drop(reason),
            };
        }
    }
}

/// Turn one received frame into its reply in place, or say why not. Every check comes before
/// the first write, so a dropped frame is left unchanged.
pub fn answer(frame: &mut [u8]) -> Result<(), DropReason> {
    let eth = EthernetFrame::new_checked(&*frame).map_err(|_| DropReason::Truncated)?;
    if eth.src_addr().is_multicast() || eth.dst_addr().is_multicast() {
        return Err(DropReason::Policy);
    }
    let encap = vlan::walk(frame).map_err(|_| DropReason::Truncated)?;
    let l3 = frame
        .get_mut(encap.l3_offset..)
        .ok_or(DropReason::Truncated)?;
    match encap.ether_type {
        EtherType::IPV4 => {
            let mut ip = Ipv4Packet::new_checked(l3).map_err(ip_error)?;
            if ip.version() != 4 {
                return Err(DropReason::BadIpHeader);
            }
            if ip.is_fragment() {
                return Err(DropReason::Fragment);
            }
            if ip.protocol() != IpProtocol::UDP {
                return Err(DropReason::UnsupportedProtocol);
            }
            if !unicast_v4(ip.src_addr()) || !unicast_v4(ip.dst_addr()) {
                return Err(DropReason::Policy);
            }
            uppercase_udp(ip.payload_mut(), false)?;
            ip.swap_addrs();
        }
        EtherType::IPV6 => {
            let mut ip = Ipv6Packet::new_checked(l3).map_err(ip_error)?;
            if ip.version() != 6 {
                return Err(DropReason::BadIpHeader);
            }
            // Extension headers (fragments among them) are not walked: not UDP for this service.
            if ip.next_header() != IpProtocol::UDP {
                return Err(DropReason::UnsupportedProtocol);
            }
            if !unicast_v6(ip.src_addr()) || !unicast_v6(ip.dst_addr()) {
                return Err(DropReason::Policy);
            }
            uppercase_udp(ip.payload_mut(), true)?;
            ip.swap_addrs();
        }
        _ => return Err(DropReason::NotIp),
    }
    // `new_checked` above established that the Ethernet header is there.
    EthernetFrame::new_unchecked(frame).swap_addrs();
    Ok(())
}

/// Check the UDP datagram that is exactly `segment` (the IP payload), then upper-case its payload,
/// update its checksum and swap its ports.
fn uppercase_udp(segment: &mut [u8], v6: bool) -> Result<(), DropReason> {
    let whole = segment.len();
    let mut udp = UdpPacket::new_checked(segment).map_err(|e| match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed | wire::Error::Length => DropReason::L4Length,
    })?;
    if usize::from(udp.len()) != whole {
        return Err(DropReason::L4Length);
    }
    if udp.src_port() == 0 {
        return Err(DropReason::Policy); // nowhere to answer to
    }
    let old = udp.checksum();
    if old == 0 && v6 {
        return Err(DropReason::Policy); // mandatory over IPv6 (RFC 8200 §8.1): invalid
    }
    let before = checksum::data(udp.payload());
    udp.payload_mut().make_ascii_uppercase();
    if old != 0 {
        // RFC 1624 eqn. 3 holds for any sum of changed words, not just one word; the payload
        // starts at an even offset, so its words are the checksum's words.
        let new = checksum::update_word(old, before, checksum::data(udp.payload()));
        // 0 on the wire would mean "no checksum"; 0xffff is the same ones-complement value.
        udp.set_checksum(if new == 0 { 0xffff } else { new });
    }
    udp.swap_ports();
    Ok(())
}

fn ip_error(e: wire::Error) -> DropReason {
    match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed => DropReason::BadIpHeader,
        wire::Error::Length => DropReason::IpLength,
    }
}

fn unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_multicast() || a.is_broadcast() || a.is_unspecified())
}

fn unicast_v6(a: Ipv6Addr) -> bool {
    !(a.is_multicast() || a.is_unspecified())
}

/// Answer UDP datagrams with their payload upper-cased, in user space, through AF_XDP.
#[derive(Parser, Debug)]
struct Args {
    /// Interface to serve on.
    #[arg(long)]
    iface: String,
    /// UDP destination ports to serve: comma-separated ports or ranges (`9000,9100-9110`).
    #[arg(long, value_name = "PORTS")]
    udp: PortList,
    /// How many RX queues get a worker (queues 0..N), or `all`.
    #[arg(long, value_name = "N|all", default_value = "all")]
    queues: QueueSpec,
    /// Stop after this many seconds (default: on SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Seconds between stats lines (0 = only the final totals).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    stats_interval: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uppercase: error: {}", sluice::error::chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// Build the engine configuration from the flags and run until SIGINT/SIGTERM or `--duration`.
fn serve(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = EngineConfig::new(&args.iface).steer(L4Proto::Udp, &args.udp);
    cfg.queues = args.queues;
    let every = config::seconds("stats-interval", args.stats_interval)?;
    cfg = cfg.stats_interval((!every.is_zero()).then_some(every));
    if let Some(secs) = args.duration {
        cfg = cfg.duration(config::seconds("duration", secs)?);
    }
    let summary = sluice::engine::run(&cfg, |_ctx| Uppercase, &mut std::io::stdout())?;
    let total = summary.total();
    let by_reason: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| total.drops[r.index()] > 0)
        .map(|r| format!("{r} {}", total.drops[r.index()]))
        .collect();
    eprintln!(
        "uppercase: {} datagrams in, {} answered, {} dropped [{}]",
        total.rx_packets,
        total.tx_packets,
        total.dropped(),
        by_reason.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice, VlanId};
    use proptest::prelude::*;
    use sluice::batch::PortId;
    use sluice::worker::{Local, Scratch, mem::MemTransport, step};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// A UDP frame behind one VLAN tag (vid 100) from port 40000 to 9000.
    fn udp_frame(v6: bool, payload: &[u8]) -> Vec<u8> {
        udp_frame_from(v6, 40000, payload)
    }

    fn udp_frame_from(v6: bool, sport: u16, payload: &[u8]) -> Vec<u8> {
        let link = PacketBuilder::ethernet2(A, B).single_vlan(VlanId::try_new(100).unwrap());
        let mut out = Vec::new();
        if v6 {
            let host = |n| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n).octets();
            link.ipv6(host(1), host(2), 64)
                .udp(sport, 9000)
                .write(&mut out, payload)
        } else {
            link.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(sport, 9000)
                .write(&mut out, payload)
        }
        .unwrap();
        out
    }

    fn run(frame: &mut [u8]) -> Verdict {
        let mut frames: [&mut [u8]; 1] = [frame];
        let mut verdicts = [Verdict::Tx];
        let mut batch = Batch::new(&mut frames, &mut verdicts);
        Uppercase.process(&mut batch);
        batch.verdict(0)
    }

    /// `reply` is the answer to `request`, checked by etherparse: everything swapped, tags kept,
    /// payload upper-cased, and every checksum what a full recomputation gives.
    fn assert_answer(request: &[u8], reply: &[u8]) {
        let q = SlicedPacket::from_ethernet(request).expect("request parses");
        let r = SlicedPacket::from_ethernet(reply).expect("reply parses");
        let (
            Some(etherparse::LinkSlice::Ethernet2(qe)),
            Some(etherparse::LinkSlice::Ethernet2(re)),
        ) = (&q.link, &r.link)
        else {
            panic!("not Ethernet II");
        };
        assert_eq!(
            (re.source(), re.destination()),
            (qe.destination(), qe.source())
        );
        assert_eq!(q.vlan_ids(), r.vlan_ids());
        let (Some(TransportSlice::Udp(qu)), Some(TransportSlice::Udp(ru))) =
            (&q.transport, &r.transport)
        else {
            panic!("not UDP");
        };
        assert_eq!(
            (ru.source_port(), ru.destination_port()),
            (qu.destination_port(), qu.source_port())
        );
        assert_eq!(ru.payload(), qu.payload().to_ascii_uppercase());
        let expected = match &r.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
                assert_eq!(h.source(), q_v4(&q).1, "addresses swapped");
                assert_eq!(h.destination(), q_v4(&q).0);
                if qu.checksum() == 0 {
                    0
                } else {
                    ru.to_header()
                        .calc_checksum_ipv4_raw(h.source(), h.destination(), ru.payload())
                        .unwrap()
                }
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                ru.to_header()
                    .calc_checksum_ipv6_raw(h.source(), h.destination(), ru.payload())
                    .unwrap()
            }
            _ => panic!("not IP"),
        };
        assert_eq!(ru.checksum(), expected, "UDP checksum");
    }

    fn q_v4(p: &SlicedPacket<'_>) -> ([u8; 4], [u8; 4]) {
        match &p.net {
            Some(NetSlice::Ipv4(ip)) => (ip.header().source(), ip.header().destination()),
            _ => panic!("not IPv4"),
        }
    }

    #[test]
    fn answers_ipv4_and_ipv6_behind_a_vlan_tag() {
        for v6 in [false, true] {
            for payload in [
                &b""[..],
                b"x",
                b"Hello, sluice! 123 \xff\x00 mixed Case",
                &[b'q'; 1400],
            ] {
                let request = udp_frame(v6, payload);
                let mut reply = request.clone();
                assert_eq!(run(&mut reply), Verdict::Tx, "v6={v6} {payload:?}");
                assert_eq!(reply[12..16], request[12..16], "VLAN tag kept");
                assert_answer(&request, &reply);
            }
        }
    }

    #[test]
    fn a_zero_ipv4_checksum_stays_zero() {
        let mut request = udp_frame(false, b"no checksum");
        let encap = vlan::walk(&request).unwrap();
        let mut ip = Ipv4Packet::new_checked(&mut request[encap.l3_offset..]).unwrap();
        UdpPacket::new_checked(ip.payload_mut())
            .unwrap()
            .set_checksum(0);
        let mut reply = request.clone();
        assert_eq!(run(&mut reply), Verdict::Tx);
        assert_answer(&request, &reply);
    }

    #[test]
    fn a_reply_summing_to_zero_carries_ffff_not_zero() {
        // Find the source port whose reply's checksum field must be 0xffff (a computed 0):
        // the update must not write 0, which would mean "no checksum".
        let zero_sum = (1..=u16::MAX)
            .map(|sport| udp_frame_from(false, sport, b"hello"))
            .find(|request| {
                let mut reply = request.clone();
                run(&mut reply);
                let r = SlicedPacket::from_ethernet(&reply).unwrap();
                let Some(TransportSlice::Udp(u)) = r.transport else {
                    panic!()
                };
                u.checksum() == 0xffff
            })
            .expect("some source port gives a zero sum");
        let mut reply = zero_sum.clone();
        assert_eq!(run(&mut reply), Verdict::Tx);
        assert_answer(&zero_sum, &reply);
    }

    /// `request` is dropped for `reason` and left unchanged.
    fn assert_dropped(request: &[u8], reason: DropReason) {
        let mut f = request.to_vec();
        assert_eq!(run(&mut f), Verdict::Drop(reason));
        assert_eq!(f, request, "a dropped frame is left unchanged");
    }

    #[test]
    fn drops_what_it_must_not_answer() {
        use DropReason::*;
        let v4 = |s: [u8; 4], d: [u8; 4], sport: u16| {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(A, B)
                .ipv4(s, d, 64)
                .udp(sport, 9000)
                .write(&mut out, b"hi")
                .unwrap();
            out
        };
        assert_dropped(&v4([10, 0, 0, 1], [224, 0, 0, 1], 1), Policy); // multicast
        assert_dropped(&v4([10, 0, 0, 1], [255, 255, 255, 255], 1), Policy); // broadcast
        assert_dropped(&v4([224, 0, 0, 1], [10, 0, 0, 2], 1), Policy); // from multicast
        assert_dropped(&v4([0, 0, 0, 0], [10, 0, 0, 2], 1), Policy); // from nobody
        assert_dropped(&v4([10, 0, 0, 1], [10, 0, 0, 2], 0), Policy); // from port 0

        // A group MAC address at either end.
        let mut f = udp_frame(false, b"hi");
        f[..6].copy_from_slice(&[0xff; 6]);
        assert_dropped(&f, Policy);
        let mut f = udp_frame(true, b"hi");
        f[6..12].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
        assert_dropped(&f, Policy);

        let mut v6 = Vec::new();
        let ff02 = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        PacketBuilder::ethernet2(A, B)
            .ipv6([0xfd; 16], ff02, 64)
            .udp(1, 9000)
            .write(&mut v6, b"hi")
            .unwrap();
        assert_dropped(&v6, Policy);

        let mut tcp = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1, 9000, 0, 1000)
            .write(&mut tcp, b"hi")
            .unwrap();
        assert_dropped(&tcp, UnsupportedProtocol);

        // A fragment: set the more-fragments flag through the view.
        let mut frag = v4([10, 0, 0, 1], [10, 0, 0, 2], 1);
        let mut ip = Ipv4Packet::new_checked(&mut frag[14..]).unwrap();
        ip.set_more_frags(true);
        ip.fill_checksum();
        assert_dropped(&frag, Fragment);

        let good = udp_frame(false, b"hi");
        assert_dropped(&good[..20], Truncated);
        assert_dropped(&good[..good.len() - 1], IpLength);
        let mut arp = good.clone();
        arp[16..18].copy_from_slice(&0x0806u16.to_be_bytes()); // the inner EtherType
        assert_dropped(&arp, NotIp);
    }

    #[test]
    fn through_the_worker_batch_step_with_counters() {
        let v4 = udp_frame(false, b"abc");
        let v6 = udp_frame(true, b"def");
        let mut to_broadcast = v4.clone();
        to_broadcast[..6].copy_from_slice(&[0xff; 6]);
        let garbage = [0u8; 10];
        let templates: [&[u8]; 4] = [&v4, &v6, &to_broadcast, &garbage];
        let mut t = MemTransport::new(&templates, 4, 2048);
        let (mut s, mut c) = (Scratch::new(), Local::default());
        assert_eq!(
            step(&mut t, PortId(0), &mut Uppercase, &mut s, 64, &mut c),
            4
        );

        assert_eq!((c.rx_packets, c.tx_packets, c.dropped()), (4, 2, 2));
        assert_eq!(c.drops[DropReason::Policy.index()], 1);
        assert_eq!(c.drops[DropReason::Truncated.index()], 1);
        assert_eq!((t.transmitted(), t.recycled(), t.outstanding()), (2, 2, 0));
        assert_answer(&v4, t.frame(0));
        assert_answer(&v6, t.frame(1));
        assert_eq!(
            t.frame(2),
            &to_broadcast[..],
            "dropped frames are untouched"
        );
    }

    proptest! {
        /// Whatever the bytes: no panic, and a dropped frame is left as it was.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut f = bytes.clone();
            if let Verdict::Drop(_) = run(&mut f) {
                prop_assert_eq!(f, bytes);
            }
        }

        /// Random bytes behind a plausible tagged header, so the IP and UDP checks are reached.
        #[test]
        fn plausible_headers_never_panic(
            et in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100)],
            first in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()],
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut f = [A, B].concat();
            f.extend_from_slice(&et.to_be_bytes());
            f.push(first);
            f.extend_from_slice(&rest);
            if let Some(p) = f.get_mut(23) { *p = 17; } // IPv4 protocol: UDP
            if let Some(p) = f.get_mut(20) { *p = 17; } // IPv6 next header: UDP
            let orig = f.clone();
            if let Verdict::Drop(_) = run(&mut f) {
                prop_assert_eq!(f, orig);
            }
        }

        /// Any payload over either IP version gets a correct answer with a valid checksum
        /// (the incremental update equals a full recomputation).
        #[test]
        fn any_payload_is_answered(v6 in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let request = udp_frame(v6, &payload);
            let mut reply = request.clone();
            prop_assert_eq!(run(&mut reply), Verdict::Tx);
            assert_answer(&request, &reply);
        }
    }
}
