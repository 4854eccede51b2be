//! Records acknowledged under sync flush survive `kill -9`.
//!
//! Runs the `crash_appender` example (a real child process appending to a commit log on
//! real files with O_DIRECT, while retention deletes old segments and reuses them as
//! spares) for a random while, kills it with SIGKILL, and checks that every record it
//! acknowledged reads back intact unless retention deleted its segment; repeats on the
//! same directory, so each run also recovers from the previous kill. Builds nothing
//! itself: run `cargo build --examples -p storage` first.

use bytes::Bytes;
use protocol::message::record::{decode_record, peek_record, RecordError};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use storage::commitlog::global_offset;
use storage::io::dma::DmaBackend;
use storage::{CommitLog, CommitLogConfig, FlushMode};

const CYCLES: u64 = 20;
/// How long each child runs before it is killed: a random time in this range (ms).
const RUN_MS: (u64, u64) = (50, 500);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LARGEST_BODY: usize = 20 * 1024;
const SEGMENT_BYTES: u64 = 1 << 20;
/// Segments the example's retention keeps; must match it.
const KEEP_SEGMENTS: usize = 24;

/// The example's configuration (`examples/crash_appender.rs`); must match it.
fn config(dir: PathBuf) -> CommitLogConfig {
    CommitLogConfig {
        segment_bytes: SEGMENT_BYTES,
        chunk_bytes: 64 << 10,
        max_record_bytes: 64 << 10,
        cache_bytes: 4 << 20,
        flush: FlushMode::Sync {
            timeout: Duration::from_secs(30),
        },
        ..CommitLogConfig::new(dir, 0)
    }
}

/// splitmix64; the example's copy must match.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The body the example writes for record `counter`; must match its copy.
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

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One acknowledged record, as the child announced it.
#[derive(Debug, Clone, Copy)]
struct Ack {
    offset: i64,
    size: usize,
    counter: u64,
    cycle: u64,
}

impl Ack {
    fn end(&self) -> i64 {
        self.offset + self.size as i64
    }
}

/// The example binary: next to this test's own binary (same target dir and profile),
/// else in `$CARGO_TARGET_DIR` (or the workspace's `target`) under `debug/examples`.
fn appender_binary() -> PathBuf {
    let name = format!("crash_appender{}", std::env::consts::EXE_SUFFIX);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/<profile>/deps/crash-<hash>
        if let Some(profile) = exe.parent().and_then(Path::parent) {
            candidates.push(profile.join("examples").join(&name));
        }
    }
    candidates.push(target.join("debug").join("examples").join(&name));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the crash_appender example is not built (looked for {candidates:?}): \
                 run `cargo build --examples -p storage` first"
            )
        })
}

/// A child's stdout lines (complete ones only: a kill can cut the last) and its stderr.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: JoinHandle<usize>,
    stderr: JoinHandle<String>,
}

impl Running {
    fn spawn(binary: &Path, dir: &Path, seed: u64) -> Self {
        let mut child = Command::new(binary)
            .arg("--dir")
            .arg(dir)
            .arg("--seed")
            .arg(seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        // Returns the length of a cut last line (0 when the output ended cleanly).
        let stdout = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return 0,
                    Ok(_) if line.last() != Some(&b'\n') => return line.len(),
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        if tx.send(text).is_err() {
                            return 0;
                        }
                    }
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Self {
            child,
            lines,
            stdout,
            stderr,
        }
    }

    /// Kills the child (if still running) and returns its stderr.
    fn kill_and_stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.lines);
        let _ = self.stdout.join();
        self.stderr.join().unwrap_or_default()
    }
}

fn parse_ready(line: &str) -> Option<i64> {
    line.strip_prefix("READY ")?.parse().ok()
}

fn parse_ack(line: &str, cycle: u64) -> Ack {
    let fields: Vec<&str> = line.split(' ').collect();
    let parsed = match fields[..] {
        ["ACK", offset, size, counter] => offset
            .parse()
            .ok()
            .zip(size.parse().ok())
            .zip(counter.parse().ok()),
        _ => None,
    };
    let ((offset, size), counter) =
        parsed.unwrap_or_else(|| panic!("cycle {cycle}: unexpected output line {line:?}"));
    Ack {
        offset,
        size,
        counter,
        cycle,
    }
}

/// What one run of the child did.
struct Cycle {
    ready: i64,
    acks: Vec<Ack>,
    cut_line: bool,
}

/// Runs the child for `run` and kills it with SIGKILL.
fn run_child(binary: &Path, dir: &Path, cycle: u64, run: Duration) -> Cycle {
    let mut child = Running::spawn(binary, dir, cycle + 1);
    let first = child.lines.recv_timeout(READY_TIMEOUT);
    let Some(ready) = first.as_deref().ok().and_then(parse_ready) else {
        let stderr = child.kill_and_stderr();
        panic!("cycle {cycle}: expected READY, got {first:?}; stderr:\n{stderr}")
    };
    std::thread::sleep(run);
    if let Ok(Some(status)) = child.child.try_wait() {
        let stderr = child.kill_and_stderr();
        panic!("cycle {cycle}: the appender exited on its own ({status}); stderr:\n{stderr}");
    }
    // SIGKILL.
    child.child.kill().expect("kill -9 the appender");
    let status = child.child.wait().expect("wait for the appender");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "cycle {cycle}: {status}"
    );
    let lines: Vec<String> = child.lines.iter().collect();
    let cut = child.stdout.join().expect("stdout reader");
    let stderr = child.stderr.join().unwrap_or_default();
    if !stderr.trim().is_empty() {
        eprintln!("cycle {cycle}: appender stderr:\n{stderr}");
    }
    Cycle {
        ready,
        acks: lines.iter().map(|l| parse_ack(l, cycle)).collect(),
        cut_line: cut > 0,
    }
}

/// What the test process found when it opened the log after a kill.
#[derive(Debug)]
struct Verified {
    min_offset: i64,
    max_offset: i64,
    records: usize,
}

/// Opens the log (recovering it), checks that it is a clean sequence of records from
/// `min_offset` to `max_offset`, and that every acknowledged record from `min_offset`
/// on (below it, retention deleted the segment) is in it with its body intact. With
/// `each`, also reads every such record on its own with `CommitLog::read`.
fn verify(dir: &Path, acks: &[Ack], after_cycle: u64, each: bool) -> Verified {
    let dir = dir.to_owned();
    let acks = acks.to_vec();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let log = CommitLog::open(DmaBackend, config(dir.clone()))
                .await
                .unwrap_or_else(|e| panic!("after cycle {after_cycle}: open: {e}"));
            let max = log.max_offset();
            let min = log.min_offset();
            let acks: Vec<Ack> = acks.into_iter().filter(|a| a.offset >= min).collect();
            let max_acked = acks.iter().map(Ack::end).max().unwrap_or(0);
            assert!(
                max >= max_acked,
                "after cycle {after_cycle}: recovered max_offset {max} is below the end \
                 {max_acked} of an acknowledged record"
            );
            let records = scan(&log, &dir, after_cycle).await;
            for ack in &acks {
                let Some(&(size, queue_offset)) = records.get(&ack.offset) else {
                    panic!(
                        "after cycle {after_cycle}: record {} acknowledged in cycle {} at \
                         [{}, {}) is not at a record boundary of the recovered log \
                         (max_offset {max})",
                        ack.counter,
                        ack.cycle,
                        ack.offset,
                        ack.end()
                    )
                };
                assert_eq!(
                    (size, queue_offset),
                    (ack.size, ack.counter as i64),
                    "after cycle {after_cycle}: record at {} differs from acknowledged {ack:?}",
                    ack.offset
                );
            }
            if each {
                // One direct read per record, many in flight.
                for group in acks.chunks(128) {
                    let reads: Vec<_> = group
                        .iter()
                        .map(|&ack| {
                            let log = log.clone();
                            glommio::spawn_local(async move {
                                let bytes = log.read(ack.offset, ack.size).await;
                                (ack, bytes)
                            })
                        })
                        .collect();
                    for read in reads {
                        let (ack, bytes) = read.await;
                        let bytes = bytes.unwrap_or_else(|e| {
                            panic!("after cycle {after_cycle}: read of acknowledged {ack:?}: {e}")
                        });
                        check_record(&Bytes::copy_from_slice(&bytes), 0, ack.offset, after_cycle)
                            .unwrap_or_else(|e| panic!("acknowledged {ack:?}: {e}"));
                    }
                }
            }
            Verified {
                min_offset: min,
                max_offset: max,
                records: records.len(),
            }
        })
        .expect("executor")
        .join()
        .expect("verification passes (its failure is printed above)")
}

/// Decodes the record at `at` of `buf` (CRC checked), which should sit at global
/// `offset` and carry the body of its queue offset; returns (size, queue offset).
fn check_record(buf: &Bytes, at: usize, offset: i64, cycle: u64) -> Result<(usize, i64), String> {
    let view = decode_record(buf, at, true)
        .map_err(|e| format!("after cycle {cycle}: record at {offset}: {e}"))?;
    if view.physical_offset != offset {
        return Err(format!(
            "after cycle {cycle}: record at {offset} says it is at {}",
            view.physical_offset
        ));
    }
    let expected = body(view.queue_offset as u64);
    if view.body[..] != expected[..] || view.topic_str() != "CrashTest" {
        return Err(format!(
            "after cycle {cycle}: record at {offset} (queue offset {}) has a wrong body \
             ({} bytes, expected {}) or topic",
            view.queue_offset,
            view.body.len(),
            expected.len()
        ));
    }
    Ok((view.total_size, view.queue_offset))
}

/// Walks the whole log, one segment read at a time: every record must decode with a
/// good CRC at its own offset, and only end-of-segment blanks may sit between them.
/// Returns offset -> (size, queue offset).
async fn scan(log: &CommitLog<DmaBackend>, dir: &Path, cycle: u64) -> BTreeMap<i64, (usize, i64)> {
    let max = log.max_offset();
    let mut pos = log.min_offset();
    let mut records = BTreeMap::new();
    while pos < max {
        let seg = pos as u64 / SEGMENT_BYTES * SEGMENT_BYTES;
        let seg_end = seg + SEGMENT_BYTES;
        // Only the header of a segment's closing blank is written, and segments are
        // preallocated without growing the file: a read through the whole blank comes
        // back short. So read no further than the file's length.
        let file_len = std::fs::metadata(dir.join(format!("{seg:020}")))
            .map(|m| m.len())
            .unwrap_or_else(|e| panic!("after cycle {cycle}: segment {seg}: {e}"));
        let to = (seg_end.min(seg + file_len) as i64).min(max);
        let data = log
            .read(pos, (to - pos) as usize)
            .await
            .unwrap_or_else(|e| panic!("after cycle {cycle}: read [{pos}, {to}): {e}"));
        let data = Bytes::copy_from_slice(&data);
        let base = pos;
        while pos < to {
            let at = (pos - base) as usize;
            match peek_record(&data, at) {
                Ok(_) => {
                    let (size, queue_offset) =
                        check_record(&data, at, pos, cycle).unwrap_or_else(|e| panic!("{e}"));
                    records.insert(pos, (size, queue_offset));
                    pos += size as i64;
                }
                Err(RecordError::Blank { len, .. }) if pos as u64 + len as u64 == seg_end => {
                    pos = seg_end as i64;
                }
                Err(e) => panic!(
                    "after cycle {cycle}: the recovered log is not a clean sequence of \
                     records: at {pos} (max_offset {max}): {e}"
                ),
            }
        }
    }
    assert_eq!(
        pos, max,
        "after cycle {cycle}: the last record overruns max_offset"
    );
    records
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let binary = appender_binary();
    let seed = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_C0FF_EE15_600D_u64);
    let mut rng = Rng(mix(seed) | 1);
    let root = std::env::temp_dir().join(format!("crash-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("commitlog");
    eprintln!("log in {} (kept if the test fails)", dir.display());
    let started = Instant::now();

    let mut acks: Vec<Ack> = Vec::new();
    let mut counters = HashSet::new();
    let mut recovered = global_offset(0, 0);
    let mut min_offset = global_offset(0, 0);
    let mut cut_lines = 0;
    let mut records = 0;
    for cycle in 0..CYCLES {
        let run = Duration::from_millis(rng.range(RUN_MS.0, RUN_MS.1));
        let Cycle {
            ready,
            acks: new,
            cut_line,
        } = run_child(&binary, &dir, cycle, run);
        cut_lines += usize::from(cut_line);
        // The child recovered exactly what the test process recovered after the last
        // kill (the first time: an empty log), so nothing acknowledged was lost...
        assert_eq!(
            ready, recovered,
            "cycle {cycle}: the appender recovered max_offset {ready}, the previous \
             verification {recovered}"
        );
        // ...and appended after it, never over it.
        for ack in &new {
            assert!(
                ack.offset >= ready,
                "cycle {cycle}: {ack:?} was appended below the recovered end {ready}"
            );
            assert!(
                counters.insert(ack.counter),
                "cycle {cycle}: counter of {ack:?} acknowledged twice"
            );
        }
        acks.extend(new.iter().copied());
        let last = cycle + 1 == CYCLES;
        let verifying = Instant::now();
        let v = verify(&dir, &acks, cycle, last);
        assert!(
            v.min_offset >= min_offset && (v.min_offset as u64).is_multiple_of(SEGMENT_BYTES),
            "after cycle {cycle}: min_offset {} (was {min_offset})",
            v.min_offset
        );
        min_offset = v.min_offset;
        recovered = v.max_offset;
        records = v.records;
        eprintln!(
            "cycle {cycle}: ran {} ms, {} acked (log from {ready}), recovered max_offset {}, \
             verified in {} ms",
            run.as_millis(),
            new.len(),
            v.max_offset,
            verifying.elapsed().as_millis()
        );
    }

    // Acknowledged records never overlap.
    acks.sort_by_key(|a| a.offset);
    for pair in acks.windows(2) {
        assert!(
            pair[0].end() <= pair[1].offset,
            "acknowledged records overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(!acks.is_empty(), "no record was ever acknowledged");
    let elapsed = started.elapsed();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let spares = names.iter().filter(|n| n.ends_with(".spare")).count();
    let segments = names.len() - spares;
    // Retention ran several times (each segment created after a deletion took its
    // spare) and kept the log bounded.
    assert!(
        min_offset as u64 >= 3 * SEGMENT_BYTES,
        "retention deleted only up to {min_offset}"
    );
    assert!(
        segments <= KEEP_SEGMENTS + 2 && spares <= 2,
        "{segments} segments and {spares} spares on disk: {names:?}"
    );
    let kept = acks.iter().filter(|a| a.offset >= min_offset).count();
    println!(
        "crash test: {CYCLES} kill -9 cycles, {} acknowledged records, the {kept} not \
         deleted by retention all intact ({records} records in the log up to offset {}; \
         {segments} segments and {spares} spares left; {cut_lines} output lines cut by \
         the kill), seed {seed:#x}, {:.1} s",
        acks.len(),
        recovered,
        elapsed.as_secs_f64()
    );
    std::fs::remove_dir_all(&root).unwrap();
}
