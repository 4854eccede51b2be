//! The scenario report: one JSON document per run (host, broker config fingerprint,
//! same-run references, a per-second time series, per-point rows and a flat summary),
//! the self-contained SVG plot drawn from it, and the side-by-side comparison of two.

use crate::host::HostInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Bumped when a field changes meaning.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub scenario: String,
    /// The command line that produced it.
    pub command: String,
    pub started_unix_ms: i64,
    pub target: Target,
    pub host: HostInfo,
    pub broker_config: BrokerConfig,
    /// Measured in the same run: `disk_write_mb_s`, `disk_read_mb_s`, `tcp_rtt_p50_us`...
    pub references: BTreeMap<String, f64>,
    /// Named spans of the time series (sweep points, soak phases).
    pub phases: Vec<Phase>,
    pub series: Vec<Sample>,
    /// One row per measured point (a sweep point, a queue count, a load level).
    pub rows: Vec<Row>,
    /// Flat metrics, the ones `compare` lines up.
    pub summary: BTreeMap<String, f64>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Target {
    pub namesrv: String,
    pub broker: Option<String>,
    /// Started by the runner on a scratch store (false with `--target`).
    pub managed: bool,
    /// Broker arguments of a managed broker.
    pub broker_args: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrokerConfig {
    /// FNV-1a 64 of the sorted `key=value` lines, hex.
    pub fingerprint: String,
    /// `GET_BROKER_CONFIG` or `args` (when the broker would not tell).
    pub source: String,
    pub entries: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// From a `GET_BROKER_CONFIG` body (Java properties text).
    pub fn from_properties(text: &str, source: &str) -> Self {
        let entries: BTreeMap<String, String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect();
        let canonical: String = entries
            .iter()
            .filter(|(k, _)| !VOLATILE_KEYS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        Self {
            fingerprint: format!("{:016x}", fnv1a(canonical.as_bytes())),
            source: source.to_owned(),
            entries,
        }
    }
}

/// Keys that differ between runs of the same configuration (ports, scratch paths): kept
/// in `entries`, left out of the fingerprint.
pub const VOLATILE_KEYS: &[&str] = &[
    "listen",
    "listenPort",
    "namesrvAddr",
    "namesrv_addr",
    "storePathRootDir",
    "store_dir",
];

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// One second of the run; 0 where a side was not running.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds since the scenario started.
    pub t: f64,
    pub produce_tps: f64,
    pub produce_mbps: f64,
    pub send_failures: f64,
    pub send_p50_us: f64,
    pub send_p99_us: f64,
    pub send_p999_us: f64,
    pub send_max_us: f64,
    pub consume_tps: f64,
    pub consume_mbps: f64,
    /// Born (producer clock) to consumed.
    pub e2e_p50_us: f64,
    pub e2e_p99_us: f64,
    pub e2e_p999_us: f64,
    /// Stored (broker clock) to consumed.
    pub s2c_p99_us: f64,
    pub backlog_msgs: f64,
}

impl Sample {
    /// Merges one `rmq_bench --series` line (producer or consumer) into this sample.
    pub fn merge_bench_line(&mut self, v: &serde_json::Value) {
        let f = |path: &[&str]| -> f64 {
            let mut cur = v;
            for p in path {
                match cur.get(p) {
                    Some(x) => cur = x,
                    None => return 0.0,
                }
            }
            cur.as_f64().unwrap_or(0.0)
        };
        if v.get("send_tps").is_some() {
            self.produce_tps += f(&["send_tps"]);
            self.produce_mbps += f(&["send_mbps"]);
            self.send_failures += f(&["send_failures"]);
            self.send_p50_us = self.send_p50_us.max(f(&["send_rt_us", "p50"]));
            self.send_p99_us = self.send_p99_us.max(f(&["send_rt_us", "p99"]));
            self.send_p999_us = self.send_p999_us.max(f(&["send_rt_us", "p999"]));
            self.send_max_us = self.send_max_us.max(f(&["send_rt_us", "max"]));
        }
        if v.get("consume_tps").is_some() {
            self.consume_tps += f(&["consume_tps"]);
            self.consume_mbps += f(&["consume_mbps"]);
            self.e2e_p50_us = self.e2e_p50_us.max(f(&["b2c_us", "p50"]));
            self.e2e_p99_us = self.e2e_p99_us.max(f(&["b2c_us", "p99"]));
            self.e2e_p999_us = self.e2e_p999_us.max(f(&["b2c_us", "p999"]));
            self.s2c_p99_us = self.s2c_p99_us.max(f(&["s2c_us", "p99"]));
            self.backlog_msgs += f(&["backlog_msgs"]);
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub name: String,
    /// The load-generator command(s) of this point.
    pub command: String,
    pub metrics: BTreeMap<String, f64>,
}

impl Report {
    pub fn new(scenario: &str, command: &str, started_unix_ms: i64) -> Self {
        Self {
            version: REPORT_VERSION,
            scenario: scenario.to_owned(),
            command: command.to_owned(),
            started_unix_ms,
            ..Self::default()
        }
    }

    /// Every metric by one flat name: summary keys, `ref.KEY`, and `ROW/METRIC`.
    pub fn flat_metrics(&self) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = self.summary.clone();
        for (k, v) in &self.references {
            m.insert(format!("ref.{k}"), *v);
        }
        for r in &self.rows {
            for (k, v) in &r.metrics {
                m.insert(format!("{}/{k}", r.name), *v);
            }
        }
        m
    }
}

/// Pretty JSON with one line per series sample (a 600-sample report stays small and
/// still diffs line by line).
pub fn to_json(r: &Report) -> Result<String, serde_json::Error> {
    const MARK: &str = "\"__series__\"";
    let mut v = serde_json::to_value(r)?;
    v["series"] = serde_json::Value::String("__series__".into());
    let pretty = serde_json::to_string_pretty(&v)?;
    let mut lines = Vec::with_capacity(r.series.len());
    for s in &r.series {
        lines.push(format!("    {}", serde_json::to_string(s)?));
    }
    let series = if lines.is_empty() {
        "[]".to_owned()
    } else {
        format!("[\n{}\n  ]", lines.join(",\n"))
    };
    Ok(pretty.replacen(MARK, &series, 1))
}

/// Two reports side by side: every metric either has, the ratio B / A.
pub fn compare(a: &Report, b: &Report, a_name: &str, b_name: &str) -> String {
    let (ma, mb) = (a.flat_metrics(), b.flat_metrics());
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(6).max(6);
    let mut s = String::new();
    let _ = writeln!(s, "A: {a_name}  scenario {}  {}", a.scenario, describe(a));
    let _ = writeln!(s, "B: {b_name}  scenario {}  {}", b.scenario, describe(b));
    if a.scenario != b.scenario {
        let _ = writeln!(s, "note: different scenarios");
    }
    let _ = writeln!(
        s,
        "{:<width$}  {:>14}  {:>14}  {:>8}",
        "metric", "A", "B", "B/A"
    );
    for k in keys {
        let va = ma.get(k).copied();
        let vb = mb.get(k).copied();
        let ratio = match (va, vb) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:.3}", y / x),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "{k:<width$}  {:>14}  {:>14}  {ratio:>8}",
            va.map_or("-".to_owned(), fmt_num),
            vb.map_or("-".to_owned(), fmt_num),
        );
    }
    s
}

fn describe(r: &Report) -> String {
    format!(
        "config {} ({}), {} cores, {}",
        if r.broker_config.fingerprint.is_empty() {
            "?"
        } else {
            &r.broker_config.fingerprint
        },
        if r.target.managed {
            "managed broker"
        } else {
            "external target"
        },
        r.host.cores,
        r.host.cpu_model
    )
}

/// Short human number: 3 significant digits, thousands grouped loosely.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 1e6 {
        format!("{:.3}e6", v / 1e6)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

const W: f64 = 960.0;
const PANEL_H: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
/// Samples further apart than this (seconds) are not joined by a line. Downsampled
/// long runs have samples several seconds apart: the gap scales with the spacing.
const GAP_S: f64 = 2.5;

struct Line<'a> {
    label: &'a str,
    color: &'a str,
    get: fn(&Sample) -> f64,
}

/// A self-contained SVG: throughput (MB/s) over time on top, latency (log scale, ms)
/// below, phases as dashed separators with their names.
pub fn svg(r: &Report) -> String {
    let mut s = String::new();
    let height = 60.0 + 2.0 * (PANEL_H + 50.0);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{} — {}</text>"#,
        esc(&r.scenario),
        esc(&r.host.cpu_model)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="38" fill="#555">{} cores, config {}, {} samples</text>"##,
        r.host.cores,
        esc(&r.broker_config.fingerprint),
        r.series.len()
    );
    let t_max = r
        .series
        .iter()
        .map(|x| x.t)
        .chain(r.phases.iter().map(|p| p.end_s))
        .fold(1.0f64, f64::max);
    let tput = [
        Line {
            label: "produce MB/s",
            color: "#1f77b4",
            get: |x| x.produce_mbps,
        },
        Line {
            label: "consume MB/s",
            color: "#2ca02c",
            get: |x| x.consume_mbps,
        },
    ];
    panel(&mut s, r, 60.0, t_max, &tput, false, "MB/s");
    let lat = [
        Line {
            label: "send p50",
            color: "#9ecae1",
            get: |x| x.send_p50_us,
        },
        Line {
            label: "send p99",
            color: "#3182bd",
            get: |x| x.send_p99_us,
        },
        Line {
            label: "send p999",
            color: "#08306b",
            get: |x| x.send_p999_us,
        },
        Line {
            label: "e2e p99",
            color: "#d62728",
            get: |x| x.e2e_p99_us,
        },
    ];
    panel(&mut s, r, 60.0 + PANEL_H + 50.0, t_max, &lat, true, "ms");
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, r: &Report, top: f64, t_max: f64, lines: &[Line], log: bool, unit: &str) {
    let plot_w = W - LEFT - RIGHT;
    let x_of = |t: f64| LEFT + t / t_max * plot_w;
    let values: Vec<f64> = r
        .series
        .iter()
        .flat_map(|x| lines.iter().map(move |l| (l.get)(x)))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    // Latency is kept in µs and drawn in ms.
    let scale = if log { 1e-3 } else { 1.0 };
    let (lo, hi) = if log {
        let min = values.iter().copied().fold(f64::MAX, f64::min) * scale;
        let max = values.iter().copied().fold(0.0, f64::max) * scale;
        if values.is_empty() {
            (-2.0, 3.0)
        } else {
            (
                min.max(1e-3).log10().floor(),
                max.max(1e-3).log10().ceil().max(min.log10().floor() + 1.0),
            )
        }
    } else {
        let max = values.iter().copied().fold(0.0, f64::max);
        (0.0, nice_ceiling(max))
    };
    let y_of = |v: f64| {
        let v = if log {
            (v * scale).max(1e-9).log10()
        } else {
            v
        };
        top + PANEL_H - ((v - lo) / (hi - lo).max(1e-9)).clamp(0.0, 1.0) * PANEL_H
    };
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#999"/>"##
    );
    // Y grid and labels.
    let ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32)
            .map(|e| 10f64.powi(e) / scale)
            .collect()
    } else {
        (0..=4).map(|i| hi * i as f64 / 4.0).collect()
    };
    for v in ticks {
        let y = y_of(v);
        let label = if log { fmt_num(v * scale) } else { fmt_num(v) };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + plot_w,
            LEFT - 4.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{unit}{}</text>"#,
        top + PANEL_H / 2.0,
        top + PANEL_H / 2.0,
        if log { " (log)" } else { "" }
    );
    // X labels.
    for i in 0..=5 {
        let t = t_max * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0} s</text>"#,
            x_of(t),
            top + PANEL_H + 14.0,
            t
        );
    }
    // Phases.
    let many = r.phases.len() > 12;
    for p in &r.phases {
        let x = x_of(p.start_s);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="3,3"/>"##,
            top + PANEL_H
        );
        if !log {
            let _ = if many {
                writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" font-size="8" fill="#777" transform="rotate(90 {:.1} {:.1})">{}</text>"##,
                    x + 2.0,
                    top + 4.0,
                    x + 2.0,
                    top + 4.0,
                    esc(&p.name)
                )
            } else {
                writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#777">{}</text>"##,
                    x + 3.0,
                    top + 12.0,
                    esc(&p.name)
                )
            };
        }
    }
    // Lines: gaps where a value is 0 (that side was not running).
    let spacing = match (r.series.first(), r.series.last()) {
        (Some(a), Some(b)) if r.series.len() > 1 => (b.t - a.t) / (r.series.len() - 1) as f64,
        _ => 1.0,
    };
    let gap = GAP_S.max(2.5 * spacing);
    for (i, l) in lines.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        let mut prev_t = f64::NEG_INFINITY;
        for x in &r.series {
            let v = (l.get)(x);
            // No line across a gap in time (a broker restart between sweep points).
            if !(v.is_finite() && v > 0.0) || x.t - prev_t > gap {
                pen_down = false;
            }
            prev_t = x.t;
            if !(v.is_finite() && v > 0.0) {
                continue;
            }
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if pen_down { "L" } else { "M" },
                x_of(x.t),
                y_of(v)
            );
            pen_down = true;
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                d.trim_end(),
                l.color
            );
        }
        let ly = top + 14.0 + 16.0 * i as f64;
        let lx = LEFT + plot_w + 10.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ly - 4.0,
            lx + 18.0,
            ly - 4.0,
            l.color,
            lx + 24.0,
            ly,
            esc(l.label)
        );
    }
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scale: f64) -> Report {
        let mut r = Report::new("sweep", "rmq_perf scenario sweep", 0);
        r.references.insert("disk_write_mb_s".into(), 1000.0);
        r.summary.insert("best_mb_s".into(), 400.0 * scale);
        r.rows.push(Row {
            name: "1k-async".into(),
            command: "rmq_bench produce".into(),
            metrics: [("mb_s".to_owned(), 100.0 * scale)].into(),
        });
        r.phases.push(Phase {
            name: "p<1>".into(),
            start_s: 0.0,
            end_s: 3.0,
        });
        for t in 0..5 {
            r.series.push(Sample {
                t: t as f64,
                produce_mbps: 100.0 * scale,
                send_p50_us: 200.0,
                send_p99_us: 900.0,
                send_p999_us: 5_000.0,
                e2e_p99_us: if t == 2 { 0.0 } else { 2_000.0 },
                ..Sample::default()
            });
        }
        r
    }

    #[test]
    fn compare_lines_up_metrics_and_ratios() {
        let text = compare(&report(1.0), &report(2.0), "a.json", "b.json");
        let line = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(k))
                .unwrap_or_else(|| panic!("{k} missing in\n{text}"))
                .to_owned()
        };
        assert!(line("best_mb_s").ends_with("2.000"), "{text}");
        assert!(line("1k-async/mb_s").ends_with("2.000"));
        assert!(line("ref.disk_write_mb_s").ends_with("1.000"));
    }

    #[test]
    fn compare_marks_missing_metrics() {
        let a = report(1.0);
        let mut b = report(1.0);
        b.summary.insert("only_b".into(), 3.0);
        let text = compare(&a, &b, "a", "b");
        let line = text.lines().find(|l| l.starts_with("only_b")).expect("row");
        assert!(line.contains(" - "), "{line}");
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        let s = svg(&report(1.0));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("p&lt;1&gt;"));
        assert!(!s.contains("p<1>"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
        // One path per line that has data: 2 throughput (consume is empty: none) + 4 latency.
        assert_eq!(s.matches("<path").count(), 1 + 4);
        // The e2e gap at t=2 starts a new subpath.
        let e2e = s
            .lines()
            .find(|l| l.contains("<path") && l.contains("#d62728"))
            .expect("e2e path");
        assert_eq!(e2e.matches('M').count(), 2);
    }

    #[test]
    fn svg_of_an_empty_report_draws_axes() {
        let s = svg(&Report::new("empty", "", 0));
        assert!(s.contains("</svg>"));
        assert!(!s.contains("NaN"));
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = report(1.0);
        let text = to_json(&r).expect("json");
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("\"produce_mbps\""))
                .count(),
            r.series.len(),
            "one line per sample"
        );
        let back: Report = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.series, r.series);
        assert_eq!(back.rows, r.rows);
    }

    #[test]
    fn bench_lines_merge_into_a_sample() {
        let mut s = Sample::default();
        s.merge_bench_line(&serde_json::json!({
            "t": 1.0, "send_tps": 1000.0, "send_mbps": 1.0, "send_failures": 0,
            "send_rt_us": {"p50": 100, "p99": 200, "p999": 300, "max": 400}
        }));
        s.merge_bench_line(&serde_json::json!({
            "t": 1.0, "consume_tps": 900.0, "consume_mbps": 0.9, "backlog_msgs": 5,
            "b2c_us": {"p50": 1000, "p99": 2000, "p999": 3000}, "s2c_us": {"p99": 1500}
        }));
        assert_eq!(s.produce_tps, 1000.0);
        assert_eq!(s.send_p99_us, 200.0);
        assert_eq!(s.consume_tps, 900.0);
        assert_eq!(s.e2e_p99_us, 2000.0);
        assert_eq!(s.s2c_p99_us, 1500.0);
        assert_eq!(s.backlog_msgs, 5.0);
    }

    #[test]
    fn config_fingerprint_ignores_order_and_comments() {
        let a = BrokerConfig::from_properties("b=2\na=1\n", "x");
        let b = BrokerConfig::from_properties("#c\na=1\n\nb=2", "x");
        let c = BrokerConfig::from_properties("a=1\nb=3", "x");
        let d = BrokerConfig::from_properties("a=1\nb=2\nlisten=127.0.0.1:1", "x");
        assert_eq!(a.fingerprint, d.fingerprint);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.entries.len(), 2);
    }
}
