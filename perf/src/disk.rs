//! A raw-disk reference for the scenario runner: sequential O_DIRECT writes (then one
//! `fdatasync`) and reads of one file in 4 MiB blocks, several in flight. The
//! same run measures it, so broker figures can be read as ratios that hold on a noisy
//! machine. `storage_bench` has the deeper baselines (queue depth, fio).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

const BLOCK: usize = 4 << 20;
const ALIGN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Megabytes (10^6 bytes) per second written (sync included) and read.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct DiskBaseline {
    pub bytes: u64,
    pub write_mb_s: f64,
    pub read_mb_s: f64,
}

/// A 4 KiB-aligned buffer of `BLOCK` bytes (O_DIRECT wants aligned memory).
struct Aligned {
    raw: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Self {
        let raw = vec![0x5au8; BLOCK + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        Self { raw, start }
    }
    fn buf(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + BLOCK]
    }
}

/// Writes then reads `bytes` (rounded up to 4 MiB blocks) at `file` with `depth`
/// threads, each doing blocking O_DIRECT I/O on every `depth`-th block (so `depth` I/Os
/// are in flight, like a broker's pipelined writes), then one `fdatasync`; removes the file.
pub fn baseline(file: &Path, bytes: u64, depth: usize) -> Result<DiskBaseline, DiskError> {
    let io = |op, source| DiskError::Io {
        op,
        path: file.to_owned(),
        source,
    };
    let depth = depth.max(1);
    let blocks = bytes.div_ceil(BLOCK as u64).max(1);
    let result = (|| {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(file)
            .map_err(|e| io("open", e))?;
        let t = Instant::now();
        run_parallel(&f, blocks, depth, true).map_err(|e| io("write", e))?;
        f.sync_data().map_err(|e| io("fdatasync", e))?;
        let write_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        run_parallel(&f, blocks, depth, false).map_err(|e| io("read", e))?;
        let read_s = t.elapsed().as_secs_f64();
        let total = blocks * BLOCK as u64;
        Ok(DiskBaseline {
            bytes: total,
            write_mb_s: total as f64 / write_s / 1e6,
            read_mb_s: total as f64 / read_s / 1e6,
        })
    })();
    let _ = std::fs::remove_file(file);
    result
}

fn run_parallel(f: &std::fs::File, blocks: u64, depth: usize, write: bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..depth as u64)
            .map(|t| {
                scope.spawn(move || -> std::io::Result<()> {
                    let mut buf = Aligned::new();
                    let mut b = t;
                    while b < blocks {
                        let at = b * BLOCK as u64;
                        if write {
                            f.write_all_at(buf.buf(), at)?;
                        } else {
                            f.read_exact_at(buf.buf(), at)?;
                        }
                        b += depth as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("I/O thread panicked")))
        })
    })
}

/// Bytes available to unprivileged users on the filesystem holding `dir` (`df`'s Avail).
pub fn available_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_writes_reads_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("perf-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("baseline.bin");
        // tmpfs refuses O_DIRECT: then the error names the operation and path.
        match baseline(&file, 1, 2) {
            Ok(b) => {
                assert_eq!(b.bytes, BLOCK as u64);
                assert!(b.write_mb_s > 0.0 && b.read_mb_s > 0.0);
            }
            Err(e) => assert!(e.to_string().contains("baseline.bin"), "{e}"),
        }
        assert!(!file.exists());
        assert!(available_bytes(&dir).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
