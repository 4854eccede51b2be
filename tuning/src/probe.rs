//! Reads the machine: sysfs and procfs under a root directory (`/` on a live machine, a
//! fake tree in tests). Read-only: nothing here writes anywhere.
//!
//! A file that cannot be read is reported as absent (`None`): hostcheck then says the
//! check could not be made, rather than failing.

use crate::profile::Limit;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The machine, seen through `root`.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub mount_point: PathBuf,
    /// `major:minor` of the filesystem's device (0:N for btrfs and virtual filesystems).
    pub major: u32,
    pub minor: u32,
    pub fs_type: String,
    /// What was mounted (`/dev/nvme0n1p1`).
    pub source: String,
    /// Per-mount and superblock options together, in that order.
    pub options: Vec<String>,
}

/// A whole disk holding (part of) a filesystem: its queue settings live here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name (`nvme0n1`, `vda`): `/sys/block/<name>`.
    pub name: String,
    /// Its directory under `/sys/devices` (canonical, inside the root).
    #[serde(skip)]
    pub sys_path: PathBuf,
}

/// A network interface backed by a device (not `lo`, bridges or veths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetInterface {
    pub name: String,
    pub device_path: PathBuf,
}

/// Soft resource limits of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessLimits {
    pub nofile: Limit,
    pub memlock_bytes: Limit,
}

impl Host {
    /// The machine hostcheck runs on.
    pub fn live() -> Self {
        Self::with_root("/")
    }

    /// A machine whose `/sys` and `/proc` are under `root` (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether this is the real machine (paths given by the user resolve on it).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `abs` (a path on the machine) under the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let rel: PathBuf = abs
            .as_ref()
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
            .collect();
        self.root.join(rel)
    }

    /// A path under the root back as the machine names it (`/sys/...`).
    pub fn machine_path(&self, under_root: &Path) -> PathBuf {
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        match under_root.strip_prefix(&root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => under_root.to_path_buf(),
        }
    }

    /// A file's content without surrounding whitespace; `None` if it cannot be read.
    pub fn read(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn read_number(&self, abs: impl AsRef<Path>) -> Option<u64> {
        self.read(abs)?.parse().ok()
    }

    /// `uname -r`.
    pub fn kernel_release(&self) -> Option<String> {
        self.read("/proc/sys/kernel/osrelease")
    }

    /// Online CPU ids.
    pub fn online_cpus(&self) -> Option<Vec<u32>> {
        parse_cpu_list(&self.read("/sys/devices/system/cpu/online")?)
    }

    /// `scaling_governor` of every CPU that has cpufreq, by CPU id.
    pub fn governors(&self) -> BTreeMap<u32, String> {
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(self.path("/sys/devices/system/cpu")) else {
            return out;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("cpu"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(g) = self.read(format!(
                "/sys/devices/system/cpu/cpu{id}/cpufreq/scaling_governor"
            )) {
                out.insert(id, g);
            }
        }
        out
    }

    /// Every mount, from `/proc/self/mountinfo`.
    pub fn mounts(&self) -> Vec<Mount> {
        self.read("/proc/self/mountinfo")
            .map(|text| text.lines().filter_map(parse_mountinfo_line).collect())
            .unwrap_or_default()
    }

    /// The mount holding `dir` (the last-mounted of the longest matching mount points).
    pub fn mount_of(&self, dir: &Path) -> Option<Mount> {
        let mut best: Option<Mount> = None;
        for m in self.mounts() {
            if !dir.starts_with(&m.mount_point) {
                continue;
            }
            let longer = best.as_ref().is_none_or(|b| {
                m.mount_point.components().count() >= b.mount_point.components().count()
            });
            if longer {
                best = Some(m);
            }
        }
        best
    }

    /// `dir` as it resolves on the machine: on the live machine its canonical form (of
    /// the nearest existing ancestor when it does not exist yet, as a store before the
    /// broker's first start); under a fake root, as given.
    pub fn resolve_dir(&self, dir: &Path) -> PathBuf {
        if !self.is_live() {
            return dir.to_path_buf();
        }
        let absolute = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(dir))
                .unwrap_or_else(|_| dir.to_path_buf())
        };
        let mut probe = absolute.as_path();
        loop {
            if let Ok(canonical) = std::fs::canonicalize(probe) {
                return canonical;
            }
            match probe.parent() {
                Some(parent) => probe = parent,
                None => return absolute,
            }
        }
    }

    /// The whole disks under a mount: through `/sys/dev/block/MAJ:MIN` (or the mount
    /// source for filesystems with anonymous device numbers), from a partition to its
    /// disk, and from a dm/md device to the disks under it.
    pub fn block_devices_of(&self, mount: &Mount) -> Vec<BlockDevice> {
        let start = if mount.major != 0 {
            std::fs::canonicalize(
                self.path(format!("/sys/dev/block/{}:{}", mount.major, mount.minor)),
            )
            .ok()
        } else {
            mount.source.strip_prefix("/dev/").and_then(|name| {
                std::fs::canonicalize(self.path("/sys/class/block").join(name)).ok()
            })
        };
        let mut out = Vec::new();
        if let Some(path) = start {
            self.collect_disks(&path, &mut out, 0);
        }
        out
    }

    fn collect_disks(&self, path: &Path, out: &mut Vec<BlockDevice>, depth: usize) {
        // dm on md on partitions is as deep as real stacks go.
        if depth > 8 {
            return;
        }
        let disk = if path.join("partition").exists() {
            match path.parent() {
                Some(p) => p.to_path_buf(),
                None => return,
            }
        } else {
            path.to_path_buf()
        };
        let slaves: Vec<PathBuf> = std::fs::read_dir(disk.join("slaves"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::canonicalize(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if slaves.is_empty() {
            let Some(name) = disk.file_name().and_then(|n| n.to_str()) else {
                return;
            };
            if !out.iter().any(|d| d.name == name) {
                out.push(BlockDevice {
                    name: name.to_owned(),
                    sys_path: disk.clone(),
                });
            }
        } else {
            let mut slaves = slaves;
            slaves.sort();
            for s in slaves {
                self.collect_disks(&s, out, depth + 1);
            }
        }
    }

    /// `/sys/block/<dev>/queue/<attr>`.
    pub fn queue_attr(&self, dev: &BlockDevice, attr: &str) -> Option<String> {
        std::fs::read_to_string(dev.sys_path.join("queue").join(attr))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Interrupt names by number, from `/proc/interrupts` (the last column).
    pub fn interrupt_names(&self) -> BTreeMap<u32, String> {
        let mut out = BTreeMap::new();
        let Some(text) = self.read("/proc/interrupts") else {
            return out;
        };
        for line in text.lines() {
            let Some((num, rest)) = line.trim_start().split_once(':') else {
                continue;
            };
            let Ok(irq) = num.parse::<u32>() else {
                continue;
            };
            if let Some(name) = rest.split_whitespace().last() {
                out.insert(irq, name.to_owned());
            }
        }
        out
    }

    /// CPUs an interrupt is delivered to: `effective_affinity_list` when the kernel has
    /// it, else `smp_affinity_list`.
    pub fn irq_cpus(&self, irq: u32) -> Option<Vec<u32>> {
        let text = self
            .read(format!("/proc/irq/{irq}/effective_affinity_list"))
            .filter(|s| !s.is_empty())
            .or_else(|| self.read(format!("/proc/irq/{irq}/smp_affinity_list")))?;
        parse_cpu_list(&text)
    }

    /// MSI/MSI-X interrupts of the device at `sys_path`: `msi_irqs/` of the nearest
    /// ancestor that has it (the PCI function under an NVMe namespace or a virtio
    /// device).
    pub fn device_irqs(&self, sys_path: &Path) -> Vec<u32> {
        let devices = std::fs::canonicalize(self.path("/sys/devices"))
            .unwrap_or_else(|_| self.path("/sys/devices"));
        for dir in sys_path.ancestors() {
            if !dir.starts_with(&devices) {
                break;
            }
            if let Ok(entries) = std::fs::read_dir(dir.join("msi_irqs")) {
                let mut irqs: Vec<u32> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect();
                irqs.sort_unstable();
                return irqs;
            }
        }
        Vec::new()
    }

    /// Network interfaces backed by a device.
    pub fn net_interfaces(&self) -> Vec<NetInterface> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.path("/sys/class/net")) else {
            return out;
        };
        for entry in dir.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(device_path) = std::fs::canonicalize(entry.path().join("device")) {
                out.push(NetInterface { name, device_path });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Whether a process with this `comm` is running.
    pub fn process_running(&self, comm: &str) -> bool {
        let Ok(dir) = std::fs::read_dir(self.path("/proc")) else {
            return false;
        };
        dir.flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm))
    }

    /// Soft limits of a process (`self`: hostcheck itself, which inherits its shell's).
    pub fn limits(&self, pid: Option<u32>) -> Option<ProcessLimits> {
        let who = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
        let text = self.read(format!("/proc/{who}/limits"))?;
        let soft = |prefix: &str| -> Option<Limit> {
            let line = text.lines().find(|l| l.starts_with(prefix))?;
            let value = line[prefix.len()..].split_whitespace().next()?;
            if value == "unlimited" {
                Some(Limit::Unlimited)
            } else {
                value.parse().ok().map(Limit::Value)
            }
        };
        Some(ProcessLimits {
            nofile: soft("Max open files")?,
            memlock_bytes: soft("Max locked memory")?,
        })
    }

    /// The active mode of a `[a] b c` selector file (transparent huge pages).
    pub fn bracketed(&self, abs: &str) -> Option<String> {
        bracketed(&self.read(abs)?)
    }

    /// A sysctl's value, by its dotted name.
    pub fn sysctl(&self, name: &str) -> Option<String> {
        self.read(format!("/proc/sys/{}", name.replace('.', "/")))
    }

    /// `/sys/fs/...`-style numeric attributes.
    pub fn number(&self, abs: &str) -> Option<u64> {
        self.read_number(abs)
    }
}

/// `[active] other` → `active`; a bare single value is returned as is.
pub fn bracketed(text: &str) -> Option<String> {
    if let (Some(open), Some(close)) = (text.find('['), text.find(']')) {
        if open < close {
            return Some(text[open + 1..close].to_owned());
        }
    }
    let t = text.trim();
    (!t.is_empty() && !t.contains(char::is_whitespace)).then(|| t.to_owned())
}

/// `0-3,8,10-11` → `[0, 1, 2, 3, 8, 10, 11]`; `None` if malformed.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// `[0, 1, 2, 3, 8]` → `0-3,8`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `36 25 254:0 / /data rw,noatime shared:1 - xfs /dev/vdb rw,attr2` → a [`Mount`].
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split_whitespace().collect();
    if fields.len() < 6 {
        return None;
    }
    let (major, minor) = fields[2].split_once(':')?;
    let right: Vec<&str> = right.split_whitespace().collect();
    if right.len() < 2 {
        return None;
    }
    let mut options: Vec<String> = fields[5].split(',').map(str::to_owned).collect();
    if let Some(sb) = right.get(2) {
        for o in sb.split(',') {
            if !options.iter().any(|x| x == o) {
                options.push(o.to_owned());
            }
        }
    }
    Some(Mount {
        mount_point: PathBuf::from(unescape_octal(fields[4])),
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        fs_type: right[0].to_owned(),
        source: unescape_octal(right[1]),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
        assert_eq!(format_cpu_list(&[11, 0, 1, 2, 3, 8, 10]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn mountinfo_lines_parse_with_escapes_and_optional_fields() {
        let m = parse_mountinfo_line(
            "36 25 259:1 / /srv/my\\040store rw,noatime shared:1 master:2 - xfs /dev/nvme0n1p1 rw,attr2,inode64",
        )
        .unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/srv/my store"));
        assert_eq!((m.major, m.minor), (259, 1));
        assert_eq!(m.fs_type, "xfs");
        assert_eq!(m.source, "/dev/nvme0n1p1");
        assert_eq!(m.options, ["rw", "noatime", "attr2", "inode64"]);
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn bracketed_selectors() {
        assert_eq!(
            bracketed("always [madvise] never").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            bracketed("none [mq-deadline] kyber").as_deref(),
            Some("mq-deadline")
        );
        assert_eq!(bracketed("none").as_deref(), Some("none"));
        assert_eq!(bracketed("a b"), None);
    }
}
