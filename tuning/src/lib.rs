//! Tuning: the broker's configuration profiles and `hostcheck`, which compares a machine
//! with what a profile expects of it.
//!
//! `tuning/profiles/<name>.toml` are broker config files (what `broker --config` reads;
//! validated through the broker's own types by `node/tests/tuning_profiles.rs`).
//! `tuning/profiles/<name>.host.toml` hold what the same profile expects of the host:
//! CPU governor, interrupt placement, block-queue settings, filesystem and mount options,
//! resource limits, huge pages and sysctls ([`profile::HostProfile`]).
//!
//! This crate reads sysfs and procfs under a configurable root ([`probe::Host`]) so its
//! checks run against fake trees in tests. It never changes the machine: it prints the
//! commands that would. It does not depend on the broker crate; it reads the three
//! broker keys it needs ([`profile::BrokerSummary`]) from the TOML directly.

pub mod check;
pub mod probe;
pub mod profile;
pub mod report;

pub use check::{run, Options, Report, Status};
pub use probe::Host;
pub use profile::{BrokerSummary, HostProfile};

/// The profiles shipped in `tuning/profiles/`.
pub const PROFILES: &[&str] = &["default", "nvme-throughput", "low-latency", "small-vm"];

/// `tuning/profiles/` in this source tree.
pub fn profiles_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}
