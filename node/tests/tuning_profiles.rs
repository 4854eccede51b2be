//! The tuning profiles (`tuning/profiles/*.toml`) load and validate through the broker's
//! own config types, exactly as `broker --config FILE` reads them; their host files
//! (`*.host.toml`) parse and use only known sections; and a profile with a typo fails.

use node::config::{BrokerConfig, ConfigError, FlushKind};
use std::path::{Path, PathBuf};

const PROFILES: &[&str] = &["default", "nvme-throughput", "low-latency", "small-vm"];

/// Top-level keys of a host file (`tuning::profile::HostProfile`; that crate's tests
/// check the keys inside each section with `deny_unknown_fields`).
const HOST_KEYS: &[&str] = &[
    "profile",
    "description",
    "broker_profile",
    "cpu",
    "irq",
    "block",
    "filesystem",
    "limits",
    "memory",
    "sysctl",
    "severity",
];

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/profiles")
}

fn load(name: &str) -> BrokerConfig {
    let path = profiles_dir().join(format!("{name}.toml"));
    BrokerConfig::load_toml(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Broker profiles in the directory: `*.toml` but not `*.host.toml`.
fn broker_profile_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(profiles_dir())
        .expect("tuning/profiles")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".toml") && !name.ends_with(".host.toml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_broker_profile_loads_and_validates() {
    let files = broker_profile_files();
    let mut names: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    names.sort();
    let mut expected: Vec<String> = PROFILES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "profiles in tuning/profiles");
    for path in &files {
        let config = BrokerConfig::load_toml(path).unwrap_or_else(|e| panic!("{e}"));
        // The storage settings the broker derives from it are well formed too.
        let shard = config.shard_config(0);
        assert_eq!(shard.log.segment_bytes, config.segment_bytes);
        assert!(config.shard_count() >= 1);
    }
}

#[test]
fn the_default_profile_is_exactly_the_built_in_defaults() {
    assert_eq!(load("default"), BrokerConfig::default());
    // hostcheck (tuning::profile::BrokerSummary) assumes these defaults for keys a
    // profile leaves out.
    let d = BrokerConfig::default();
    assert_eq!(
        (d.shards, d.cpu_pinning, d.max_connections),
        (0, true, 10_000)
    );
}

#[test]
fn each_profile_does_what_its_name_says() {
    let d = BrokerConfig::default();

    let t = load("nvme-throughput");
    assert_eq!(
        (t.shards, t.cpu_pinning, t.spin_before_park_us),
        (0, true, 0)
    );
    assert_eq!(t.flush, FlushKind::Async);
    assert!(t.async_max_unflushed_bytes > d.async_max_unflushed_bytes);
    assert!(t.chunk_bytes > d.chunk_bytes && t.cache_bytes > d.cache_bytes);
    assert!(t.max_pull_messages > d.max_pull_messages && t.max_pull_bytes > d.max_pull_bytes);
    // Auto-created topics spread over every shard a broker can have.
    assert_eq!(
        t.default_topic_queue_nums as usize,
        node::config::MAX_SHARDS
    );

    let l = load("low-latency");
    assert!((50..=200).contains(&l.spin_before_park_us));
    assert!(l.chunk_bytes < d.chunk_bytes);
    assert!(l.max_pull_messages < d.max_pull_messages);
    assert!(l.max_inflight_sends_per_shard < d.max_inflight_sends_per_shard);
    assert!(l.long_polling_enable);

    let s = load("small-vm");
    assert!((1..=2).contains(&s.shards));
    assert!(!s.cpu_pinning && s.spin_before_park_us == 0);
    assert!(s.cache_bytes < d.cache_bytes && s.segment_bytes < d.segment_bytes);
    assert!(s.index_slots < d.index_slots && s.index_entries < d.index_entries);
}

/// Every key a profile sets has a comment: each group of key lines (no blank line
/// between them) directly follows a comment line.
#[test]
fn every_key_in_a_profile_has_a_comment() {
    for path in broker_profile_files() {
        let text = std::fs::read_to_string(&path).expect("read profile");
        let mut commented = false;
        let mut keys = 0;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                commented = false;
            } else if line.starts_with('#') {
                commented = true;
            } else {
                let key = line.split('=').next().unwrap_or("").trim();
                assert!(
                    node::config::KEYS.contains(&key),
                    "{}:{}: {key:?} is not a broker key",
                    path.display(),
                    n + 1
                );
                assert!(
                    commented,
                    "{}:{}: {key} has no comment above it",
                    path.display(),
                    n + 1
                );
                keys += 1;
            }
        }
        assert!(keys > 0, "{} sets no key", path.display());
    }
}

#[test]
fn host_files_parse_and_use_only_known_sections() {
    for name in PROFILES {
        let path = profiles_dir().join(format!("{name}.host.toml"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let value: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for key in value.keys() {
            assert!(
                HOST_KEYS.contains(&key.as_str()),
                "{}: unknown key {key}",
                path.display()
            );
        }
        assert_eq!(
            value.get("profile").and_then(|v| v.as_str()),
            Some(*name),
            "{}",
            path.display()
        );
        let broker = value
            .get("broker_profile")
            .and_then(|v| v.as_str())
            .expect("broker_profile");
        assert_eq!(broker, format!("{name}.toml"));
        // A host file is not a broker config: the broker must refuse it.
        assert!(BrokerConfig::load_toml(&path).is_err(), "{name}.host.toml");
    }
}

fn load_inline(name: &str, text: &str) -> Result<BrokerConfig, ConfigError> {
    let path =
        std::env::temp_dir().join(format!("tuning-profile-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write temp profile");
    let result = BrokerConfig::load_toml(&path);
    let _ = std::fs::remove_file(&path);
    result
}

#[test]
fn a_profile_with_a_typo_or_a_bad_value_is_refused() {
    let good =
        std::fs::read_to_string(profiles_dir().join("nvme-throughput.toml")).expect("read profile");
    load_inline("good", &good).expect("the profile itself loads");

    // A misspelt key: deny_unknown_fields, not a silently ignored setting.
    let typo = good.replace("chunk_bytes =", "chunk_byte =");
    assert_ne!(typo, good);
    match load_inline("typo", &typo) {
        Err(ConfigError::Parse { source, .. }) => {
            assert!(source.to_string().contains("chunk_byte"), "{source}")
        }
        other => panic!("expected a parse error, got {other:?}"),
    }

    // Well-typed but out of range: validate() names the key.
    let bad = good.replace("chunk_bytes = 8388608", "chunk_bytes = 8388609");
    assert_ne!(bad, good);
    match load_inline("range", &bad) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "chunk_bytes"),
        other => panic!("expected an invalid-value error, got {other:?}"),
    }

    // A value of the wrong kind.
    assert!(matches!(
        load_inline("kind", "flush = \"sometimes\"\n"),
        Err(ConfigError::Parse { .. })
    ));
    // Rules between keys: segments must hold two chunks.
    assert!(matches!(
        load_inline("rule", "segment_bytes = 4194304\nchunk_bytes = 4194304\n"),
        Err(ConfigError::Invalid {
            key: "segment_bytes",
            ..
        })
    ));
}
