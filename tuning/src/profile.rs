//! Host expectations (`tuning/profiles/<name>.host.toml`) and the few broker-profile keys
//! the checks need.
//!
//! A broker profile (`<name>.toml`) is a plain broker config file: the broker's parser
//! denies unknown keys, so what a profile expects of the machine lives beside it in a
//! host file. Every key of a host file is optional; a key left out is not checked.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one profile expects of the machine.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostProfile {
    /// The profile's name (`nvme-throughput`); the broker profile is `<name>.toml`.
    pub profile: String,
    /// One line on the hardware this profile is for.
    pub description: String,
    /// The broker profile these expectations go with, relative to the host file
    /// (`nvme-throughput.toml`). hostcheck reads `shards`, `cpu_pinning` and
    /// `max_connections` from it.
    pub broker_profile: Option<String>,
    #[serde(default)]
    pub cpu: CpuExpect,
    #[serde(default)]
    pub irq: IrqExpect,
    #[serde(default)]
    pub block: BlockExpect,
    #[serde(default)]
    pub filesystem: FilesystemExpect,
    #[serde(default)]
    pub limits: LimitsExpect,
    #[serde(default)]
    pub memory: MemoryExpect,
    /// `name = { min | max | equals, field }`, name as `sysctl` spells it
    /// (`vm.swappiness`), read from `/proc/sys/vm/swappiness`.
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlExpect>,
    /// Overrides the severity of a mismatch, by check id (`"block.scheduler" = "fail"`,
    /// `"sysctl.vm.swappiness" = "warn"`). See [`CHECK_IDS`].
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
}

/// CPU frequency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CpuExpect {
    /// `scaling_governor` expected on every CPU (`performance`). Skipped on machines
    /// without cpufreq (most VMs).
    pub governor: Option<String>,
}

/// Where device interrupts land, relative to the shard cores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IrqExpect {
    /// Interrupts of the device holding the store.
    pub storage: Option<IrqPolicy>,
    /// Interrupts of the network interfaces (all with a device, or `--net-iface`).
    pub network: Option<IrqPolicy>,
    /// Whether the irqbalance daemon should be running.
    pub irqbalance: Option<Running>,
}

/// Where a device's interrupt vectors should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IrqPolicy {
    /// Vectors on as many distinct CPUs as there are vectors (up to the CPU count), so
    /// each shard's completions are handled on or near its own core.
    Spread,
    /// No vector on a shard core (shard N runs on CPU N): needs fewer shards than CPUs.
    OffShards,
}

/// Expected state of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Running {
    Running,
    Stopped,
}

/// The block device under the store (each underlying disk for dm/md devices).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockExpect {
    /// Accepted I/O schedulers; the first is the one a fix sets.
    pub scheduler: Option<Vec<String>>,
    /// Whether the device may report itself rotational.
    pub rotational: Option<bool>,
    /// Lowest accepted `queue/nr_requests`.
    pub nr_requests_min: Option<u64>,
    /// Highest accepted `queue/read_ahead_kb`.
    pub read_ahead_kb_max: Option<u64>,
    /// Expected `queue/rq_affinity` (2: complete on the submitting CPU).
    pub rq_affinity: Option<u8>,
}

/// The filesystem holding the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemExpect {
    /// Accepted filesystem types (`xfs`, `ext4`).
    pub types: Option<Vec<String>>,
    /// Mount options that must be present (`noatime`).
    #[serde(default)]
    pub mount_options: Vec<String>,
    /// Mount options that must be absent (`data=journal`, `discard`).
    #[serde(default)]
    pub forbidden_mount_options: Vec<String>,
}

/// Resource limits of the broker process (hostcheck reads its own, or `--pid`'s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsExpect {
    /// Lowest accepted soft RLIMIT_NOFILE.
    pub nofile_min: Option<Limit>,
    /// Lowest accepted soft RLIMIT_MEMLOCK, in bytes.
    pub memlock_min_bytes: Option<Limit>,
}

/// A resource limit: a number or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "RawLimit", into = "RawLimit")]
pub enum Limit {
    Value(u64),
    Unlimited,
}

/// How a [`Limit`] is written: `65536` or `"unlimited"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum RawLimit {
    Value(u64),
    Text(String),
}

impl TryFrom<RawLimit> for Limit {
    type Error = String;

    fn try_from(raw: RawLimit) -> Result<Self, String> {
        match raw {
            RawLimit::Value(v) => Ok(Limit::Value(v)),
            RawLimit::Text(t) if t == "unlimited" => Ok(Limit::Unlimited),
            RawLimit::Text(t) => Err(format!("expected a number or \"unlimited\", found {t:?}")),
        }
    }
}

impl From<Limit> for RawLimit {
    fn from(limit: Limit) -> Self {
        match limit {
            Limit::Value(v) => RawLimit::Value(v),
            Limit::Unlimited => RawLimit::Text("unlimited".into()),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Value(v) => write!(f, "{v}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// Memory management.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryExpect {
    /// Accepted `/sys/kernel/mm/transparent_hugepage/enabled` modes; the first is the
    /// one a fix sets.
    pub transparent_hugepage: Option<Vec<String>>,
    /// Accepted `/sys/kernel/mm/transparent_hugepage/defrag` modes.
    pub transparent_hugepage_defrag: Option<Vec<String>>,
}

/// One sysctl's expected value. At least one of `min`, `max`, `equals`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlExpect {
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// An integer, or a string compared with runs of whitespace collapsed.
    pub equals: Option<toml::Value>,
    /// For multi-value sysctls (`net.ipv4.tcp_rmem = min default max`): the
    /// whitespace-separated field compared, from 0.
    pub field: Option<usize>,
}

/// What a mismatch costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported; the exit code stays 0.
    Warn,
    /// Reported; hostcheck exits 1.
    Fail,
}

/// Every check id a `[severity]` table may name, besides `sysctl.<name>` for each
/// sysctl the profile lists.
pub const CHECK_IDS: &[&str] = &[
    "cpu.governor",
    "irq.storage",
    "irq.network",
    "irq.irqbalance",
    "block.scheduler",
    "block.rotational",
    "block.nr_requests",
    "block.read_ahead_kb",
    "block.rq_affinity",
    "fs.type",
    "fs.mount_options",
    "fs.forbidden_mount_options",
    "limits.nofile",
    "limits.memlock",
    "mm.transparent_hugepage",
    "mm.transparent_hugepage_defrag",
];

/// A host file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid host profile: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

impl HostProfile {
    /// Reads and validates a host file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.into(),
            source,
        })?;
        let profile: Self = toml::from_str(&text).map_err(|source| ProfileError::Parse {
            path: path.into(),
            source,
        })?;
        profile
            .validate()
            .map_err(|(key, reason)| ProfileError::Invalid {
                path: path.into(),
                key,
                reason,
            })?;
        Ok(profile)
    }

    /// Rules serde cannot express. Errors are `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((key.to_owned(), reason.to_owned()));
        if self.profile.is_empty() {
            return bad("profile", "must not be empty");
        }
        for (key, list) in [
            ("block.scheduler", &self.block.scheduler),
            ("filesystem.types", &self.filesystem.types),
            (
                "memory.transparent_hugepage",
                &self.memory.transparent_hugepage,
            ),
            (
                "memory.transparent_hugepage_defrag",
                &self.memory.transparent_hugepage_defrag,
            ),
        ] {
            if matches!(list, Some(l) if l.is_empty()) {
                return bad(key, "must list at least one accepted value");
            }
        }
        for (name, expect) in &self.sysctl {
            let key = format!("sysctl.{name}");
            let well_formed = name.contains('.')
                && !name.starts_with('.')
                && !name.ends_with('.')
                && !name.contains("..")
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !well_formed {
                return Err((key, "not a sysctl name (like vm.swappiness)".into()));
            }
            if expect.min.is_none() && expect.max.is_none() && expect.equals.is_none() {
                return Err((key, "needs min, max or equals".into()));
            }
            if let Some(v) = &expect.equals {
                if !matches!(v, toml::Value::Integer(_) | toml::Value::String(_)) {
                    return Err((key, "equals must be an integer or a string".into()));
                }
            }
            if let (Some(min), Some(max)) = (expect.min, expect.max) {
                if min > max {
                    return Err((key, "min is above max".into()));
                }
            }
        }
        for id in self.severity.keys() {
            let known = CHECK_IDS.contains(&id.as_str())
                || id
                    .strip_prefix("sysctl.")
                    .is_some_and(|name| self.sysctl.contains_key(name));
            if !known {
                return Err((
                    format!("severity.{id}"),
                    "not a check id (see tuning::profile::CHECK_IDS, or sysctl.<a listed sysctl>)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The broker profile's path, resolved against the host file's directory.
    pub fn broker_profile_path(&self, host_file: &Path) -> Option<PathBuf> {
        let name = self.broker_profile.as_ref()?;
        Some(
            host_file
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(name),
        )
    }
}

/// The broker settings that decide what the machine must provide. Defaults mirror the
/// broker's (`node/src/config.rs`); the profile test in `node/tests` loads the same files
/// through the broker's own types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BrokerSummary {
    /// 0: one per online CPU.
    pub shards: usize,
    pub cpu_pinning: bool,
    pub max_connections: u64,
}

impl Default for BrokerSummary {
    fn default() -> Self {
        Self {
            shards: 0,
            cpu_pinning: true,
            max_connections: 10_000,
        }
    }
}

impl BrokerSummary {
    /// Reads the keys hostcheck needs from a broker profile; others are ignored (the
    /// broker validates them).
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.into(),
            source,
        })?;
        let value: toml::Table = toml::from_str(&text).map_err(|source| ProfileError::Parse {
            path: path.into(),
            source,
        })?;
        let invalid = |key: &str, reason: &str| ProfileError::Invalid {
            path: path.into(),
            key: key.into(),
            reason: reason.into(),
        };
        let mut summary = Self::default();
        if let Some(v) = value.get("shards") {
            summary.shards = v
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| invalid("shards", "must be a non-negative integer"))?;
        }
        if let Some(v) = value.get("cpu_pinning") {
            summary.cpu_pinning = v
                .as_bool()
                .ok_or_else(|| invalid("cpu_pinning", "must be a boolean"))?;
        }
        if let Some(v) = value.get("max_connections") {
            summary.max_connections = v
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| invalid("max_connections", "must be a non-negative integer"))?;
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostProfile, String> {
        let p: HostProfile = toml::from_str(text).map_err(|e| e.to_string())?;
        p.validate().map_err(|(k, r)| format!("{k}: {r}"))?;
        Ok(p)
    }

    #[test]
    fn limits_accept_numbers_and_unlimited_only() {
        let p = parse(
            "profile = \"x\"\ndescription = \"\"\n[limits]\nnofile_min = 65536\nmemlock_min_bytes = \"unlimited\"\n",
        )
        .unwrap();
        assert_eq!(p.limits.nofile_min, Some(Limit::Value(65536)));
        assert_eq!(p.limits.memlock_min_bytes, Some(Limit::Unlimited));
        assert!(Limit::Unlimited > Limit::Value(u64::MAX));
        assert!(
            parse("profile = \"x\"\ndescription = \"\"\n[limits]\nnofile_min = \"lots\"\n")
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let base = "profile = \"x\"\ndescription = \"\"\n";
        for bad in [
            "[block]\nschedular = [\"none\"]\n",
            "[cpu]\ngovernor = \"performance\"\nturbo = true\n",
            "[irq]\nstorage = \"everywhere\"\n",
            "[sysctl]\n\"vm.swappiness\" = { maximum = 1 }\n",
            "[sysctl]\n\"vm.swappiness\" = { field = 1 }\n",
            "[sysctl]\n\"swappiness\" = { max = 1 }\n",
            "[sysctl]\n\"vm.swappiness\" = { min = 5, max = 1 }\n",
            "[severity]\n\"block.schedulr\" = \"fail\"\n",
            "[severity]\n\"sysctl.vm.swappiness\" = \"fail\"\n",
            "[block]\nscheduler = []\n",
            "colour = \"blue\"\n",
        ] {
            assert!(parse(&format!("{base}{bad}")).is_err(), "accepted: {bad}");
        }
        parse(&format!(
            "{base}[sysctl]\n\"vm.swappiness\" = {{ max = 1 }}\n[severity]\n\"sysctl.vm.swappiness\" = \"fail\"\n\"block.scheduler\" = \"warn\"\n"
        ))
        .unwrap();
    }
}
