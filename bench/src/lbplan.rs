//! The `lb` scenario's plan: which VIP the generator's traffic goes to, which backends the
//! balancer spreads it over, the configuration file `sluice run --app lb` gets, and what a
//! correctly balanced copy of a frame must look like at the server end (DSR and IPIP).
//!
//! The plan rides on the forward scenario's client — router — server bed
//! (`sluice_testbed::RouterBed`) so that every subject sends the frames the same way, r0 → r1 →
//! s0, and one counter on s0 sees them all:
//!
//! - **VIP** [`VIP`] = the bed's service address (`RouterBed::SERVICE_IPV4`, 10.9.0.1), which
//!   the server has on its loopback (a DSR backend owns the VIP) and which the router routes via
//!   s0. So the same frames are a VIP flow to the balancer and an ordinary routed packet to the
//!   forward app and the XDP forwarder.
//! - **Backends** [`BACKENDS`]: s0's own address and three more on the server segment whose
//!   router neighbour entries are s0's MAC ([`add_backend_neighbours`]). Maglev then spreads the
//!   flows over four backends, as a balancer would, while every frame still leaves r1 for s0's
//!   MAC and reaches the one counter.
//! - [`check_dsr`] and [`check_ipip`] are the rules a frame captured on s0 must pass before a
//!   subject is measured: DSR rewrites the MACs and nothing else (no TTL decrement: the
//!   balancer is one L2 hop); IPIP puts one outer IPv4 header in front of the unchanged packet.
//!
//! This module builds text and checks frames; it only touches the bed in
//! [`add_backend_neighbours`].

use sluice::apps::lb::config::{Forwarding, LbConfig};
use sluice::apps::lb::conntrack::ConnTrackConfig;
use sluice::apps::lb::flow::BackendId;
use sluice::apps::lb::{BackendSpec, ServiceSpec};
use sluice::wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket, ethernet, ipv4};
use sluice_testbed::{MacAddr, RouterBed};
use std::net::{IpAddr, Ipv4Addr};

/// The VIP: the server's service address (on its `lo`), which the router routes via s0.
pub const VIP: Ipv4Addr = RouterBed::SERVICE_IPV4;
/// The VIP's UDP port (the generator's destination port).
pub const PORT: u16 = crate::route::PORT;
/// Flows (source ports) the generator cycles through in the lb scenario: many more than the
/// forward scenario's 16, so the connection table holds thousands of entries and new flows
/// keep being hashed at the start of every run.
pub const FLOWS: u16 = 16_384;
/// The backends: s0 (10.2.0.2) and three more addresses on the server segment that the router
/// resolves to s0's MAC (see the module docs).
pub const BACKENDS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 2, 0, 2),
    Ipv4Addr::new(10, 2, 0, 3),
    Ipv4Addr::new(10, 2, 0, 4),
    Ipv4Addr::new(10, 2, 0, 5),
];

/// The lb configuration file: one UDP VIP on [`VIP`]:[`PORT`] with `forwarding`, no health
/// checks, the [`BACKENDS`], and (if given) a connection-table capacity per worker.
pub fn config_toml(forwarding: Forwarding, conntrack_capacity: Option<u32>) -> String {
    let forwarding = match forwarding {
        Forwarding::Dsr => "dsr",
        Forwarding::Ipip => "ipip",
    };
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect();
    let mut s = String::new();
    if let Some(c) = conntrack_capacity {
        s.push_str(&format!("[conntrack]\ncapacity = {c}\n\n"));
    }
    s.push_str(&format!(
        "[[vip]]\naddress = \"{VIP}\"\nport = {PORT}\nprotocol = \"udp\"\nforwarding = \"{forwarding}\"\n\
         health = \"none\"\nbackends = [ {} ]\n",
        backends.join(", ")
    ));
    s
}

/// What the engine would build from a configuration text: the services (backend ids numbered
/// from 1 in file order, every backend taking new flows, as with `health = "none"`), the
/// Maglev table size, and the connection-table settings (with `seed`).
pub fn engine_view(
    text: &str,
    seed: u64,
) -> Result<(Vec<ServiceSpec>, u32, ConnTrackConfig), String> {
    let cfg = LbConfig::from_str(text, "lb-bench.toml").map_err(|e| e.to_string())?;
    let mut id = 0;
    let services = cfg
        .vips
        .iter()
        .map(|v| ServiceSpec {
            vip: v.vip,
            forwarding: v.forwarding,
            backends: v
                .backends
                .iter()
                .map(|b| {
                    id += 1;
                    BackendSpec {
                        id: BackendId(id),
                        addr: b.address,
                        weight: b.weight,
                        takes_new: b.weight > 0,
                    }
                })
                .collect(),
        })
        .collect();
    let conntrack = ConnTrackConfig {
        capacity: cfg.conntrack.capacity,
        tcp_timeout_ms: u64::from(cfg.conntrack.tcp_idle_secs) * 1000,
        udp_timeout_ms: u64::from(cfg.conntrack.udp_idle_secs) * 1000,
        seed,
        ..ConnTrackConfig::default()
    };
    Ok((services, cfg.maglev.table_size, conntrack))
}

/// Permanent neighbour entries in the router for the backends other than s0 itself, all with
/// s0's MAC on r1 (s0's own entry is the bed's static neighbour).
pub fn add_backend_neighbours(bed: &RouterBed) -> sluice_testbed::Result<()> {
    let (r1, s0) = (bed.r1(), bed.s0());
    for b in BACKENDS.iter().filter(|b| **b != s0.ipv4()) {
        bed.router()
            .add_neighbour(r1.iface(), IpAddr::V4(*b), s0.mac())?;
    }
    Ok(())
}

/// The parts of an IPv4/UDP frame the checks compare.
struct Parsed<'a> {
    eth: EthernetFrame<&'a [u8]>,
    ip: Ipv4Packet<&'a [u8]>,
    udp: UdpPacket<&'a [u8]>,
}

fn parse_udp4<'a>(f: &'a [u8], what: &str) -> Result<Parsed<'a>, String> {
    let eth = EthernetFrame::new_checked(f).map_err(|e| format!("{what}: Ethernet: {e}"))?;
    if eth.ether_type() != EtherType::IPV4 {
        return Err(format!(
            "{what}: EtherType {:?}, not IPv4",
            eth.ether_type()
        ));
    }
    let l3 = &f[ethernet::HEADER_LEN..];
    let ip = Ipv4Packet::new_checked(l3).map_err(|e| format!("{what}: IPv4: {e}"))?;
    if ip.protocol() != IpProtocol::UDP {
        return Err(format!("{what}: IP protocol {:?}, not UDP", ip.protocol()));
    }
    let l4 = &l3[ip.header_len()..usize::from(ip.total_len())];
    let udp = UdpPacket::new_checked(l4).map_err(|e| format!("{what}: UDP: {e}"))?;
    Ok(Parsed { eth, ip, udp })
}

fn check_macs(
    eth: &EthernetFrame<&[u8]>,
    egress_mac: MacAddr,
    next_hop_mac: MacAddr,
) -> Result<(), String> {
    if eth.dst_addr().0 != next_hop_mac.0 || eth.src_addr().0 != egress_mac.0 {
        return Err(format!(
            "MACs {:02x?} -> {:02x?}, want {egress_mac} -> {next_hop_mac}",
            eth.src_addr().0,
            eth.dst_addr().0
        ));
    }
    Ok(())
}

/// The inner IPv4 packet `got` (a whole IP packet) must be `sent`'s (a whole frame): the IP
/// header byte for byte (so TTL and checksum untouched), the UDP destination port and length.
/// Source port, UDP checksum and payload stamp vary per generated frame and are not compared.
fn check_unchanged_packet(sent: &Parsed<'_>, got_l3: &[u8]) -> Result<(), String> {
    let ip = Ipv4Packet::new_checked(got_l3).map_err(|e| format!("inner IPv4: {e}"))?;
    if ip.ttl() != sent.ip.ttl() {
        return Err(format!(
            "TTL {} (sent {}): the balancer must not decrement it",
            ip.ttl(),
            sent.ip.ttl()
        ));
    }
    let hl = sent.ip.header_len();
    let sent_header = &sent.eth.payload()[..hl];
    if got_l3.len() < hl || got_l3[..hl] != *sent_header {
        return Err(format!(
            "IPv4 header {:02x?} changed (sent {sent_header:02x?})",
            &got_l3[..hl.min(got_l3.len())]
        ));
    }
    let l4 = &got_l3[hl..usize::from(ip.total_len()).min(got_l3.len())];
    let udp = UdpPacket::new_checked(l4).map_err(|e| format!("inner UDP: {e}"))?;
    if (udp.dst_port(), udp.len()) != (sent.udp.dst_port(), sent.udp.len()) {
        return Err(format!(
            "UDP to port {} len {} (sent port {} len {})",
            udp.dst_port(),
            udp.len(),
            sent.udp.dst_port(),
            sent.udp.len()
        ));
    }
    Ok(())
}

/// Whether `got` (a frame seen at the server end) is `sent` (the generator's UDP/IPv4 frame,
/// e.g. the template) balanced by DSR out of the port with `egress_mac` to the backend at
/// `next_hop_mac`: the MACs rewritten, the IP packet untouched (TTL not decremented, header
/// checksum unchanged), the length unchanged. `Err` says what differs.
pub fn check_dsr(
    sent: &[u8],
    got: &[u8],
    egress_mac: MacAddr,
    next_hop_mac: MacAddr,
) -> Result<(), String> {
    let s = parse_udp4(sent, "sent")?;
    let g = EthernetFrame::new_checked(got).map_err(|e| format!("balanced: Ethernet: {e}"))?;
    if got.len() != sent.len() {
        return Err(format!("length {} (sent {})", got.len(), sent.len()));
    }
    check_macs(&g, egress_mac, next_hop_mac)?;
    if g.ether_type() != EtherType::IPV4 {
        return Err(format!("EtherType {:?}, not IPv4", g.ether_type()));
    }
    check_unchanged_packet(&s, g.payload())
}

/// Whether `got` is `sent` balanced by IPIP out of the port with `egress_mac` (address
/// `outer_src`) to one of `backends`, reached through `next_hop_mac`: Ethernet, then an outer
/// IPv4 header (protocol 4, from `outer_src` to the backend, valid checksum, length covering
/// exactly the inner packet, DF and DSCP/ECN copied from the inner header), then `sent`'s IP
/// packet unchanged (TTL not decremented). Returns the backend the frame went to.
pub fn check_ipip(
    sent: &[u8],
    got: &[u8],
    egress_mac: MacAddr,
    next_hop_mac: MacAddr,
    outer_src: Ipv4Addr,
    backends: &[Ipv4Addr],
) -> Result<Ipv4Addr, String> {
    let s = parse_udp4(sent, "sent")?;
    let g = EthernetFrame::new_checked(got).map_err(|e| format!("balanced: Ethernet: {e}"))?;
    check_macs(&g, egress_mac, next_hop_mac)?;
    if g.ether_type() != EtherType::IPV4 {
        return Err(format!("EtherType {:?}, not IPv4", g.ether_type()));
    }
    let inner_len = usize::from(s.ip.total_len());
    let want = ethernet::HEADER_LEN + ipv4::HEADER_LEN + inner_len;
    if got.len() != want {
        return Err(format!(
            "length {} (want {want}: Ethernet + 20-byte outer header + the {inner_len}-byte packet)",
            got.len()
        ));
    }
    let outer = Ipv4Packet::new_checked(g.payload()).map_err(|e| format!("outer IPv4: {e}"))?;
    if outer.header_len() != ipv4::HEADER_LEN || outer.protocol() != IpProtocol::IPIP {
        return Err(format!(
            "outer header of {} bytes, protocol {:?} (want 20, IPIP)",
            outer.header_len(),
            outer.protocol()
        ));
    }
    if !outer.verify_checksum() {
        return Err(format!(
            "bad outer header checksum {:#06x}",
            outer.checksum()
        ));
    }
    if usize::from(outer.total_len()) != ipv4::HEADER_LEN + inner_len {
        return Err(format!(
            "outer total length {} (inner packet {inner_len})",
            outer.total_len()
        ));
    }
    if outer.src_addr() != outer_src || !backends.contains(&outer.dst_addr()) {
        return Err(format!(
            "outer {} -> {} (want {outer_src} -> one of {backends:?})",
            outer.src_addr(),
            outer.dst_addr()
        ));
    }
    if outer.dont_frag() != s.ip.dont_frag()
        || (outer.dscp(), outer.ecn()) != (s.ip.dscp(), s.ip.ecn())
        || outer.is_fragment()
    {
        return Err("outer DF, DSCP/ECN or fragment fields not as the inner header's".into());
    }
    check_unchanged_packet(&s, &g.payload()[ipv4::HEADER_LEN..])?;
    Ok(outer.dst_addr())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::r#gen::{L4, Template};
    use etherparse::{IpNumber, Ipv4Header, NetHeaders, PacketHeaders};

    const C0: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
    const R0: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
    const R1: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x01]);
    const S0: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x02]);
    const R1_IP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);

    fn sent() -> Vec<u8> {
        Template {
            l4: L4::Udp,
            ipv6: false,
            frame_len: 60,
            src_mac: C0,
            dst_mac: R0,
            src_ip: Ipv4Addr::new(10, 1, 0, 2).into(),
            dst_ip: VIP.into(),
            base_sport: 10_000,
            dport: PORT,
            flows: FLOWS,
        }
        .build()
        .unwrap()
        .0
    }

    /// DSR as etherparse's oracle sees it: new MACs, nothing else.
    fn dsr(frame: &[u8]) -> Vec<u8> {
        let mut out = frame.to_vec();
        out[0..6].copy_from_slice(&S0.0);
        out[6..12].copy_from_slice(&R1.0);
        out
    }

    /// IPIP built with etherparse: Ethernet, an outer header from r1 to `backend`, the packet.
    fn ipip(frame: &[u8], backend: Ipv4Addr) -> Vec<u8> {
        let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
        let Some(NetHeaders::Ipv4(inner, _)) = h.net else {
            panic!("not IPv4")
        };
        let packet = &frame[14..14 + usize::from(inner.total_len)];
        let mut outer = Ipv4Header::new(
            packet.len() as u16,
            64,
            IpNumber::IPV4,
            R1_IP.octets(),
            backend.octets(),
        )
        .unwrap();
        outer.dont_fragment = inner.dont_fragment;
        outer.dscp = inner.dscp;
        outer.ecn = inner.ecn;
        outer.header_checksum = outer.calc_header_checksum();
        let mut out = Vec::new();
        out.extend_from_slice(&S0.0);
        out.extend_from_slice(&R1.0);
        out.extend_from_slice(&[0x08, 0x00]);
        out.extend_from_slice(&outer.to_bytes());
        out.extend_from_slice(packet);
        out
    }

    #[test]
    fn the_config_is_what_the_engine_accepts() {
        for (fwd, cap) in [(Forwarding::Dsr, None), (Forwarding::Ipip, Some(1024))] {
            let text = config_toml(fwd, cap);
            let (services, maglev, ct) = engine_view(&text, 7).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(services.len(), 1, "{text}");
            let s = &services[0];
            assert_eq!(s.vip.to_string(), format!("{VIP}:{PORT}/udp"));
            assert_eq!(s.forwarding, fwd);
            let addrs: Vec<IpAddr> = s.backends.iter().map(|b| b.addr).collect();
            assert_eq!(addrs, BACKENDS.map(IpAddr::V4).to_vec());
            assert!(s.backends.iter().all(|b| b.takes_new && b.weight == 1));
            assert_eq!(maglev, 65537);
            assert_eq!(ct.capacity, cap.unwrap_or(65536));
            assert_eq!((ct.udp_timeout_ms, ct.seed), (30_000, 7));
        }
    }

    #[test]
    fn correct_frames_pass() {
        let f = sent();
        assert_eq!(check_dsr(&f, &dsr(&f), R1, S0), Ok(()));
        for b in BACKENDS {
            assert_eq!(
                check_ipip(&f, &ipip(&f, b), R1, S0, R1_IP, &BACKENDS),
                Ok(b)
            );
        }
    }

    #[test]
    fn each_kind_of_wrong_frame_is_caught() {
        let f = sent();
        let good = dsr(&f);
        // Unchanged, MACs swapped.
        assert!(check_dsr(&f, &f, R1, S0).is_err());
        assert!(check_dsr(&f, &good, S0, R1).is_err());
        // Routed instead of balanced: TTL decremented, checksum fixed.
        let mut routed = good.clone();
        routed[22] -= 1;
        let mut ip = Ipv4Header::from_slice(&routed[14..]).unwrap().0;
        ip.header_checksum = ip.calc_header_checksum();
        routed[14..34].copy_from_slice(&ip.to_bytes());
        let e = check_dsr(&f, &routed, R1, S0).unwrap_err();
        assert!(e.contains("TTL 63"), "{e}");
        // Another destination address or port, a truncated frame.
        let mut other = good.clone();
        other[33] ^= 1;
        assert!(check_dsr(&f, &other, R1, S0).is_err());
        let mut port = good.clone();
        port[37] ^= 1;
        assert!(check_dsr(&f, &port, R1, S0).is_err());
        assert!(check_dsr(&f, &good[..50], R1, S0).is_err());
        // An IPIP frame is not DSR, and DSR is not IPIP.
        let enc = ipip(&f, BACKENDS[1]);
        assert!(check_dsr(&f, &enc, R1, S0).is_err());
        assert!(check_ipip(&f, &good, R1, S0, R1_IP, &BACKENDS).is_err());

        // IPIP: not a backend, wrong outer source, bad checksum, inner TTL decremented.
        let stranger = ipip(&f, Ipv4Addr::new(10, 2, 0, 9));
        assert!(check_ipip(&f, &stranger, R1, S0, R1_IP, &BACKENDS).is_err());
        let e = check_ipip(&f, &enc, R1, S0, Ipv4Addr::new(10, 1, 0, 1), &BACKENDS).unwrap_err();
        assert!(e.contains("outer"), "{e}");
        let mut bad_sum = enc.clone();
        bad_sum[24] ^= 0xff;
        let e = check_ipip(&f, &bad_sum, R1, S0, R1_IP, &BACKENDS).unwrap_err();
        assert!(e.contains("checksum"), "{e}");
        let mut inner_ttl = enc.clone();
        inner_ttl[34 + 8] -= 1;
        let e = check_ipip(&f, &inner_ttl, R1, S0, R1_IP, &BACKENDS).unwrap_err();
        assert!(e.contains("TTL"), "{e}");
        let mut df = enc.clone();
        df[20] ^= 0x40; // outer DF flipped, checksum fixed
        let mut ip = Ipv4Header::from_slice(&df[14..]).unwrap().0;
        ip.header_checksum = ip.calc_header_checksum();
        df[14..34].copy_from_slice(&ip.to_bytes());
        assert!(check_ipip(&f, &df, R1, S0, R1_IP, &BACKENDS).is_err());
        assert!(check_ipip(&f, &enc[..70], R1, S0, R1_IP, &BACKENDS).is_err());
    }
}
