//! hostcheck against fake sysfs/procfs trees (so nothing depends on the machine running
//! the tests), the shipped host profiles, and the binary's exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use tuning::check::CheckResult;
use tuning::{BrokerSummary, Host, HostProfile, Options, Report, Status};

/// A directory standing for `/`, removed when dropped.
struct FakeRoot {
    dir: PathBuf,
}

impl FakeRoot {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hostcheck-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create fake root");
        Self { dir }
    }

    fn file(&self, path: &str, content: &str) -> &Self {
        let p = self.dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        self
    }

    fn dir(&self, path: &str) -> &Self {
        std::fs::create_dir_all(self.dir.join(path.trim_start_matches('/'))).expect("mkdir");
        self
    }

    /// A relative symlink, as sysfs has them.
    fn link(&self, path: &str, target: &str) -> &Self {
        let p = self.dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(target, &p).expect("symlink");
        self
    }

    fn remove(&self, path: &str) -> &Self {
        let p = self.dir.join(path.trim_start_matches('/'));
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
        self
    }

    fn host(&self) -> Host {
        Host::with_root(&self.dir)
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const NVME_PCI: &str = "/sys/devices/pci0000:00/0000:01:00.0";
const NIC_PCI: &str = "/sys/devices/pci0000:00/0000:02:00.0";

fn limits(nofile: &str, memlock: &str) -> String {
    format!(
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max cpu time              unlimited            unlimited            seconds   \n\
         Max open files            {nofile:<20} {nofile:<20} files     \n\
         Max locked memory         {memlock:<20} {memlock:<20} bytes     \n"
    )
}

/// A 4-CPU host with a partitioned NVMe drive under `/`, a second NVMe drive at `/data`,
/// a two-queue NIC, and every setting the nvme-throughput profile asks for.
fn good_nvme_host() -> FakeRoot {
    let r = FakeRoot::new();
    r.file("/proc/sys/kernel/osrelease", "6.8.0-test\n")
        .file("/sys/devices/system/cpu/online", "0-3\n");
    for cpu in 0..4 {
        r.file(
            &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
            "performance\n",
        );
    }
    r.file(
        "/proc/self/mountinfo",
        "22 1 259:1 / / rw,noatime shared:1 - xfs /dev/nvme0n1p1 rw,attr2,inode64\n\
         23 22 0:21 / /proc rw,relatime - proc proc rw\n\
         24 22 259:3 / /data rw,noatime - xfs /dev/nvme1n1 rw,attr2\n",
    );
    // nvme0n1 with its partition; 259:1 is the partition.
    let disk = format!("{NVME_PCI}/nvme/nvme0/nvme0n1");
    r.file(&format!("{disk}/nvme0n1p1/partition"), "1\n");
    for (attr, v) in [
        ("scheduler", "[none] mq-deadline kyber\n"),
        ("rotational", "0\n"),
        ("nr_requests", "1023\n"),
        ("read_ahead_kb", "128\n"),
        ("rq_affinity", "2\n"),
    ] {
        r.file(&format!("{disk}/queue/{attr}"), v);
    }
    r.dir(&format!("{disk}/slaves"));
    r.link(
        "/sys/dev/block/259:1",
        "../../devices/pci0000:00/0000:01:00.0/nvme/nvme0/nvme0n1/nvme0n1p1",
    );
    let mut interrupts = String::from("            CPU0       CPU1       CPU2       CPU3\n");
    // Admin queue and four I/O queues, one per CPU (the admin queue shares CPU 0).
    for (i, (irq, cpu)) in [(40, 0), (41, 0), (42, 1), (43, 2), (44, 3)]
        .iter()
        .enumerate()
    {
        r.file(&format!("{NVME_PCI}/msi_irqs/{irq}"), "msix\n");
        r.file(
            &format!("/proc/irq/{irq}/effective_affinity_list"),
            &format!("{cpu}\n"),
        );
        r.file(
            &format!("/proc/irq/{irq}/smp_affinity_list"),
            &format!("{cpu}\n"),
        );
        interrupts.push_str(&format!(
            " {irq}:          1          0          0          0  PCI-MSIX-0000:01:00.0 {i}-edge      nvme0q{i}\n"
        ));
    }
    // The NIC: two combined queues on CPUs 2 and 3.
    for (i, (irq, cpu)) in [(50, 2), (51, 3)].iter().enumerate() {
        r.file(&format!("{NIC_PCI}/msi_irqs/{irq}"), "msix\n");
        r.file(
            &format!("/proc/irq/{irq}/smp_affinity_list"),
            &format!("{cpu}\n"),
        );
        interrupts.push_str(&format!(
            " {irq}:          0          0          9          9  PCI-MSIX-0000:02:00.0 {i}-edge      eth0-TxRx-{i}\n"
        ));
    }
    r.file("/proc/interrupts", &interrupts);
    r.link(
        "/sys/class/net/eth0/device",
        "../../../devices/pci0000:00/0000:02:00.0",
    );
    r.dir("/sys/class/net/lo");
    r.file("/proc/self/limits", &limits("1048576", "unlimited"));
    r.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always [madvise] never\n",
    )
    .file(
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "always defer [defer+madvise] madvise never\n",
    );
    for (name, v) in [
        ("kernel/io_uring_disabled", "0"),
        ("kernel/numa_balancing", "0"),
        ("vm/swappiness", "1"),
        ("vm/dirty_ratio", "20"),
        ("vm/dirty_background_ratio", "10"),
        ("fs/nr_open", "1048576"),
        ("fs/file-max", "9223372036854775807"),
        ("net/core/somaxconn", "4096"),
        ("net/ipv4/tcp_max_syn_backlog", "8192"),
        ("net/core/netdev_max_backlog", "16384"),
        ("net/core/rmem_max", "16777216"),
        ("net/core/wmem_max", "16777216"),
        ("net/ipv4/tcp_rmem", "4096\t131072\t16777216"),
        ("net/ipv4/tcp_wmem", "4096\t16384\t16777216"),
        ("net/ipv4/tcp_slow_start_after_idle", "0"),
    ] {
        r.file(&format!("/proc/sys/{name}"), &format!("{v}\n"));
    }
    r
}

fn shipped(name: &str) -> PathBuf {
    tuning::profiles_dir().join(format!("{name}.host.toml"))
}

fn load(name: &str) -> (HostProfile, BrokerSummary) {
    let path = shipped(name);
    let profile = HostProfile::load(&path).expect("host profile");
    let broker = BrokerSummary::load(&profile.broker_profile_path(&path).expect("broker profile"))
        .expect("broker summary");
    (profile, broker)
}

fn check_at(
    root: &FakeRoot,
    profile: &HostProfile,
    broker: BrokerSummary,
    data_dir: &str,
) -> Report {
    let opts = Options {
        data_dir: data_dir.into(),
        ..Options::default()
    };
    tuning::run(&root.host(), profile, broker, &opts)
}

fn row<'a>(report: &'a Report, check: &str) -> &'a CheckResult {
    report
        .checks
        .iter()
        .find(|c| c.check == check)
        .unwrap_or_else(|| panic!("no row {check} in {:#?}", report.checks))
}

fn not_ok(report: &Report) -> Vec<&CheckResult> {
    report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .collect()
}

#[test]
fn a_well_tuned_nvme_host_passes_every_check() {
    let root = good_nvme_host();
    let (profile, broker) = load("nvme-throughput");
    let report = check_at(&root, &profile, broker, "/var/lib/rocketmq-rs/store");
    assert!(not_ok(&report).is_empty(), "{:#?}", not_ok(&report));
    assert!(!report.failed());
    assert_eq!(report.shards, 4, "shards = 0 means one per online CPU");
    // The partition resolves to its disk, where the queue settings are.
    assert_eq!(report.devices.len(), 1);
    assert_eq!(report.devices[0].name, "nvme0n1");
    assert_eq!(
        report.mount.as_ref().map(|m| m.fs_type.as_str()),
        Some("xfs")
    );
    // The admin queue is not counted; the four I/O queues cover the four CPUs.
    assert_eq!(
        row(&report, "irq.storage (nvme0n1)").found,
        "4 vectors on CPU 0-3"
    );
    assert_eq!(
        row(&report, "irq.network (eth0)").found,
        "2 vectors on CPU 2-3"
    );
    assert!(
        report.checks.iter().all(|c| c.fix.is_empty()),
        "fixes only for problems"
    );
    let text = tuning::report::table(&report);
    assert!(text.contains("0 WARN, 0 FAIL"), "{text}");
}

#[test]
fn mismatches_are_reported_with_the_command_that_fixes_them() {
    let root = good_nvme_host();
    let disk = format!("{NVME_PCI}/nvme/nvme0/nvme0n1");
    root.file(
        &format!("{disk}/queue/scheduler"),
        "none [mq-deadline] kyber\n",
    )
    .file(&format!("{disk}/queue/read_ahead_kb"), "4096\n")
    .file(
        "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
        "powersave\n",
    )
    .file("/proc/sys/vm/swappiness", "60\n")
    .file("/proc/sys/net/ipv4/tcp_wmem", "4096 16384 4194304\n")
    .file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let (profile, broker) = load("nvme-throughput");
    let report = check_at(&root, &profile, broker, "/srv/store");

    let sched = row(&report, "block.scheduler (nvme0n1)");
    assert_eq!(
        sched.status,
        Status::Fail,
        "the profile makes the scheduler a failure"
    );
    assert_eq!(sched.found, "mq-deadline");
    assert_eq!(
        sched.fix[0],
        "echo none > /sys/block/nvme0n1/queue/scheduler"
    );
    assert!(
        sched.fix[1].contains("ATTR{queue/scheduler}=\"none\""),
        "{:?}",
        sched.fix
    );

    let ra = row(&report, "block.read_ahead_kb (nvme0n1)");
    assert_eq!(
        (ra.status, ra.fix[0].as_str()),
        (
            Status::Warn,
            "echo 128 > /sys/block/nvme0n1/queue/read_ahead_kb"
        )
    );

    let gov = row(&report, "cpu.governor");
    assert_eq!(gov.status, Status::Warn);
    assert_eq!(gov.found, "performance on 0,2-3; powersave on 1");
    assert_eq!(gov.fix[0], "cpupower frequency-set -g performance");

    let swap = row(&report, "sysctl.vm.swappiness");
    assert_eq!(swap.status, Status::Warn);
    assert_eq!(swap.fix[0], "sysctl -w vm.swappiness=1");
    assert!(swap.fix[1].ends_with("/etc/sysctl.d/90-rocketmq-rs.conf"));

    // Multi-value sysctls: only the named field is compared, and the fix keeps the others.
    let wmem = row(&report, "sysctl.net.ipv4.tcp_wmem");
    assert_eq!(wmem.status, Status::Warn);
    assert_eq!(
        wmem.fix[0],
        "sysctl -w net.ipv4.tcp_wmem=\"4096 16384 16777216\""
    );
    assert_eq!(row(&report, "sysctl.net.ipv4.tcp_rmem").status, Status::Ok);

    let thp = row(&report, "mm.transparent_hugepage");
    assert_eq!((thp.status, thp.found.as_str()), (Status::Warn, "always"));
    assert_eq!(
        thp.fix[0],
        "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"
    );

    assert!(report.failed());
    assert_eq!(report.count(Status::Fail), 1);
}

#[test]
fn hard_floors_fail_whatever_the_profile_says() {
    let root = good_nvme_host();
    // Below glommio's 512 KiB floor, and below max_connections (50 000) + 1024.
    root.file("/proc/self/limits", &limits("4096", "65536"));
    root.file(
        "/proc/self/mountinfo",
        "22 1 259:1 / / rw,noatime - ext4 /dev/nvme0n1p1 rw,data=journal\n",
    );
    let (mut profile, broker) = load("nvme-throughput");
    profile.severity.clear();
    let report = check_at(&root, &profile, broker, "/store");
    for check in ["limits.memlock", "limits.nofile", "fs.o_direct"] {
        let r = row(&report, check);
        assert_eq!(r.status, Status::Fail, "{r:#?}");
        assert!(r.note.is_some() && !r.fix.is_empty(), "{r:#?}");
    }
    assert_eq!(
        row(&report, "limits.memlock").fix[0],
        "systemd: LimitMEMLOCK=infinity in the broker's unit (deploy/systemd/broker.service)"
    );
    assert_eq!(
        row(&report, "fs.forbidden_mount_options").status,
        Status::Warn
    );

    // Above the floors but below the profile: a warning unless [severity] says fail.
    root.file("/proc/self/limits", &limits("65536", "8388608"));
    let report = check_at(&root, &profile, broker, "/store");
    assert_eq!(row(&report, "limits.memlock").status, Status::Warn);
    assert_eq!(row(&report, "limits.nofile").status, Status::Warn);
    profile
        .severity
        .insert("limits.nofile".into(), tuning::profile::Severity::Fail);
    let report = check_at(&root, &profile, broker, "/store");
    assert_eq!(row(&report, "limits.nofile").status, Status::Fail);
}

#[test]
fn the_store_resolves_through_the_longest_mount_and_device_mapper() {
    let root = good_nvme_host();
    // /data is dm-0 (LVM) over a partition of nvme1n1 and the whole of nvme2n1.
    root.file(
        "/proc/self/mountinfo",
        "22 1 259:1 / / rw,noatime - xfs /dev/nvme0n1p1 rw\n\
         24 22 253:0 / /data rw,noatime - xfs /dev/mapper/vg-store rw\n",
    );
    let dm = "/sys/devices/virtual/block/dm-0";
    root.file(&format!("{dm}/queue/scheduler"), "none\n");
    root.link("/sys/dev/block/253:0", "../../devices/virtual/block/dm-0");
    for (n, part) in [(1, true), (2, false)] {
        let disk = format!(
            "/sys/devices/pci0000:00/0000:0{}:00.0/nvme/nvme{n}/nvme{n}n1",
            n + 2
        );
        for (attr, v) in [
            (
                "scheduler",
                if n == 1 {
                    "[none] mq-deadline"
                } else {
                    "none [mq-deadline]"
                },
            ),
            ("rotational", "0"),
            ("nr_requests", "1023"),
            ("read_ahead_kb", "128"),
            ("rq_affinity", "2"),
        ] {
            root.file(&format!("{disk}/queue/{attr}"), v);
        }
        let target = if part {
            root.file(&format!("{disk}/nvme{n}n1p1/partition"), "1");
            format!(
                "../../../../pci0000:00/0000:0{}:00.0/nvme/nvme{n}/nvme{n}n1/nvme{n}n1p1",
                n + 2
            )
        } else {
            format!(
                "../../../../pci0000:00/0000:0{}:00.0/nvme/nvme{n}/nvme{n}n1",
                n + 2
            )
        };
        let slave = if part {
            format!("nvme{n}n1p1")
        } else {
            format!("nvme{n}n1")
        };
        root.link(&format!("{dm}/slaves/{slave}"), &target);
    }
    let (profile, broker) = load("nvme-throughput");
    let report = check_at(&root, &profile, broker, "/data/rocketmq/store");
    assert_eq!(
        report.mount.as_ref().map(|m| m.mount_point.clone()),
        Some(PathBuf::from("/data"))
    );
    let names: Vec<&str> = report.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["nvme1n1", "nvme2n1"]);
    assert_eq!(row(&report, "block.scheduler (nvme1n1)").status, Status::Ok);
    assert_eq!(
        row(&report, "block.scheduler (nvme2n1)").status,
        Status::Fail
    );
    // These disks have no MSI entries in the fake tree.
    assert_eq!(row(&report, "irq.storage (nvme1n1)").status, Status::Skip);

    // A store on a filesystem without a block device (tmpfs) fails the type check and
    // skips the device checks.
    root.file(
        "/proc/self/mountinfo",
        "22 1 259:1 / / rw,noatime - xfs /dev/nvme0n1p1 rw\n\
         25 22 0:40 / /dev/shm rw - tmpfs tmpfs rw\n",
    );
    let report = check_at(&root, &profile, broker, "/dev/shm/store");
    assert_eq!(row(&report, "fs.type").status, Status::Fail);
    assert_eq!(row(&report, "block").status, Status::Skip);
}

#[test]
fn collapsed_or_single_queue_interrupts_are_flagged() {
    let root = good_nvme_host();
    for irq in 40..=44 {
        root.file(&format!("/proc/irq/{irq}/effective_affinity_list"), "0\n");
    }
    let (profile, broker) = load("nvme-throughput");
    let report = check_at(&root, &profile, broker, "/store");
    let r = row(&report, "irq.storage (nvme0n1)");
    assert_eq!(
        (r.status, r.found.as_str()),
        (Status::Warn, "4 vectors on CPU 0")
    );
    assert_eq!(
        r.fix[0],
        "echo 0 > /proc/irq/41/smp_affinity_list   # nvme0q1"
    );
    assert_eq!(
        r.fix[1],
        "echo 1 > /proc/irq/42/smp_affinity_list   # nvme0q2"
    );

    // One I/O vector on a 4-CPU machine: a single-queue device.
    for irq in 42..=44 {
        root.remove(&format!("{NVME_PCI}/msi_irqs/{irq}"));
    }
    let report = check_at(&root, &profile, broker, "/store");
    let r = row(&report, "irq.storage (nvme0n1)");
    assert_eq!(r.status, Status::Warn);
    assert!(
        r.note
            .as_deref()
            .is_some_and(|n| n.contains("single-queue")),
        "{r:#?}"
    );
}

#[test]
fn off_shards_placement_follows_the_shard_count() {
    let root = good_nvme_host();
    let (mut profile, mut broker) = load("nvme-throughput");
    profile.irq.network = Some(tuning::profile::IrqPolicy::OffShards);
    profile.irq.irqbalance = Some(tuning::profile::Running::Stopped);
    // Shards 0-1 on CPUs 0-1; the NIC is on CPUs 2-3.
    broker.shards = 2;
    let report = check_at(&root, &profile, broker, "/store");
    let r = row(&report, "irq.network (eth0)");
    assert_eq!((r.status, r.expected.as_str()), (Status::Ok, "on CPU 2-3"));
    assert_eq!(row(&report, "irq.irqbalance").status, Status::Ok);

    root.file("/proc/irq/50/smp_affinity_list", "1\n");
    root.file("/proc/4242/comm", "irqbalance\n");
    let report = check_at(&root, &profile, broker, "/store");
    let r = row(&report, "irq.network (eth0)");
    assert_eq!(r.status, Status::Warn);
    assert_eq!(
        r.fix[0],
        "echo 2-3 > /proc/irq/50/smp_affinity_list   # eth0-TxRx-0"
    );
    assert_eq!(
        r.fix.len(),
        2,
        "one command per misplaced vector, then the persistent way"
    );
    let ib = row(&report, "irq.irqbalance");
    assert_eq!((ib.status, ib.found.as_str()), (Status::Warn, "running"));

    // --shards overrides the profile; with a shard on every CPU nothing is left.
    let opts = Options {
        data_dir: "/store".into(),
        shards: Some(4),
        ..Options::default()
    };
    let report = tuning::run(&root.host(), &profile, broker, &opts);
    let r = row(&report, "irq.network (eth0)");
    assert_eq!(r.status, Status::Warn);
    assert!(r.fix[0].contains("--set shards=3"), "{r:#?}");

    // Unpinned shards have no fixed cores to avoid.
    broker.cpu_pinning = false;
    let report = check_at(&root, &profile, broker, "/store");
    assert_eq!(row(&report, "irq.network (eth0)").status, Status::Skip);
}

#[test]
fn what_the_machine_does_not_expose_is_skipped_not_failed() {
    let root = good_nvme_host();
    for cpu in 0..4 {
        root.remove(&format!("/sys/devices/system/cpu/cpu{cpu}"));
    }
    root.remove("/proc/sys/kernel/io_uring_disabled");
    root.remove("/proc/self/limits");
    let (profile, broker) = load("nvme-throughput");
    let report = check_at(&root, &profile, broker, "/store");
    for check in [
        "cpu.governor",
        "sysctl.kernel.io_uring_disabled",
        "limits.nofile",
        "limits.memlock",
    ] {
        assert_eq!(row(&report, check).status, Status::Skip, "{check}");
    }
    assert!(!report.failed());
}

#[test]
fn every_shipped_host_profile_is_valid_and_names_its_broker_profile() {
    for name in tuning::PROFILES {
        let path = shipped(name);
        let profile = HostProfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(profile.profile, *name, "{}", path.display());
        let broker = profile
            .broker_profile_path(&path)
            .expect("broker_profile is set");
        assert_eq!(broker, tuning::profiles_dir().join(format!("{name}.toml")));
        BrokerSummary::load(&broker).unwrap_or_else(|e| panic!("{e}"));
        // Against a well-tuned host, nothing in any profile is a failure.
        let root = good_nvme_host();
        let report = check_at(
            &root,
            &profile,
            BrokerSummary::load(&broker).expect("summary"),
            "/store",
        );
        assert!(!report.failed(), "{name}: {:#?}", not_ok(&report));
    }
    // And nothing else sits in the directory unchecked.
    let mut found: Vec<String> = std::fs::read_dir(tuning::profiles_dir())
        .expect("profiles dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".toml"))
        .collect();
    found.sort();
    let mut expected: Vec<String> = tuning::PROFILES
        .iter()
        .flat_map(|n| [format!("{n}.toml"), format!("{n}.host.toml")])
        .collect();
    expected.sort();
    assert_eq!(found, expected);
}

fn hostcheck(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hostcheck"))
        .args(args)
        .output()
        .expect("run hostcheck");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn the_binary_exits_0_on_pass_1_on_failure_2_on_usage_errors() {
    let root = good_nvme_host();
    let profile = shipped("nvme-throughput");
    let base = [
        "--profile",
        path_str(&profile),
        "--root",
        path_str(&root.dir),
        "--data-dir",
        "/store",
    ];

    let (code, out, err) = hostcheck(&base);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("CHECK") && out.contains("block.scheduler (nvme0n1)"),
        "{out}"
    );

    let (code, out, _) = hostcheck(&[&base[..], &["--json"]].concat());
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(json["profile"], "nvme-throughput");
    assert!(json["checks"].as_array().is_some_and(|c| !c.is_empty()));

    // A warning alone keeps exit code 0.
    root.file("/proc/sys/vm/swappiness", "60\n");
    let (code, out, _) = hostcheck(&base);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sysctl -w vm.swappiness=1"), "{out}");

    root.file(
        &format!("{NVME_PCI}/nvme/nvme0/nvme0n1/queue/scheduler"),
        "none [bfq]\n",
    );
    let (code, out, _) = hostcheck(&base);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("echo none > /sys/block/nvme0n1/queue/scheduler"));

    let (code, _, err) = hostcheck(&["--profile"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = hostcheck(&[&base[..], &["--no-such-flag"]].concat());
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = hostcheck(&["--profile", "/nonexistent/x.host.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    // A typo in a host file is a usage error, not a silently skipped check.
    root.file(
        "/bad.host.toml",
        "profile = \"x\"\ndescription = \"\"\n[block]\nschedular = [\"none\"]\n",
    );
    let bad = root.dir.join("bad.host.toml");
    let (code, _, err) = hostcheck(&["--profile", path_str(&bad)]);
    assert_eq!(code, 2);
    assert!(err.contains("schedular"), "{err}");
}
