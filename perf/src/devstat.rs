//! Block-device counters from `/sys/dev/block/MAJ:MIN/stat`: what a run really sent to
//! the device (bytes, I/Os, cache flushes), whoever else shares it.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The counters of one device at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub read_ios: u64,
    pub read_sectors: u64,
    pub write_ios: u64,
    pub write_sectors: u64,
    /// Cache flushes (`fdatasync` on a write-back device); 0 on kernels before 5.5.
    pub flush_ios: u64,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub read_bytes: u64,
    pub read_ios: u64,
    pub write_bytes: u64,
    pub write_ios: u64,
    pub flush_ios: u64,
}

impl Snapshot {
    /// `stat` fields (Documentation/block/stat.rst): 1 read I/Os, 3 read sectors,
    /// 5 write I/Os, 7 write sectors, 16 flush I/Os. Sectors are 512 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let f: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        if f.len() < 7 {
            return None;
        }
        Some(Self {
            read_ios: f[0],
            read_sectors: f[2],
            write_ios: f[4],
            write_sectors: f[6],
            flush_ios: f.get(15).copied().unwrap_or(0),
        })
    }

    pub fn delta_since(&self, before: &Snapshot) -> Delta {
        Delta {
            read_bytes: self.read_sectors.saturating_sub(before.read_sectors) * 512,
            read_ios: self.read_ios.saturating_sub(before.read_ios),
            write_bytes: self.write_sectors.saturating_sub(before.write_sectors) * 512,
            write_ios: self.write_ios.saturating_sub(before.write_ios),
            flush_ios: self.flush_ios.saturating_sub(before.flush_ios),
        }
    }
}

/// The counters of the device holding a path.
#[derive(Debug, Clone)]
pub struct Device {
    stat: PathBuf,
}

impl Device {
    /// The device `path` lives on, if the kernel exposes its counters.
    pub fn of(path: &Path) -> Option<Self> {
        let (major, minor) = dev_numbers(path)?;
        let stat = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"));
        stat.exists().then_some(Self { stat })
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        Snapshot::parse(&std::fs::read_to_string(&self.stat).ok()?)
    }
}

/// Major and minor number of the device holding `path` (glibc's `gnu_dev_major/minor`).
pub fn dev_numbers(path: &Path) -> Option<(u64, u64)> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_modern_stat_line() {
        let s = Snapshot::parse(
            "  322037    13242 20871034   854799    76826   108753 26734408   135004        0    63788   997154    21789       51  6189704     6068    18796     1282",
        )
        .unwrap();
        assert_eq!(s.read_ios, 322037);
        assert_eq!(s.write_sectors, 26734408);
        assert_eq!(s.flush_ios, 18796);
        let later = Snapshot {
            write_sectors: s.write_sectors + 8,
            flush_ios: s.flush_ios + 2,
            ..s
        };
        let d = later.delta_since(&s);
        assert_eq!(d.write_bytes, 4096);
        assert_eq!(d.flush_ios, 2);
    }

    #[test]
    fn old_kernels_have_no_flush_counter() {
        let s = Snapshot::parse("1 0 8 0 2 0 16 0 0 0 0").unwrap();
        assert_eq!(s.flush_ios, 0);
        assert_eq!(s.write_ios, 2);
    }
}
