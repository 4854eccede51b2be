//! Compares the machine ([`Host`]) with a profile's expectations ([`HostProfile`]).
//!
//! Every check yields one row: what was expected, what was found, a status, and the
//! commands that would fix it. Nothing here changes the machine: fixes are printed for an
//! operator to run.
//!
//! A mismatch is a warning unless the profile's `[severity]` table says `fail`, except
//! for the wrong filesystem type (fail by default) and three hard floors that fail
//! whatever the profile says, because the broker does not work below them:
//! RLIMIT_MEMLOCK under 512 KiB (glommio refuses to start an executor), RLIMIT_NOFILE
//! under the broker's `max_connections` + 1024, and ext4 mounted `data=journal` (no
//! O_DIRECT).

use crate::probe::{format_cpu_list, BlockDevice, Host, Mount, ProcessLimits};
use crate::profile::{
    BrokerSummary, HostProfile, IrqPolicy, Limit, Running, Severity, SysctlExpect,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// glommio's floor for RLIMIT_MEMLOCK (`sys/uring.rs`, `MIN_MEMLOCK_LIMIT`).
pub const GLOMMIO_MIN_MEMLOCK_BYTES: u64 = 512 * 1024;

/// File descriptors beyond `max_connections` the broker needs for segments, consume
/// queues, index files and its own sockets.
pub const NOFILE_HEADROOM: u64 = 1024;

/// Most per-vector fix commands printed for one check.
const MAX_IRQ_FIXES: usize = 16;

/// Where a host file's persistent sysctl fixes go.
const SYSCTL_FILE: &str = "/etc/sysctl.d/90-rocketmq-rs.conf";
/// Where persistent block-queue fixes go.
const UDEV_FILE: &str = "/etc/udev/rules.d/60-rocketmq-rs.rules";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// The machine does not expose what this check reads (no cpufreq on a VM, an older
    /// kernel without the sysctl).
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Severity key (`block.scheduler`, `sysctl.vm.swappiness`).
    pub id: String,
    /// What is shown (`block.scheduler (nvme0n1)`).
    pub check: String,
    pub expected: String,
    pub found: String,
    pub status: Status,
    /// Commands, the runtime one first, then how to make it persistent.
    pub fix: Vec<String>,
    pub note: Option<String>,
}

/// What to check beyond the profile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The broker's `store_dir` (need not exist yet).
    pub data_dir: PathBuf,
    /// Shards the broker runs, overriding the broker profile's (`--set shards=N`).
    pub shards: Option<usize>,
    /// Check this process's limits instead of hostcheck's own.
    pub pid: Option<u32>,
    /// Network interfaces to check; empty: every interface backed by a device.
    pub net_interfaces: Vec<String>,
}

/// Everything hostcheck found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: String,
    pub kernel: Option<String>,
    pub cpus_online: Option<usize>,
    /// Shards the broker would run and whether they are pinned.
    pub shards: usize,
    pub cpu_pinning: bool,
    /// The store directory as given, and as resolved (the nearest existing ancestor on
    /// a live machine when it does not exist yet).
    pub data_dir: PathBuf,
    pub resolved_data_dir: PathBuf,
    pub mount: Option<Mount>,
    pub devices: Vec<BlockDevice>,
    /// Whose resource limits were read.
    pub limits_of: String,
    pub checks: Vec<CheckResult>,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Whether any check failed (exit code 1).
    pub fn failed(&self) -> bool {
        self.count(Status::Fail) > 0
    }
}

/// Runs every check the profile asks for.
pub fn run(host: &Host, profile: &HostProfile, broker: BrokerSummary, opts: &Options) -> Report {
    let cpus = host.online_cpus();
    let cpu_count = cpus.as_ref().map(Vec::len);
    let shards = match opts.shards.unwrap_or(broker.shards) {
        0 => cpu_count.unwrap_or(1).min(64),
        n => n,
    };
    let resolved = host.resolve_dir(&opts.data_dir);
    let mount = host.mount_of(&resolved);
    let devices = mount
        .as_ref()
        .map(|m| host.block_devices_of(m))
        .unwrap_or_default();
    let mut c = Checker {
        host,
        profile,
        cpus: cpus.unwrap_or_default(),
        shards,
        pinned: broker.cpu_pinning,
        rows: Vec::new(),
    };
    c.governor();
    c.irqs(&devices, opts);
    c.block(&devices, mount.as_ref(), &resolved);
    c.filesystem(mount.as_ref(), &resolved);
    let limits = host.limits(opts.pid);
    c.limits(limits, broker);
    c.memory();
    c.sysctls();
    Report {
        profile: profile.profile.clone(),
        kernel: host.kernel_release(),
        cpus_online: cpu_count,
        shards,
        cpu_pinning: broker.cpu_pinning,
        data_dir: opts.data_dir.clone(),
        resolved_data_dir: resolved,
        mount,
        devices,
        limits_of: match opts.pid {
            Some(pid) => format!("process {pid}"),
            None => "hostcheck itself (inherited from this shell; a systemd service gets its unit's Limit* lines: use --pid to check a running broker)".into(),
        },
        checks: c.rows,
    }
}

struct Checker<'a> {
    host: &'a Host,
    profile: &'a HostProfile,
    cpus: Vec<u32>,
    shards: usize,
    pinned: bool,
    rows: Vec<CheckResult>,
}

/// A row's content before its status is decided.
struct Row {
    id: String,
    check: String,
    expected: String,
    found: String,
    fix: Vec<String>,
    note: Option<String>,
}

impl Row {
    fn new(
        id: &str,
        check: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            check: check.into(),
            expected: expected.into(),
            found: found.into(),
            fix: Vec::new(),
            note: None,
        }
    }

    fn fix(mut self, lines: impl IntoIterator<Item = String>) -> Self {
        self.fix.extend(lines);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

impl Checker<'_> {
    fn severity(&self, id: &str) -> Severity {
        if let Some(s) = self.profile.severity.get(id) {
            return *s;
        }
        match id {
            "fs.type" => Severity::Fail,
            _ => Severity::Warn,
        }
    }

    fn push(&mut self, row: Row, status: Status) {
        // Fixes are only useful next to a problem.
        let fix = if matches!(status, Status::Warn | Status::Fail) {
            row.fix
        } else {
            Vec::new()
        };
        self.rows.push(CheckResult {
            id: row.id,
            check: row.check,
            expected: row.expected,
            found: row.found,
            status,
            fix,
            note: row.note,
        });
    }

    fn ok(&mut self, row: Row) {
        self.push(row, Status::Ok);
    }

    fn skip(&mut self, row: Row) {
        self.push(row, Status::Skip);
    }

    fn mismatch(&mut self, row: Row) {
        let status = match self.severity(&row.id) {
            Severity::Warn => Status::Warn,
            Severity::Fail => Status::Fail,
        };
        self.push(row, status);
    }

    fn judge(&mut self, row: Row, ok: bool) {
        if ok {
            self.ok(row)
        } else {
            self.mismatch(row)
        }
    }

    fn governor(&mut self) {
        let Some(want) = self.profile.cpu.governor.clone() else {
            return;
        };
        let id = "cpu.governor";
        let found = self.host.governors();
        if found.is_empty() {
            self.skip(
                Row::new(id, id, &want, "no cpufreq")
                    .note("no /sys/devices/system/cpu/cpu*/cpufreq: a VM, or frequency not under the kernel's control"),
            );
            return;
        }
        let mut by_value: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (cpu, g) in &found {
            by_value.entry(g.as_str()).or_default().push(*cpu);
        }
        let text = by_value
            .iter()
            .map(|(g, cpus)| format!("{g} on {}", format_cpu_list(cpus)))
            .collect::<Vec<_>>()
            .join("; ");
        let row = Row::new(id, id, &want, text).fix([
            format!("cpupower frequency-set -g {want}"),
            format!("echo {want} | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"),
            "persistent: tuned-adm profile throughput-performance (or latency-performance), or your distribution's cpupower service".into(),
        ]);
        let ok = by_value.len() == 1 && by_value.contains_key(want.as_str());
        self.judge(row, ok);
    }

    fn irqs(&mut self, devices: &[BlockDevice], opts: &Options) {
        let names = self.host.interrupt_names();
        // Vectors that carry no I/O: virtio config changes, the NVMe admin queue.
        let io_vector = |irq: &u32| {
            names.get(irq).is_none_or(|n| {
                let admin_queue = n.starts_with("nvme") && n.ends_with("q0");
                !(n.contains("config") || admin_queue)
            })
        };
        if let Some(policy) = self.profile.irq.storage {
            if devices.is_empty() {
                self.skip(Row::new(
                    "irq.storage",
                    "irq.storage",
                    policy_label(policy),
                    "no block device under the store",
                ));
            }
            for dev in devices {
                let irqs: Vec<u32> = self
                    .host
                    .device_irqs(&dev.sys_path)
                    .into_iter()
                    .filter(io_vector)
                    .collect();
                self.irq_policy("irq.storage", &dev.name, policy, &irqs, &names);
            }
        }
        if let Some(policy) = self.profile.irq.network {
            let ifaces: Vec<_> = self
                .host
                .net_interfaces()
                .into_iter()
                .filter(|i| opts.net_interfaces.is_empty() || opts.net_interfaces.contains(&i.name))
                .collect();
            if ifaces.is_empty() {
                self.skip(Row::new(
                    "irq.network",
                    "irq.network",
                    policy_label(policy),
                    "no network interface backed by a device",
                ));
            }
            for iface in ifaces {
                let irqs: Vec<u32> = self
                    .host
                    .device_irqs(&iface.device_path)
                    .into_iter()
                    .filter(io_vector)
                    .collect();
                self.irq_policy("irq.network", &iface.name, policy, &irqs, &names);
            }
        }
        if let Some(want) = self.profile.irq.irqbalance {
            let id = "irq.irqbalance";
            let running = self.host.process_running("irqbalance");
            let label = |r: bool| if r { "running" } else { "stopped" };
            let row = Row::new(id, id, label(want == Running::Running), label(running));
            let row = match want {
                Running::Stopped => row.fix([
                    "systemctl disable --now irqbalance".to_owned(),
                    "or keep it and ban the shard cores: IRQBALANCE_BANNED_CPULIST=<shard cores> in /etc/default/irqbalance (/etc/sysconfig/irqbalance)".to_owned(),
                ]),
                Running::Running => row.fix(["systemctl enable --now irqbalance".to_owned()]),
            };
            self.judge(row, running == (want == Running::Running));
        }
    }

    fn irq_policy(
        &mut self,
        id: &str,
        device: &str,
        policy: IrqPolicy,
        irqs: &[u32],
        names: &BTreeMap<u32, String>,
    ) {
        let check = format!("{id} ({device})");
        if irqs.is_empty() {
            self.skip(
                Row::new(id, check, policy_label(policy), "no MSI interrupts").note(format!(
                    "found no msi_irqs for {device} (legacy interrupts or a virtual device)"
                )),
            );
            return;
        }
        let placed: Vec<(u32, Vec<u32>)> = irqs
            .iter()
            .map(|irq| (*irq, self.host.irq_cpus(*irq).unwrap_or_default()))
            .collect();
        let mut used: Vec<u32> = placed.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        used.sort_unstable();
        used.dedup();
        let vectors = irqs.len();
        let found = format!(
            "{vectors} vector{} on CPU {}",
            if vectors == 1 { "" } else { "s" },
            format_cpu_list(&used)
        );
        let name_of = |irq: u32| {
            names
                .get(&irq)
                .cloned()
                .unwrap_or_else(|| format!("irq {irq}"))
        };
        match policy {
            IrqPolicy::Spread => {
                let cpu_count = self.cpus.len().max(1);
                // A single-queue device cannot spread: say so rather than pass.
                let want = if vectors == 1 {
                    cpu_count
                } else {
                    vectors.min(cpu_count)
                };
                let expected =
                    format!("spread over {want} CPU{}", if want == 1 { "" } else { "s" });
                let mut row = Row::new(id, check, expected, found);
                if vectors == 1 && cpu_count > 1 {
                    row = row
                        .fix([if id == "irq.network" {
                            format!(
                                "give {device} one queue per CPU: ethtool -L {device} combined {cpu_count} (QEMU: virtio-net-pci,mq=on,vectors={}; cloud: an instance type with multi-queue NICs)",
                                2 * cpu_count + 2
                            )
                        } else {
                            format!(
                                "give {device} one queue per CPU (QEMU: -device virtio-blk-pci,num-queues={cpu_count}; cloud: an instance type with multi-queue NVMe)"
                            )
                        }])
                        .note(format!(
                            "single-queue device: every shard's completions arrive on CPU {} ({}), which then wakes the others",
                            format_cpu_list(&used),
                            name_of(irqs[0])
                        ));
                } else {
                    let fixes: Vec<String> = placed
                        .iter()
                        .enumerate()
                        .take(MAX_IRQ_FIXES)
                        .map(|(i, (irq, _))| {
                            let cpu = self.cpus.get(i % cpu_count).copied().unwrap_or(0);
                            format!(
                                "echo {cpu} > /proc/irq/{irq}/smp_affinity_list   # {}",
                                name_of(*irq)
                            )
                        })
                        .collect();
                    row = row.fix(fixes).note(
                        "NVMe vectors are kernel-managed (the writes fail with EIO): fewer CPUs than vectors there means fewer I/O queues than CPUs; elsewhere irqbalance may be packing vectors (stop it, or ban CPUs with IRQBALANCE_BANNED_CPULIST)",
                    );
                }
                self.judge(row, used.len() >= want);
            }
            IrqPolicy::OffShards => {
                if !self.pinned {
                    self.skip(
                        Row::new(id, check, policy_label(policy), found)
                            .note("cpu_pinning = false: shards are not on fixed cores"),
                    );
                    return;
                }
                let shard_cores: Vec<u32> = (0..self.shards as u32).collect();
                let housekeeping: Vec<u32> = self
                    .cpus
                    .iter()
                    .copied()
                    .filter(|c| !shard_cores.contains(c))
                    .collect();
                let expected = if housekeeping.is_empty() {
                    "a CPU without a shard".to_owned()
                } else {
                    format!("on CPU {}", format_cpu_list(&housekeeping))
                };
                if housekeeping.is_empty() {
                    let keep = self.cpus.len().saturating_sub(1).max(1);
                    let row = Row::new(id, check, expected, found)
                        .fix([format!(
                            "run the broker with --set shards={keep} (shard N runs on CPU N) and move these interrupts to CPU {}",
                            self.cpus.last().copied().unwrap_or(0)
                        )])
                        .note(format!("every CPU runs a shard ({} shards)", self.shards));
                    self.mismatch(row);
                    return;
                }
                let target = format_cpu_list(&housekeeping);
                let offenders: Vec<&(u32, Vec<u32>)> = placed
                    .iter()
                    .filter(|(_, cpus)| cpus.iter().any(|c| shard_cores.contains(c)))
                    .collect();
                let row = Row::new(id, check, expected, found).fix(
                    offenders
                        .iter()
                        .take(MAX_IRQ_FIXES)
                        .map(|(irq, _)| {
                            format!("echo {target} > /proc/irq/{irq}/smp_affinity_list   # {}", name_of(*irq))
                        })
                        .chain(std::iter::once(format!(
                            "persistent: IRQBALANCE_BANNED_CPULIST={} in /etc/default/irqbalance, or a boot script with the lines above",
                            format_cpu_list(&shard_cores)
                        ))),
                );
                self.judge(row, offenders.is_empty());
            }
        }
    }

    fn block(
        &mut self,
        devices: &[BlockDevice],
        mount: Option<&Mount>,
        data_dir: &std::path::Path,
    ) {
        let b = &self.profile.block;
        let wanted = b.scheduler.is_some()
            || b.rotational.is_some()
            || b.nr_requests_min.is_some()
            || b.read_ahead_kb_max.is_some()
            || b.rq_affinity.is_some();
        if !wanted {
            return;
        }
        if devices.is_empty() {
            let found = match mount {
                Some(m) => format!(
                    "{} ({}) has no block device",
                    m.mount_point.display(),
                    m.fs_type
                ),
                None => format!("no mount found for {}", data_dir.display()),
            };
            self.skip(Row::new(
                "block.scheduler",
                "block",
                "a block device under the store",
                found,
            ));
            return;
        }
        for dev in devices {
            let name = &dev.name;
            let q = |attr: &str| format!("/sys/block/{name}/queue/{attr}");
            let udev = |attr: &str, value: &str| {
                format!(
                    "persistent: echo 'ACTION==\"add|change\", KERNEL==\"{name}\", ATTR{{queue/{attr}}}=\"{value}\"' >> {UDEV_FILE}"
                )
            };
            if let Some(accepted) = b.scheduler.clone() {
                let id = "block.scheduler";
                let check = format!("{id} ({name})");
                match self.host.queue_attr(dev, "scheduler") {
                    None => self.skip(Row::new(id, check, accepted.join(" | "), "unreadable")),
                    Some(raw) => {
                        let active = crate::probe::bracketed(&raw).unwrap_or(raw.clone());
                        let first = &accepted[0];
                        let row = Row::new(id, check, accepted.join(" | "), &active).fix([
                            format!("echo {first} > {}", q("scheduler")),
                            udev("scheduler", first),
                        ]);
                        let ok = accepted.contains(&active);
                        self.judge(row, ok);
                    }
                }
            }
            if let Some(want_rotational) = b.rotational {
                let id = "block.rotational";
                let check = format!("{id} ({name})");
                let label = |r: bool| if r { "1 (rotational)" } else { "0 (SSD/NVMe)" };
                match self.host.queue_attr(dev, "rotational") {
                    None => self.skip(Row::new(id, check, label(want_rotational), "unreadable")),
                    Some(v) => {
                        let is = v == "1";
                        let row = Row::new(id, check, label(want_rotational), label(is))
                            .fix([
                                "put store_dir on SSD/NVMe storage".to_owned(),
                                format!(
                                    "if {name} is a virtual disk on SSD that reports itself rotational: echo 0 > {}",
                                    q("rotational")
                                ),
                            ]);
                        self.judge(row, is == want_rotational);
                    }
                }
            }
            if let Some(min) = b.nr_requests_min {
                let id = "block.nr_requests";
                self.number_row(id, format!("{id} ({name})"), self.host.queue_attr(dev, "nr_requests"), Bound::Min(min), || {
                    vec![
                        format!("echo {min} > {}", q("nr_requests")),
                        udev("nr_requests", &min.to_string()),
                    ]
                }, Some("with scheduler none the kernel caps nr_requests at the device's queue depth"));
            }
            if let Some(max) = b.read_ahead_kb_max {
                let id = "block.read_ahead_kb";
                self.number_row(
                    id,
                    format!("{id} ({name})"),
                    self.host.queue_attr(dev, "read_ahead_kb"),
                    Bound::Max(max),
                    || {
                        vec![
                            format!("echo {max} > {}", q("read_ahead_kb")),
                            udev("read_ahead_kb", &max.to_string()),
                        ]
                    },
                    None,
                );
            }
            if let Some(want) = b.rq_affinity {
                let id = "block.rq_affinity";
                self.number_row(
                    id,
                    format!("{id} ({name})"),
                    self.host.queue_attr(dev, "rq_affinity"),
                    Bound::Equals(u64::from(want)),
                    || {
                        vec![
                            format!("echo {want} > {}", q("rq_affinity")),
                            udev("rq_affinity", &want.to_string()),
                        ]
                    },
                    None,
                );
            }
        }
    }

    fn number_row(
        &mut self,
        id: &str,
        check: String,
        found: Option<String>,
        bound: Bound,
        fix: impl FnOnce() -> Vec<String>,
        note: Option<&str>,
    ) {
        let expected = bound.to_string();
        let Some(found) = found else {
            self.skip(Row::new(id, check, expected, "unreadable"));
            return;
        };
        let mut row = Row::new(id, check, expected, &found).fix(fix());
        if let Some(n) = note {
            row = row.note(n);
        }
        let ok = found
            .parse::<u64>()
            .is_ok_and(|v| bound.holds(i128::from(v)));
        self.judge(row, ok);
    }

    fn filesystem(&mut self, mount: Option<&Mount>, data_dir: &std::path::Path) {
        let fs = &self.profile.filesystem;
        let Some(m) = mount else {
            if fs.types.is_some()
                || !fs.mount_options.is_empty()
                || !fs.forbidden_mount_options.is_empty()
            {
                self.skip(Row::new(
                    "fs.type",
                    "fs.type",
                    "a mount",
                    format!("no mount found for {}", data_dir.display()),
                ));
            }
            return;
        };
        let mp = m.mount_point.display().to_string();
        if let Some(types) = &fs.types {
            let row = Row::new("fs.type", "fs.type", types.join(" | "), format!("{} on {mp}", m.fs_type)).fix([
                format!(
                    "put store_dir on a {} filesystem, e.g. mkfs.xfs /dev/<disk> && mount -o noatime /dev/<disk> /var/lib/rocketmq-rs",
                    types.join(" or ")
                ),
            ]);
            let ok = types.contains(&m.fs_type);
            self.judge(row, ok);
        }
        // Hard floor: ext4 refuses O_DIRECT in data=journal mode.
        if m.fs_type == "ext4" && m.options.iter().any(|o| o == "data=journal") {
            let row = Row::new("fs.forbidden_mount_options", "fs.o_direct", "O_DIRECT support", "ext4 data=journal")
                .fix([format!(
                    "set data=ordered for {mp} in /etc/fstab and remount (data= cannot change on a live remount)"
                )])
                .note("ext4 in data=journal mode does not support O_DIRECT, which every commit-log write uses");
            self.push(row, Status::Fail);
        }
        if !fs.mount_options.is_empty() {
            let missing: Vec<&String> = fs
                .mount_options
                .iter()
                .filter(|o| !m.options.contains(o))
                .collect();
            let row = Row::new(
                "fs.mount_options",
                "fs.mount_options",
                fs.mount_options.join(","),
                m.options.join(","),
            )
            .fix([
                format!(
                    "mount -o remount,{} {mp}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                format!(
                    "persistent: add {} to {mp}'s options in /etc/fstab",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ]);
            self.judge(row, missing.is_empty());
        }
        if !fs.forbidden_mount_options.is_empty() {
            let present: Vec<&String> = fs
                .forbidden_mount_options
                .iter()
                .filter(|o| m.options.contains(o))
                .collect();
            let mut fixes = Vec::new();
            for o in &present {
                match o.as_str() {
                    "discard" => {
                        fixes.push(format!("mount -o remount,nodiscard {mp}"));
                        fixes.push(
                            "systemctl enable --now fstrim.timer   # trim weekly instead".into(),
                        );
                    }
                    "sync" => fixes.push(format!("mount -o remount,async {mp}")),
                    "dirsync" => fixes.push(format!(
                        "remove dirsync from {mp}'s options in /etc/fstab and remount"
                    )),
                    other => fixes.push(format!(
                        "remove {other} from {mp}'s options in /etc/fstab and remount"
                    )),
                }
            }
            if !present.is_empty() {
                fixes.push(format!(
                    "persistent: remove them from {mp}'s options in /etc/fstab"
                ));
            }
            let found = if present.is_empty() {
                "none of them".to_owned()
            } else {
                present
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let row = Row::new(
                "fs.forbidden_mount_options",
                "fs.forbidden_mount_options",
                format!("none of {}", fs.forbidden_mount_options.join(",")),
                found,
            )
            .fix(fixes);
            self.judge(row, present.is_empty());
        }
    }

    fn limits(&mut self, limits: Option<ProcessLimits>, broker: BrokerSummary) {
        let want = &self.profile.limits;
        if let Some(min) = want.nofile_min {
            let id = "limits.nofile";
            let floor = Limit::Value(broker.max_connections.saturating_add(NOFILE_HEADROOM));
            let expected = format!(">= {min}");
            match limits {
                None => self.skip(Row::new(id, id, expected, "unreadable")),
                Some(l) => {
                    let row = Row::new(id, id, expected, l.nofile.to_string()).fix([
                        format!("systemd: LimitNOFILE={min} in the broker's unit (deploy/systemd/broker.service)"),
                        format!("limits.conf: echo 'rocketmq - nofile {min}' >> /etc/security/limits.d/rocketmq-rs.conf"),
                        format!("this shell: ulimit -n {min} (up to the hard limit)"),
                    ]);
                    if l.nofile < floor {
                        let row = row.note(format!(
                            "below max_connections + {NOFILE_HEADROOM} = {floor}: the broker runs out of descriptors before it reaches max_connections"
                        ));
                        self.push(row, Status::Fail);
                    } else {
                        self.judge(row, l.nofile >= min);
                    }
                }
            }
        }
        if let Some(min) = want.memlock_min_bytes {
            let id = "limits.memlock";
            let expected = match min {
                Limit::Unlimited => "unlimited".to_owned(),
                Limit::Value(v) => format!(">= {v}"),
            };
            match limits {
                None => self.skip(Row::new(id, id, expected, "unreadable")),
                Some(l) => {
                    let shown = match l.memlock_bytes {
                        Limit::Value(v) => format!("{v} ({} KiB)", v / 1024),
                        Limit::Unlimited => "unlimited".into(),
                    };
                    let value = match min {
                        Limit::Unlimited => "infinity".to_owned(),
                        Limit::Value(v) => v.to_string(),
                    };
                    let row = Row::new(id, id, expected, shown)
                        .fix([
                            format!("systemd: LimitMEMLOCK={value} in the broker's unit (deploy/systemd/broker.service)"),
                            format!(
                                "limits.conf: echo 'rocketmq - memlock {}' >> /etc/security/limits.d/rocketmq-rs.conf",
                                match min {
                                    Limit::Unlimited => "unlimited".to_owned(),
                                    Limit::Value(v) => (v / 1024).to_string(),
                                }
                            ),
                            format!(
                                "this shell: ulimit -l {}",
                                match min {
                                    Limit::Unlimited => "unlimited".to_owned(),
                                    Limit::Value(v) => (v / 1024).to_string(),
                                }
                            ),
                        ])
                        .note("glommio registers a 10 MiB I/O buffer with each of an executor's 3 io_uring rings, charged to locked memory (about 30 MiB per shard); below that it runs with unregistered buffers");
                    if l.memlock_bytes < Limit::Value(GLOMMIO_MIN_MEMLOCK_BYTES) {
                        let row = row.note(format!(
                            "below {GLOMMIO_MIN_MEMLOCK_BYTES} bytes glommio refuses to start an executor: the broker cannot start"
                        ));
                        self.push(row, Status::Fail);
                    } else {
                        self.judge(row, l.memlock_bytes >= min);
                    }
                }
            }
        }
    }

    fn memory(&mut self) {
        let m = self.profile.memory.clone();
        for (id, file, accepted) in [
            (
                "mm.transparent_hugepage",
                "/sys/kernel/mm/transparent_hugepage/enabled",
                m.transparent_hugepage,
            ),
            (
                "mm.transparent_hugepage_defrag",
                "/sys/kernel/mm/transparent_hugepage/defrag",
                m.transparent_hugepage_defrag,
            ),
        ] {
            let Some(accepted) = accepted else {
                continue;
            };
            let expected = accepted.join(" | ");
            match self.host.bracketed(file) {
                None => self.skip(Row::new(id, id, expected, "unreadable")),
                Some(active) => {
                    let first = &accepted[0];
                    let param = if id == "mm.transparent_hugepage" {
                        format!(
                            "persistent: transparent_hugepage={first} on the kernel command line"
                        )
                    } else {
                        format!("persistent: echo {first} > {file} in a boot-time unit (tuned, rc.local)")
                    };
                    let row = Row::new(id, id, expected, &active)
                        .fix([format!("echo {first} > {file}"), param]);
                    let ok = accepted.contains(&active);
                    self.judge(row, ok);
                }
            }
        }
    }

    fn sysctls(&mut self) {
        let sysctls = self.profile.sysctl.clone();
        for (name, expect) in &sysctls {
            let id = format!("sysctl.{name}");
            let bound = Bound::from_sysctl(expect);
            let expected = match expect.field {
                Some(f) => format!("field {} {bound}", f + 1),
                None => bound.to_string(),
            };
            let Some(raw) = self.host.sysctl(name) else {
                self.skip(Row::new(&id, &id, expected, "absent").note(
                    "this kernel does not have this sysctl (or it is in another network namespace)",
                ));
                continue;
            };
            let normalized = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            let value = match expect.field {
                Some(f) => normalized.split(' ').nth(f).unwrap_or("").to_owned(),
                None => normalized.clone(),
            };
            let ok = bound.holds_text(&value);
            let target = bound.target(&value);
            let new_value = match expect.field {
                Some(f) => normalized
                    .split(' ')
                    .enumerate()
                    .map(|(i, v)| if i == f { target.clone() } else { v.to_owned() })
                    .collect::<Vec<_>>()
                    .join(" "),
                None => target,
            };
            let quoted = if new_value.contains(' ') {
                format!("\"{new_value}\"")
            } else {
                new_value.clone()
            };
            let row = Row::new(&id, &id, expected, normalized).fix([
                format!("sysctl -w {name}={quoted}"),
                format!("persistent: echo '{name} = {new_value}' >> {SYSCTL_FILE}"),
            ]);
            self.judge(row, ok);
        }
    }
}

fn policy_label(p: IrqPolicy) -> &'static str {
    match p {
        IrqPolicy::Spread => "spread",
        IrqPolicy::OffShards => "off the shard cores",
    }
}

/// A numeric or textual expectation.
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Min(u64),
    Max(u64),
    Equals(u64),
    Range { min: Option<i64>, max: Option<i64> },
    EqualsInt(i64),
    EqualsText(String),
}

impl Bound {
    fn from_sysctl(e: &SysctlExpect) -> Self {
        match &e.equals {
            Some(toml::Value::Integer(v)) => Bound::EqualsInt(*v),
            Some(toml::Value::String(s)) => {
                Bound::EqualsText(s.split_whitespace().collect::<Vec<_>>().join(" "))
            }
            _ => Bound::Range {
                min: e.min,
                max: e.max,
            },
        }
    }

    fn holds(&self, v: i128) -> bool {
        match self {
            Bound::Min(m) => v >= i128::from(*m),
            Bound::Max(m) => v <= i128::from(*m),
            Bound::Equals(m) => v == i128::from(*m),
            Bound::EqualsInt(m) => v == i128::from(*m),
            Bound::Range { min, max } => {
                min.is_none_or(|m| v >= i128::from(m)) && max.is_none_or(|m| v <= i128::from(m))
            }
            Bound::EqualsText(_) => false,
        }
    }

    fn holds_text(&self, text: &str) -> bool {
        match self {
            Bound::EqualsText(want) => text == want,
            _ => text.parse::<i128>().is_ok_and(|v| self.holds(v)),
        }
    }

    /// The value a fix sets, given the current one.
    fn target(&self, current: &str) -> String {
        match self {
            Bound::Min(v) | Bound::Max(v) | Bound::Equals(v) => v.to_string(),
            Bound::EqualsInt(v) => v.to_string(),
            Bound::EqualsText(t) => t.clone(),
            Bound::Range { min, max } => match current.parse::<i128>() {
                Ok(v) if min.is_some_and(|m| v < i128::from(m)) => {
                    min.map(|m| m.to_string()).unwrap_or_default()
                }
                Ok(v) if max.is_some_and(|m| v > i128::from(m)) => {
                    max.map(|m| m.to_string()).unwrap_or_default()
                }
                Ok(v) => v.to_string(),
                Err(_) => min.or(*max).map(|m| m.to_string()).unwrap_or_default(),
            },
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Min(v) => write!(f, ">= {v}"),
            Bound::Max(v) => write!(f, "<= {v}"),
            Bound::Equals(v) => write!(f, "= {v}"),
            Bound::EqualsInt(v) => write!(f, "= {v}"),
            Bound::EqualsText(t) => write!(f, "= {t}"),
            Bound::Range {
                min: Some(a),
                max: Some(b),
            } => write!(f, "{a}..={b}"),
            Bound::Range {
                min: Some(a),
                max: None,
            } => write!(f, ">= {a}"),
            Bound::Range {
                min: None,
                max: Some(b),
            } => write!(f, "<= {b}"),
            Bound::Range {
                min: None,
                max: None,
            } => f.write_str("any"),
        }
    }
}
