//! [`DnsBed`], the namespaces DNS servers are compared in, and [`DnsServer`], NSD or Knot
//! running in one of them on a generated configuration.
//!
//! This module owns the topology and addressing plan of the DNS harness and the servers'
//! configuration and life cycle. Everything a server writes (configuration, PID file,
//! databases, journals, logs, control socket) goes to a temporary directory of its own, removed
//! with it; zone files are only read. It never touches system-wide server state
//! (`/etc/nsd`, `/var/lib/knot`, `/run/knot`) and never binds outside its namespace.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::bed::{End, IPV4_PREFIX_LEN, IPV6_PREFIX_LEN, Port};
use crate::dns::client::wait_until_serving;
use crate::dns::wire::Name;
use crate::dns::zone::Zone;
use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::types::Conf;
use crate::veth::{Veth, VethOpts};

/// Server-side interface names, one per server namespace.
const SERVER_IFACES: [&str; 4] = ["dns0", "dns1", "dns2", "dns3"];
/// Client-side interface names, one per server.
const CLIENT_IFACES: [&str; 4] = ["dnsc0", "dnsc1", "dnsc2", "dnsc3"];

/// How long a stopped server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One client namespace with a veth to each of up to [`DnsBed::MAX_SERVERS`] server
/// namespaces, so servers under comparison run side by side, each alone in its namespace on
/// port 53, and one client asks them all:
///
/// ```text
///                        ┌─ dnsc0 10.53.1.1 ═══ dns0 10.53.1.2 ─ netns "dns0-…" (server 0)
///  netns "dnsc-…" client ┤    fd53:1::1             fd53:1::2
///                        └─ dnsc1 10.53.2.1 ═══ dns1 10.53.2.2 ─ netns "dns1-…" (server 1)
///                             fd53:2::1             fd53:2::2
/// ```
///
/// Server `i` (0-based) is on 10.53.(i+1).0/24 and fd53:(i+1)::/64, `.2`/`::2` on its end
/// and `.1`/`::1` on the client's. TX checksum offload is off on every veth end (a kernel
/// sender would otherwise leave UDP checksums partial, which an AF_XDP responder sees as
/// wrong), IPv6 addresses need no DAD, and static neighbour entries exist both ways, so the
/// first query waits for nothing. Dropping the bed removes it all, also after a panic; stop
/// the servers first (declare them after the bed, so they drop before it).
#[derive(Debug)]
pub struct DnsBed {
    // Declaration order is drop order: the veths, then the namespaces.
    veths: Vec<Veth>,
    servers: Vec<End>,
    client_ports: Vec<Port>,
    client: Netns,
}

impl DnsBed {
    /// The most servers a bed holds.
    pub const MAX_SERVERS: usize = SERVER_IFACES.len();

    /// Builds a bed for `servers` servers (1 to [`DnsBed::MAX_SERVERS`]).
    pub fn new(servers: usize) -> Result<DnsBed> {
        assert!(
            (1..=Self::MAX_SERVERS).contains(&servers),
            "a DnsBed holds 1 to {} servers, not {servers}",
            Self::MAX_SERVERS
        );
        let client = Netns::new("dnsc")?;
        let no_dad = |ns: &Netns| -> Result<()> {
            // Also not for the link-local addresses the veths get: a tentative one would
            // hold up neighbour discovery.
            for conf in [Conf::All, Conf::Default] {
                ns.set_sysctl(&format!("net/ipv6/conf/{}/accept_dad", conf.dir()), "0")?;
            }
            Ok(())
        };
        no_dad(&client)?;
        let mut bed = DnsBed {
            veths: Vec::new(),
            servers: Vec::new(),
            client_ports: Vec::new(),
            client,
        };
        for i in 0..servers {
            let ns = Netns::new(&format!("dns{i}"))?;
            no_dad(&ns)?;
            let veth = Veth::create(
                &ns,
                SERVER_IFACES[i],
                &bed.client,
                CLIENT_IFACES[i],
                &VethOpts {
                    tx_checksum: false,
                    ..VethOpts::default()
                },
            )?;
            let net = i as u8 + 1;
            let server = Port {
                iface: SERVER_IFACES[i],
                ifindex: veth.ifindex_a(),
                mac: veth.mac_a(),
                ipv4: Ipv4Addr::new(10, 53, net, 2),
                ipv6: Ipv6Addr::new(0xfd53, net as u16, 0, 0, 0, 0, 0, 2),
            };
            let client = Port {
                iface: CLIENT_IFACES[i],
                ifindex: veth.ifindex_b(),
                mac: veth.mac_b(),
                ipv4: Ipv4Addr::new(10, 53, net, 1),
                ipv6: Ipv6Addr::new(0xfd53, net as u16, 0, 0, 0, 0, 0, 1),
            };
            bed.veths.push(veth);
            for (ns, port, other) in [(&ns, &server, &client), (&bed.client, &client, &server)] {
                ns.add_address(port.iface, IpAddr::V4(port.ipv4), IPV4_PREFIX_LEN)?;
                ns.add_address(port.iface, IpAddr::V6(port.ipv6), IPV6_PREFIX_LEN)?;
                ns.add_neighbour(port.iface, IpAddr::V4(other.ipv4), other.mac)?;
                ns.add_neighbour(port.iface, IpAddr::V6(other.ipv6), other.mac)?;
            }
            bed.servers.push(End { ns, port: server });
            bed.client_ports.push(client);
        }
        Ok(bed)
    }

    /// The client namespace, where queries come from.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// Server namespace `i` and its veth end (`.ns()`, `.iface()`, `.ipv4()`, `.ipv6()`).
    pub fn server(&self, i: usize) -> &End {
        &self.servers[i]
    }

    /// The client's veth end towards server `i`.
    pub fn client_port(&self, i: usize) -> &Port {
        &self.client_ports[i]
    }

    /// Server `i`'s addresses, IPv4 then IPv6: what a server there listens on.
    pub fn server_addrs(&self, i: usize) -> Vec<IpAddr> {
        let s = &self.servers[i];
        vec![IpAddr::V4(s.ipv4()), IpAddr::V6(s.ipv6())]
    }
}

/// Which server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// NSD (NLnet Labs), `nsd -d`.
    Nsd,
    /// Knot DNS (CZ.NIC), `knotd`.
    Knot,
}

impl ServerKind {
    /// "nsd" or "knot".
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Nsd => "nsd",
            ServerKind::Knot => "knot",
        }
    }
}

/// A directory under the system's temporary directory, removed (with its contents) on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sluice-{tag}-{}-{n}", std::process::id()));
        // A leftover from a crashed run whose PID came round again is ours to reuse.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|source| Error::File {
            op: "creating a temporary directory".into(),
            path: path.display().to_string(),
            source,
        })?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            log::warn!("removing {}: {e}", self.path.display());
        }
    }
}

/// NSD or Knot, in the foreground, serving zones on given addresses (port 53, UDP and TCP)
/// of one namespace, with a configuration the harness generates into a temporary directory.
/// Stopped (SIGTERM, then SIGKILL after 5 s) and its directory removed on drop.
///
/// Configuration choices, the same for every test (see `nsd_conf` and `knot_conf`):
/// one worker; no version, identity or NSID answers (CH TXT `version.bind` is REFUSED);
/// NSD's response rate limiting off (a corpus is a burst of queries from one client);
/// NSD's answer shaping at its defaults unless `extra` says otherwise; Knot never writes to
/// the zone files and keeps no journal.
#[derive(Debug)]
pub struct DnsServer {
    // Declaration order is drop order, but Drop stops the child before either goes.
    kind: ServerKind,
    ns: String,
    child: Option<Child>,
    addrs: Vec<IpAddr>,
    origins: Vec<Name>,
    dir: TempDir,
}

impl DnsServer {
    /// Starts NSD in `ns` on `addrs` for `zones`, with its defaults.
    pub fn nsd(ns: &Netns, addrs: &[IpAddr], zones: &[Zone]) -> Result<DnsServer> {
        DnsServer::start(ServerKind::Nsd, ns, addrs, zones, &[])
    }

    /// Starts Knot DNS in `ns` on `addrs` for `zones`.
    pub fn knot(ns: &Netns, addrs: &[IpAddr], zones: &[Zone]) -> Result<DnsServer> {
        DnsServer::start(ServerKind::Knot, ns, addrs, zones, &[])
    }

    /// Starts `kind`; `extra` are further lines for the configuration's `server:` section
    /// (e.g. `"minimal-responses: yes"` for NSD). Returns once the process runs; see
    /// [`DnsServer::wait_ready`].
    pub fn start(
        kind: ServerKind,
        ns: &Netns,
        addrs: &[IpAddr],
        zones: &[Zone],
        extra: &[&str],
    ) -> Result<DnsServer> {
        let dir = TempDir::new(kind.name())?;
        let conf = match kind {
            ServerKind::Nsd => nsd_conf(&dir.path, addrs, zones, extra),
            ServerKind::Knot => {
                let db = dir.path.join("db");
                fs::create_dir_all(&db).map_err(|source| Error::File {
                    op: "creating Knot's database directory".into(),
                    path: db.display().to_string(),
                    source,
                })?;
                knot_conf(&dir.path, addrs, zones, extra)
            }
        };
        let conf_path = dir.path.join(format!("{}.conf", kind.name()));
        fs::write(&conf_path, conf).map_err(|source| Error::File {
            op: format!("writing the {} configuration", kind.name()),
            path: conf_path.display().to_string(),
            source,
        })?;
        let out_path = dir.path.join("output.log");
        let out = fs::File::create(&out_path).map_err(|source| Error::File {
            op: "creating the server's output file".into(),
            path: out_path.display().to_string(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| Error::File {
            op: "duplicating the output file".into(),
            path: out_path.display().to_string(),
            source,
        })?;
        let (program, package) = match kind {
            ServerKind::Nsd => ("nsd", "nsd"),
            ServerKind::Knot => ("knotd", "knot"),
        };
        let path = find_program(program).ok_or_else(|| Error::Server {
            server: kind.name().into(),
            ns: ns.name().to_owned(),
            problem: format!("{program} is not installed (Debian: apt-get install {package})"),
        })?;
        let mut cmd = Command::new(path);
        match kind {
            // -d: stay in the foreground (and log there besides the log file).
            ServerKind::Nsd => cmd.arg("-d").arg("-c").arg(&conf_path),
            // knotd stays in the foreground unless told -d.
            ServerKind::Knot => cmd.arg("-c").arg(&conf_path),
        };
        cmd.current_dir(&dir.path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = ns.spawn(&mut cmd)?;
        Ok(DnsServer {
            kind,
            ns: ns.name().to_owned(),
            child: Some(child),
            addrs: addrs.to_vec(),
            origins: zones.iter().map(|z| z.origin().clone()).collect(),
            dir,
        })
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The server's process id while it runs: knotd's only process, or NSD's main process,
    /// which forks its xfrd and server processes (e.g. to pin them all to a core).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its temporary directory (configuration, logs).
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Waits (at most `timeout`) until every address answers an SOA query for every zone
    /// authoritatively over UDP and TCP, probing from `client`; fails early, with the
    /// server's log, if it exits.
    pub fn wait_ready(&mut self, client: &Netns, timeout: Duration) -> Result<()> {
        let (addrs, origins) = (self.addrs.clone(), self.origins.clone());
        let result = wait_until_serving(client, &addrs, &origins, timeout, || {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => Ok(()),
                Some(Ok(Some(status))) => Err(format!("exited with {status}")),
                Some(Err(e)) => Err(format!("waiting for it: {e}")),
                None => Err("already stopped".into()),
            }
        });
        result.map_err(|problem| Error::Server {
            server: self.kind.name().into(),
            ns: self.ns.clone(),
            problem: format!("{problem}; its log:\n{}", self.log()),
        })
    }

    /// What the server logged so far (its output, and NSD's log file).
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.path.join("output.log")).unwrap_or_default();
        if let Ok(l) = fs::read_to_string(self.dir.path.join("nsd.log")) {
            s.push_str(&l);
        }
        s
    }

    /// Stops the server: SIGTERM, then SIGKILL if it is still running 5 s later.
    /// Returns how it exited (`None` if it had to be killed or was stopped already).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + STOP_GRACE;
        while Instant::now() < end {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        log::warn!(
            "{} did not stop within {STOP_GRACE:?} of SIGTERM; killing it",
            self.kind.name()
        );
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `program` on `PATH`, else in the sbin directories (where Debian puts nsd and knotd, and
/// which a user's `PATH` under `sudo -E` may lack).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// NSD's configuration (nsd.conf(5)). `username: ""` and `chroot: ""` keep it from dropping
/// privileges or changing root (it runs as the test's user, on files in its directory);
/// `database: ""` keeps the zones in memory only; RRL is off (`rrl-ratelimit: 0`), or a burst
/// of corpus queries from one address would get slipped, truncated answers.
fn nsd_conf(dir: &Path, addrs: &[IpAddr], zones: &[Zone], extra: &[&str]) -> String {
    let d = dir.display();
    let mut s = String::from("server:\n");
    for a in addrs {
        s.push_str(&format!("    ip-address: {a}\n"));
    }
    s.push_str(&format!(
        "    port: 53
    do-ip4: yes
    do-ip6: yes
    server-count: 1
    username: \"\"
    chroot: \"\"
    database: \"\"
    zonesdir: \"{d}\"
    pidfile: \"{d}/nsd.pid\"
    xfrdfile: \"{d}/xfrd.state\"
    xfrdir: \"{d}\"
    zonelistfile: \"{d}/zone.list\"
    logfile: \"{d}/nsd.log\"
    verbosity: 1
    hide-version: yes
    hide-identity: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
"
    ));
    for line in extra {
        s.push_str(&format!("    {line}\n"));
    }
    s.push_str("remote-control:\n    control-enable: no\n");
    for z in zones {
        s.push_str(&format!(
            "zone:\n    name: \"{}\"\n    zonefile: \"{}\"\n",
            z.origin(),
            z.path().display()
        ));
    }
    s
}

/// Knot's configuration (knot.conf(5)): rundir, PID file, control socket and databases in the
/// directory; one UDP, TCP and background worker; no identity, version or NSID; zone files
/// read whole and never written back (`zonefile-sync: -1`), no journal.
fn knot_conf(dir: &Path, addrs: &[IpAddr], zones: &[Zone], extra: &[&str]) -> String {
    let d = dir.display();
    let listen: Vec<String> = addrs.iter().map(|a| format!("{a}@53")).collect();
    let mut s = format!(
        "server:
    rundir: \"{d}\"
    pidfile: \"{d}/knot.pid\"
    listen: [ {} ]
    identity: \"\"
    version: \"\"
    nsid: \"\"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
",
        listen.join(", ")
    );
    for line in extra {
        s.push_str(&format!("    {line}\n"));
    }
    s.push_str(&format!(
        "log:
  - target: stderr
    any: info
database:
    storage: \"{d}/db\"
template:
  - id: default
    storage: \"{d}\"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
"
    ));
    for z in zones {
        s.push_str(&format!(
            "  - domain: \"{}\"\n    file: \"{}\"\n",
            z.origin(),
            z.path().display()
        ));
    }
    s
}
