//! Appends records to a commit log on real files (O_DIRECT, sync flush) until killed,
//! announcing every acknowledged record on stdout, while retention deletes the oldest
//! segments beyond [`KEEP_SEGMENTS`] (keeping them as spares that become new segments),
//! so kills also land amid renames, hole punches and reuse. Driven by `tests/crash.rs`,
//! which kills it with SIGKILL and checks that every announced record survived unless
//! retention deleted its segment.
//!
//! ```text
//! crash_appender --dir DIR --seed N
//! ```
//!
//! Output, one line each, stdout flushed after every batch:
//! - `READY <max_offset>` once the log is open (recovered);
//! - `ACK <physical_offset> <size> <counter>` for each record of a batch, printed only
//!   after `wait_acked` returned `Ok` for the batch.
//!
//! Record `counter` has queue offset `counter` and body [`body`]`(counter)`; counters
//! start at `seed << 32`, so runs with distinct seeds never repeat one.

use protocol::message::record::RecordWriter;
use std::cell::Cell;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;
use storage::io::dma::DmaBackend;
use storage::{CommitLog, CommitLogConfig, FlushMode};

/// Concurrent appender tasks.
const TASKS: u64 = 4;
/// Segments retention keeps; `tests/crash.rs` has a copy.
const KEEP_SEGMENTS: usize = 24;
const LARGEST_BODY: usize = 20 * 1024;

/// The commit-log configuration; `tests/crash.rs` opens the log with the same one.
fn config(dir: PathBuf) -> CommitLogConfig {
    CommitLogConfig {
        segment_bytes: 1 << 20,
        chunk_bytes: 64 << 10,
        max_record_bytes: 64 << 10,
        cache_bytes: 4 << 20,
        flush: FlushMode::Sync {
            timeout: Duration::from_secs(30),
        },
        ..CommitLogConfig::new(dir, 0)
    }
}

/// splitmix64: a well-mixed hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Body of record `counter`: its little-endian bytes repeated, 10 B to 20 KiB long
/// (one record in eight is large, the rest under 1 KiB). `tests/crash.rs` has a copy.
fn body(counter: u64) -> Vec<u8> {
    let h = mix(counter);
    let len = if h.is_multiple_of(8) {
        10 + (h >> 8) as usize % (LARGEST_BODY - 10 + 1)
    } else {
        10 + (h >> 8) as usize % 1014
    };
    let mut body = counter.to_le_bytes().repeat(len.div_ceil(8));
    body.truncate(len);
    body
}

fn writer(body: &[u8], counter: u64) -> RecordWriter<'_> {
    RecordWriter {
        queue_id: 0,
        flag: 0,
        queue_offset: counter as i64,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: SocketAddr::from(([127, 0, 0, 1], 5000)),
        store_timestamp: 0,
        store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        topic: "CrashTest",
        properties: b"",
    }
}

/// xorshift64 for batch sizes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(mix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Args {
    dir: PathBuf,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--seed" => seed = Some(value.parse().map_err(|e| format!("--seed {value}: {e}"))?),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("--dir is required")?,
        seed: seed.ok_or("--seed is required")?,
    })
}

/// Appends batches of 1-8 records forever; returns only on a store error.
async fn appender(
    log: CommitLog<DmaBackend>,
    next: Rc<Cell<u64>>,
    mut rng: Rng,
) -> Result<(), String> {
    let mut out = String::new();
    loop {
        let count = 1 + rng.next() % 8;
        let first = next.get();
        next.set(first + count);
        let bodies: Vec<Vec<u8>> = (first..first + count).map(body).collect();
        let mut records: Vec<RecordWriter<'_>> = bodies
            .iter()
            .zip(first..)
            .map(|(b, counter)| writer(b, counter))
            .collect();
        let appended = log
            .append(&mut records, 1_700_000_000_000 + first as i64)
            .await
            .map_err(|e| format!("append of {first}..{}: {e}", first + count))?;
        log.wait_acked(appended.end)
            .await
            .map_err(|e| format!("wait_acked of {first}..{}: {e}", first + count))?;
        out.clear();
        for (record, counter) in records.iter().zip(first..) {
            let size = record.encoded_len().map_err(|e| e.to_string())?;
            out.push_str(&format!(
                "ACK {} {size} {counter}\n",
                record.physical_offset
            ));
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
}

/// Deletes the oldest segment, keeping it as a spare, whenever the log has more than
/// [`KEEP_SEGMENTS`]; returns only on a store error.
async fn retention(log: CommitLog<DmaBackend>) -> Result<(), String> {
    loop {
        if log.segment_bases().len() > KEEP_SEGMENTS {
            log.delete_oldest_segment(true)
                .await
                .map_err(|e| format!("retention: {e}"))?;
        } else {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Runs `task`, which should run until the process is killed: one that returns has
/// failed, and the process ends at once so the test sees it.
fn spawn_until_killed(
    task: impl std::future::Future<Output = Result<(), String>> + 'static,
) -> glommio::Task<()> {
    glommio::spawn_local(async move {
        if let Err(e) = task.await {
            eprintln!("crash_appender: {e}");
            std::process::exit(1);
        }
    })
}

async fn run(args: Args) -> Result<(), String> {
    let log = CommitLog::open(DmaBackend, config(args.dir.clone()))
        .await
        .map_err(|e| format!("open {}: {e}", args.dir.display()))?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "READY {}", log.max_offset())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    let next = Rc::new(Cell::new(args.seed << 32));
    let mut tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let rng = Rng::new(args.seed.wrapping_mul(TASKS) + t);
            spawn_until_killed(appender(log.clone(), next.clone(), rng))
        })
        .collect();
    tasks.push(spawn_until_killed(retention(log.clone())));
    for task in tasks {
        task.await;
    }
    Err("appenders stopped".to_owned())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("crash_appender: {e}\nusage: crash_appender --dir DIR --seed N");
            return ExitCode::from(2);
        }
    };
    let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || run(args))
        .map_err(|e| format!("executor: {e}"))
        .and_then(|handle| {
            handle
                .join()
                .map_err(|_| "executor panicked".to_owned())
                .and_then(|r| r)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash_appender: {e}");
            ExitCode::FAILURE
        }
    }
}
