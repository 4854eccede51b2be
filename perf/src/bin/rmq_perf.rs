//! `rmq_perf`: named benchmark scenarios, each one command, each writing a JSON report
//! and an SVG plot; `compare` lays two reports side by side.
//!
//! ```text
//! rmq_perf scenario sweep|soak|queues|latency|recovery [--target NAMESRV] [--out DIR]
//! rmq_perf compare A/report.json B/report.json
//! rmq_perf plot A/report.json            # re-draw A/plot.svg
//! ```
//!
//! Without `--target` it starts a release nameserver and broker (from `--bin-dir`, by
//! default beside this binary) on a scratch store under `--data-dir` and removes both
//! afterwards, also on failure and Ctrl-C. Every run measures its references the same
//! way (an O_DIRECT write and read of the data directory's disk, the localhost TCP round
//! trip) so results read as ratios. The load comes from `rmq_bench` child processes,
//! whose per-second JSON lines become the report's time series.

use clap::{Parser, Subcommand};
use perf::disk;
use perf::host::HostInfo;
use perf::remoting;
use perf::report::{self, BrokerConfig, Phase, Report, Row, Sample};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Parser)]
#[command(about = "Named broker benchmark scenarios, reports, plots and comparisons")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one named scenario.
    Scenario(Box<ScenarioArgs>),
    /// Two reports side by side: every metric and the ratio B / A.
    Compare { a: PathBuf, b: PathBuf },
    /// Re-draw the SVG of a report (next to it, or at --out).
    Plot {
        report: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args, Clone)]
struct ScenarioArgs {
    /// sweep, soak, queues, latency or recovery.
    #[arg(value_parser = ["sweep", "soak", "queues", "latency", "recovery"])]
    name: String,
    /// Nameserver of a running cluster (any RocketMQ-protocol broker); none: start ours.
    #[arg(long)]
    target: Option<String>,
    /// Report directory (default ./perf-out/DATE-SCENARIO).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Scratch space for a managed broker's store and the disk reference.
    #[arg(long, default_value = "./perf-data")]
    data_dir: PathBuf,
    /// Where `nameserver`, `broker` and `rmq_bench` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Extra argument for a managed broker (repeat), e.g. `--broker-arg=--set
    /// --broker-arg=max_pull_messages=512`.
    #[arg(long, allow_hyphen_values = true)]
    broker_arg: Vec<String>,
    /// Seconds per measured point (sweep default 3, queues and latency 10).
    #[arg(long)]
    point_secs: Option<u64>,
    /// Sweep: message sizes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "128,1024,4096,16384,65536"
    )]
    sizes: Vec<usize>,
    /// Sweep: flush modes of a managed broker (a target runs as configured).
    #[arg(long, value_delimiter = ',', default_value = "async,sync")]
    flush: Vec<String>,
    /// Soak: backlog to accumulate, GiB (capped by free disk minus --disk-margin-gib).
    #[arg(long, default_value_t = 40.0)]
    backlog_gib: f64,
    #[arg(long, default_value_t = 10.0)]
    disk_margin_gib: f64,
    /// Soak: producer rate in MB/s (10^6 bytes).
    #[arg(long, default_value_t = 100.0)]
    rate_mb: f64,
    /// Soak and recovery: message size.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Soak: messages per pull of the catching-up group.
    #[arg(long, default_value_t = 32)]
    pull_batch: i32,
    /// Soak: catch-up read rate assumed when sizing the backlog (production goes on
    /// while the group drains, and that needs disk too), MB/s.
    #[arg(long, default_value_t = 250.0)]
    expected_catchup_mb: f64,
    /// Soak: longest catch-up before giving up, seconds.
    #[arg(long, default_value_t = 3600)]
    drain_timeout_secs: u64,
    /// Queues: queue counts to compare.
    #[arg(long, value_delimiter = ',', default_value = "8,1000,10000")]
    queue_counts: Vec<usize>,
    /// Queues: total messages per second (1 KiB) at every queue count.
    #[arg(long, default_value_t = 10000.0)]
    rate: f64,
    /// Latency: loads as percentages of the measured maximum.
    #[arg(long, value_delimiter = ',', default_value = "10,50,80")]
    levels: Vec<f64>,
    /// Recovery: commit log to fill before kill -9, GiB.
    #[arg(long, default_value_t = 4.0)]
    fill_gib: f64,
    /// 4 MiB O_DIRECT I/Os in flight in the disk reference.
    #[arg(long, default_value_t = 4)]
    disk_ref_depth: usize,
    /// Size of the O_DIRECT disk reference, MiB.
    #[arg(long, default_value_t = 1024)]
    disk_ref_mib: u64,
}

#[derive(Debug, thiserror::Error)]
enum PerfError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] remoting::ClientError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

type Result<T> = std::result::Result<T, PerfError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PerfError {
    let what = what.into();
    move |source| PerfError::Io { what, source }
}

/// Soak phase statistics leave out the run's first seconds (start-up, first segments).
const WARMUP_S: f64 = 5.0;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(PerfError::Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps in small steps so Ctrl-C ends a scenario promptly.
fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupt()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    check_interrupt()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `YYYY-MM-DD` of a Unix time (UTC), from days since the epoch.
fn date_of(unix_ms: i64) -> String {
    let z = unix_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("bind a free port"))?;
    Ok(l.local_addr().map_err(io_err("local address"))?.port())
}

/// A nameserver and broker this run started; stopped and their store removed on drop.
struct Cluster {
    bin_dir: PathBuf,
    dir: PathBuf,
    log_dir: PathBuf,
    namesrv: String,
    broker_addr: String,
    broker_args: Vec<String>,
    ns: Option<Child>,
    broker: Option<Child>,
    starts: usize,
}

impl Cluster {
    fn start(
        bin_dir: &Path,
        data_dir: &Path,
        log_dir: &Path,
        broker_args: &[String],
    ) -> Result<Self> {
        let dir = data_dir.join(format!("cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let namesrv = format!("127.0.0.1:{}", free_port()?);
        let broker_addr = format!("127.0.0.1:{}", free_port()?);
        let ns_log = File::create(log_dir.join("nameserver.log"))
            .map_err(io_err("create nameserver.log"))?;
        let mut c = Cluster {
            bin_dir: bin_dir.to_owned(),
            dir,
            log_dir: log_dir.to_owned(),
            namesrv: namesrv.clone(),
            broker_addr,
            broker_args: broker_args.to_vec(),
            ns: None,
            broker: None,
            starts: 0,
        };
        let ns = Command::new(bin_dir.join("nameserver"))
            .args(["--listen", &namesrv])
            .stdout(Stdio::null())
            .stderr(ns_log)
            .spawn()
            .map_err(io_err(format!(
                "start {}",
                bin_dir.join("nameserver").display()
            )))?;
        c.ns = Some(ns);
        c.start_broker(Duration::from_secs(60))?;
        Ok(c)
    }

    /// Starts the broker and waits until it prints its ready line; the time it took.
    fn start_broker(&mut self, timeout: Duration) -> Result<Duration> {
        self.starts += 1;
        let out = self.log_dir.join(format!("broker-{}.out", self.starts));
        let err = self.log_dir.join(format!("broker-{}.log", self.starts));
        let t0 = Instant::now();
        let child = Command::new(self.bin_dir.join("broker"))
            .args(["--namesrv", &self.namesrv, "--listen", &self.broker_addr])
            .arg("--store-dir")
            .arg(self.dir.join("store"))
            .args(&self.broker_args)
            .stdout(File::create(&out).map_err(io_err("create broker.out"))?)
            .stderr(File::create(&err).map_err(io_err("create broker.log"))?)
            .spawn()
            .map_err(io_err(format!(
                "start {}",
                self.bin_dir.join("broker").display()
            )))?;
        self.broker = Some(child);
        loop {
            if std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready on")) {
                return Ok(t0.elapsed());
            }
            if let Some(b) = self.broker.as_mut() {
                if let Ok(Some(status)) = b.try_wait() {
                    return Err(PerfError::Failed(format!(
                        "broker exited with {status} before it was ready; see {}",
                        err.display()
                    )));
                }
            }
            if t0.elapsed() > timeout {
                return Err(PerfError::Failed(format!(
                    "broker not ready after {timeout:?}; see {}",
                    err.display()
                )));
            }
            check_interrupt()?;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn broker_pid(&self) -> Option<u32> {
        self.broker.as_ref().map(Child::id)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop_broker(&mut self, grace: Duration) {
        if let Some(mut b) = self.broker.take() {
            stop_child(&mut b, grace);
        }
    }

    fn kill9_broker(&mut self) {
        if let Some(mut b) = self.broker.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
    }

    /// A fresh, empty store (restarts the broker).
    fn wipe(&mut self, broker_args: &[String]) -> Result<()> {
        self.stop_broker(Duration::from_secs(30));
        let _ = std::fs::remove_dir_all(self.dir.join("store"));
        self.broker_args = broker_args.to_vec();
        self.start_broker(Duration::from_secs(60)).map(|_| ())
    }

    fn store_bytes(&self) -> u64 {
        dir_bytes(&self.dir.join("store"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_broker(Duration::from_secs(30));
        if let Some(mut ns) = self.ns.take() {
            stop_child(&mut ns, Duration::from_secs(5));
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("rmq_perf: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

fn stop_child(c: &mut Child, grace: Duration) {
    // SAFETY: sending a signal to a child we started and have not reaped.
    unsafe {
        libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Allocated bytes under a directory (what `du` counts).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// One `rmq_bench` child: its series file, summary file and log.
struct Bench {
    name: String,
    child: Child,
    series: PathBuf,
    json: PathBuf,
    log: PathBuf,
    command: String,
}

/// The run: where things go, the time base of the series, the report being built.
struct Ctx {
    args: ScenarioArgs,
    bin_dir: PathBuf,
    out: PathBuf,
    namesrv: String,
    cluster: Option<Cluster>,
    report: Report,
    start_ms: i64,
    /// Series samples by whole second since start.
    samples: BTreeMap<i64, Sample>,
    bench_no: usize,
}

impl Ctx {
    fn t(&self) -> f64 {
        (now_ms() - self.start_ms) as f64 / 1000.0
    }

    fn spawn_bench(&mut self, name: &str, args: &[String]) -> Result<Bench> {
        self.bench_no += 1;
        let base = format!("{:03}-{name}", self.bench_no);
        let dir = self.out.join("bench");
        std::fs::create_dir_all(&dir).map_err(io_err("create bench dir"))?;
        let series = dir.join(format!("{base}.series.jsonl"));
        let json = dir.join(format!("{base}.json"));
        let log = dir.join(format!("{base}.log"));
        let mut full: Vec<String> = args.to_vec();
        full.extend(["--namesrv".into(), self.namesrv.clone()]);
        full.extend(["--series".into(), series.display().to_string()]);
        full.extend(["--json".into(), json.display().to_string()]);
        full.push("--quiet".into());
        let command = format!("rmq_bench {}", args.join(" "));
        let child = Command::new(self.bin_dir.join("rmq_bench"))
            .args(&full)
            .stdout(Stdio::null())
            .stderr(File::create(&log).map_err(io_err("create bench log"))?)
            .spawn()
            .map_err(io_err(format!(
                "start {}",
                self.bin_dir.join("rmq_bench").display()
            )))?;
        Ok(Bench {
            name: name.to_owned(),
            child,
            series,
            json,
            log,
            command,
        })
    }

    /// Waits for a bench, merges its series; its summary.
    fn finish(&mut self, mut b: Bench) -> Result<Value> {
        let status = loop {
            if let Some(s) = b.child.try_wait().map_err(io_err("wait for rmq_bench"))? {
                break s;
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                let _ = b.child.kill();
                let _ = b.child.wait();
                return Err(PerfError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.merge_series(&b.series);
        if !status.success() {
            let log = std::fs::read_to_string(&b.log).unwrap_or_default();
            return Err(PerfError::Failed(format!(
                "{} ({}) failed with {status}: {}",
                b.name,
                b.command,
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )));
        }
        let text = std::fs::read_to_string(&b.json)
            .map_err(io_err(format!("read {}", b.json.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| PerfError::Failed(format!("{}: {e}", b.json.display())))
    }

    fn merge_series(&mut self, path: &Path) {
        let Ok(f) = File::open(path) else { return };
        // One line per second from each file: a second line in the same second (the
        // intervals drift against whole seconds) is dropped rather than added.
        let mut seen = std::collections::BTreeSet::new();
        for line in BufReader::new(f).lines().map_while(|l| l.ok()) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(ms) = v.get("unix_ms").and_then(Value::as_i64) else {
                continue;
            };
            let sec = (ms - self.start_ms).div_euclid(1000);
            if !seen.insert(sec) {
                continue;
            }
            let s = self.samples.entry(sec).or_insert_with(|| Sample {
                t: sec as f64,
                ..Sample::default()
            });
            s.merge_bench_line(&v);
        }
    }

    /// Runs benches side by side and returns their summaries in order.
    fn run_together(&mut self, benches: Vec<(&str, Vec<String>)>) -> Result<Vec<(String, Value)>> {
        let mut running = Vec::new();
        for (name, args) in benches {
            running.push(self.spawn_bench(name, &args)?);
        }
        let mut out = Vec::new();
        let mut first_err = None;
        for b in running {
            let cmd = b.command.clone();
            match self.finish(b) {
                Ok(v) => out.push((cmd, v)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn phase(&mut self, name: &str, start_s: f64) {
        let end_s = self.t();
        self.report.phases.push(Phase {
            name: name.to_owned(),
            start_s,
            end_s,
        });
    }

    fn reference(&mut self, key: &str, v: f64) {
        self.report.references.insert(key.to_owned(), round(v));
    }

    fn summary(&mut self, key: &str, v: f64) {
        self.report.summary.insert(key.to_owned(), round(v));
    }
}

fn round(v: f64) -> f64 {
    if !v.is_finite() {
        return 0.0;
    }
    let a = v.abs();
    let digits = if a >= 100.0 {
        1
    } else if a >= 1.0 {
        3
    } else {
        5
    };
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0.0,
        }
    }
    cur.as_f64().unwrap_or(0.0)
}

/// The metrics of one producer summary.
fn produce_metrics(v: &Value) -> BTreeMap<String, f64> {
    [
        ("msgs_per_sec", num(v, &["msgs_per_sec"])),
        ("mb_per_sec", num(v, &["mb_per_sec"])),
        ("send_p50_us", num(v, &["latency_us", "p50"])),
        ("send_p99_us", num(v, &["latency_us", "p99"])),
        ("send_p999_us", num(v, &["latency_us", "p999"])),
        ("send_max_us", num(v, &["latency_us", "max"])),
        ("failures", num(v, &["failures"])),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_owned(), round(x)))
    .collect()
}

fn consume_metrics(v: &Value) -> BTreeMap<String, f64> {
    [
        ("consume_msgs_per_sec", num(v, &["msgs_per_sec"])),
        ("consume_mb_per_sec", num(v, &["mb_per_sec"])),
        ("e2e_p50_us", num(v, &["b2c_us", "p50"])),
        ("e2e_p99_us", num(v, &["b2c_us", "p99"])),
        ("e2e_p999_us", num(v, &["b2c_us", "p999"])),
        ("s2c_p99_us", num(v, &["s2c_us", "p99"])),
    ]
    .into_iter()
    .map(|(k, x)| (k.to_owned(), round(x)))
    .collect()
}

fn create_topic_and_wait(ctx: &Ctx, broker: &str, topic: &str, queues: i32) -> Result<()> {
    remoting::create_topic(broker, topic, queues)?;
    let t0 = Instant::now();
    loop {
        if let Ok((_, q)) = remoting::route(&ctx.namesrv, topic) {
            if q == queues {
                return Ok(());
            }
        }
        if t0.elapsed() > Duration::from_secs(40) {
            return Err(PerfError::Failed(format!(
                "topic {topic} created but its route did not reach the nameserver in 40 s"
            )));
        }
        sleep(Duration::from_millis(100))?;
    }
}

/// The broker behind the target: from TBW102's route, else the managed one.
fn broker_of(ctx: &Ctx) -> Result<String> {
    if let Some(c) = &ctx.cluster {
        return Ok(c.broker_addr.clone());
    }
    Ok(remoting::route(&ctx.namesrv, "TBW102")?.0)
}

fn config_fingerprint(ctx: &Ctx) -> BrokerConfig {
    let broker = broker_of(ctx).ok();
    match broker.as_deref().map(remoting::broker_config) {
        Some(Ok(text)) => BrokerConfig::from_properties(&text, "GET_BROKER_CONFIG"),
        other => {
            if let Some(Err(e)) = other {
                eprintln!("GET_BROKER_CONFIG failed ({e}); fingerprinting the arguments");
            }
            let args = ctx
                .cluster
                .as_ref()
                .map(|c| c.broker_args.join("\n"))
                .unwrap_or_else(|| format!("target={}", ctx.namesrv));
            BrokerConfig::from_properties(&format!("args={args}"), "args")
        }
    }
}

fn references(ctx: &mut Ctx) -> Result<()> {
    println!(
        "== references: O_DIRECT write+read of the data disk ({} x 4 MiB in flight), TCP round trip",
        ctx.args.disk_ref_depth
    );
    let file = ctx.args.data_dir.join("disk-reference.bin");
    let d = disk::baseline(&file, ctx.args.disk_ref_mib << 20, ctx.args.disk_ref_depth)?;
    ctx.reference("disk_ref_depth", ctx.args.disk_ref_depth as f64);
    ctx.reference("disk_write_mb_s", d.write_mb_s);
    ctx.reference("disk_read_mb_s", d.read_mb_s);
    let out = Command::new(ctx.bin_dir.join("rmq_bench"))
        .arg("echo")
        .output()
        .map_err(io_err("run rmq_bench echo"))?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| PerfError::Failed(format!("rmq_bench echo output: {e}")))?;
    ctx.reference("tcp_rtt_p50_us", num(&v, &["latency_us", "p50"]));
    ctx.reference("tcp_rtt_p99_us", num(&v, &["latency_us", "p99"]));
    println!(
        "   disk write {:.0} MB/s, read {:.0} MB/s; TCP round trip p50 {} us",
        d.write_mb_s,
        d.read_mb_s,
        num(&v, &["latency_us", "p50"])
    );
    Ok(())
}

// ---------------------------------------------------------------- scenarios

fn sweep(ctx: &mut Ctx) -> Result<()> {
    let secs = ctx.args.point_secs.unwrap_or(3).to_string();
    let flushes: Vec<String> = if ctx.cluster.is_some() {
        ctx.args.flush.clone()
    } else {
        vec!["target".into()]
    };
    let disk_w = ctx
        .report
        .references
        .get("disk_write_mb_s")
        .copied()
        .unwrap_or(0.0);
    let rtt = ctx
        .report
        .references
        .get("tcp_rtt_p50_us")
        .copied()
        .unwrap_or(0.0);
    let mut best: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for flush in &flushes {
        if let Some(c) = ctx.cluster.as_mut() {
            let mut a = ctx.args.broker_arg.clone();
            a.extend(["--set".into(), format!("flush={flush}")]);
            println!("== broker with flush={flush} on an empty store");
            c.wipe(&a)?;
        }
        let broker = broker_of(ctx)?;
        let topic = format!("Sweep_{flush}");
        create_topic_and_wait(ctx, &broker, &topic, 8)?;
        for &size in &ctx.args.sizes.clone() {
            let batch = (262_144 / size.max(1)).clamp(2, 32);
            for (conns, inflight) in [(1usize, 1usize), (4, 32)] {
                for batched in [false, true] {
                    let b = if batched { batch } else { 1 };
                    let name = format!("{flush}-{size}B-{conns}x{inflight}-b{b}");
                    let mut a = s(&["produce", "--topic", &topic, "--secs", &secs]);
                    a.extend([
                        "--size".into(),
                        size.to_string(),
                        "--connections".into(),
                        conns.to_string(),
                        "--inflight".into(),
                        inflight.to_string(),
                        "--batch".into(),
                        b.to_string(),
                    ]);
                    let t0 = ctx.t();
                    let res = ctx.run_together(vec![("produce", a.clone())])?;
                    ctx.phase(&name, t0);
                    let Some((cmd, v)) = res.into_iter().next() else {
                        continue;
                    };
                    let mut m = produce_metrics(&v);
                    let mbps = m["mb_per_sec"];
                    if disk_w > 0.0 {
                        m.insert("mb_s_over_disk_write".into(), round(mbps / disk_w));
                    }
                    if conns == 1 && inflight == 1 && rtt > 0.0 {
                        m.insert("p50_over_tcp_rtt".into(), round(m["send_p50_us"] / rtt));
                    }
                    println!(
                        "   {name:<32} {:>10.0} msgs/s {:>8.1} MB/s  p50 {:>7} us  p99 {:>7} us  failures {}",
                        m["msgs_per_sec"], mbps, m["send_p50_us"], m["send_p99_us"], m["failures"]
                    );
                    let e = best.entry(flush.clone()).or_default();
                    e.0 = e.0.max(mbps);
                    e.1 = e.1.max(m["msgs_per_sec"]);
                    ctx.report.rows.push(Row {
                        name,
                        command: cmd,
                        metrics: m,
                    });
                }
            }
        }
    }
    for (flush, (mb, msgs)) in best {
        ctx.summary(&format!("{flush}_best_mb_per_sec"), mb);
        ctx.summary(&format!("{flush}_best_msgs_per_sec"), msgs);
        if disk_w > 0.0 {
            ctx.summary(&format!("{flush}_best_mb_s_over_disk_write"), mb / disk_w);
        }
    }
    for r in &ctx.report.rows.clone() {
        if r.name.ends_with("-1024B-1x1-b1") {
            let flush = r.name.split('-').next().unwrap_or("");
            ctx.summary(
                &format!("{flush}_single_1k_p50_us"),
                r.metrics["send_p50_us"],
            );
            if let Some(x) = r.metrics.get("p50_over_tcp_rtt") {
                ctx.summary(&format!("{flush}_single_1k_p50_over_tcp_rtt"), *x);
            }
        }
    }
    Ok(())
}

/// Closed-loop maximum of 1 KiB sends with 4 x 32 in flight.
fn max_rate(ctx: &mut Ctx, topic: &str) -> Result<f64> {
    let a = s(&[
        "produce",
        "--topic",
        topic,
        "--size",
        "1024",
        "--connections",
        "4",
        "--inflight",
        "32",
        "--secs",
        "6",
    ]);
    let t0 = ctx.t();
    let res = ctx.run_together(vec![("max", a)])?;
    ctx.phase("max", t0);
    let (cmd, v) = res
        .into_iter()
        .next()
        .ok_or_else(|| PerfError::Failed("no result".into()))?;
    let m = produce_metrics(&v);
    let rate = m["msgs_per_sec"];
    ctx.report.rows.push(Row {
        name: "max-closed-loop".into(),
        command: cmd,
        metrics: m,
    });
    Ok(rate)
}

fn latency(ctx: &mut Ctx) -> Result<()> {
    let secs = ctx.args.point_secs.unwrap_or(10).to_string();
    let broker = broker_of(ctx)?;
    create_topic_and_wait(ctx, &broker, "Latency", 8)?;
    println!("== maximum rate: closed loop, 1 KiB, 4 connections x 32 in flight");
    let max = max_rate(ctx, "Latency")?;
    println!("   {max:.0} msgs/s");
    ctx.summary("max_msgs_per_sec", max);
    let rtt = ctx
        .report
        .references
        .get("tcp_rtt_p50_us")
        .copied()
        .unwrap_or(0.0);
    for level in ctx.args.levels.clone() {
        let rate = (max * level / 100.0).max(1.0);
        let name = format!("load-{level:.0}pct");
        let rate_s = format!("{rate:.0}");
        let prod = s(&[
            "produce",
            "--topic",
            "Latency",
            "--size",
            "1024",
            "--connections",
            "4",
            "--inflight",
            "64",
            "--secs",
            &secs,
            "--rate",
            &rate_s,
        ]);
        let cons = s(&[
            "consume",
            "--topic",
            "Latency",
            "--group",
            &format!("lat_{level:.0}"),
            "--from",
            "last",
            "--connections",
            "2",
            "--secs",
            &secs,
        ]);
        let t0 = ctx.t();
        let res = ctx.run_together(vec![("consume", cons), ("produce", prod)])?;
        ctx.phase(&name, t0);
        let mut m = BTreeMap::new();
        let mut cmds = Vec::new();
        for (cmd, v) in &res {
            cmds.push(cmd.clone());
            if v["mode"] == "produce" {
                m.extend(produce_metrics(v));
            } else {
                m.extend(consume_metrics(v));
            }
        }
        m.insert("target_msgs_per_sec".into(), round(rate));
        // End-to-end latency has 1 ms resolution (protocol timestamps): the ratio that
        // means something is the send latency against the round trip.
        if rtt > 0.0 {
            m.insert(
                "send_p50_over_tcp_rtt".into(),
                round(m["send_p50_us"] / rtt),
            );
        }
        println!(
            "   {name:<12} target {rate:>8.0} got {:>8.0} msgs/s  send p50/p99/p999 {}/{}/{} us  e2e p50/p99/p999 {}/{}/{} us",
            m["msgs_per_sec"], m["send_p50_us"], m["send_p99_us"], m["send_p999_us"],
            m["e2e_p50_us"], m["e2e_p99_us"], m["e2e_p999_us"]
        );
        for k in ["send_p99_us", "e2e_p50_us", "e2e_p99_us", "e2e_p999_us"] {
            ctx.summary(&format!("{name}_{k}"), m[k]);
        }
        ctx.summary(
            &format!("{name}_achieved_over_target"),
            m["msgs_per_sec"] / rate,
        );
        ctx.report.rows.push(Row {
            name,
            command: cmds.join(" & "),
            metrics: m,
        });
    }
    Ok(())
}

fn queues(ctx: &mut Ctx) -> Result<()> {
    let secs = ctx.args.point_secs.unwrap_or(10).to_string();
    let broker = broker_of(ctx)?;
    let rate = format!("{:.0}", ctx.args.rate);
    let mut base: Option<BTreeMap<String, f64>> = None;
    for n in ctx.args.queue_counts.clone() {
        // The broker caps a topic at 1 024 queues: beyond, topics of 1 000.
        let (prefix, topics, per) = if n <= 1024 {
            (format!("Queues{n}"), 1usize, n)
        } else {
            (format!("Queues{n}"), n.div_ceil(1000), 1000)
        };
        let names: Vec<String> = if topics == 1 {
            vec![prefix.clone()]
        } else {
            (0..topics).map(|i| format!("{prefix}-{i}")).collect()
        };
        println!("== {n} queues ({topics} topic(s) of {per})");
        for t in &names {
            create_topic_and_wait(ctx, &broker, t, per as i32)?;
        }
        let topic_arg: Vec<String> = if topics == 1 {
            vec!["--topic".into(), prefix.clone()]
        } else {
            vec![
                "--topic".into(),
                prefix.clone(),
                "--topic-count".into(),
                topics.to_string(),
            ]
        };
        let mut prod = s(&[
            "produce",
            "--size",
            "1024",
            "--connections",
            "4",
            "--inflight",
            "64",
        ]);
        prod.extend(["--rate".into(), rate.clone(), "--secs".into(), secs.clone()]);
        prod.extend(topic_arg.clone());
        let mut cons = s(&["consume", "--from", "last", "--connections", "4"]);
        cons.extend([
            "--group".into(),
            format!("queues_{n}"),
            "--secs".into(),
            secs.clone(),
        ]);
        cons.extend(topic_arg);
        let t0 = ctx.t();
        let res = ctx.run_together(vec![("consume", cons), ("produce", prod)])?;
        let name = format!("{n}-queues");
        ctx.phase(&name, t0);
        let mut m = BTreeMap::new();
        let mut cmds = Vec::new();
        for (cmd, v) in &res {
            cmds.push(cmd.clone());
            if v["mode"] == "produce" {
                m.extend(produce_metrics(v));
            } else {
                m.extend(consume_metrics(v));
            }
        }
        if let Some(pid) = ctx.cluster.as_ref().and_then(Cluster::broker_pid) {
            if let Some(rss) = perf::host::rss_bytes(&pid.to_string()).map(|b| b as f64) {
                m.insert("broker_rss_mib".into(), round(rss / 1048576.0));
            }
        }
        if let Some(b) = &base {
            for k in ["msgs_per_sec", "send_p99_us", "e2e_p50_us", "e2e_p99_us"] {
                if b.get(k).copied().unwrap_or(0.0) > 0.0 {
                    m.insert(format!("{k}_over_first"), round(m[k] / b[k]));
                }
            }
        }
        println!(
            "   sent {:>8.0} msgs/s consumed {:>8.0} msgs/s  send p99 {} us  e2e p50/p99 {}/{} us  failures {}",
            m["msgs_per_sec"], m["consume_msgs_per_sec"], m["send_p99_us"], m["e2e_p50_us"],
            m["e2e_p99_us"], m["failures"]
        );
        for k in [
            "msgs_per_sec",
            "consume_msgs_per_sec",
            "send_p99_us",
            "e2e_p99_us",
        ] {
            ctx.summary(&format!("q{n}_{k}"), m[k]);
        }
        if base.is_none() {
            base = Some(m.clone());
        }
        ctx.report.rows.push(Row {
            name,
            command: cmds.join(" & "),
            metrics: m,
        });
    }
    Ok(())
}

/// Cumulative bytes a series file reports so far (rate x interval, summed).
fn series_total(path: &Path, key: &str) -> (f64, Option<Value>) {
    let Ok(f) = File::open(path) else {
        return (0.0, None);
    };
    let mut total = 0.0;
    let mut last_t = 0.0;
    let mut last = None;
    for line in BufReader::new(f).lines().map_while(|l| l.ok()) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let t = num(&v, &["t"]);
        total += num(&v, &[key]) * 1e6 * (t - last_t);
        last_t = t;
        last = Some(v);
    }
    (total, last)
}

fn soak(ctx: &mut Ctx) -> Result<()> {
    let gib_b = (1u64 << 30) as f64;
    let avail = disk::available_bytes(&ctx.args.data_dir).unwrap_or(0) as f64;
    let margin = ctx.args.disk_margin_gib * gib_b;
    let wanted = ctx.args.backlog_gib * gib_b;
    // The store also holds preallocated segments, queues and index (about 4 GiB here),
    // and production goes on while the group drains: a backlog B at produce rate r and
    // catch-up rate c writes B x c / (c - r) in all.
    let (r, c) = (ctx.args.rate_mb, ctx.args.expected_catchup_mb);
    let growth = if c > r { c / (c - r) } else { 2.0 };
    let room = (avail - margin - 4.0 * gib_b).max(0.0) / growth;
    let target = wanted.min(room);
    if target < (256u64 << 20) as f64 {
        return Err(PerfError::Failed(format!(
            "only {:.1} GiB free: no room for a backlog with a {:.0} GiB margin",
            avail / (1u64 << 30) as f64,
            ctx.args.disk_margin_gib
        )));
    }
    let gib = target / (1u64 << 30) as f64;
    let note = format!(
        "backlog target {gib:.1} GiB (asked {:.1} GiB; {:.1} GiB free, {:.0} GiB margin, \
         4 GiB store overhead, x{growth:.2} for production during a catch-up at {c:.0} MB/s)",
        ctx.args.backlog_gib,
        avail / gib_b,
        ctx.args.disk_margin_gib
    );
    println!("== {note}");
    ctx.report.notes.push(note);
    ctx.summary("backlog_target_gib", gib);
    let broker = broker_of(ctx)?;
    create_topic_and_wait(ctx, &broker, "Soak", 8)?;
    let size = ctx.args.size;
    let rate_msgs = ctx.args.rate_mb * 1e6 / size as f64;
    let stop = ctx.out.join("soak.stop");
    let stop_produce = ctx.out.join("soak.stop-produce");
    let pause = ctx.out.join("soak.pause");
    let _ = std::fs::remove_file(&stop);
    let _ = std::fs::remove_file(&stop_produce);
    File::create(&pause).map_err(io_err("create the pause file"))?;
    let long = (ctx.args.drain_timeout_secs * 4 + 3600).to_string();
    let mut prod = s(&[
        "produce",
        "--topic",
        "Soak",
        "--connections",
        "4",
        "--inflight",
        "64",
    ]);
    prod.extend([
        "--size".into(),
        size.to_string(),
        "--rate".into(),
        format!("{rate_msgs:.0}"),
        "--secs".into(),
        long.clone(),
        "--stop-file".into(),
        stop_produce.display().to_string(),
    ]);
    let mut cons = s(&[
        "consume", "--topic", "Soak", "--group", "soak", "--from", "first",
    ]);
    cons.extend([
        "--connections".into(),
        "4".into(),
        "--pull-batch".into(),
        ctx.args.pull_batch.to_string(),
        "--secs".into(),
        long,
        "--stop-file".into(),
        stop.display().to_string(),
        "--pause-file".into(),
        pause.display().to_string(),
    ]);
    let c = ctx.spawn_bench("consume", &cons)?;
    let p = ctx.spawn_bench("produce", &prod)?;
    let (pser, cser) = (p.series.clone(), c.series.clone());
    let commands = format!("{} & {}", p.command, c.command);
    let outcome = (|| -> Result<(f64, f64, f64, f64)> {
        // Accumulate.
        let t0 = ctx.t();
        let mut last_print = Instant::now();
        loop {
            sleep(Duration::from_millis(500))?;
            let (produced, _) = series_total(&pser, "send_mbps");
            if last_print.elapsed() > Duration::from_secs(15) {
                println!(
                    "   {:>6.0}s backlog {:.2} / {gib:.1} GiB, store {:.1} GiB",
                    ctx.t(),
                    produced / (1u64 << 30) as f64,
                    ctx.cluster.as_ref().map_or(0, Cluster::store_bytes) as f64
                        / (1u64 << 30) as f64
                );
                last_print = Instant::now();
            }
            if produced >= target {
                break;
            }
            if disk::available_bytes(&ctx.args.data_dir).unwrap_or(u64::MAX) as f64 <= margin / 2.0
            {
                ctx.report
                    .notes
                    .push("stopped accumulating early: free disk below half the margin".into());
                break;
            }
        }
        let (produced, _) = series_total(&pser, "send_mbps");
        let t_resume = ctx.t();
        ctx.phase("accumulate", t0);
        println!(
            "== backlog {:.2} GiB after {:.0} s; the group resumes",
            produced / (1u64 << 30) as f64,
            t_resume - t0
        );
        std::fs::remove_file(&pause).map_err(io_err("remove the pause file"))?;
        // Catch up: until the backlog is under one second of production.
        let mut drained_at = None;
        let mut last_print = Instant::now();
        while ctx.t() - t_resume < ctx.args.drain_timeout_secs as f64 {
            sleep(Duration::from_millis(500))?;
            let (consumed, last) = series_total(&cser, "consume_mbps");
            let backlog = last
                .as_ref()
                .map_or(f64::MAX, |v| num(v, &["backlog_msgs"]));
            let pulled = last
                .as_ref()
                .is_some_and(|v| !v["paused"].as_bool().unwrap_or(true));
            if last_print.elapsed() > Duration::from_secs(15) {
                println!(
                    "   {:>6.0}s consumed {:.2} GiB, backlog {backlog:.0} msgs",
                    ctx.t(),
                    consumed / (1u64 << 30) as f64
                );
                last_print = Instant::now();
            }
            if !stop_produce.exists()
                && (disk::available_bytes(&ctx.args.data_dir).unwrap_or(u64::MAX) as f64)
                    < margin / 2.0
            {
                let _ = File::create(&stop_produce);
                let note = format!(
                    "production stopped at {:.0} s: free disk below half the margin",
                    ctx.t()
                );
                println!("== {note}");
                ctx.report.notes.push(note);
            }
            if pulled && consumed > 0.0 && backlog < rate_msgs.max(1000.0) {
                drained_at = Some(ctx.t());
                break;
            }
        }
        let (consumed, _) = series_total(&cser, "consume_mbps");
        ctx.phase("catch-up", t_resume);
        let Some(drained) = drained_at else {
            ctx.report.notes.push(format!(
                "did not drain within {} s",
                ctx.args.drain_timeout_secs
            ));
            return Ok((produced, consumed, t_resume - t0, f64::NAN));
        };
        println!(
            "== drained after {:.0} s; 30 s of steady state",
            drained - t_resume
        );
        let t_steady = ctx.t();
        sleep(Duration::from_secs(30))?;
        ctx.phase("steady", t_steady);
        Ok((produced, consumed, t_resume - t0, drained - t_resume))
    })();
    let _ = File::create(&stop);
    let _ = File::create(&stop_produce);
    let pv = ctx.finish(p);
    let cv = ctx.finish(c);
    let _ = std::fs::remove_file(&stop);
    let _ = std::fs::remove_file(&stop_produce);
    let _ = std::fs::remove_file(&pause);
    let (produced, consumed, accumulate_s, drain_s) = outcome?;
    let (pv, cv) = (pv?, cv?);
    let mut m = produce_metrics(&pv);
    m.extend(consume_metrics(&cv));
    ctx.report.rows.push(Row {
        name: "whole-run".into(),
        command: commands,
        metrics: m,
    });
    // Per phase, from the series.
    let phases = ctx.report.phases.clone();
    let samples: Vec<Sample> = ctx.samples.values().cloned().collect();
    let in_phase = |name: &str| -> Vec<&Sample> {
        phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| {
                samples
                    .iter()
                    // The first seconds of the run are connection set-up and warm-up.
                    .filter(|s| s.t >= p.start_s.ceil().max(WARMUP_S) && s.t < p.end_s.floor())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mean = |v: &[&Sample], f: fn(&Sample) -> f64| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().map(|s| f(s)).sum::<f64>() / v.len() as f64
        }
    };
    let pct = |v: &[&Sample], f: fn(&Sample) -> f64, q: f64| {
        let mut x: Vec<f64> = v.iter().map(|s| f(s)).collect();
        x.sort_by(f64::total_cmp);
        x.get(((x.len() as f64 - 1.0) * q).round().max(0.0) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let acc = in_phase("accumulate");
    let cu = in_phase("catch-up");
    let produce_acc = mean(&acc, |s| s.produce_mbps);
    let produce_cu = mean(&cu, |s| s.produce_mbps);
    ctx.summary("backlog_gib", produced / (1u64 << 30) as f64);
    ctx.summary("accumulate_secs", accumulate_s);
    ctx.summary("drain_secs", drain_s);
    ctx.summary("consumed_gib", consumed / (1u64 << 30) as f64);
    ctx.summary("target_produce_mb_s", ctx.args.rate_mb);
    ctx.summary("accumulate_produce_mb_s", produce_acc);
    ctx.summary("catchup_produce_mb_s", produce_cu);
    ctx.summary(
        "catchup_over_accumulate_produce",
        if produce_acc > 0.0 {
            produce_cu / produce_acc
        } else {
            0.0
        },
    );
    ctx.summary(
        "accumulate_send_p99_us_median_second",
        pct(&acc, |s| s.send_p99_us, 0.5),
    );
    ctx.summary(
        "accumulate_send_p99_us_worst_second",
        pct(&acc, |s| s.send_p99_us, 1.0),
    );
    ctx.summary(
        "accumulate_send_p999_us_worst_second",
        pct(&acc, |s| s.send_p999_us, 1.0),
    );
    ctx.summary(
        "catchup_send_p99_us_median_second",
        pct(&cu, |s| s.send_p99_us, 0.5),
    );
    ctx.summary(
        "catchup_send_p99_us_worst_second",
        pct(&cu, |s| s.send_p99_us, 1.0),
    );
    ctx.summary(
        "catchup_send_p999_us_worst_second",
        pct(&cu, |s| s.send_p999_us, 1.0),
    );
    let cu_consume = mean(&cu, |s| s.consume_mbps);
    ctx.summary("catchup_consume_mb_s", cu_consume);
    if let Some(r) = ctx.report.references.get("disk_read_mb_s").copied() {
        ctx.summary("catchup_consume_over_disk_read", cu_consume / r);
    }
    let slowed = produce_acc > 0.0 && produce_cu < 0.95 * produce_acc;
    ctx.report.notes.push(format!(
        "producers {} during catch-up: {produce_cu:.1} MB/s against {produce_acc:.1} MB/s while accumulating",
        if slowed { "SLOWED" } else { "kept their rate" }
    ));
    Ok(())
}

fn recovery(ctx: &mut Ctx) -> Result<()> {
    if ctx.cluster.is_none() {
        return Err(PerfError::Failed(
            "recovery needs a managed broker (it kill -9s it): run it without --target".into(),
        ));
    }
    let broker = broker_of(ctx)?;
    create_topic_and_wait(ctx, &broker, "Fill", 8)?;
    let gib = ctx.args.fill_gib;
    let size = ctx.args.size;
    let count = (gib * (1u64 << 30) as f64 / size as f64) as u64;
    println!("== filling {gib} GiB ({count} messages of {size} B, batches of 32)");
    let a = vec![
        "produce".into(),
        "--topic".into(),
        "Fill".into(),
        "--size".into(),
        size.to_string(),
        "--batch".into(),
        "32".into(),
        "--connections".into(),
        "2".into(),
        "--inflight".into(),
        "8".into(),
        "--count".into(),
        count.to_string(),
        "--secs".into(),
        "7200".into(),
    ];
    let t0 = ctx.t();
    let res = ctx.run_together(vec![("fill", a)])?;
    ctx.phase("fill", t0);
    if let Some((cmd, v)) = res.into_iter().next() {
        ctx.summary("filled_gib", num(&v, &["bytes"]) / (1u64 << 30) as f64);
        ctx.report.rows.push(Row {
            name: "fill".into(),
            command: cmd,
            metrics: produce_metrics(&v),
        });
    }
    let store = ctx.cluster.as_ref().map_or(0, Cluster::store_bytes);
    ctx.summary("store_allocated_gib", store as f64 / (1u64 << 30) as f64);
    println!(
        "   store {:.2} GiB allocated (segments are preallocated)",
        store as f64 / (1u64 << 30) as f64
    );
    let mut times = BTreeMap::new();
    // kill -9 first, right after the fill, while checkpoints trail the log; then a clean
    // stop and start of the same store as the reference.
    for (label, kill9) in [("kill9-restart", true), ("clean-restart", false)] {
        let t0 = ctx.t();
        let c = ctx.cluster.as_mut().ok_or(PerfError::Interrupted)?;
        let stop_t = Instant::now();
        if kill9 {
            c.kill9_broker();
        } else {
            c.stop_broker(Duration::from_secs(120));
        }
        let stop_s = stop_t.elapsed().as_secs_f64();
        let started = Instant::now();
        let ready = c.start_broker(Duration::from_secs(600))?;
        let addr = c.broker_addr.clone();
        let mut first_send = None;
        let mut first_pull = None;
        while first_send.is_none() || first_pull.is_none() {
            if started.elapsed() > Duration::from_secs(600) {
                return Err(PerfError::Failed(format!(
                    "{label}: broker not serving after 600 s"
                )));
            }
            if let Ok(mut conn) = remoting::Conn::connect(&addr, Duration::from_secs(2)) {
                if first_send.is_none()
                    && remoting::send_one(&mut conn, "Fill", 0, b"probe").is_ok()
                {
                    first_send = Some(started.elapsed().as_secs_f64());
                }
                if first_pull.is_none()
                    && remoting::pull_one(&mut conn, "Fill", 1, 0).is_ok_and(|n| n > 0)
                {
                    first_pull = Some(started.elapsed().as_secs_f64());
                }
            }
            if first_send.is_none() || first_pull.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let log = ctx.out.join(format!("broker-{}.log", c.starts));
        let replayed = replayed_records(&std::fs::read_to_string(&log).unwrap_or_default());
        let m: BTreeMap<String, f64> = [
            ("replayed_records", replayed as f64),
            ("stop_secs", stop_s),
            ("ready_line_secs", ready.as_secs_f64()),
            ("first_send_secs", first_send.unwrap_or(0.0)),
            ("first_pull_secs", first_pull.unwrap_or(0.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), round(v)))
        .collect();
        println!(
            "   {label}: stop {stop_s:.3} s, {replayed} records replayed, ready line {:.3} s, first send {:.3} s, first pull {:.3} s",
            ready.as_secs_f64(),
            first_send.unwrap_or(0.0),
            first_pull.unwrap_or(0.0)
        );
        times.insert(label, m.clone());
        ctx.phase(label, t0);
        ctx.report.rows.push(Row {
            name: label.into(),
            command: if kill9 {
                "kill -9; broker"
            } else {
                "kill -TERM; broker"
            }
            .into(),
            metrics: m,
        });
        sleep(Duration::from_secs(1))?;
    }
    let k = &times["kill9-restart"];
    let c = &times["clean-restart"];
    ctx.summary("kill9_first_send_secs", k["first_send_secs"]);
    ctx.summary("kill9_first_pull_secs", k["first_pull_secs"]);
    ctx.summary("clean_first_send_secs", c["first_send_secs"]);
    if c["first_send_secs"] > 0.0 {
        ctx.summary(
            "kill9_over_clean_first_send",
            k["first_send_secs"] / c["first_send_secs"],
        );
    }
    if let Some(r) = ctx.report.references.get("disk_read_mb_s").copied() {
        // What reading the whole store once would take.
        let full_read = store as f64 / 1e6 / r;
        ctx.summary("full_store_read_secs_at_disk_speed", full_read);
        if full_read > 0.0 {
            ctx.summary(
                "kill9_first_send_over_full_read",
                k["first_send_secs"] / full_read,
            );
        }
    }
    Ok(())
}

/// Records the broker's shards replayed at start, from its log lines
/// (`... replayed_records: N ...`, with or without colour codes).
fn replayed_records(log: &str) -> u64 {
    log.match_indices("replayed_records: ")
        .map(|(i, m)| {
            log[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum()
}

// ---------------------------------------------------------------- driver

/// Averages neighbouring samples (rates) and keeps their worst latencies, so that long
/// runs stay small: at most `max` samples.
fn downsample(series: Vec<Sample>, max: usize) -> Vec<Sample> {
    if series.len() <= max || max == 0 {
        return series;
    }
    let k = series.len().div_ceil(max);
    series
        .chunks(k)
        .map(|c| {
            let n = c.len() as f64;
            let avg = |f: fn(&Sample) -> f64| c.iter().map(f).sum::<f64>() / n;
            let worst = |f: fn(&Sample) -> f64| c.iter().map(f).fold(0.0, f64::max);
            Sample {
                t: c[0].t,
                produce_tps: avg(|s| s.produce_tps),
                produce_mbps: avg(|s| s.produce_mbps),
                send_failures: c.iter().map(|s| s.send_failures).sum(),
                send_p50_us: avg(|s| s.send_p50_us),
                send_p99_us: worst(|s| s.send_p99_us),
                send_p999_us: worst(|s| s.send_p999_us),
                send_max_us: worst(|s| s.send_max_us),
                consume_tps: avg(|s| s.consume_tps),
                consume_mbps: avg(|s| s.consume_mbps),
                e2e_p50_us: avg(|s| s.e2e_p50_us),
                e2e_p99_us: worst(|s| s.e2e_p99_us),
                e2e_p999_us: worst(|s| s.e2e_p999_us),
                s2c_p99_us: worst(|s| s.s2c_p99_us),
                backlog_msgs: c[c.len() - 1].backlog_msgs,
            }
        })
        .collect()
}

fn rounded(s: Sample) -> Sample {
    Sample {
        t: s.t,
        produce_tps: round(s.produce_tps),
        produce_mbps: round(s.produce_mbps),
        send_failures: s.send_failures,
        send_p50_us: round(s.send_p50_us),
        send_p99_us: round(s.send_p99_us),
        send_p999_us: round(s.send_p999_us),
        send_max_us: round(s.send_max_us),
        consume_tps: round(s.consume_tps),
        consume_mbps: round(s.consume_mbps),
        e2e_p50_us: round(s.e2e_p50_us),
        e2e_p99_us: round(s.e2e_p99_us),
        e2e_p999_us: round(s.e2e_p999_us),
        s2c_p99_us: round(s.s2c_p99_us),
        backlog_msgs: s.backlog_msgs,
    }
}

fn write_report(ctx: &mut Ctx) -> Result<()> {
    let series: Vec<Sample> = ctx.samples.values().cloned().map(rounded).collect();
    ctx.report.series = downsample(series, 600);
    let json =
        report::to_json(&ctx.report).map_err(|e| PerfError::Failed(format!("report JSON: {e}")))?;
    let path = ctx.out.join("report.json");
    std::fs::write(&path, json).map_err(io_err(format!("write {}", path.display())))?;
    let svg = ctx.out.join("plot.svg");
    std::fs::write(&svg, report::svg(&ctx.report))
        .map_err(io_err(format!("write {}", svg.display())))?;
    println!("report: {}\nplot:   {}", path.display(), svg.display());
    Ok(())
}

fn run_scenario(args: ScenarioArgs) -> Result<()> {
    let start_ms = now_ms();
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(io_err("locate this binary"))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("perf-out").join(format!("{}-{}", date_of(start_ms), args.name))
    });
    std::fs::create_dir_all(&out).map_err(io_err(format!("create {}", out.display())))?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(io_err(format!("create {}", args.data_dir.display())))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut report = Report::new(&args.name, &command, start_ms);
    report.host = HostInfo::collect(&args.data_dir);
    let (cluster, namesrv) = match &args.target {
        Some(t) => (None, t.clone()),
        None => {
            println!(
                "== starting nameserver and broker from {} on {}",
                bin_dir.display(),
                args.data_dir.display()
            );
            let c = Cluster::start(&bin_dir, &args.data_dir, &out, &args.broker_arg)?;
            let ns = c.namesrv.clone();
            (Some(c), ns)
        }
    };
    report.target = report::Target {
        namesrv: namesrv.clone(),
        broker: None,
        managed: cluster.is_some(),
        broker_args: args.broker_arg.clone(),
    };
    let mut ctx = Ctx {
        args: args.clone(),
        bin_dir,
        out,
        namesrv,
        cluster,
        report,
        start_ms,
        samples: BTreeMap::new(),
        bench_no: 0,
    };
    ctx.report.target.broker = broker_of(&ctx).ok();
    ctx.report.broker_config = config_fingerprint(&ctx);
    references(&mut ctx)?;
    let result = match args.name.as_str() {
        "sweep" => sweep(&mut ctx),
        "soak" => soak(&mut ctx),
        "queues" => queues(&mut ctx),
        "latency" => latency(&mut ctx),
        "recovery" => recovery(&mut ctx),
        other => Err(PerfError::Failed(format!("unknown scenario {other}"))),
    };
    if let Err(e) = &result {
        ctx.report.notes.push(format!("scenario failed: {e}"));
    }
    // A sweep restarts the broker: fingerprint what it ended with too.
    if ctx.cluster.is_some() {
        let last = config_fingerprint(&ctx);
        if last.fingerprint != ctx.report.broker_config.fingerprint {
            ctx.report
                .notes
                .push(format!("broker config at the end: {}", last.fingerprint));
        }
    }
    let written = write_report(&mut ctx);
    drop(ctx.cluster.take());
    // The scratch directory goes too when this run left it empty.
    let _ = std::fs::remove_dir(&args.data_dir);
    result.and(written)
}

fn main() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let args = Args::parse();
    let result = match args.cmd {
        Cmd::Scenario(a) => run_scenario(*a),
        Cmd::Compare { a, b } => load(&a).and_then(|ra| {
            load(&b).map(|rb| {
                print!(
                    "{}",
                    report::compare(&ra, &rb, &a.display().to_string(), &b.display().to_string())
                )
            })
        }),
        Cmd::Plot { report: path, out } => load(&path).and_then(|r| {
            let out = out.unwrap_or_else(|| path.with_file_name("plot.svg"));
            std::fs::write(&out, report::svg(&r))
                .map_err(io_err(format!("write {}", out.display())))
        }),
    };
    if let Err(e) = result {
        eprintln!("rmq_perf: {e}");
        std::process::exit(1);
    }
}

fn load(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| PerfError::Failed(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_700_000_000_000), "2023-11-14");
        assert_eq!(date_of(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn downsample_keeps_worst_latency_and_mean_rate() {
        let series: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: i as f64,
                produce_mbps: i as f64,
                send_p99_us: if i == 3 { 900.0 } else { 100.0 },
                ..Sample::default()
            })
            .collect();
        let d = downsample(series, 5);
        assert_eq!(d.len(), 5);
        assert_eq!(d[1].t, 2.0);
        assert_eq!(d[1].produce_mbps, 2.5);
        assert_eq!(d[1].send_p99_us, 900.0);
        assert_eq!(d[0].send_p99_us, 100.0);
    }

    #[test]
    fn replayed_records_sum_over_shards() {
        let log = "x RecoveryStats { replayed_records: 12 } y\n\u{1b}[3mz replayed_records: 30 }";
        assert_eq!(replayed_records(log), 42);
        assert_eq!(replayed_records("nothing"), 0);
    }

    #[test]
    fn rounding_keeps_three_digits() {
        assert_eq!(round(1234.5678), 1234.6);
        assert_eq!(round(1.23456), 1.235);
        assert_eq!(round(f64::NAN), 0.0);
    }
}
