//! `storage_bench`: the storage commit log against the raw bandwidth of the disk it
//! runs on, both measured in one run, with ratios.
//!
//! ```text
//! storage_bench [--dir ./bench-data] [--size-mib 1024] [--record-bytes 1024] [--json FILE]
//! ```
//!
//! Phases, in order (each run stops at `--size-mib` bytes or after `--run-secs`):
//! 1. Built-in baseline on glommio `DmaFile` (through `storage::io::dma`), 1 MiB blocks:
//!    (a) O_DIRECT sequential write at `--queue-depth`, (c) O_DIRECT sequential read of
//!    it, (b) write + `fdatasync` after every MiB into a fallocated file (like a fresh
//!    segment) and (b') the same overwriting written blocks.
//! 2. The same with `fio`, when it is on `PATH` (skip with `--no-fio`): `--fio-engine`
//!    (libaio) for (a) and (c), psync with `--fdatasync=1` for (b) and (b').
//! 3. Commit-log appends, sync and async flush, for every in-flight depth of `--depths`
//!    (records in flight = appender tasks x batch size; each task yields after each
//!    batch, as a broker task does between requests).
//! 4. Sync appends on reused segments (retention's spares, written blocks: the steady
//!    state of a store older than its retention) at every depth of `--reuse-depths`,
//!    against the fresh (fallocated) segments of phase 3.
//! 5. A backlog written, then read back cold by a freshly opened log, then read again
//!    while appends continue (mixed), the same appends alone again (the solo rate on
//!    both sides of the mixed run), and appends paced at a quarter of the solo rate,
//!    alone and beside the reader.
//!
//! Every run executes in a child process of this binary (`--child`), with one glommio
//! executor: a closed commit log in sync mode keeps its flusher task, its open files and
//! its tail cache until the process exits (one process for all runs would keep
//! gigabytes of deleted segments allocated), and storage's device probe runs once per
//! process while glommio caches polled-I/O support per thread (a second executor thread
//! fails its reads with EOPNOTSUPP on this project's virtio disks).

/// The broker's allocator, so that the store is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use perf::devstat::{self, Delta};
use perf::fio;
use perf::host::HostInfo;
use perf::latency::{self, Latency};
use protocol::message::record::{RecordWriter, BLANK_MAGIC, END_FILE_MIN_BLANK_LENGTH};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use storage::commitlog::{global_offset, spare_name, split_offset};
use storage::io::dma::DmaBackend;
use storage::io::{Backend, BackendFile};
use storage::{CommitLog, CommitLogConfig, FlushMode};

const MIB: u64 = 1 << 20;
const SEGMENT_BYTES: u64 = 1 << 30;
const MAX_RECORD_BYTES: usize = 4 << 20;
/// Cache of the log that reads the backlog cold: small (a fresh log's cache is empty
/// anyway; reads never fill it).
const COLD_CACHE_BYTES: usize = 16 << 20;
const TOPIC: &str = "BenchTopic";
const ASYNC_MAX_UNWRITTEN: u64 = 64 << 20;
const ASYNC_SYNC_INTERVAL: Duration = Duration::from_millis(500);
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Baseline block size.
const BLOCK_BYTES: u64 = MIB;

#[derive(Parser, Debug, Clone, Serialize)]
#[command(
    name = "storage_bench",
    about = "Benchmarks the storage commit log against raw disk bandwidth measured in the same run"
)]
struct Args {
    /// Directory to benchmark in; created if missing. Only the bench-* entries this tool
    /// creates are removed afterwards (and the directory, if it is left empty).
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    /// Bytes written (or read) per run, in MiB; every run also stops after --run-secs.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Size of one commit-log record as stored (header, topic and body), in bytes.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Also write every number, the configuration and the host description here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Records in flight per append run (appender tasks x batch size).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256,1024,4096")]
    depths: Vec<usize>,
    /// Most concurrent appender tasks; the batch is depth / tasks records.
    #[arg(long, default_value_t = 16)]
    tasks: usize,
    /// Time limit of each run, in seconds.
    #[arg(long, default_value_t = 8.0)]
    run_secs: f64,
    /// Concurrent 1 MiB I/Os of the O_DIRECT baselines.
    #[arg(long, default_value_t = 16)]
    queue_depth: usize,
    /// Size of one commit-log read, in KiB.
    #[arg(long, default_value_t = 512)]
    read_kib: usize,
    /// Concurrent commit-log reads for the cold-read runs; the mixed run uses the largest.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    read_depths: Vec<usize>,
    /// Records in flight of the appends that write the backlog and run in the mixed run.
    #[arg(long, default_value_t = 1024)]
    mixed_depth: usize,
    /// Depths of the sync runs on reused segments (retention's spares), compared with
    /// the fresh segments of the same depth in `--depths`.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048,4096")]
    reuse_depths: Vec<usize>,
    /// Tail cache of the appending logs, in MiB.
    #[arg(long, default_value_t = 256)]
    cache_mib: usize,
    /// Commit-log write chunk, in KiB.
    #[arg(long, default_value_t = 4096)]
    chunk_kib: usize,
    /// A run stops early when the process's resident memory passes this (MiB); the
    /// process is killed at twice this.
    #[arg(long, default_value_t = 3072)]
    max_rss_mib: u64,
    /// fio engine of the queued O_DIRECT jobs (a) and (c). On a fresh fallocated file
    /// fio's io_uring engine writes at about half the speed of libaio or glommio here
    /// (its writes past EOF are punted to io-wq workers).
    #[arg(long, default_value = "libaio")]
    fio_engine: String,
    /// Skip fio even when it is on PATH.
    #[arg(long)]
    no_fio: bool,
    /// Internal: run one job (JSON) and print its result.
    #[arg(long, hide = true)]
    #[serde(skip)]
    child: Option<String>,
}

// ---------------------------------------------------------------------------------
// Jobs run in child processes, and their results.

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Job {
    Baseline(BaselineJob),
    Append(AppendJob),
    Cold(ColdJob),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BaselineJob {
    dir: PathBuf,
    size_bytes: u64,
    queue_depth: usize,
    run_secs: f64,
}

/// One measured stream of I/O.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Rate {
    bytes: u64,
    secs: f64,
    mib_s: f64,
    /// Per operation (1 MiB write, write + fdatasync, or one commit-log read).
    latency: Latency,
    /// What ended the run: size, time, stopped.
    stop: String,
    dev: Option<Delta>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BaselineResult {
    /// (a) O_DIRECT sequential write, `queue_depth` in flight, fallocated file; time to
    /// complete the writes (the final fdatasync is not counted).
    direct_write: Rate,
    /// (c) O_DIRECT sequential read of (a)'s file.
    direct_read: Rate,
    /// (b) write + fdatasync per MiB, one at a time, into a fresh fallocated file.
    sync_write_fallocated: Rate,
    /// (b') the same, overwriting (a)'s written blocks.
    sync_write_overwrite: Rate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppendJob {
    dir: PathBuf,
    sync: bool,
    depth: usize,
    tasks: usize,
    record_bytes: usize,
    target_bytes: u64,
    run_secs: f64,
    chunk_bytes: usize,
    cache_bytes: usize,
    /// Spare segments (written blocks, as retention leaves them) put in the directory
    /// before the log opens: the steady state of a broker older than its retention.
    #[serde(default)]
    spares: usize,
    max_rss_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppendResult {
    /// `sync` or `async`.
    mode: String,
    /// `fallocated` (fresh segments) or `reused` (retention's spares).
    segments: String,
    /// Records in flight: tasks x batch.
    depth: usize,
    tasks: usize,
    batch: usize,
    records: u64,
    bytes: u64,
    /// From the first append until every record is acknowledged (sync) or written to
    /// the file (async).
    secs: f64,
    mib_s: f64,
    records_s: f64,
    /// Per batch: from `append` until `wait_acked` returns.
    latency: Latency,
    /// What ended the run: size, time, rss (memory guard), stopped.
    stop: String,
    /// Opening the log (creating and preallocating its first segment, or renaming a
    /// spare into place).
    open_secs: f64,
    /// Async: from the last acknowledgement until everything was written.
    drain_secs: f64,
    dev: Option<Delta>,
    peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ColdJob {
    dir: PathBuf,
    depth: usize,
    tasks: usize,
    record_bytes: usize,
    target_bytes: u64,
    run_secs: f64,
    chunk_bytes: usize,
    cache_bytes: usize,
    read_bytes: usize,
    read_depths: Vec<usize>,
    max_rss_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ReadRun {
    depth: usize,
    range_bytes: usize,
    rate: Rate,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ColdResult {
    /// The backlog, written by async appends on a fresh log: the solo append rate.
    backlog: AppendResult,
    backlog_bytes: u64,
    /// Opening the written log again (recovery scan) with a small cache.
    reopen_secs: f64,
    reads: Vec<ReadRun>,
    /// What `CommitLog::read` does with a range from a segment's end blank to the
    /// segment's end.
    blank_tail_read: String,
    /// Opening the log again for the mixed run (recovery scan).
    mixed_reopen_secs: f64,
    /// Async appends while a reader reads the cold backlog (wrapping around).
    mixed_append: AppendResult,
    mixed_read: ReadRun,
    /// The same appends again right after, without the reader: the solo rate measured
    /// on either side of the mixed run.
    #[serde(default)]
    solo_after: AppendResult,
    /// Appends paced at a quarter of the backlog's rate, alone and then beside the
    /// reader: a producer that leaves the disk room for a catching-up consumer.
    #[serde(default)]
    paced_solo: AppendResult,
    #[serde(default)]
    paced_append: AppendResult,
    #[serde(default)]
    paced_read: ReadRun,
    peak_rss_mib: f64,
}

// ---------------------------------------------------------------------------------
// Child side.

fn child_main(spec: &str) -> ExitCode {
    let job: Job = match serde_json::from_str(spec) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("storage_bench --child: bad job: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The I/O memory a broker shard reserves for the same log configuration.
    let io_memory = match &job {
        Job::Baseline(_) => None,
        Job::Append(j) => Some(log_config(&j.dir, j.sync, j.chunk_bytes, j.cache_bytes)),
        Job::Cold(j) => Some(log_config(&j.dir, false, j.chunk_bytes, j.cache_bytes)),
    }
    .map(|c| c.io_memory_bytes());
    let mut builder = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound);
    if let Some(bytes) = io_memory {
        builder = builder.io_memory(bytes);
    }
    let ran = builder
        .name("storage-bench")
        .spawn(move || async move {
            match job {
                Job::Baseline(j) => encode(baseline_job(j).await),
                Job::Append(j) => encode(append_job(j).await),
                Job::Cold(j) => encode(cold_job(j).await),
            }
        })
        .map_err(|e| e.to_string())
        .and_then(|h| h.join().map_err(|e| e.to_string()));
    match ran {
        Ok(line) => {
            println!("RESULT {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("storage_bench --child: executor failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn encode<T: Serialize>(r: Result<T, String>) -> String {
    serde_json::to_string(&r).unwrap_or_else(|e| format!("{{\"Err\":\"unencodable result: {e}\"}}"))
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn secs(d: f64) -> Duration {
    Duration::from_secs_f64(d.max(0.0))
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / MIB as f64 / secs
    } else {
        0.0
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Watches resident memory: trips (runs stop) past `limit`, kills the process at twice it.
#[derive(Debug)]
struct Guard {
    limit: u64,
    tripped: Cell<bool>,
    peak: Cell<u64>,
}

impl Guard {
    fn start(limit: u64) -> Rc<Self> {
        let guard = Rc::new(Self {
            limit,
            tripped: Cell::new(false),
            peak: Cell::new(0),
        });
        let watched = guard.clone();
        glommio::spawn_local(async move {
            loop {
                watched.sample();
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
        })
        .detach();
        guard
    }

    fn sample(&self) {
        let Some(rss) = perf::host::rss_bytes("self") else {
            return;
        };
        self.peak.set(self.peak.get().max(rss));
        if rss > self.limit {
            self.tripped.set(true);
        }
        if rss > 2 * self.limit {
            eprintln!(
                "storage_bench: resident memory {} MiB passed twice the limit of {} MiB; giving up",
                rss / MIB,
                self.limit / MIB
            );
            std::process::exit(3);
        }
    }

    fn peak_mib(&self) -> f64 {
        self.sample();
        self.peak.get() as f64 / MIB as f64
    }
}

fn dev_snapshot(dev: &Option<devstat::Device>) -> Option<devstat::Snapshot> {
    dev.as_ref().and_then(devstat::Device::snapshot)
}

fn dev_delta(dev: &Option<devstat::Device>, before: Option<devstat::Snapshot>) -> Option<Delta> {
    Some(dev_snapshot(dev)?.delta_since(&before?))
}

/// The first set reason wins.
#[derive(Debug, Default)]
struct StopReason(Cell<Option<&'static str>>);

impl StopReason {
    fn set(&self, why: &'static str) {
        if self.0.get().is_none() {
            self.0.set(Some(why));
        }
    }

    fn get(&self) -> String {
        self.0.get().unwrap_or("size").to_owned()
    }
}

/// What the workers of one measured stream of I/O share: bytes done, latencies, and
/// why they stopped; [`Meter::finish`] waits for them and sums it up.
struct Meter {
    done: Cell<u64>,
    hist: RefCell<hdrhistogram::Histogram<u64>>,
    reason: StopReason,
    before: Option<devstat::Snapshot>,
    start: Instant,
}

impl Meter {
    fn start(dev: &Option<devstat::Device>) -> Rc<Self> {
        Rc::new(Self {
            done: Cell::new(0),
            hist: RefCell::new(latency::histogram()),
            reason: StopReason::default(),
            before: dev_snapshot(dev),
            start: Instant::now(),
        })
    }

    /// One operation of `bytes`, started at `t0`, is done.
    fn record(&self, bytes: u64, t0: Instant) {
        latency::record(&mut self.hist.borrow_mut(), t0.elapsed());
        self.done.set(self.done.get() + bytes);
    }

    async fn finish(
        &self,
        workers: Vec<glommio::Task<Result<(), String>>>,
        dev: &Option<devstat::Device>,
    ) -> Result<Rate, String> {
        for w in workers {
            w.await?;
        }
        let secs = self.start.elapsed().as_secs_f64();
        Ok(Rate {
            bytes: self.done.get(),
            secs,
            mib_s: mib_s(self.done.get(), secs),
            latency: Latency::of(&self.hist.borrow()),
            stop: self.reason.get(),
            dev: dev_delta(dev, self.before),
        })
    }
}

// --- Baseline ---

async fn baseline_job(job: BaselineJob) -> Result<BaselineResult, String> {
    let backend = DmaBackend;
    backend
        .create_dir_all(&job.dir)
        .await
        .map_err(|e| err("create dir", e))?;
    let dev = devstat::Device::of(&job.dir);
    let path = job.dir.join("baseline-direct.dat");
    let file = Rc::new(backend.create(&path).await.map_err(|e| err("create", e))?);
    file.allocate(job.size_bytes)
        .await
        .map_err(|e| err("fallocate", e))?;

    let direct_write = direct_io(
        &file,
        &dev,
        false,
        job.size_bytes,
        job.queue_depth,
        job.run_secs,
    )
    .await?;
    file.sync().await.map_err(|e| err("fdatasync", e))?;
    let direct_read = direct_io(
        &file,
        &dev,
        true,
        direct_write.bytes,
        job.queue_depth,
        job.run_secs,
    )
    .await?;
    let sync_write_overwrite = synced_writes(&file, &dev, direct_write.bytes, job.run_secs).await?;
    drop(file);
    let _ = std::fs::remove_file(&path);

    let path = job.dir.join("baseline-sync.dat");
    let file = Rc::new(backend.create(&path).await.map_err(|e| err("create", e))?);
    file.allocate(job.size_bytes)
        .await
        .map_err(|e| err("fallocate", e))?;
    let sync_write_fallocated = synced_writes(&file, &dev, job.size_bytes, job.run_secs).await?;
    drop(file);
    let _ = std::fs::remove_file(&path);

    Ok(BaselineResult {
        direct_write,
        direct_read,
        sync_write_fallocated,
        sync_write_overwrite,
    })
}

type DmaFile = <DmaBackend as Backend>::File;

/// Sequential 1 MiB O_DIRECT writes or reads over `[0, size)`, `depth` in flight.
async fn direct_io(
    file: &Rc<DmaFile>,
    dev: &Option<devstat::Device>,
    read: bool,
    size: u64,
    depth: usize,
    run_secs: f64,
) -> Result<Rate, String> {
    let mut buf = file.alloc(BLOCK_BYTES as usize);
    buf.as_mut().fill(0xa5);
    let buf = Rc::new(buf);
    let next = Rc::new(Cell::new(0u64));
    let meter = Meter::start(dev);
    let deadline = meter.start + secs(run_secs);
    let workers: Vec<_> = (0..depth.max(1))
        .map(|_| {
            let (file, buf, next, meter) = (file.clone(), buf.clone(), next.clone(), meter.clone());
            glommio::spawn_local(async move {
                loop {
                    let pos = next.get();
                    if pos + BLOCK_BYTES > size {
                        meter.reason.set("size");
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        meter.reason.set("time");
                        return Ok(());
                    }
                    next.set(pos + BLOCK_BYTES);
                    let t0 = Instant::now();
                    let n = if read {
                        file.read_at(pos, BLOCK_BYTES as usize)
                            .await
                            .map(|p| p.len())
                    } else {
                        file.write_at(buf.clone(), pos).await
                    }
                    .map_err(|e| err(if read { "read" } else { "write" }, e))?;
                    if n as u64 != BLOCK_BYTES {
                        return Err(format!("short I/O: {n} of {BLOCK_BYTES} bytes at {pos}"));
                    }
                    meter.record(BLOCK_BYTES, t0);
                }
            })
        })
        .collect();
    meter.finish(workers, dev).await
}

/// 1 MiB write then fdatasync, one at a time, over `[0, size)`.
async fn synced_writes(
    file: &Rc<DmaFile>,
    dev: &Option<devstat::Device>,
    size: u64,
    run_secs: f64,
) -> Result<Rate, String> {
    let mut buf = file.alloc(BLOCK_BYTES as usize);
    buf.as_mut().fill(0x5a);
    let buf = Rc::new(buf);
    let mut hist = latency::histogram();
    let before = dev_snapshot(dev);
    let start = Instant::now();
    let deadline = start + secs(run_secs);
    let mut pos = 0;
    let stop = loop {
        if pos + BLOCK_BYTES > size {
            break "size";
        }
        if Instant::now() >= deadline {
            break "time";
        }
        let t0 = Instant::now();
        let n = file
            .write_at(buf.clone(), pos)
            .await
            .map_err(|e| err("write", e))?;
        if n as u64 != BLOCK_BYTES {
            return Err(format!("short write: {n} of {BLOCK_BYTES} bytes at {pos}"));
        }
        file.sync().await.map_err(|e| err("fdatasync", e))?;
        latency::record(&mut hist, t0.elapsed());
        pos += BLOCK_BYTES;
    };
    let secs = start.elapsed().as_secs_f64();
    Ok(Rate {
        bytes: pos,
        secs,
        mib_s: mib_s(pos, secs),
        latency: Latency::of(&hist),
        stop: stop.to_owned(),
        dev: dev_delta(dev, before),
    })
}

// --- Commit log ---

fn log_config(dir: &Path, sync: bool, chunk_bytes: usize, cache_bytes: usize) -> CommitLogConfig {
    CommitLogConfig {
        segment_bytes: SEGMENT_BYTES,
        chunk_bytes,
        cache_bytes,
        max_record_bytes: MAX_RECORD_BYTES,
        preallocate: true,
        flush: if sync {
            FlushMode::Sync {
                timeout: SYNC_TIMEOUT,
            }
        } else {
            FlushMode::Async {
                max_unwritten_bytes: ASYNC_MAX_UNWRITTEN,
                sync_interval: ASYNC_SYNC_INTERVAL,
            }
        },
        ..CommitLogConfig::new(dir, 0)
    }
}

fn writer(body: &[u8]) -> RecordWriter<'_> {
    RecordWriter {
        queue_id: 0,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: now_millis(),
        born_host: SocketAddr::from(([127, 0, 0, 1], 5000)),
        store_timestamp: 0,
        store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        topic: TOPIC,
        properties: b"",
    }
}

/// Bytes of a stored record around its body.
fn record_overhead() -> Result<usize, String> {
    writer(&[])
        .encoded_len()
        .map_err(|e| err("record encoding", e))
}

/// Body length that makes a stored record `record_bytes` long.
fn body_len(record_bytes: usize) -> Result<usize, String> {
    let overhead = record_overhead()?;
    record_bytes.checked_sub(overhead).ok_or_else(|| {
        format!("--record-bytes {record_bytes} is below the {overhead}-byte record overhead")
    })
}

/// How appenders run.
#[derive(Debug, Clone)]
struct AppendPlan {
    sync: bool,
    depth: usize,
    tasks: usize,
    record_bytes: usize,
    target_bytes: u64,
    run_secs: f64,
    /// Appenders issue no faster than this (a producer that does not saturate the disk).
    rate_bytes_s: Option<f64>,
}

/// N appender tasks, each appending batches of B records and waiting for their
/// acknowledgement, until the target, the time limit, the memory guard or `stop`.
async fn drive_appends<B: Backend>(
    log: &CommitLog<B>,
    plan: &AppendPlan,
    guard: &Rc<Guard>,
    stop: &Rc<Cell<bool>>,
    dev: &Option<devstat::Device>,
) -> Result<AppendResult, String> {
    let tasks = plan.tasks.clamp(1, plan.depth.max(1));
    let batch = (plan.depth / tasks).max(1);
    let batch_bytes = (batch * plan.record_bytes) as u64;
    let rate = plan.rate_bytes_s;
    let body = Rc::new(vec![0x42u8; body_len(plan.record_bytes)?]);
    let issued = Rc::new(Cell::new(0u64));
    let acked = Rc::new(Cell::new(0u64));
    let hist = Rc::new(RefCell::new(latency::histogram()));
    let reason = Rc::new(StopReason::default());
    let before = dev_snapshot(dev);
    let start = Instant::now();
    let deadline = start + secs(plan.run_secs);
    let target = plan.target_bytes;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (log, body, issued, acked, hist, reason, guard, stop) = (
                log.clone(),
                body.clone(),
                issued.clone(),
                acked.clone(),
                hist.clone(),
                reason.clone(),
                guard.clone(),
                stop.clone(),
            );
            glommio::spawn_local(async move {
                let mut records: Vec<RecordWriter<'_>> =
                    (0..batch).map(|_| writer(&body)).collect();
                loop {
                    if stop.get() {
                        reason.set("stopped");
                        return Ok(());
                    }
                    if guard.tripped.get() {
                        reason.set("rss");
                        return Ok(());
                    }
                    if issued.get() + batch_bytes > target {
                        reason.set("size");
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        reason.set("time");
                        return Ok(());
                    }
                    issued.set(issued.get() + batch_bytes);
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64(issued.get() as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            glommio::timer::sleep(due - now).await;
                        }
                    }
                    let t0 = Instant::now();
                    let appended = log
                        .append(&mut records, now_millis())
                        .await
                        .map_err(|e| err("append", e))?;
                    log.wait_acked(appended.end)
                        .await
                        .map_err(|e| err("wait_acked", e))?;
                    latency::record(&mut hist.borrow_mut(), t0.elapsed());
                    acked.set(acked.get() + batch as u64);
                    // A broker's connection task awaits the next request between
                    // batches, and network completions bring the executor back to its
                    // reactor, where disk completions are reaped and new writes
                    // submitted. A task that only yields stays in the run queue, and
                    // glommio polls I/O only when the queue drains or its preempt
                    // timer (100 ms) fires; a short timer wait goes through the
                    // reactor, as a request would.
                    glommio::timer::sleep(Duration::from_micros(1)).await;
                }
            })
        })
        .collect();
    let mut first_error = None;
    for h in handles {
        if let Err(e) = h.await {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let last_ack = Instant::now();
    if !plan.sync {
        // Async acknowledges up to ASYNC_MAX_UNWRITTEN ahead of the file: wait until
        // everything is written (`wait_acked` waits for `end - max_unwritten`).
        let (_, end) = split_offset(log.max_offset());
        log.wait_acked(end + ASYNC_MAX_UNWRITTEN)
            .await
            .map_err(|e| err("drain", e))?;
    }
    let secs = start.elapsed().as_secs_f64();
    let records = acked.get();
    let bytes = records * plan.record_bytes as u64;
    let latency = Latency::of(&hist.borrow());
    Ok(AppendResult {
        mode: if plan.sync { "sync" } else { "async" }.to_owned(),
        segments: "fallocated".to_owned(),
        depth: tasks * batch,
        tasks,
        batch,
        records,
        bytes,
        secs,
        mib_s: mib_s(bytes, secs),
        records_s: if secs > 0.0 {
            records as f64 / secs
        } else {
            0.0
        },
        latency,
        stop: reason.get(),
        open_secs: 0.0,
        drain_secs: last_ack.elapsed().as_secs_f64(),
        dev: dev_delta(dev, before),
        peak_rss_mib: 0.0,
    })
}

/// Largest write of [`write_spares`].
const SPARE_FILL_BYTES: usize = 4 << 20;

/// `n` segment-sized files of written blocks (zeros, written with O_DIRECT and synced)
/// named as retention names spares.
async fn write_spares(dir: &Path, n: usize) -> Result<(), String> {
    for i in 0..n {
        let path = dir.join(spare_name(i as u64 * SEGMENT_BYTES));
        let file = DmaBackend
            .create(&path)
            .await
            .map_err(|e| err("create spare", e))?;
        let mut pos = 0;
        while pos < SEGMENT_BYTES {
            let len = (SEGMENT_BYTES - pos).min(SPARE_FILL_BYTES as u64) as usize;
            let mut buf = file.alloc(len);
            buf.as_mut().fill(0);
            let n = file
                .write_at(Rc::new(buf), pos)
                .await
                .map_err(|e| err("write spare", e))?;
            if n != len {
                return Err(format!("short spare write: {n} of {len} bytes at {pos}"));
            }
            pos += len as u64;
        }
        file.sync().await.map_err(|e| err("sync spare", e))?;
    }
    Ok(())
}

async fn append_job(job: AppendJob) -> Result<AppendResult, String> {
    let guard = Guard::start(job.max_rss_bytes);
    std::fs::create_dir_all(&job.dir).map_err(|e| err("create dir", e))?;
    let dev = devstat::Device::of(&job.dir);
    let mut config = log_config(&job.dir, job.sync, job.chunk_bytes, job.cache_bytes);
    if job.spares > 0 {
        write_spares(&job.dir, job.spares).await?;
        config.spare_segments = job.spares;
    }
    let plan = AppendPlan {
        sync: job.sync,
        depth: job.depth,
        tasks: job.tasks,
        record_bytes: job.record_bytes,
        target_bytes: job.target_bytes,
        run_secs: job.run_secs,
        rate_bytes_s: None,
    };
    let stop = Rc::new(Cell::new(false));
    let t0 = Instant::now();
    let log = CommitLog::open(DmaBackend, config)
        .await
        .map_err(|e| err("open", e))?;
    let open_secs = t0.elapsed().as_secs_f64();
    let mut result = drive_appends(&log, &plan, &guard, &stop, &dev).await?;
    log.close().await.map_err(|e| err("close", e))?;
    result.open_secs = open_secs;
    if job.spares > 0 {
        result.segments = "reused".to_owned();
    }
    result.peak_rss_mib = guard.peak_mib();
    Ok(result)
}

// --- Cold read and mixed ---

/// `[pos, pos+len)` ranges covering the records of a log of fixed-size records that
/// ends at `end`, at most `range` bytes each, never crossing a segment's end blank.
fn data_ranges(end: u64, record_bytes: u64, range: u64) -> Vec<(u64, u64)> {
    let per_segment = (SEGMENT_BYTES - END_FILE_MIN_BLANK_LENGTH as u64) / record_bytes;
    let mut out = Vec::new();
    let mut seg = 0;
    while seg < end {
        let data_end = (seg + per_segment * record_bytes).min(end);
        let mut pos = seg;
        while pos < data_end {
            let len = range.min(data_end - pos);
            out.push((pos, len));
            pos += len;
        }
        seg += SEGMENT_BYTES;
    }
    out
}

/// Reads `ranges` in order with `depth` reads in flight, until done (or, when
/// `wrap`, around again until `stop`), or the deadline.
async fn read_ranges<B: Backend>(
    log: &CommitLog<B>,
    ranges: &Rc<Vec<(u64, u64)>>,
    depth: usize,
    deadline: Instant,
    wrap: bool,
    stop: &Rc<Cell<bool>>,
    dev: &Option<devstat::Device>,
) -> Result<Rate, String> {
    if ranges.is_empty() {
        return Err("nothing to read".to_owned());
    }
    let cursor = Rc::new(Cell::new(0usize));
    let meter = Meter::start(dev);
    let workers: Vec<_> = (0..depth.max(1))
        .map(|_| {
            let (log, ranges, cursor, meter, stop) = (
                log.clone(),
                ranges.clone(),
                cursor.clone(),
                meter.clone(),
                stop.clone(),
            );
            glommio::spawn_local(async move {
                let reason = &meter.reason;
                loop {
                    if stop.get() {
                        reason.set("stopped");
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        reason.set("time");
                        return Ok(());
                    }
                    let mut i = cursor.get();
                    if i >= ranges.len() {
                        if !wrap {
                            reason.set("size");
                            return Ok(());
                        }
                        i %= ranges.len();
                    }
                    cursor.set(i + 1);
                    let (pos, len) = ranges[i];
                    let t0 = Instant::now();
                    let data = log
                        .read(global_offset(log.shard(), pos), len as usize)
                        .await
                        .map_err(|e| err("read", e))?;
                    if data.len() as u64 != len {
                        return Err(format!("read {} of {len} bytes at {pos}", data.len()));
                    }
                    meter.record(len, t0);
                }
            })
        })
        .collect();
    meter.finish(workers, dev).await
}

/// Checks that every full segment ends with a blank where the fixed-size layout puts it,
/// and tries to read from that blank to the segment's end.
async fn check_blanks<B: Backend>(
    log: &CommitLog<B>,
    end: u64,
    record_bytes: u64,
) -> Result<String, String> {
    let per_segment = (SEGMENT_BYTES - END_FILE_MIN_BLANK_LENGTH as u64) / record_bytes;
    let mut probe = "no full segment".to_owned();
    let mut seg = 0;
    while seg + SEGMENT_BYTES <= end {
        let blank = seg + per_segment * record_bytes;
        let head = log
            .read(global_offset(log.shard(), blank), END_FILE_MIN_BLANK_LENGTH)
            .await
            .map_err(|e| err("read blank", e))?;
        let magic = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if magic != BLANK_MAGIC {
            return Err(format!(
                "no end-of-segment blank at {blank}: the record layout is not as modelled"
            ));
        }
        if seg == 0 {
            let tail = (seg + SEGMENT_BYTES - blank) as usize;
            probe = match log.read(global_offset(log.shard(), blank), tail).await {
                Ok(p) => format!(
                    "read({blank}, {tail}) from the blank to the segment end: ok, {} bytes",
                    p.len()
                ),
                Err(e) => {
                    format!("read({blank}, {tail}) from the blank to the segment end: error: {e}")
                }
            };
        }
        seg += SEGMENT_BYTES;
    }
    Ok(probe)
}

async fn cold_job(job: ColdJob) -> Result<ColdResult, String> {
    let guard = Guard::start(job.max_rss_bytes);
    std::fs::create_dir_all(&job.dir).map_err(|e| err("create dir", e))?;
    let dev = devstat::Device::of(&job.dir);
    let no_stop = Rc::new(Cell::new(false));
    let plan = AppendPlan {
        sync: false,
        depth: job.depth,
        tasks: job.tasks,
        record_bytes: job.record_bytes,
        target_bytes: job.target_bytes,
        run_secs: job.run_secs,
        rate_bytes_s: None,
    };

    // The backlog: a solo async append run.
    // An async log on the job's directory with `cache` bytes of tail cache, and the
    // seconds opening it (recovery) took.
    let (dir, chunk_bytes) = (&job.dir, job.chunk_bytes);
    let open = |cache: usize| async move {
        let t0 = Instant::now();
        let log = CommitLog::open(DmaBackend, log_config(dir, false, chunk_bytes, cache))
            .await
            .map_err(|e| err("open", e))?;
        Ok::<_, String>((log, t0.elapsed().as_secs_f64()))
    };
    let close = |log: CommitLog<DmaBackend>| async move {
        log.close().await.map_err(|e| err("close", e))?;
        drop(log);
        // The closed async log's flusher ends within a sync interval.
        glommio::timer::sleep(ASYNC_SYNC_INTERVAL * 2).await;
        Ok::<_, String>(())
    };

    let (log, open_secs) = open(job.cache_bytes).await?;
    let mut backlog = drive_appends(&log, &plan, &guard, &no_stop, &dev).await?;
    backlog.open_secs = open_secs;
    let (_, backlog_end) = split_offset(log.max_offset());
    close(log).await?;

    // Cold reads: a fresh log has nothing of the backlog in memory.
    let (log, reopen_secs) = open(COLD_CACHE_BYTES).await?;
    let (_, end) = split_offset(log.max_offset());
    if end != backlog_end {
        return Err(format!(
            "reopened log ends at {end}, the backlog ended at {backlog_end}"
        ));
    }
    let ranges = Rc::new(data_ranges(
        backlog_end,
        job.record_bytes as u64,
        job.read_bytes as u64,
    ));
    let blank_tail_read = check_blanks(&log, backlog_end, job.record_bytes as u64).await?;
    let mut reads = Vec::new();
    for &depth in &job.read_depths {
        let deadline = Instant::now() + secs(job.run_secs);
        let rate = read_ranges(&log, &ranges, depth, deadline, false, &no_stop, &dev).await?;
        reads.push(ReadRun {
            depth,
            range_bytes: job.read_bytes,
            rate,
        });
    }
    close(log).await?;

    // Mixed: appends as in the backlog run, while a reader goes over the backlog.
    let (log, mixed_reopen_secs) = open(job.cache_bytes).await?;
    let read_depth = job.read_depths.iter().copied().max().unwrap_or(1);
    let mixed = |plan: AppendPlan| {
        let (log, ranges, guard, no_stop, dev) = (
            log.clone(),
            ranges.clone(),
            guard.clone(),
            no_stop.clone(),
            dev.clone(),
        );
        async move {
            let reader_stop = Rc::new(Cell::new(false));
            let reader = {
                let (log, reader_stop, dev) = (log.clone(), reader_stop.clone(), dev.clone());
                let deadline = Instant::now() + secs(plan.run_secs * 2.0);
                glommio::spawn_local(async move {
                    read_ranges(
                        &log,
                        &ranges,
                        read_depth,
                        deadline,
                        true,
                        &reader_stop,
                        &dev,
                    )
                    .await
                })
            };
            let appended = drive_appends(&log, &plan, &guard, &no_stop, &dev).await;
            reader_stop.set(true);
            let read = reader.await;
            Ok::<_, String>((
                appended?,
                ReadRun {
                    depth: read_depth,
                    range_bytes: job.read_bytes,
                    rate: read?,
                },
            ))
        }
    };
    let (mut mixed_append, mixed_read) = mixed(plan.clone()).await?;
    mixed_append.open_secs = mixed_reopen_secs;
    let mut solo_after = drive_appends(&log, &plan, &guard, &no_stop, &dev).await?;

    // Paced: a producer at a quarter of the solo rate, alone and beside the reader.
    let paced = AppendPlan {
        rate_bytes_s: Some(backlog.mib_s * MIB as f64 / 4.0),
        target_bytes: u64::MAX / 2,
        ..plan.clone()
    };
    let mut paced_solo = drive_appends(&log, &paced, &guard, &no_stop, &dev).await?;
    let (mut paced_append, paced_read) = mixed(paced).await?;
    log.close().await.map_err(|e| err("close", e))?;

    let peak_rss_mib = guard.peak_mib();
    backlog.peak_rss_mib = peak_rss_mib;
    for run in [
        &mut mixed_append,
        &mut solo_after,
        &mut paced_solo,
        &mut paced_append,
    ] {
        run.peak_rss_mib = peak_rss_mib;
    }
    Ok(ColdResult {
        backlog,
        backlog_bytes: backlog_end,
        reopen_secs,
        reads,
        blank_tail_read,
        mixed_reopen_secs,
        mixed_append,
        mixed_read,
        solo_after,
        paced_solo,
        paced_append,
        paced_read,
        peak_rss_mib,
    })
}

// ---------------------------------------------------------------------------------
// Parent side.

/// Runs `job` in a child process of this binary.
fn run_child<T: DeserializeOwned>(job: &Job) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| err("current exe", e))?;
    let spec = serde_json::to_string(job).map_err(|e| err("encode job", e))?;
    let out = Command::new(exe)
        .arg("--child")
        .arg(spec)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| err("start child", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("child exited with {} and no result", out.status))?;
    let result: Result<T, String> =
        serde_json::from_str(line).map_err(|e| err("decode child result", e))?;
    result
}

#[derive(Debug, Clone, Serialize)]
struct FioRun {
    label: String,
    outcome: Option<fio::Outcome>,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Ratio {
    name: String,
    value: f64,
    numerator_mib_s: f64,
    denominator_mib_s: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Config {
    segment_bytes: u64,
    chunk_bytes: usize,
    cache_bytes: usize,
    record_bytes: usize,
    record_body_bytes: usize,
    topic: &'static str,
    async_max_unwritten_bytes: u64,
    async_sync_interval_ms: u64,
    cold_read_cache_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    tool: &'static str,
    started_unix_ms: i64,
    total_secs: f64,
    args: Args,
    config: Config,
    host: HostInfo,
    baseline: Option<BaselineResult>,
    fio_version: Option<String>,
    fio: Vec<FioRun>,
    appends: Vec<AppendResult>,
    /// Sync appends on reused segments.
    reused: Vec<AppendResult>,
    cold: Option<ColdResult>,
    ratios: Vec<Ratio>,
    errors: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(spec) = &args.child {
        return child_main(spec);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: &Args) -> Result<usize, String> {
    let body = body_len(args.record_bytes)?;
    if args.record_bytes > MAX_RECORD_BYTES {
        return Err(format!("--record-bytes is above {MAX_RECORD_BYTES}"));
    }
    if args.size_mib == 0 || args.run_secs <= 0.0 {
        return Err("--size-mib and --run-secs must be positive".to_owned());
    }
    let all_depths = args
        .depths
        .iter()
        .chain(&args.read_depths)
        .chain(&args.reuse_depths)
        .chain([&args.mixed_depth, &args.tasks, &args.queue_depth]);
    if all_depths.clone().any(|d| *d == 0) {
        return Err("depths, --tasks and --queue-depth must be at least 1".to_owned());
    }
    if args.chunk_kib == 0
        || !args.chunk_kib.is_multiple_of(4)
        || (args.chunk_kib << 10) as u64 > SEGMENT_BYTES / 2
    {
        return Err(
            "--chunk-kib must be a positive multiple of 4, at most half a segment".to_owned(),
        );
    }
    if args.read_kib == 0 || args.read_depths.is_empty() {
        return Err("--read-kib and --read-depths must not be empty".to_owned());
    }
    Ok(body)
}

/// Free bytes of the filesystem holding `dir`, from `df`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

struct Workspace {
    dir: PathBuf,
    created: bool,
}

impl Workspace {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("bench-{name}"))
    }

    /// A fresh run directory (removed first if a previous run left it).
    fn fresh(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    fn remove(&self, name: &str) {
        let p = self.path(name);
        if p.exists() {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                eprintln!("storage_bench: cannot remove {}: {e}", p.display());
            }
        }
    }

    fn finish(&self) {
        if self.created {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let body = validate(&args)?;
    let started = Instant::now();
    let started_unix_ms = now_millis();
    let created = !args.dir.exists();
    std::fs::create_dir_all(&args.dir).map_err(|e| err("create --dir", e))?;
    let ws = Workspace {
        dir: args.dir.clone(),
        created,
    };
    let result = run_phases(&args, &ws, body, started, started_unix_ms);
    ws.finish();
    result
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[storage_bench] {}", msg.as_ref());
}

fn run_phases(
    args: &Args,
    ws: &Workspace,
    body: usize,
    started: Instant,
    started_unix_ms: i64,
) -> Result<(), String> {
    let size = args.size_mib * MIB;
    let cache_bytes = args.cache_mib << 20;
    let chunk_bytes = args.chunk_kib << 10;
    let max_rss_bytes = args.max_rss_mib * MIB;
    let host = HostInfo::collect(&args.dir);
    // The largest footprint: the cold/mixed phase's three preallocated segments.
    let need = (3 * SEGMENT_BYTES).max(size + SEGMENT_BYTES);
    if let Some(free) = free_bytes(&args.dir) {
        if free < need + SEGMENT_BYTES {
            return Err(format!(
                "{} has {} MiB free; the benchmark needs about {} MiB plus 1 GiB of headroom",
                args.dir.display(),
                free / MIB,
                need / MIB
            ));
        }
    }
    let mut errors = Vec::new();

    progress(format!(
        "built-in baseline: O_DIRECT write QD{} / read / write+fdatasync per MiB, up to {} MiB or {}s each",
        args.queue_depth, args.size_mib, args.run_secs
    ));
    let baseline_dir = ws.fresh("baseline");
    let baseline = run_child::<BaselineResult>(&Job::Baseline(BaselineJob {
        dir: baseline_dir,
        size_bytes: size,
        queue_depth: args.queue_depth,
        run_secs: args.run_secs,
    }));
    ws.remove("baseline");
    let baseline = match baseline {
        Ok(b) => Some(b),
        Err(e) => {
            errors.push(format!("built-in baseline: {e}"));
            progress(format!("built-in baseline FAILED: {e}"));
            None
        }
    };

    let fio_version = if args.no_fio { None } else { fio::available() };
    let mut fio_runs = Vec::new();
    if let Some(v) = &fio_version {
        progress(format!("{v} baseline"));
        let dir = ws.fresh("fio");
        std::fs::create_dir_all(&dir).map_err(|e| err("create fio dir", e))?;
        let job = |name: &str, file: &str, read: bool, sync: bool| fio::Job {
            name: name.to_owned(),
            file: dir.join(file),
            read,
            iodepth: args.queue_depth,
            engine: args.fio_engine.clone(),
            fdatasync_each: sync,
            size_bytes: size,
            runtime_secs: args.run_secs.ceil() as u64,
        };
        let jobs = [
            (
                "(a) O_DIRECT write",
                job("direct-write", "a.dat", false, false),
            ),
            (
                "(c) O_DIRECT read",
                job("direct-read", "a.dat", true, false),
            ),
            (
                "(b') write+fdatasync/MiB, overwrite",
                job("sync-write-overwrite", "a.dat", false, true),
            ),
            (
                "(b) write+fdatasync/MiB, fallocated",
                job("sync-write-fallocated", "b.dat", false, true),
            ),
        ];
        for (label, job) in jobs {
            let r = job.run();
            if let Err(e) = &r {
                errors.push(format!("fio {label}: {e}"));
            }
            fio_runs.push(FioRun {
                label: label.to_owned(),
                outcome: r.as_ref().ok().cloned(),
                error: r.err(),
            });
        }
        ws.remove("fio");
    } else if !args.no_fio {
        progress("fio not on PATH: built-in baseline only");
    }

    // One child run, reported as it ends; a failure is recorded under `label`.
    let append = |label: String,
                  name: &str,
                  sync: bool,
                  depth: usize,
                  spares: usize,
                  errors: &mut Vec<String>| {
        progress(format!("commit log {label}"));
        let dir = ws.fresh(name);
        let r = run_child::<AppendResult>(&Job::Append(AppendJob {
            dir,
            sync,
            depth,
            tasks: args.tasks,
            record_bytes: args.record_bytes,
            target_bytes: size,
            run_secs: args.run_secs,
            chunk_bytes,
            cache_bytes,
            spares,
            max_rss_bytes,
        }));
        ws.remove(name);
        match r {
            Ok(r) => {
                progress(format!(
                    "  {:.1} MiB/s, p99 {} us, stopped by {}",
                    r.mib_s, r.latency.p99_us, r.stop
                ));
                Some(r)
            }
            Err(e) => {
                progress(format!("  FAILED: {e}"));
                errors.push(format!("{label}: {e}"));
                None
            }
        }
    };

    let mut appends = Vec::new();
    for sync in [true, false] {
        let mode = if sync { "sync" } else { "async" };
        for &depth in &args.depths {
            let label = format!("{mode}, depth {depth}");
            let name = format!("{mode}-{depth}");
            appends.extend(append(label, &name, sync, depth, 0, &mut errors));
        }
    }

    // A spare for every segment the run can reach, the one created ahead included.
    let spares = size.div_ceil(SEGMENT_BYTES) as usize + 1;
    let mut reused = Vec::new();
    for &depth in &args.reuse_depths {
        let label = format!("sync, depth {depth}, {spares} reused segments");
        let name = format!("reused-{depth}");
        reused.extend(append(label, &name, true, depth, spares, &mut errors));
    }

    progress(format!(
        "cold read and mixed: backlog of up to {} MiB at depth {}",
        args.size_mib, args.mixed_depth
    ));
    let cold_dir = ws.fresh("cold");
    let cold = run_child::<ColdResult>(&Job::Cold(ColdJob {
        dir: cold_dir,
        depth: args.mixed_depth,
        tasks: args.tasks,
        record_bytes: args.record_bytes,
        target_bytes: size,
        run_secs: args.run_secs,
        chunk_bytes,
        cache_bytes,
        read_bytes: args.read_kib << 10,
        read_depths: args.read_depths.clone(),
        max_rss_bytes,
    }));
    ws.remove("cold");
    let cold = match cold {
        Ok(c) => Some(c),
        Err(e) => {
            progress(format!("  FAILED: {e}"));
            errors.push(format!("cold read / mixed: {e}"));
            None
        }
    };

    let ratios = ratios(
        baseline.as_ref(),
        &fio_runs,
        &appends,
        &reused,
        cold.as_ref(),
    );
    let report = Report {
        tool: "storage_bench",
        started_unix_ms,
        total_secs: started.elapsed().as_secs_f64(),
        args: args.clone(),
        config: Config {
            segment_bytes: SEGMENT_BYTES,
            chunk_bytes,
            cache_bytes,
            record_bytes: args.record_bytes,
            record_body_bytes: body,
            topic: TOPIC,
            async_max_unwritten_bytes: ASYNC_MAX_UNWRITTEN,
            async_sync_interval_ms: ASYNC_SYNC_INTERVAL.as_millis() as u64,
            cold_read_cache_bytes: COLD_CACHE_BYTES,
        },
        host,
        baseline,
        fio_version,
        fio: fio_runs,
        appends,
        reused,
        cold,
        ratios,
        errors,
    };
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| err("encode JSON", e))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| err(&format!("write {}", path.display()), e))?;
        progress(format!("wrote {}", path.display()));
    }
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} run(s) failed", report.errors.len()))
    }
}

fn fio_mib_s(runs: &[FioRun], prefix: &str) -> Option<f64> {
    runs.iter()
        .find(|r| r.label.starts_with(prefix))
        .and_then(|r| r.outcome.as_ref())
        .map(|o| o.mib_s)
}

fn best<'a>(runs: &'a [AppendResult], mode: &str) -> Option<&'a AppendResult> {
    runs.iter()
        .filter(|r| r.mode == mode)
        .max_by(|a, b| a.mib_s.total_cmp(&b.mib_s))
}

fn ratios(
    baseline: Option<&BaselineResult>,
    fio_runs: &[FioRun],
    appends: &[AppendResult],
    reused: &[AppendResult],
    cold: Option<&ColdResult>,
) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut push = |name: String, num: f64, den: Option<f64>| {
        if let Some(den) = den.filter(|d| *d > 0.0) {
            out.push(Ratio {
                name,
                value: num / den,
                numerator_mib_s: num,
                denominator_mib_s: den,
            });
        }
    };
    let b = baseline;
    if let Some(a) = best(appends, "async") {
        let n = format!("best async append (depth {})", a.depth);
        push(
            format!("{n} / built-in O_DIRECT write"),
            a.mib_s,
            b.map(|b| b.direct_write.mib_s),
        );
        push(
            format!("{n} / fio O_DIRECT write"),
            a.mib_s,
            fio_mib_s(fio_runs, "(a)"),
        );
    }
    if let Some(s) = best(appends, "sync") {
        let n = format!("best sync append (depth {})", s.depth);
        push(
            format!("{n} / built-in write+fdatasync per MiB (fallocated)"),
            s.mib_s,
            b.map(|b| b.sync_write_fallocated.mib_s),
        );
        push(
            format!("{n} / fio write+fdatasync per MiB (fallocated)"),
            s.mib_s,
            fio_mib_s(fio_runs, "(b)"),
        );
    }
    for r in reused {
        let n = format!("sync append depth {}, reused segments", r.depth);
        push(
            format!("{n} / fio write+fdatasync per MiB (fallocated)"),
            r.mib_s,
            fio_mib_s(fio_runs, "(b)"),
        );
        push(
            format!("{n} / fio write+fdatasync per MiB (overwrite)"),
            r.mib_s,
            fio_mib_s(fio_runs, "(b')"),
        );
        push(
            format!("{n} / built-in write+fdatasync per MiB (overwrite)"),
            r.mib_s,
            b.map(|b| b.sync_write_overwrite.mib_s),
        );
        let fresh = appends
            .iter()
            .find(|a| a.mode == "sync" && a.depth == r.depth);
        push(
            format!("{n} / fresh (fallocated) segments"),
            r.mib_s,
            fresh.map(|a| a.mib_s),
        );
    }
    if let Some(c) = cold {
        if let Some(r) = c.reads.iter().max_by_key(|r| r.depth) {
            let n = format!("cold read ({} KiB x {})", r.range_bytes >> 10, r.depth);
            push(
                format!("{n} / built-in O_DIRECT read"),
                r.rate.mib_s,
                b.map(|b| b.direct_read.mib_s),
            );
            push(
                format!("{n} / fio O_DIRECT read"),
                r.rate.mib_s,
                fio_mib_s(fio_runs, "(c)"),
            );
        }
        // Solo measured before and after the mixed run: the machine drifts between runs.
        let solo = if c.solo_after.mib_s > 0.0 {
            (c.backlog.mib_s + c.solo_after.mib_s) / 2.0
        } else {
            c.backlog.mib_s
        };
        push(
            format!(
                "mixed append / solo append (async, depth {}; solo before and after)",
                c.backlog.depth
            ),
            c.mixed_append.mib_s,
            Some(solo),
        );
        if let Some(r) = c.reads.iter().find(|r| r.depth == c.mixed_read.depth) {
            push(
                format!("mixed read / solo cold read (depth {})", r.depth),
                c.mixed_read.rate.mib_s,
                Some(r.rate.mib_s),
            );
            if c.paced_solo.mib_s > 0.0 {
                push(
                    "paced append beside the reader / paced append alone".to_owned(),
                    c.paced_append.mib_s,
                    Some(c.paced_solo.mib_s),
                );
                push(
                    format!(
                        "read beside paced appends / solo cold read (depth {})",
                        r.depth
                    ),
                    c.paced_read.rate.mib_s,
                    Some(r.rate.mib_s),
                );
                push(
                    "read beside paced appends / fio O_DIRECT read".to_owned(),
                    c.paced_read.rate.mib_s,
                    fio_mib_s(fio_runs, "(c)"),
                );
            }
        }
    }
    out
}

// --- Human report ---

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn dev_cols(d: &Option<Delta>, logical: u64) -> String {
    match d {
        Some(d) => format!(
            "{:>8.0} {:>6} {:>7} {:>5.2}",
            d.write_bytes as f64 / MIB as f64,
            d.write_ios,
            d.flush_ios,
            if logical > 0 {
                d.write_bytes as f64 / logical as f64
            } else {
                0.0
            }
        ),
        None => format!("{:>8} {:>6} {:>7} {:>5}", "-", "-", "-", "-"),
    }
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    let h = &r.host;
    let disk = h
        .bench_disk
        .as_ref()
        .and_then(|name| h.disks.iter().find(|d| &d.name == name));
    let _ = writeln!(s, "\n== storage_bench ==");
    let _ = writeln!(
        s,
        "host: {}, {} cores, {} RAM, kernel {}",
        h.cpu_model,
        h.cores,
        gib(h.ram_bytes),
        h.kernel
    );
    if let Some(d) = disk {
        let _ = writeln!(
            s,
            "disk: {} model={} vendor={} size={} rotational={} cache={}; fs: {}",
            d.name,
            d.model.as_deref().unwrap_or("unknown"),
            d.vendor.as_deref().unwrap_or("unknown"),
            d.size_bytes.map_or("?".to_owned(), gib),
            d.rotational.map_or("?".to_owned(), |r| r.to_string()),
            d.write_cache.as_deref().unwrap_or("?"),
            h.bench_fs.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(
        s,
        "dir {}, up to {} MiB or {} s per run; records {} B (body {} B, topic {}); segment {} MiB, chunk {} MiB, cache {} MiB; async: max unwritten {} MiB, sync every {} ms",
        r.args.dir.display(),
        r.args.size_mib,
        r.args.run_secs,
        r.config.record_bytes,
        r.config.record_body_bytes,
        r.config.topic,
        r.config.segment_bytes >> 20,
        r.config.chunk_bytes >> 20,
        r.config.cache_bytes >> 20,
        r.config.async_max_unwritten_bytes >> 20,
        r.config.async_sync_interval_ms,
    );

    let _ = writeln!(s, "\n-- Raw disk baseline (1 MiB blocks, O_DIRECT) --");
    let _ = writeln!(
        s,
        "{:<48} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "", "built-in", "p50 us", "p99 us", "fio", "fio p99"
    );
    let fio_of = |p: &str| {
        r.fio
            .iter()
            .find(|f| f.label.starts_with(p))
            .and_then(|f| f.outcome.as_ref())
    };
    let rows: [(&str, &str, Option<&Rate>); 4] = [
        (
            "(a) seq write, QD",
            "(a)",
            r.baseline.as_ref().map(|b| &b.direct_write),
        ),
        (
            "(b) write+fdatasync/MiB, fallocated",
            "(b)",
            r.baseline.as_ref().map(|b| &b.sync_write_fallocated),
        ),
        (
            "(b') write+fdatasync/MiB, overwrite",
            "(b')",
            r.baseline.as_ref().map(|b| &b.sync_write_overwrite),
        ),
        (
            "(c) seq read, QD",
            "(c)",
            r.baseline.as_ref().map(|b| &b.direct_read),
        ),
    ];
    for (label, key, rate) in rows {
        let label = if label.ends_with("QD") {
            format!("{label}{} (MiB/s)", r.args.queue_depth)
        } else {
            format!("{label} (MiB/s)")
        };
        let built = rate.map_or(format!("{:>9} {:>9} {:>9}", "-", "-", "-"), |x| {
            format!(
                "{:>9.1} {:>9} {:>9}",
                x.mib_s, x.latency.p50_us, x.latency.p99_us
            )
        });
        let f = fio_of(key).map_or(format!("{:>9} {:>8}", "-", "-"), |o| {
            let p99 = o.sync_p99_us.map_or(o.clat_p99_us, |sp| sp + o.clat_p99_us);
            format!("{:>9.1} {:>8.0}", o.mib_s, p99)
        });
        let _ = writeln!(s, "{label:<48} {built} {f}");
    }
    let _ = writeln!(
        s,
        "(built-in: glommio DmaFile, latency per 1 MiB op; fio p99 = completion p99, plus fdatasync p99 for (b)/(b'))"
    );
    if let Some(v) = &r.fio_version {
        let _ = writeln!(
            s,
            "fio: {v}, engine {} for (a)/(c), psync for (b)/(b')",
            r.args.fio_engine
        );
    }
    for f in &r.fio {
        if let Some(e) = &f.error {
            let _ = writeln!(s, "fio {} failed: {e}", f.label);
        }
    }

    let header = format!(
        "{:<6} {:>5} {:>5} {:>5} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>5} {:>8} {:>6} {:>7} {:>5} {:>7} {:>5}",
        "mode", "depth", "tasks", "batch", "MiB/s", "rec/s", "p50 us", "p99 us", "p999 us", "max us", "vs b",
        "dev MiB", "w-IOs", "flushes", "W-amp", "RSS MiB", "stop"
    );
    let append_row = |a: &AppendResult, base: Option<f64>| {
        format!(
            "{:<6} {:>5} {:>5} {:>5} {:>8.1} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>5} {} {:>7.0} {:>5}",
            a.mode,
            a.depth,
            a.tasks,
            a.batch,
            a.mib_s,
            a.records_s,
            a.latency.p50_us,
            a.latency.p99_us,
            a.latency.p999_us,
            a.latency.max_us,
            base.filter(|b| *b > 0.0)
                .map_or("-".to_owned(), |b| format!("{:.2}", a.mib_s / b)),
            dev_cols(&a.dev, a.bytes),
            a.peak_rss_mib,
            a.stop
        )
    };
    let _ = writeln!(
        s,
        "\n-- Commit log appends (latency per batch, append -> wait_acked; 'vs b' = sync / (b), async / (a)) --"
    );
    let _ = writeln!(
        s,
        "(stop: size/time = run limits; rss = the memory guard (--max-rss-mib) ended the run early. dev = whole-device counters during the run; W-amp = device bytes written / record bytes)"
    );
    let _ = writeln!(s, "{header}");
    for a in &r.appends {
        let base = r.baseline.as_ref().map(|b| {
            if a.mode == "sync" {
                b.sync_write_fallocated.mib_s
            } else {
                b.direct_write.mib_s
            }
        });
        let _ = writeln!(s, "{}", append_row(a, base));
    }

    if !r.reused.is_empty() {
        let _ = writeln!(
            s,
            "\n-- Sync appends on reused segments (retention's spares: written blocks, the steady state; 'vs b' = / (b') overwrite) --"
        );
        let _ = writeln!(s, "{header}");
        for a in &r.reused {
            let base = r.baseline.as_ref().map(|b| b.sync_write_overwrite.mib_s);
            let _ = writeln!(s, "{}", append_row(a, base));
        }
    }

    if let Some(c) = &r.cold {
        let _ = writeln!(
            s,
            "\n-- Cold read (fresh CommitLog, cache {} MiB) and mixed --",
            r.config.cold_read_cache_bytes >> 20
        );
        let _ = writeln!(
            s,
            "backlog {} MiB written by async appends at depth {}: {:.1} MiB/s (solo); reopen (recovery) {:.2} s",
            c.backlog_bytes / MIB,
            c.backlog.depth,
            c.backlog.mib_s,
            c.reopen_secs
        );
        let _ = writeln!(
            s,
            "{:<38} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
            "", "MiB/s", "p50 us", "p99 us", "max us", "vs (c)", "dev rd MiB", "stop"
        );
        let base = r
            .baseline
            .as_ref()
            .map(|b| b.direct_read.mib_s)
            .filter(|b| *b > 0.0);
        let mut read_rows: Vec<(&str, &ReadRun)> =
            c.reads.iter().map(|rr| ("cold read", rr)).collect();
        read_rows.push(("mixed read", &c.mixed_read));
        if c.paced_solo.mib_s > 0.0 {
            read_rows.push(("read beside paced appends", &c.paced_read));
        }
        for (what, rr) in read_rows {
            let label = format!("{what} {} KiB x {}", rr.range_bytes >> 10, rr.depth);
            let _ = writeln!(
                s,
                "{label:<38} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
                rr.rate.mib_s,
                rr.rate.latency.p50_us,
                rr.rate.latency.p99_us,
                rr.rate.latency.max_us,
                base.map_or("-".to_owned(), |b| format!("{:.2}", rr.rate.mib_s / b)),
                rr.rate.dev.map_or("-".to_owned(), |d| format!(
                    "{:.0}",
                    d.read_bytes as f64 / MIB as f64
                )),
                rr.rate.stop
            );
        }
        let _ = writeln!(s, "{header}");
        let _ = writeln!(s, "{}   (solo: backlog)", append_row(&c.backlog, None));
        let _ = writeln!(
            s,
            "{}   (mixed; reopen {:.2} s)",
            append_row(&c.mixed_append, None),
            c.mixed_reopen_secs
        );
        if c.paced_solo.mib_s > 0.0 {
            let _ = writeln!(s, "{}   (solo, after)", append_row(&c.solo_after, None));
            let _ = writeln!(
                s,
                "{}   (paced at 1/4 of the backlog rate, alone)",
                append_row(&c.paced_solo, None)
            );
            let _ = writeln!(
                s,
                "{}   (paced, beside the reader)",
                append_row(&c.paced_append, None)
            );
        }
        let _ = writeln!(s, "probe: {}", c.blank_tail_read);
    }

    let _ = writeln!(s, "\n-- Ratios --");
    for x in &r.ratios {
        let _ = writeln!(
            s,
            "{:<92} {:>6.2}  ({:.1} / {:.1} MiB/s)",
            x.name, x.value, x.numerator_mib_s, x.denominator_mib_s
        );
    }
    for e in &r.errors {
        let _ = writeln!(s, "ERROR: {e}");
    }
    let _ = writeln!(s, "total {:.0} s", r.total_secs);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stop_at_each_segment_blank() {
        let r = 1000u64;
        let per = (SEGMENT_BYTES - 8) / r;
        let end = SEGMENT_BYTES + 5 * r;
        let ranges = data_ranges(end, r, 512 << 10);
        let total: u64 = ranges.iter().map(|(_, l)| l).sum();
        assert_eq!(total, per * r + 5 * r);
        assert!(ranges.iter().all(|(p, l)| {
            let seg = p - p % SEGMENT_BYTES;
            p + l <= seg + per * r
        }));
        assert_eq!(ranges.last().copied(), Some((SEGMENT_BYTES, 5 * r)));
    }

    #[test]
    fn body_fills_the_record() {
        let body = vec![0u8; body_len(1024).unwrap()];
        assert_eq!(writer(&body).encoded_len().unwrap(), 1024);
        assert!(body_len(10).is_err());
    }
}
