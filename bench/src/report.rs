//! Benchmark results: samples per subject, medians, ratios, and the Markdown/JSON/SVG reports.
//!
//! Every figure in a report is a median over rounds that ran A B A B … in one session, and every
//! comparison is a ratio of two such medians, because the machine is shared and noisy: absolute
//! numbers drift between runs, ratios measured side by side much less.

use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// The median of `v` (mean of the middle two for even lengths); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// One measured subject in a scenario (e.g. "sluice drop", "dpdk-testpmd rxonly").
#[derive(Clone, Debug, Serialize)]
pub struct Subject {
    /// Display name.
    pub name: String,
    /// Unit of `samples` (e.g. "Mpps", "µs").
    pub unit: String,
    /// One value per round.
    pub samples: Vec<f64>,
    /// Why the subject did not run, if it did not.
    pub skipped: Option<String>,
    /// Extra per-subject facts (e.g. latency percentiles), by name → per-round values.
    pub extra: BTreeMap<String, Vec<f64>>,
}

impl Subject {
    /// A subject with no samples yet.
    pub fn new(name: &str, unit: &str) -> Self {
        Subject {
            name: name.into(),
            unit: unit.into(),
            samples: Vec::new(),
            skipped: None,
            extra: BTreeMap::new(),
        }
    }

    /// A subject that could not run, with the reason.
    pub fn skipped(name: &str, unit: &str, why: impl Into<String>) -> Self {
        let mut s = Self::new(name, unit);
        s.skipped = Some(why.into());
        s
    }

    /// Median of the samples.
    pub fn median(&self) -> Option<f64> {
        median(&self.samples)
    }

    /// Median of an extra series.
    pub fn extra_median(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(|v| median(v))
    }
}

/// A target: `subject` must be at least (or at most) `factor` × `baseline`.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// Subject measured.
    pub subject: String,
    /// What it is compared with.
    pub baseline: String,
    /// Required ratio; 0 for none (the ratio is reported, `met` is `None`).
    pub factor: f64,
    /// True: ratio ≥ factor is a pass (throughput); false: ratio ≤ factor (latency).
    pub at_least: bool,
    /// Which extra series to compare instead of the main samples (e.g. "p99_us").
    pub series: Option<String>,
}

/// Outcome of a target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetResult {
    /// The target.
    pub target: Target,
    /// Measured ratio (None if either side did not run).
    pub ratio: Option<f64>,
    /// Met?
    pub met: Option<bool>,
}

/// An absolute target: the median of `subject` must be at most (or at least) `bound`, in the
/// subject's own unit (e.g. "reflect step ≤ 20 ns/packet"), where a ratio has no baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Limit {
    /// Subject measured.
    pub subject: String,
    /// The bound, in the subject's unit.
    pub bound: f64,
    /// True: median ≤ bound is a pass (a cost); false: median ≥ bound (a rate).
    pub at_most: bool,
}

/// Outcome of a [`Limit`].
#[derive(Clone, Debug, Serialize)]
pub struct LimitResult {
    /// The limit.
    pub limit: Limit,
    /// The subject's median (None if it did not run).
    pub median: Option<f64>,
    /// Met?
    pub met: Option<bool>,
}

/// One scenario's results.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Name (`rxdrop`, `reflect`, `latency`, `sweep`, `idle`).
    pub name: String,
    /// What was run, in one line (frame size, duration, rounds...).
    pub setup: String,
    /// Subjects, in the order they ran within a round.
    pub subjects: Vec<Subject>,
    /// Targets and their outcomes.
    pub targets: Vec<TargetResult>,
    /// Absolute targets and their outcomes.
    pub limits: Vec<LimitResult>,
}

impl Scenario {
    /// Evaluate `targets` against the medians.
    pub fn evaluate(&mut self, targets: Vec<Target>) {
        self.targets = targets
            .into_iter()
            .map(|t| {
                let get = |name: &str| {
                    self.subjects
                        .iter()
                        .find(|s| s.name == name)
                        .and_then(|s| match &t.series {
                            Some(k) => s.extra_median(k),
                            None => s.median(),
                        })
                };
                let ratio = match (get(&t.subject), get(&t.baseline)) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                };
                let met = ratio.filter(|_| t.factor > 0.0).map(|r| {
                    if t.at_least {
                        r >= t.factor
                    } else {
                        r <= t.factor
                    }
                });
                TargetResult {
                    target: t,
                    ratio,
                    met,
                }
            })
            .collect();
    }

    /// Evaluate absolute `limits` against the medians.
    pub fn evaluate_limits(&mut self, limits: Vec<Limit>) {
        self.limits = limits
            .into_iter()
            .map(|l| {
                let median = self
                    .subjects
                    .iter()
                    .find(|s| s.name == l.subject)
                    .and_then(Subject::median);
                let met = median.map(|m| {
                    if l.at_most {
                        m <= l.bound
                    } else {
                        m >= l.bound
                    }
                });
                LimitResult {
                    limit: l,
                    median,
                    met,
                }
            })
            .collect();
    }

    /// The scenario as a Markdown section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n\n{}\n", self.name, self.setup);
        let extras: Vec<String> = {
            let mut k: Vec<String> = self
                .subjects
                .iter()
                .flat_map(|s| s.extra.keys().cloned())
                .collect();
            k.sort();
            k.dedup();
            k
        };
        let _ = write!(s, "| subject | median | rounds |");
        for e in &extras {
            let _ = write!(s, " {e} |");
        }
        let _ = writeln!(s);
        let _ = write!(s, "|---|---:|---|");
        for _ in &extras {
            let _ = write!(s, "---:|");
        }
        let _ = writeln!(s);
        for sub in &self.subjects {
            match (&sub.skipped, sub.median()) {
                (Some(why), _) => {
                    let _ = write!(s, "| {} | skipped: {} | |", sub.name, why);
                    for _ in &extras {
                        let _ = write!(s, " |");
                    }
                }
                (None, m) => {
                    let rounds: Vec<String> = sub.samples.iter().map(|x| fmt3(*x)).collect();
                    let _ = write!(
                        s,
                        "| {} | **{} {}** | {} |",
                        sub.name,
                        m.map(fmt3).unwrap_or_else(|| "-".into()),
                        sub.unit,
                        rounds.join(", ")
                    );
                    for e in &extras {
                        let _ = write!(
                            s,
                            " {} |",
                            sub.extra_median(e).map(fmt3).unwrap_or_else(|| "-".into())
                        );
                    }
                }
            }
            let _ = writeln!(s);
        }
        if !self.targets.is_empty() {
            let _ = writeln!(s, "\n| target | ratio | met |\n|---|---:|---|");
            for t in &self.targets {
                let op = if t.target.at_least { "≥" } else { "≤" };
                let what = t
                    .target
                    .series
                    .as_deref()
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default();
                let goal = if t.target.factor > 0.0 {
                    format!("{op} {}×", t.target.factor)
                } else {
                    "/ (ratio only)".into()
                };
                let _ = writeln!(
                    s,
                    "| {}{what} {goal} {} | {} | {} |",
                    t.target.subject,
                    t.target.baseline,
                    t.ratio
                        .map(|r| format!("{r:.2}×"))
                        .unwrap_or_else(|| "-".into()),
                    met_word(t.met)
                );
            }
        }
        if !self.limits.is_empty() {
            let _ = writeln!(s, "\n| target | median | met |\n|---|---:|---|");
            for l in &self.limits {
                let op = if l.limit.at_most { "≤" } else { "≥" };
                let unit = self
                    .subjects
                    .iter()
                    .find(|s| s.name == l.limit.subject)
                    .map(|s| s.unit.as_str())
                    .unwrap_or("");
                let _ = writeln!(
                    s,
                    "| {} {op} {} {unit} | {} | {} |",
                    l.limit.subject,
                    fmt3(l.limit.bound),
                    l.median.map(fmt3).unwrap_or_else(|| "-".into()),
                    met_word(l.met)
                );
            }
        }
        s
    }
}

fn met_word(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

/// What a report header says about the machine it ran on.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// CPUs available to this process.
    pub cpus: usize,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Short git revision of the working tree (empty outside a checkout).
    pub rev: String,
}

impl Machine {
    /// Read it from `/proc` and `git`; whatever cannot be read stays empty.
    pub fn probe() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default();
        let rev = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            kernel: kernel.trim().to_string(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model,
            rev,
        }
    }
}

/// A report header line with the host's load averages (`/proc/loadavg`, 1, 5 and 15 minutes)
/// when the report is written: on a shared machine, what else ran during the measurements
/// explains much of their spread. Empty if unreadable.
pub fn load_line() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .map(|l| format!("- load average (1, 5, 15 min) when this report was written: {l}\n"))
        .unwrap_or_default()
}

fn fmt3(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// Write `scenarios` as `<stem>.json` and `<stem>.md` under `dir`.
pub fn write_reports(
    dir: &Path,
    stem: &str,
    header: &str,
    scenarios: &[Scenario],
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(scenarios).map_err(io::Error::other)?;
    std::fs::write(dir.join(format!("{stem}.json")), json)?;
    let mut md = String::from(header);
    for sc in scenarios {
        md.push('\n');
        md.push_str(&sc.markdown());
    }
    std::fs::write(dir.join(format!("{stem}.md")), md)
}

/// A named series of (x, y) points for a line plot.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// Draw `series` as lines into an SVG file.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> io::Result<()> {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(io::Error::other("nothing to plot"));
    }
    if x0 == x1 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.05 };
    let err = |e: Box<dyn std::error::Error>| io::Error::other(e.to_string());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_labels(10)
                .x_label_formatter(&|x| format!("{x:.2}"))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .draw()
                .map_err(|e| err(Box::new(e)))?;
            for (i, s) in series.iter().enumerate() {
                let c = colors[i % colors.len()];
                let mut pts = s.points.clone();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(|e| err(Box::new(e)))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| err(Box::new(e)))?;
        }};
    }
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if log_x {
        let x0 = x0.max(1e-3);
        draw!(
            b.build_cartesian_2d((x0..x1).log_scale(), 0.0..y1)
                .map_err(|e| err(Box::new(e)))?
        );
    } else {
        draw!(
            b.build_cartesian_2d(x0..x1, 0.0..y1)
                .map_err(|e| err(Box::new(e)))?
        );
    }
    root.present().map_err(|e| err(Box::new(e)))?;
    Ok(())
}

/// One subject's latency-vs-load curve: `(offered Mpps, p50 µs, p99 µs)` per load point.
#[derive(Clone, Debug, Serialize)]
pub struct LoadCurve {
    /// Subject name (legend).
    pub label: String,
    /// Points, in any order (drawn sorted by offered load).
    pub points: Vec<(f64, f64, f64)>,
}

/// Latency vs offered load: p50 (thin line, circles) and p99 (thick line, triangles) against
/// offered Mpps, one colour per subject, latency on a log axis (tails and medians differ by
/// orders of magnitude).
pub fn latency_load_plot(path: &Path, title: &str, curves: &[LoadCurve]) -> io::Result<()> {
    let pts = curves.iter().flat_map(|c| c.points.iter());
    let (mut x1, mut y0, mut y1) = (0.0f64, f64::MAX, 0.0f64);
    for &(x, p50, p99) in pts {
        x1 = x1.max(x);
        for y in [p50, p99] {
            if y > 0.0 {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    if y1 <= 0.0 {
        return Err(io::Error::other("nothing to plot"));
    }
    let (y0, y1) = (y0 / 1.5, y1 * 1.5);
    let x1 = if x1 <= 0.0 { 1.0 } else { x1 * 1.08 };
    let err = |e: Box<dyn std::error::Error>| io::Error::other(e.to_string());
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x1, (y0..y1).log_scale())
        .map_err(|e| err(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_desc("offered Mpps (paced)")
        .y_desc("latency µs (log)")
        .x_labels(10)
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    for (i, c) in curves.iter().enumerate() {
        let col = colors[i % colors.len()];
        let mut pts = c.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let p50: Vec<(f64, f64)> = pts.iter().map(|&(x, y, _)| (x, y)).collect();
        let p99: Vec<(f64, f64)> = pts.iter().map(|&(x, _, y)| (x, y)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), col.stroke_width(1)))
            .map_err(|e| err(Box::new(e)))?
            .label(format!("{} p50", c.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(1)));
        chart
            .draw_series(p50.iter().map(|&p| Circle::new(p, 4, col.filled())))
            .map_err(|e| err(Box::new(e)))?;
        chart
            .draw_series(LineSeries::new(p99.clone(), col.stroke_width(3)))
            .map_err(|e| err(Box::new(e)))?
            .label(format!("{} p99", c.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3)));
        chart
            .draw_series(p99.iter().map(|&p| TriangleMarker::new(p, 6, col.filled())))
            .map_err(|e| err(Box::new(e)))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    root.present().map_err(|e| err(Box::new(e)))?;
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn targets_and_markdown() {
        let mut a = Subject::new("sluice drop", "Mpps");
        a.samples = vec![2.0, 2.2, 2.1];
        let mut b = Subject::new("kernel sink", "Mpps");
        b.samples = vec![0.5, 0.4, 0.6];
        let c = Subject::skipped("dpdk-testpmd rxonly", "Mpps", "not installed");
        let mut sc = Scenario {
            name: "rxdrop".into(),
            setup: "64-byte UDP".into(),
            subjects: vec![a, b, c],
            targets: vec![],
            limits: vec![],
        };
        sc.evaluate(vec![
            Target {
                subject: "sluice drop".into(),
                baseline: "kernel sink".into(),
                factor: 10.0,
                at_least: true,
                series: None,
            },
            Target {
                subject: "sluice drop".into(),
                baseline: "dpdk-testpmd rxonly".into(),
                factor: 1.2,
                at_least: true,
                series: None,
            },
        ]);
        assert!((sc.targets[0].ratio.unwrap() - 4.2).abs() < 1e-9);
        assert_eq!(sc.targets[0].met, Some(false));
        assert_eq!(sc.targets[1].met, None);
        let md = sc.markdown();
        assert!(
            md.contains("| sluice drop | **2.100 Mpps** | 2.000, 2.200, 2.100 |"),
            "{md}"
        );
        assert!(md.contains("skipped: not installed"));
        assert!(md.contains("4.20×") && md.contains("**no**"));
    }

    #[test]
    fn latency_load_plot_is_written() {
        let dir = std::env::temp_dir().join(format!("sluice-llplot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ll.svg");
        let curves = [
            LoadCurve {
                label: "a".into(),
                points: vec![(0.05, 10.0, 30.0), (0.45, 50.0, 2000.0), (0.25, 20.0, 90.0)],
            },
            LoadCurve {
                label: "b".into(),
                points: vec![(0.02, 25.0, 60.0)],
            },
        ];
        latency_load_plot(&p, "t", &curves).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("<svg") && s.contains("a p99") && s.contains("b p50"));
        assert!(latency_load_plot(&p, "t", &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn svg_plot_is_written() {
        let dir = std::env::temp_dir().join(format!("sluice-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.svg");
        line_plot(
            &p,
            "t",
            "x",
            "y",
            &[Series {
                label: "a".into(),
                points: vec![(1.0, 1.0), (2.0, 3.0)],
            }],
            false,
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(
            s.starts_with("<svg") && s.contains("polyline") || s.contains("path"),
            "{}",
            &s[..200.min(s.len())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
