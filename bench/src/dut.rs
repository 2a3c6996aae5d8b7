//! The device under test: a `sluice run` process inside a namespace, watched through its JSON
//! stats lines, so rates are measured from sluice's own counters over an exact window.

use serde_json::Value;
use sluice_testbed::Netns;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One stats sample: when sluice printed it (its `elapsed_s`) and its total counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since sluice started.
    pub elapsed_s: f64,
    /// Frames received so far.
    pub rx: u64,
    /// Frames transmitted so far.
    pub tx: u64,
}

/// A running `sluice run --json`.
pub struct SluiceDut {
    child: Option<Child>,
    lines: mpsc::Receiver<Value>,
    last: Option<Sample>,
}

impl SluiceDut {
    /// Start `bin run --iface IF --json --stats-interval 0.25 <args...>` inside `ns`, stderr
    /// inherited (it logs what it was granted).
    pub fn start(bin: &Path, ns: &Netns, iface: &str, args: &[&str]) -> io::Result<SluiceDut> {
        let mut cmd = Command::new(bin);
        cmd.args([
            "run",
            "--iface",
            iface,
            "--json",
            "--stats-interval",
            "0.25",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = ns.spawn(&mut cmd).map_err(io::Error::other)?;
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Ok(SluiceDut {
            child: Some(child),
            lines: rx,
            last: None,
        })
    }

    /// Process id (for CPU accounting).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Wait until sluice prints its first stats line (it is attached and its workers run).
    pub fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(c) = self.child.as_mut()
                && let Some(st) = c.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "sluice exited during start-up: {st}"
                )));
            }
            if self.next_sample(Duration::from_millis(100)).is_some() {
                return Ok(());
            }
        }
        Err(io::Error::other(
            "sluice printed no stats within the start-up timeout",
        ))
    }

    /// The next stats sample, waiting up to `timeout`.
    pub fn next_sample(&mut self, timeout: Duration) -> Option<Sample> {
        let v = self.lines.recv_timeout(timeout).ok()?;
        if v["type"] != "stats" {
            return None;
        }
        let s = Sample {
            elapsed_s: v["elapsed_s"].as_f64()?,
            rx: v["total"]["counters"]["rx_packets"].as_u64()?,
            tx: v["total"]["counters"]["tx_packets"].as_u64()?,
        };
        self.last = Some(s);
        Some(s)
    }

    /// The most recent sample, after draining what is queued (waits for one if none yet).
    pub fn latest(&mut self) -> Option<Sample> {
        while let Some(s) = self.next_sample(Duration::from_millis(0)) {
            self.last = Some(s);
        }
        if self.last.is_none() {
            self.next_sample(Duration::from_secs(2));
        }
        self.last
    }

    /// Wait (bounded) for sluice to exit by itself (after handing over to a successor, or at
    /// the end of its `--duration`); returns the final JSON object.
    pub fn wait_exit(mut self, timeout: Duration) -> io::Result<Value> {
        let mut child = self.child.take().expect("running");
        let end = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                return Err(io::Error::other(format!(
                    "sluice did not exit within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if !st.success() {
            return Err(io::Error::other(format!("sluice exited with {st}")));
        }
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if v["type"] == "final" {
                return Ok(v);
            }
        }
        Err(io::Error::other("sluice printed no final totals"))
    }

    /// SIGTERM and wait (bounded); returns the final JSON object.
    pub fn stop(mut self) -> io::Result<Value> {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(15);
        let st = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                return Err(io::Error::other("sluice did not stop within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !st.success() {
            return Err(io::Error::other(format!("sluice exited with {st}")));
        }
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if v["type"] == "final" {
                return Ok(v);
            }
        }
        Err(io::Error::other("sluice printed no final totals"))
    }
}

impl Drop for SluiceDut {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Rate between two samples, in frames per second, of `f` (e.g. `|s| s.rx`).
pub fn rate(a: &Sample, b: &Sample, f: impl Fn(&Sample) -> u64) -> f64 {
    let dt = b.elapsed_s - a.elapsed_s;
    if dt <= 0.0 {
        return 0.0;
    }
    (f(b).saturating_sub(f(a))) as f64 / dt
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz.max(1)))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn rates() {
        let a = Sample {
            elapsed_s: 1.0,
            rx: 100,
            tx: 50,
        };
        let b = Sample {
            elapsed_s: 3.0,
            rx: 2100,
            tx: 50,
        };
        assert_eq!(rate(&a, &b, |s| s.rx), 1000.0);
        assert_eq!(rate(&a, &b, |s| s.tx), 0.0);
        assert_eq!(rate(&b, &a, |s| s.rx), 0.0);
    }

    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let a = cpu_time(std::process::id()).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let b = cpu_time(std::process::id()).unwrap();
        assert!(b >= a);
    }
}
