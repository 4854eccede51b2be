//! What machine a benchmark ran on: CPU, memory, kernel, disks, and which disk and
//! filesystem hold the benchmark directory.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    pub ram_bytes: u64,
    /// `uname -r`.
    pub kernel: String,
    /// Whole disks in `/sys/block` (loop, ram and zram devices left out).
    pub disks: Vec<DiskInfo>,
    /// The disk holding the benchmark directory, e.g. `vda`.
    pub bench_disk: Option<String>,
    /// Filesystem type and mount options of the benchmark directory.
    pub bench_fs: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskInfo {
    pub name: String,
    /// `/sys/block/NAME/device/model` (absent on virtio disks).
    pub model: Option<String>,
    /// `/sys/block/NAME/device/vendor` (`0x1af4` is virtio).
    pub vendor: Option<String>,
    pub size_bytes: Option<u64>,
    pub rotational: Option<bool>,
    /// `write back` (flushes matter) or `write through`.
    pub write_cache: Option<String>,
}

impl HostInfo {
    /// Describes this machine; `dir` is the benchmark directory (it must exist).
    pub fn collect(dir: &Path) -> Self {
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let ram_bytes = read("/proc/meminfo")
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        let kernel = std::process::Command::new("uname")
            .arg("-r")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .or_else(|| read("/proc/sys/kernel/osrelease"))
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ram_bytes,
            kernel,
            disks: disks(),
            bench_disk: disk_of(dir),
            bench_fs: fs_of(dir),
        }
    }
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn disks() -> Vec<DiskInfo> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<DiskInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p)))
        .map(|name| {
            let sys = Path::new("/sys/block").join(&name);
            DiskInfo {
                model: read(sys.join("device/model")),
                vendor: read(sys.join("device/vendor")),
                size_bytes: read(sys.join("size"))
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(|sectors| sectors * 512),
                rotational: read(sys.join("queue/rotational")).map(|r| r == "1"),
                write_cache: read(sys.join("queue/write_cache")),
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The whole disk holding `dir` (`vda` for `vda1`).
fn disk_of(dir: &Path) -> Option<String> {
    let (major, minor) = crate::devstat::dev_numbers(dir)?;
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let disk = if sys.join("partition").exists() {
        sys.parent()?
    } else {
        &sys
    };
    disk.file_name()?.to_str().map(str::to_owned)
}

/// `ext4 (rw,relatime,...)` for the mount holding `dir`: the longest matching mount point.
fn fs_of(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} ({})", f[2], f[3])))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// Resident memory of process `pid` (`"self"` for this one), from
/// `/proc/<pid>/status`; None when it cannot be read.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
