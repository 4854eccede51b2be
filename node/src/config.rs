//! Broker configuration: TOML, every key defaulted and documented.
//!
//! Three sources, applied in this order by the binary:
//! 1. a TOML file ([`BrokerConfig::load_toml`], keys as in `node/broker.example.toml`), or
//!    a RocketMQ `broker.conf` ([`BrokerConfig::apply_broker_conf`], Java properties with
//!    RocketMQ's key names, for operators moving an existing broker over);
//! 2. `--set key=value` overrides with TOML key names ([`BrokerConfig::apply_override`]);
//! 3. [`BrokerConfig::validate`] on the result.
//!
//! Each key's doc comment names RocketMQ's equivalent and its default where there is one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// When a send is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushKind {
    /// After `fdatasync` covered the message (RocketMQ `SYNC_FLUSH`).
    Sync,
    /// Once the message is in memory; written at once and synced periodically
    /// (RocketMQ `ASYNC_FLUSH`, its default).
    Async,
}

/// Every key is optional in the TOML file; see `node/broker.example.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Cluster this broker registers under; also the name of a system topic.
    /// RocketMQ `brokerClusterName` = `DefaultCluster`.
    pub broker_cluster_name: String,
    /// Broker group name: routes list queues per broker name, and a system topic of this
    /// name is created. RocketMQ `brokerName` = the host name.
    pub broker_name: String,
    /// 0 is the master. Only masters exist until replication is built, so anything else
    /// is refused. RocketMQ `brokerId` = 0.
    pub broker_id: u64,
    /// Remoting listen address. RocketMQ `listenPort` = 10911 on all interfaces.
    pub listen: SocketAddr,
    /// Host clients are told to connect to; None: the listen IP, or 127.0.0.1 when that
    /// is unspecified. RocketMQ `brokerIP1` = the first non-loopback address. Set it
    /// whenever clients reach the broker through another address (NAT, containers).
    pub broker_ip: Option<String>,
    /// Nameservers to register with, `host:port` each. RocketMQ `namesrvAddr`
    /// (`;`-separated, from `NAMESRV_ADDR` when unset).
    pub namesrv_addr: Vec<String>,
    /// HTTP address server (`GET` answers `host:port;host:port`) polled for the
    /// nameserver list, replacing `namesrv_addr` when it answers. RocketMQ
    /// `fetchNamesrvAddrByAddressServer` = false, URL
    /// `http://<rmqAddressServerDomain>:8080/rocketmq/<rmqAddressServerSubGroup>`.
    pub namesrv_address_url: Option<String>,
    /// Root of everything the broker writes: `shard-N/` (commit log, consume queues,
    /// index, checkpoint) and `config/` (topics, offsets, groups). RocketMQ
    /// `storePathRootDir` = `~/store`.
    pub store_dir: PathBuf,
    /// Shards (one thread, one commit log each); 0: one per available core. No RocketMQ
    /// equivalent (one commit log per broker). More shards spread appends over cores;
    /// each costs a thread, a tail cache and open segment files. Changing it on an
    /// existing store is safe: every shard's data stays readable where it is.
    pub shards: usize,
    /// Pin shard N to core N. Steadier latency on a dedicated host; turn off when
    /// sharing cores with other processes.
    pub cpu_pinning: bool,
    /// How long an idle shard spins before it parks in the kernel. A parked shard
    /// needs a wake-up (tens to hundreds of microseconds on VMs) when another shard
    /// hands it a request; spinning trades idle CPU for that latency. 0 parks at once.
    pub spin_before_park_us: u64,
    /// `sync`: a send is answered after `fdatasync` (no loss on power failure, latency
    /// of a disk sync); `async`: once in memory (a crash of the machine can lose the
    /// last unsynced data). RocketMQ `flushDiskType` = `ASYNC_FLUSH`.
    pub flush: FlushKind,
    /// Sync flush: a send not durable within this answers FLUSH_DISK_TIMEOUT (the data
    /// may still become durable). RocketMQ `syncFlushTimeout` = 5000 ms.
    pub sync_flush_timeout_ms: u64,
    /// Async flush: appends wait when this much appended data is not yet written to the
    /// device, bounding memory and what a crash can lose. No RocketMQ equivalent (the
    /// page cache is its only bound). Larger absorbs bursts; smaller bounds loss.
    pub async_max_unflushed_bytes: u64,
    /// Async flush: how often written data is `fdatasync`ed. RocketMQ
    /// `flushIntervalCommitLog` = 500 ms. Shorter narrows the power-loss window at the
    /// cost of more syncs.
    pub async_flush_interval_ms: u64,
    /// Commit-log segment file size: a multiple of 4 KiB and of at least two chunks,
    /// at least twice the largest record. RocketMQ `mappedFileSizeCommitLog` = 1 GiB.
    /// Retention deletes whole segments, so smaller segments free space in finer steps
    /// but mean more files.
    pub segment_bytes: u64,
    /// Largest single write to the commit log: a positive multiple of 4 KiB. No RocketMQ
    /// equivalent. Bigger writes mean fewer, larger I/Os; each in-flight chunk is
    /// memory.
    pub chunk_bytes: usize,
    /// Chunk writes in flight at once per shard. No RocketMQ equivalent. More keeps a
    /// fast device busy; each is a chunk of memory.
    pub write_depth: usize,
    /// Direct reads of the commit log in flight while appended data waits to be
    /// written (unlimited when nothing does). No RocketMQ equivalent. A consumer
    /// catching up on a backlog then takes what the appends leave of the disk.
    pub cold_reads_while_writing: usize,
    /// Per shard: recently written data kept in memory for consumers that keep up
    /// (zero-copy reads). No RocketMQ equivalent (it relies on the page cache). Bigger
    /// serves more lag from memory.
    pub cache_bytes: usize,
    /// Reserve a segment's blocks when it is created, so appends never find the disk
    /// full mid-segment. RocketMQ always creates the next file ahead
    /// (`AllocateMappedFileService`), with `warmMapedFileEnable` = false.
    pub preallocate: bool,
    /// How often consume queues are written and the recovery checkpoint advanced.
    /// RocketMQ `flushIntervalConsumeQueue` = 1000 ms. Shorter replays less at restart;
    /// longer writes queue files less often.
    pub checkpoint_interval_ms: u64,
    /// Segments whose newest message is older than this many hours are deleted.
    /// RocketMQ `fileReservedTime` = 72. Deletion is continuous, one segment at a time
    /// (RocketMQ's `deleteWhen` hour does not apply).
    pub file_reserved_time_hours: u64,
    /// Per shard: segments deleted by age are kept (renamed) as spares, up to this
    /// many, and become the next segments, so appends overwrite written blocks instead
    /// of converting preallocated ones (measured ~1.2x the sync-append throughput on
    /// ext4). No RocketMQ equivalent. Costs this many segments of disk per shard;
    /// deletions for disk space above `disk_max_used_space_ratio` remove them. 0 keeps
    /// none.
    pub spare_segments: usize,
    /// Above this share of the disk used, the oldest segments are deleted whatever their
    /// age. In (0, 1]. RocketMQ `diskMaxUsedSpaceRatio` = 75 (percent).
    pub disk_max_used_space_ratio: f64,
    /// Above this share of the disk used, sends are refused (reads keep working); above
    /// `disk_max_used_space_ratio`. RocketMQ `diskSpaceWarningLevelRatio` = 90 (percent).
    pub disk_space_warning_level_ratio: f64,
    /// Hash slots per key-index file. RocketMQ `maxHashSlotNum` = 5 000 000. 4 bytes of
    /// memory each for the open file; more slots mean shorter chains per lookup.
    pub index_slots: u32,
    /// Entries per key-index file. RocketMQ `maxIndexNum` = 20 000 000. 20 bytes each on
    /// disk.
    pub index_entries: u32,
    /// Largest message body accepted; at most `max_frame_bytes` - 64 KiB (room for the
    /// headers). RocketMQ `maxMessageSize` = 4 MiB.
    pub max_message_size: usize,
    /// Largest remoting frame accepted, length prefix included. RocketMQ
    /// `com.rocketmq.remoting.frameMaxLength` = 16 MiB. Larger costs memory per
    /// connection under abuse.
    pub max_frame_bytes: usize,
    /// Connections beyond this are closed at accept. No RocketMQ equivalent.
    pub max_connections: usize,
    /// Responses queued for one connection before its reads pause (back-pressure on a
    /// client that does not read its answers). Netty's write-buffer water mark in
    /// RocketMQ.
    pub max_pending_responses: usize,
    /// A connection with no request for this long is closed. RocketMQ
    /// `serverChannelMaxIdleTimeSeconds` = 120 s. Clients send heartbeats every 30 s.
    pub idle_timeout_ms: u64,
    /// Sends in progress on one shard before new ones are refused with SYSTEM_BUSY.
    /// RocketMQ `sendThreadPoolQueueCapacity` = 10 000 (broker-wide).
    pub max_inflight_sends_per_shard: usize,
    /// Hold a pull that finds no message until one arrives or the client's timeout
    /// passes. RocketMQ `longPollingEnable` = true. Off: short polling.
    pub long_polling_enable: bool,
    /// Short polling: how long an empty pull is held. RocketMQ `shortPollingTimeMills` =
    /// 1000 ms.
    pub short_polling_ms: u64,
    /// Most messages one pull returns. RocketMQ `maxTransferCountOnMessageInMemory` = 32.
    pub max_pull_messages: usize,
    /// Most bytes one pull returns (at least one message is always returned). RocketMQ
    /// `maxTransferBytesOnMessageInMemory` = 256 KiB.
    pub max_pull_bytes: usize,
    /// Queues of the auto-create template topic `TBW102` (the most a producer's
    /// auto-created topic gets). 1..=1024. RocketMQ `defaultTopicQueueNums` = 8.
    pub default_topic_queue_nums: u32,
    /// Create a topic on its first send, from the `TBW102` template. RocketMQ
    /// `autoCreateTopicEnable` = true. Convenient in development; in production a typo
    /// in a topic name silently creates a topic.
    pub auto_create_topic_enable: bool,
    /// Create a consumer group's subscription config on its first use. RocketMQ
    /// `autoCreateSubscriptionGroup` = true.
    pub auto_create_subscription_group: bool,
    /// The broker's permission: 6 read-write, 4 read-only (drain before maintenance),
    /// 2 write-only. RocketMQ `brokerPermission` = 6.
    pub broker_permission: u32,
    /// How often the broker registers with every nameserver. At most 60 s (nameservers
    /// drop brokers silent for 120 s). RocketMQ `registerNameServerPeriod` = 30 000 ms.
    pub register_broker_interval_ms: u64,
    /// Timeout of one registration request. RocketMQ `registerBrokerTimeoutMills` =
    /// 24 000 ms; shorter here so that a dead nameserver does not delay the others' next
    /// round.
    pub register_timeout_ms: u64,
    /// How often committed consumer offsets are written to `config/consumerOffset.json`.
    /// RocketMQ `flushConsumerOffsetInterval` = 5000 ms. A crash loses at most this much
    /// offset progress (consumers then see duplicates, never gaps).
    pub consumer_offset_persist_interval_ms: u64,
    /// A producer or consumer without a heartbeat for this long is dropped from its
    /// group (and consumers rebalance). RocketMQ `channelExpiredTimeout` = 120 000 ms.
    pub client_channel_expired_ms: u64,
    /// Delay levels 1..=N for the `DELAY` property and consumer retries (level 3 + the
    /// number of retries), space-separated durations with unit s, m, h or d. RocketMQ
    /// `messageDelayLevel` = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h
    /// 2h". A level above the last is clamped to it.
    pub message_delay_level: String,
    /// A prepared (half) transaction message is checked back with its producer once it
    /// is this old. RocketMQ `transactionTimeOut` = 6000 ms.
    pub transaction_timeout_ms: u64,
    /// Interval between check-backs of one open transaction. RocketMQ
    /// `transactionCheckInterval` = 30 000 ms.
    pub transaction_check_interval_ms: u64,
    /// Check-backs before an open transaction is rolled back. RocketMQ
    /// `transactionCheckMax` = 15.
    pub transaction_check_max: u32,
    /// Longest timer a message may ask for (`TIMER_DELIVER_MS` and friends); longer is
    /// refused as MESSAGE_ILLEGAL. RocketMQ `timerMaxDelaySec` = 259 200 (3 days).
    pub timer_max_delay_sec: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            listen: SocketAddr::from(([0, 0, 0, 0], 10911)),
            broker_ip: None,
            namesrv_addr: vec!["127.0.0.1:9876".into()],
            namesrv_address_url: None,
            store_dir: PathBuf::from("./store"),
            shards: 0,
            cpu_pinning: true,
            spin_before_park_us: 0,
            flush: FlushKind::Async,
            sync_flush_timeout_ms: 5_000,
            async_max_unflushed_bytes: 64 << 20,
            async_flush_interval_ms: 500,
            segment_bytes: 1 << 30,
            chunk_bytes: 4 << 20,
            write_depth: 4,
            cold_reads_while_writing: 1,
            cache_bytes: 256 << 20,
            preallocate: true,
            checkpoint_interval_ms: 1_000,
            file_reserved_time_hours: 72,
            spare_segments: 2,
            disk_max_used_space_ratio: 0.75,
            disk_space_warning_level_ratio: 0.90,
            index_slots: 5_000_000,
            index_entries: 20_000_000,
            max_message_size: 4 << 20,
            max_frame_bytes: protocol::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 10_000,
            max_pending_responses: 4096,
            idle_timeout_ms: 120_000,
            max_inflight_sends_per_shard: 10_000,
            long_polling_enable: true,
            short_polling_ms: 1_000,
            max_pull_messages: 32,
            max_pull_bytes: 256 << 10,
            default_topic_queue_nums: 8,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            broker_permission: 6,
            register_broker_interval_ms: 30_000,
            register_timeout_ms: 6_000,
            consumer_offset_persist_interval_ms: 5_000,
            client_channel_expired_ms: 120_000,
            message_delay_level: DEFAULT_DELAY_LEVELS.to_owned(),
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            timer_max_delay_sec: 259_200,
        }
    }
}

/// Every TOML key, in declaration order.
pub const KEYS: &[&str] = &[
    "broker_cluster_name",
    "broker_name",
    "broker_id",
    "listen",
    "broker_ip",
    "namesrv_addr",
    "namesrv_address_url",
    "store_dir",
    "shards",
    "cpu_pinning",
    "spin_before_park_us",
    "flush",
    "sync_flush_timeout_ms",
    "async_max_unflushed_bytes",
    "async_flush_interval_ms",
    "segment_bytes",
    "chunk_bytes",
    "write_depth",
    "cold_reads_while_writing",
    "cache_bytes",
    "preallocate",
    "checkpoint_interval_ms",
    "file_reserved_time_hours",
    "spare_segments",
    "disk_max_used_space_ratio",
    "disk_space_warning_level_ratio",
    "index_slots",
    "index_entries",
    "max_message_size",
    "max_frame_bytes",
    "max_connections",
    "max_pending_responses",
    "idle_timeout_ms",
    "max_inflight_sends_per_shard",
    "long_polling_enable",
    "short_polling_ms",
    "max_pull_messages",
    "max_pull_bytes",
    "default_topic_queue_nums",
    "auto_create_topic_enable",
    "auto_create_subscription_group",
    "broker_permission",
    "register_broker_interval_ms",
    "register_timeout_ms",
    "consumer_offset_persist_interval_ms",
    "client_channel_expired_ms",
    "message_delay_level",
    "transaction_timeout_ms",
    "transaction_check_interval_ms",
    "transaction_check_max",
    "timer_max_delay_sec",
];

/// RocketMQ's `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// Parses a `messageDelayLevel` string into one duration per level (level 1 first).
pub fn parse_delay_levels(text: &str) -> Result<Vec<std::time::Duration>, String> {
    let levels = text
        .split_whitespace()
        .map(|tok| {
            let split = tok.len().saturating_sub(1);
            let (num, unit) = tok.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("{tok:?} is not a number followed by s, m, h or d"))?;
            let secs = match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                "d" => n * 86_400,
                _ => return Err(format!("{tok:?} has no unit (s, m, h or d)")),
            };
            Ok(std::time::Duration::from_secs(secs))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if levels.is_empty() || levels.len() > 64 {
        return Err("needs 1 to 64 levels".into());
    }
    Ok(levels)
}

/// Most shards a broker runs (shard ids are one byte of every offset; this bound keeps
/// per-shard memory sane).
pub const MAX_SHARDS: usize = 64;

/// Room for a record's header and properties around the largest body.
pub const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// Storage block: chunks and segments are multiples of it (direct I/O alignment).
const BLOCK: u64 = 4096;

/// The configuration could not be loaded, or a value is out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config key {key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("broker.conf key {key} = {value}: {reason}")]
    BrokerConf {
        key: String,
        value: String,
        reason: String,
    },
    #[error("--set {setting}: {reason}")]
    Override { setting: String, reason: String },
}

fn invalid(
    key: &'static str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl BrokerConfig {
    /// The `host:port` registered with nameservers and handed to clients.
    pub fn advertised_addr(&self, bound: SocketAddr) -> String {
        let host = match &self.broker_ip {
            Some(ip) => ip.clone(),
            None if bound.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => bound.ip().to_string(),
        };
        format!("{host}:{}", bound.port())
    }

    /// Number of shards to run: `shards`, or the available cores when 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_SHARDS)
        }
    }

    /// Storage settings for one shard.
    pub fn shard_config(&self, shard: u8) -> storage::shard::ShardConfig {
        use std::time::Duration;
        let mut c =
            storage::shard::ShardConfig::new(self.store_dir.join(format!("shard-{shard}")), shard);
        c.log.segment_bytes = self.segment_bytes;
        c.log.chunk_bytes = self.chunk_bytes;
        c.log.write_depth = self.write_depth;
        c.log.cold_reads_while_writing = self.cold_reads_while_writing;
        c.log.cache_bytes = self.cache_bytes;
        c.log.preallocate = self.preallocate;
        c.log.spare_segments = self.spare_segments;
        // Room for the record header and properties around the largest body.
        c.log.max_record_bytes = self.max_message_size + RECORD_OVERHEAD_BYTES;
        c.log.flush = match self.flush {
            FlushKind::Sync => storage::commitlog::FlushMode::Sync {
                timeout: Duration::from_millis(self.sync_flush_timeout_ms),
            },
            FlushKind::Async => storage::commitlog::FlushMode::Async {
                max_unwritten_bytes: self.async_max_unflushed_bytes,
                sync_interval: Duration::from_millis(self.async_flush_interval_ms),
            },
        };
        c.checkpoint_interval = Duration::from_millis(self.checkpoint_interval_ms);
        c.retention.reserved = Duration::from_secs(self.file_reserved_time_hours * 3600);
        c.retention.high_water_ratio = self.disk_max_used_space_ratio;
        c.retention.critical_ratio = self.disk_space_warning_level_ratio;
        c.index.slots = self.index_slots;
        c.index.entries = self.index_entries;
        c
    }

    /// Reads and validates a TOML file (every key optional).
    pub fn load_toml(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a RocketMQ `broker.conf` over the defaults (not validated: apply overrides,
    /// then call [`validate`](Self::validate)). Returns the config and the keys that
    /// were ignored, each as `key: why`, for the caller to log.
    pub fn load_broker_conf(path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Self::default();
        let ignored = config.apply_broker_conf(&text)?;
        Ok((config, ignored))
    }

    /// Checks every key's range and the rules between keys. Errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, name) in [
            ("broker_cluster_name", &self.broker_cluster_name),
            ("broker_name", &self.broker_name),
        ] {
            // Both become topic names.
            if name.is_empty() || name.len() > 127 {
                return Err(invalid(key, name, "must be 1..=127 characters"));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
            {
                return Err(invalid(
                    key,
                    name,
                    "may only contain letters, digits, '%', '|', '_' and '-' (it is also a topic name)",
                ));
            }
        }
        if self.broker_id != 0 {
            return Err(invalid(
                "broker_id",
                self.broker_id,
                "only masters (broker_id 0) are supported: replication is not built yet",
            ));
        }
        if let Some(ip) = &self.broker_ip {
            if ip.is_empty() || ip.contains(char::is_whitespace) || ip.contains(';') {
                return Err(invalid(
                    "broker_ip",
                    ip,
                    "must be a host name or IP address",
                ));
            }
        }
        for addr in &self.namesrv_addr {
            let port = addr
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p > 0) {
                return Err(invalid(
                    "namesrv_addr",
                    addr,
                    "each entry must be host:port",
                ));
            }
        }
        if let Some(url) = &self.namesrv_address_url {
            if !url.starts_with("http://") {
                return Err(invalid(
                    "namesrv_address_url",
                    url,
                    "must be an http:// URL",
                ));
            }
        }
        if let Err(reason) = parse_delay_levels(&self.message_delay_level) {
            return Err(invalid(
                "message_delay_level",
                &self.message_delay_level,
                reason,
            ));
        }
        if self.store_dir.as_os_str().is_empty() {
            return Err(invalid("store_dir", "\"\"", "must not be empty"));
        }
        if self.shards > MAX_SHARDS {
            return Err(invalid(
                "shards",
                self.shards,
                format!("must be 0 (one per core) or 1..={MAX_SHARDS}"),
            ));
        }
        for (key, value) in [
            ("sync_flush_timeout_ms", self.sync_flush_timeout_ms),
            ("async_max_unflushed_bytes", self.async_max_unflushed_bytes),
            ("async_flush_interval_ms", self.async_flush_interval_ms),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("short_polling_ms", self.short_polling_ms),
            ("register_timeout_ms", self.register_timeout_ms),
            (
                "consumer_offset_persist_interval_ms",
                self.consumer_offset_persist_interval_ms,
            ),
            ("client_channel_expired_ms", self.client_channel_expired_ms),
            ("transaction_timeout_ms", self.transaction_timeout_ms),
            ("timer_max_delay_sec", self.timer_max_delay_sec),
            (
                "transaction_check_interval_ms",
                self.transaction_check_interval_ms,
            ),
            ("max_connections", self.max_connections as u64),
            ("max_pending_responses", self.max_pending_responses as u64),
            (
                "max_inflight_sends_per_shard",
                self.max_inflight_sends_per_shard as u64,
            ),
            ("max_pull_messages", self.max_pull_messages as u64),
            ("max_pull_bytes", self.max_pull_bytes as u64),
            ("index_slots", self.index_slots as u64),
            ("index_entries", self.index_entries as u64),
            ("max_message_size", self.max_message_size as u64),
            ("write_depth", self.write_depth as u64),
            (
                "cold_reads_while_writing",
                self.cold_reads_while_writing as u64,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "must be positive"));
            }
        }
        // Storage layout (the commit log's own rules, checked here to name our keys).
        if self.chunk_bytes == 0 || !(self.chunk_bytes as u64).is_multiple_of(BLOCK) {
            return Err(invalid(
                "chunk_bytes",
                self.chunk_bytes,
                format!("must be a positive multiple of {BLOCK}"),
            ));
        }
        if !self.segment_bytes.is_multiple_of(BLOCK)
            || self.segment_bytes < 2 * self.chunk_bytes as u64
        {
            return Err(invalid(
                "segment_bytes",
                self.segment_bytes,
                format!(
                    "must be a multiple of {BLOCK} and at least two chunks (2 x chunk_bytes = {})",
                    2 * self.chunk_bytes as u64
                ),
            ));
        }
        if !(1024..=i32::MAX as usize).contains(&self.max_frame_bytes) {
            return Err(invalid(
                "max_frame_bytes",
                self.max_frame_bytes,
                "must be within 1 KiB..2 GiB",
            ));
        }
        if self.max_message_size + RECORD_OVERHEAD_BYTES > self.max_frame_bytes {
            return Err(invalid(
                "max_message_size",
                self.max_message_size,
                format!(
                    "must be at most max_frame_bytes - 64 KiB = {}",
                    self.max_frame_bytes.saturating_sub(RECORD_OVERHEAD_BYTES)
                ),
            ));
        }
        let largest_record = (self.max_message_size + RECORD_OVERHEAD_BYTES) as u64
            + protocol::message::record::END_FILE_MIN_BLANK_LENGTH as u64;
        if largest_record > self.segment_bytes / 2 {
            return Err(invalid(
                "max_message_size",
                self.max_message_size,
                format!(
                    "the largest record (max_message_size + 64 KiB) must fit half a segment (segment_bytes = {})",
                    self.segment_bytes
                ),
            ));
        }
        // Retention.
        if !(1..=24 * 365 * 100).contains(&self.file_reserved_time_hours) {
            return Err(invalid(
                "file_reserved_time_hours",
                self.file_reserved_time_hours,
                "must be 1..=876000 (100 years)",
            ));
        }
        for (key, ratio) in [
            ("disk_max_used_space_ratio", self.disk_max_used_space_ratio),
            (
                "disk_space_warning_level_ratio",
                self.disk_space_warning_level_ratio,
            ),
        ] {
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(invalid(key, ratio, "must be a ratio in (0, 1]"));
            }
        }
        if self.disk_max_used_space_ratio >= self.disk_space_warning_level_ratio {
            return Err(invalid(
                "disk_max_used_space_ratio",
                self.disk_max_used_space_ratio,
                format!(
                    "must be below disk_space_warning_level_ratio ({}): old data must be deleted before sends are refused",
                    self.disk_space_warning_level_ratio
                ),
            ));
        }
        // Topics and registration.
        if !(1..=1024).contains(&self.default_topic_queue_nums) {
            return Err(invalid(
                "default_topic_queue_nums",
                self.default_topic_queue_nums,
                "must be 1..=1024",
            ));
        }
        let rw = protocol::message::perm::READ_WRITE as u32;
        if self.broker_permission & !rw != 0 {
            return Err(invalid(
                "broker_permission",
                self.broker_permission,
                "must be 6 (read-write), 4 (read-only), 2 (write-only) or 0",
            ));
        }
        if !(1..=60_000).contains(&self.register_broker_interval_ms) {
            return Err(invalid(
                "register_broker_interval_ms",
                self.register_broker_interval_ms,
                "must be 1..=60000 (nameservers drop a broker silent for 120 s)",
            ));
        }
        Ok(())
    }

    /// Applies a RocketMQ `broker.conf` (Java properties: `key=value`, `key: value` or
    /// `key value`; `#`/`!` comments; `\` line continuations and escapes) over this
    /// config, mapping RocketMQ's keys onto ours. Returns the keys that had no effect,
    /// each as `key: why` (unknown keys, and known ones whose behaviour does not apply
    /// here such as `deleteWhen`), for the caller to log. A bad value, or a setting that
    /// cannot be honoured (`brokerRole=SLAVE`), is an error naming the key. Does not
    /// call [`validate`](Self::validate).
    pub fn apply_broker_conf(&mut self, text: &str) -> Result<Vec<String>, ConfigError> {
        let props = parse_java_properties(text);
        let mut next = self.clone();
        let mut ignored = Vec::new();
        let mut address_server = false;
        let mut address_domain = "jmenv.tbsite.net".to_owned();
        let mut address_subgroup = "nsaddr".to_owned();
        for (key, value) in &props {
            let bad = |reason: &str| ConfigError::BrokerConf {
                key: key.clone(),
                value: value.clone(),
                reason: reason.to_owned(),
            };
            let number = |v: &str| -> Result<u64, ConfigError> {
                v.parse::<u64>()
                    .map_err(|_| bad("expected a non-negative integer"))
            };
            let flag = |v: &str| -> Result<bool, ConfigError> {
                if v.eq_ignore_ascii_case("true") {
                    Ok(true)
                } else if v.eq_ignore_ascii_case("false") {
                    Ok(false)
                } else {
                    Err(bad("expected true or false"))
                }
            };
            let percent = |v: &str| -> Result<f64, ConfigError> {
                match v.parse::<u64>() {
                    Ok(p) if (1..=100).contains(&p) => Ok(p as f64 / 100.0),
                    _ => Err(bad("expected a percentage 1..=100")),
                }
            };
            let v = value.as_str();
            match key.as_str() {
                "brokerClusterName" => next.broker_cluster_name = v.to_owned(),
                "brokerName" => next.broker_name = v.to_owned(),
                "brokerId" => next.broker_id = number(v)?,
                "listenPort" => {
                    let port = v
                        .parse::<u16>()
                        .map_err(|_| bad("expected a port number"))?;
                    next.listen.set_port(port);
                }
                "brokerIP1" => next.broker_ip = (!v.is_empty()).then(|| v.to_owned()),
                "namesrvAddr" => {
                    next.namesrv_addr = v
                        .split(';')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "fetchNamesrvAddrByAddressServer" => address_server = flag(v)?,
                "rmqAddressServerDomain" => address_domain = v.to_owned(),
                "rmqAddressServerSubGroup" => address_subgroup = v.to_owned(),
                "storePathRootDir" => next.store_dir = PathBuf::from(v),
                "storePathCommitLog" | "storePathConsumeQueue" | "storePathIndex" => {
                    ignored.push(format!(
                        "{key}: every file lives under storePathRootDir (store_dir/shard-N/...)"
                    ))
                }
                "flushDiskType" => {
                    next.flush = match v {
                        "SYNC_FLUSH" => FlushKind::Sync,
                        "ASYNC_FLUSH" => FlushKind::Async,
                        _ => return Err(bad("expected SYNC_FLUSH or ASYNC_FLUSH")),
                    }
                }
                "syncFlushTimeout" => next.sync_flush_timeout_ms = number(v)?,
                "flushIntervalCommitLog" => next.async_flush_interval_ms = number(v)?,
                "flushIntervalConsumeQueue" => next.checkpoint_interval_ms = number(v)?,
                "mappedFileSizeCommitLog" => next.segment_bytes = number(v)?,
                "fileReservedTime" => next.file_reserved_time_hours = number(v)?,
                "deleteWhen" => ignored.push(format!(
                    "{key}: retention is continuous (one segment at a time), not at a fixed hour"
                )),
                "diskMaxUsedSpaceRatio" => next.disk_max_used_space_ratio = percent(v)?,
                "diskSpaceWarningLevelRatio" => {
                    next.disk_space_warning_level_ratio = percent(v)?
                }
                "diskSpaceCleanForciblyRatio" => ignored.push(format!(
                    "{key}: old segments are deleted from diskMaxUsedSpaceRatio on"
                )),
                "maxHashSlotNum" => {
                    next.index_slots = u32::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "maxIndexNum" => {
                    next.index_entries = u32::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "maxMessageSize" => {
                    next.max_message_size = usize::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "defaultTopicQueueNums" => {
                    next.default_topic_queue_nums = u32::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "autoCreateTopicEnable" => next.auto_create_topic_enable = flag(v)?,
                "autoCreateSubscriptionGroup" => {
                    next.auto_create_subscription_group = flag(v)?
                }
                "brokerPermission" => {
                    next.broker_permission = u32::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "registerNameServerPeriod" => next.register_broker_interval_ms = number(v)?,
                "registerBrokerTimeoutMills" => next.register_timeout_ms = number(v)?,
                "flushConsumerOffsetInterval" => {
                    next.consumer_offset_persist_interval_ms = number(v)?
                }
                "longPollingEnable" => next.long_polling_enable = flag(v)?,
                "shortPollingTimeMills" => next.short_polling_ms = number(v)?,
                "maxTransferCountOnMessageInMemory" => {
                    next.max_pull_messages = usize::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "maxTransferBytesOnMessageInMemory" => {
                    next.max_pull_bytes = usize::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "sendThreadPoolQueueCapacity" => {
                    next.max_inflight_sends_per_shard = usize::try_from(number(v)?)
                        .map_err(|_| bad("too large"))?
                }
                "serverChannelMaxIdleTimeSeconds" => {
                    next.idle_timeout_ms = number(v)?.saturating_mul(1000)
                }
                // RocketMQ 3.x's name, in milliseconds.
                "channelNotActiveInterval" => next.idle_timeout_ms = number(v)?,
                "clientChannelMaxIdleTimeSeconds" => ignored.push(format!(
                    "{key}: applies to the broker's own outgoing connections, which are not idle-closed; \
                     client connections use serverChannelMaxIdleTimeSeconds"
                )),
                "channelExpiredTimeout" => next.client_channel_expired_ms = number(v)?,
                "messageDelayLevel" => next.message_delay_level = v.to_owned(),
                "transactionTimeOut" => next.transaction_timeout_ms = number(v)?,
                "timerMaxDelaySec" => next.timer_max_delay_sec = number(v)?,
                "transactionCheckInterval" => next.transaction_check_interval_ms = number(v)?,
                "transactionCheckMax" => next.transaction_check_max = number(v)?.min(u32::MAX as u64) as u32,
                "brokerRole" => match v {
                    "ASYNC_MASTER" | "SYNC_MASTER" => {}
                    "SLAVE" => {
                        return Err(bad(
                            "slaves are not supported: replication is not built yet",
                        ))
                    }
                    _ => return Err(bad("expected ASYNC_MASTER, SYNC_MASTER or SLAVE")),
                },
                "brokerIP2" | "haListenPort" | "haSendHeartbeatInterval" | "haHousekeepingInterval" => {
                    ignored.push(format!("{key}: replication is not built yet"))
                }
                "rocketmqHome" => ignored.push(format!("{key}: nothing is read from it")),
                _ => ignored.push(format!("{key}: unknown or not supported")),
            }
        }
        if address_server {
            next.namesrv_address_url = Some(if address_domain.contains(':') {
                format!("http://{address_domain}/rocketmq/{address_subgroup}")
            } else {
                format!("http://{address_domain}:8080/rocketmq/{address_subgroup}")
            });
        } else if props.contains_key("rmqAddressServerDomain")
            || props.contains_key("rmqAddressServerSubGroup")
        {
            ignored.push(
                "rmqAddressServerDomain/rmqAddressServerSubGroup: fetchNamesrvAddrByAddressServer is not true"
                    .to_owned(),
            );
        }
        *self = next;
        Ok(ignored)
    }

    /// Applies one `--set key=value`, `key` a TOML key. The value is read as TOML
    /// (`max_message_size=1048576`, `flush="sync"`, `namesrv_addr=["a:9876"]`); a value
    /// that is not TOML is taken as a string, and for lists as `;`- or `,`-separated
    /// strings (`namesrv_addr=a:9876;b:9876`). An empty value resets the key to its
    /// default (None for optional keys). Does not call [`validate`](Self::validate):
    /// apply every override first.
    pub fn apply_override(&mut self, key_eq_value: &str) -> Result<(), ConfigError> {
        let fail = |reason: String| ConfigError::Override {
            setting: key_eq_value.to_owned(),
            reason,
        };
        let (key, raw) = key_eq_value
            .split_once('=')
            .ok_or_else(|| fail("expected key=value".into()))?;
        let (key, raw) = (key.trim(), raw.trim());
        if !KEYS.contains(&key) {
            return Err(fail(format!(
                "unknown key `{key}` (keys are the TOML names, such as max_message_size; \
                 RocketMQ names belong in a broker.conf)"
            )));
        }
        let table = match toml::Value::try_from(&*self) {
            Ok(toml::Value::Table(t)) => t,
            Ok(other) => return Err(fail(format!("config serialized to {other}, not a table"))),
            Err(e) => return Err(fail(format!("cannot serialize the current config: {e}"))),
        };
        let is_list = matches!(table.get(key), Some(toml::Value::Array(_)));
        let as_string = if is_list {
            toml::Value::Array(
                raw.split([';', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            )
        } else {
            toml::Value::String(raw.to_owned())
        };
        let as_toml = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"));
        let mut candidates = Vec::new();
        if raw.is_empty() {
            candidates.push(None);
        } else {
            candidates.extend(as_toml.map(Some));
            candidates.push(Some(as_string));
        }
        let mut first_error = None;
        for candidate in candidates {
            let mut attempt = table.clone();
            match candidate {
                Some(value) => attempt.insert(key.to_owned(), value),
                None => attempt.remove(key),
            };
            match toml::Value::Table(attempt).try_into::<BrokerConfig>() {
                Ok(config) => {
                    *self = config;
                    return Ok(());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(fail(
            first_error
                .map(|e| e.message().to_owned())
                .unwrap_or_default(),
        ))
    }

    /// The config as `key=value` properties with RocketMQ's names where a key has one
    /// (GET_BROKER_CONFIG's answer; mqadmin `getBrokerConfig`), plus our own keys.
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), v);
        };
        put("brokerClusterName", self.broker_cluster_name.clone());
        put("brokerName", self.broker_name.clone());
        put("brokerId", self.broker_id.to_string());
        put("listenPort", self.listen.port().to_string());
        let advertised = self.advertised_addr(self.listen);
        let host = advertised
            .rsplit_once(':')
            .map_or(advertised.as_str(), |(host, _)| host);
        put("brokerIP1", host.to_owned());
        put("namesrvAddr", self.namesrv_addr.join(";"));
        put(
            "fetchNamesrvAddrByAddressServer",
            self.namesrv_address_url.is_some().to_string(),
        );
        put("storePathRootDir", self.store_dir.display().to_string());
        put(
            "flushDiskType",
            match self.flush {
                FlushKind::Sync => "SYNC_FLUSH",
                FlushKind::Async => "ASYNC_FLUSH",
            }
            .to_owned(),
        );
        put("brokerRole", "ASYNC_MASTER".to_owned());
        put("syncFlushTimeout", self.sync_flush_timeout_ms.to_string());
        put(
            "flushIntervalCommitLog",
            self.async_flush_interval_ms.to_string(),
        );
        put(
            "flushIntervalConsumeQueue",
            self.checkpoint_interval_ms.to_string(),
        );
        put("mappedFileSizeCommitLog", self.segment_bytes.to_string());
        put(
            "fileReservedTime",
            self.file_reserved_time_hours.to_string(),
        );
        put(
            "diskMaxUsedSpaceRatio",
            ((self.disk_max_used_space_ratio * 100.0).round() as u64).to_string(),
        );
        put(
            "diskSpaceWarningLevelRatio",
            ((self.disk_space_warning_level_ratio * 100.0).round() as u64).to_string(),
        );
        put("maxHashSlotNum", self.index_slots.to_string());
        put("maxIndexNum", self.index_entries.to_string());
        put("maxMessageSize", self.max_message_size.to_string());
        put(
            "defaultTopicQueueNums",
            self.default_topic_queue_nums.to_string(),
        );
        put(
            "autoCreateTopicEnable",
            self.auto_create_topic_enable.to_string(),
        );
        put(
            "autoCreateSubscriptionGroup",
            self.auto_create_subscription_group.to_string(),
        );
        put("brokerPermission", self.broker_permission.to_string());
        put(
            "registerNameServerPeriod",
            self.register_broker_interval_ms.to_string(),
        );
        put(
            "registerBrokerTimeoutMills",
            self.register_timeout_ms.to_string(),
        );
        put(
            "flushConsumerOffsetInterval",
            self.consumer_offset_persist_interval_ms.to_string(),
        );
        put("longPollingEnable", self.long_polling_enable.to_string());
        put("shortPollingTimeMills", self.short_polling_ms.to_string());
        put(
            "maxTransferCountOnMessageInMemory",
            self.max_pull_messages.to_string(),
        );
        put(
            "maxTransferBytesOnMessageInMemory",
            self.max_pull_bytes.to_string(),
        );
        put(
            "sendThreadPoolQueueCapacity",
            self.max_inflight_sends_per_shard.to_string(),
        );
        put(
            "serverChannelMaxIdleTimeSeconds",
            (self.idle_timeout_ms / 1000).to_string(),
        );
        put(
            "channelExpiredTimeout",
            self.client_channel_expired_ms.to_string(),
        );
        // Ours, under their TOML names.
        if let Ok(toml::Value::Table(t)) = toml::Value::try_from(self) {
            for (k, v) in t {
                let text = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(";"),
                    other => other.to_string(),
                };
                put(&k, text);
            }
        }
        m
    }
}

/// Java `Properties.load`: one `key sep value` per logical line, `sep` the first
/// unescaped `=`, `:` or whitespace; `#`/`!` comment lines; a line ending in an odd
/// number of `\` continues on the next (its leading blanks dropped); `\t`, `\n`, `\r`,
/// `\f`, `\uXXXX` and `\x` escapes. The last occurrence of a key wins.
fn parse_java_properties(text: &str) -> BTreeMap<String, String> {
    let mut logical = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let piece = match &current {
            Some(_) => line.trim_start(),
            None => {
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                    continue;
                }
                trimmed
            }
        };
        let trailing = piece.bytes().rev().take_while(|&b| b == b'\\').count();
        let (body, continues) = if trailing % 2 == 1 {
            (&piece[..piece.len() - 1], true)
        } else {
            (piece, false)
        };
        let acc = current.get_or_insert_with(String::new);
        acc.push_str(body);
        if !continues {
            logical.extend(current.take());
        }
    }
    logical.extend(current.take());

    let mut map = BTreeMap::new();
    for line in logical {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut key_end = chars.len();
        while i < chars.len() {
            match chars[i] {
                '\\' => i += 2,
                '=' | ':' | ' ' | '\t' | '\x0c' => {
                    key_end = i;
                    break;
                }
                _ => i += 1,
            }
        }
        let key_end = key_end.min(chars.len());
        let mut j = key_end;
        while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
            j += 1;
        }
        if j < chars.len() && matches!(chars[j], '=' | ':') {
            j += 1;
        }
        while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
            j += 1;
        }
        let key = unescape(&chars[..key_end]);
        let value = unescape(&chars[j..]);
        map.insert(key, value.trim_end().to_owned());
    }
    map
}

fn unescape(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' || i >= chars.len() {
            out.push(c);
            continue;
        }
        let e = chars[i];
        i += 1;
        match e {
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'f' => out.push('\x0c'),
            'u' => {
                let hex: String = chars[i..(i + 4).min(chars.len())].iter().collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        i += 4;
                    }
                    _ => out.push('u'),
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_exactly_the_defaults() {
        let text = include_str!("../broker.example.toml");
        let example: BrokerConfig = toml::from_str(text).unwrap();
        assert_eq!(example, BrokerConfig::default());
        BrokerConfig::default().validate().unwrap();
        for key in KEYS {
            assert!(
                text.lines().any(|l| {
                    let l = l.trim_start_matches("# ");
                    l.starts_with(&format!("{key} = "))
                }),
                "{key} missing from broker.example.toml"
            );
        }
    }

    #[test]
    fn keys_list_matches_the_struct() {
        let full = BrokerConfig {
            broker_ip: Some("10.0.0.1".into()),
            namesrv_address_url: Some("http://x/y".into()),
            ..Default::default()
        };
        let toml::Value::Table(t) = toml::Value::try_from(&full).unwrap() else {
            panic!("not a table")
        };
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        // And serialization round-trips (used by apply_override).
        let back: BrokerConfig = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(back, full);
    }

    #[test]
    fn toml_typos_are_errors() {
        assert!(toml::from_str::<BrokerConfig>("lisen = \"x\"").is_err());
        let c: BrokerConfig =
            toml::from_str("flush = \"sync\"\nshards = 2\nlisten = \"127.0.0.1:20911\"").unwrap();
        assert_eq!(c.flush, FlushKind::Sync);
        assert_eq!(c.shard_count(), 2);
        assert_eq!(c.advertised_addr(c.listen), "127.0.0.1:20911");
    }

    #[test]
    fn load_toml_reads_and_validates() {
        let dir = std::env::temp_dir().join(format!("node-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "broker_name = \"b1\"\n").unwrap();
        assert_eq!(BrokerConfig::load_toml(&good).unwrap().broker_name, "b1");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "shards = 65\n").unwrap();
        let err = BrokerConfig::load_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("shards"), "{err}");
        let conf = dir.join("broker.conf");
        std::fs::write(&conf, "brokerName=b2\nfoo=bar\n").unwrap();
        let (c, ignored) = BrokerConfig::load_broker_conf(&conf).unwrap();
        assert_eq!(c.broker_name, "b2");
        assert_eq!(ignored, vec!["foo: unknown or not supported".to_owned()]);
        assert!(matches!(
            BrokerConfig::load_toml(&dir.join("missing.toml")),
            Err(ConfigError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key.to_owned(),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn validation_names_the_key() {
        let check = |f: &dyn Fn(&mut BrokerConfig), key: &str| {
            let mut c = BrokerConfig::default();
            f(&mut c);
            let err = c.validate().expect_err(key);
            assert!(err.to_string().contains(key), "{err}");
            assert_eq!(key_of(err), key);
        };
        check(&|c| c.shards = 65, "shards");
        check(&|c| c.broker_id = 1, "broker_id");
        check(&|c| c.broker_name = "a b".into(), "broker_name");
        check(
            &|c| c.broker_cluster_name = String::new(),
            "broker_cluster_name",
        );
        check(&|c| c.namesrv_addr = vec!["nohost".into()], "namesrv_addr");
        check(
            &|c| c.namesrv_address_url = Some("ftp://x".into()),
            "namesrv_address_url",
        );
        check(
            &|c| c.disk_max_used_space_ratio = 0.0,
            "disk_max_used_space_ratio",
        );
        check(
            &|c| c.disk_space_warning_level_ratio = 1.5,
            "disk_space_warning_level_ratio",
        );
        check(
            &|c| {
                c.disk_max_used_space_ratio = 0.95;
                c.disk_space_warning_level_ratio = 0.9;
            },
            "disk_max_used_space_ratio",
        );
        check(&|c| c.chunk_bytes = 1000, "chunk_bytes");
        check(&|c| c.segment_bytes = 4 << 20, "segment_bytes");
        check(&|c| c.segment_bytes = (1 << 30) + 1, "segment_bytes");
        check(&|c| c.max_message_size = 16 << 20, "max_message_size");
        check(
            &|c| {
                c.segment_bytes = 8 << 20;
                c.chunk_bytes = 1 << 20;
            },
            "max_message_size",
        );
        check(&|c| c.max_frame_bytes = 10, "max_frame_bytes");
        check(
            &|c| c.file_reserved_time_hours = 0,
            "file_reserved_time_hours",
        );
        check(
            &|c| c.default_topic_queue_nums = 0,
            "default_topic_queue_nums",
        );
        check(&|c| c.broker_permission = 7, "broker_permission");
        check(
            &|c| c.register_broker_interval_ms = 120_000,
            "register_broker_interval_ms",
        );
        check(&|c| c.max_pull_messages = 0, "max_pull_messages");
        check(&|c| c.sync_flush_timeout_ms = 0, "sync_flush_timeout_ms");
        // A small but consistent layout is fine.
        let small = BrokerConfig {
            segment_bytes: 16 << 20,
            chunk_bytes: 1 << 20,
            max_message_size: 1 << 20,
            shards: 64,
            spare_segments: 0,
            ..Default::default()
        };
        small.validate().unwrap();
        let c = small.shard_config(3);
        assert_eq!(c.log.max_record_bytes, (1 << 20) + 64 * 1024);
        assert_eq!(c.log.spare_segments, 0);
        assert!(c.dir.ends_with("shard-3"));
    }

    #[test]
    fn broker_conf_maps_rocketmq_keys() {
        let text = r#"
# A broker.conf as RocketMQ ships it, plus more.
brokerClusterName = MyCluster
brokerName=broker-b
brokerId = 0
deleteWhen = 04
fileReservedTime = 48
brokerRole = SYNC_MASTER
flushDiskType = SYNC_FLUSH
! another comment style
listenPort: 30911
brokerIP1 10.1.2.3
namesrvAddr=10.0.0.1:9876; 10.0.0.2:9876
storePathRootDir=/data/rocketmq/store
storePathCommitLog=/data/rocketmq/store/commitlog
syncFlushTimeout=3000
mappedFileSizeCommitLog=104857600
diskMaxUsedSpaceRatio=80
diskSpaceWarningLevelRatio=95
maxMessageSize=1048576
defaultTopicQueueNums=4
autoCreateTopicEnable=false
autoCreateSubscriptionGroup=FALSE
brokerPermission=4
registerBrokerTimeoutMills=10000
longPollingEnable=false
shortPollingTimeMills=500
flushIntervalCommitLog=200
maxTransferCountOnMessageInMemory=64
maxTransferBytesOnMessageInMemory=\
  524288
serverChannelMaxIdleTimeSeconds=60
channelExpiredTimeout=90000
someFutureKey=1
"#;
        let mut c = BrokerConfig::default();
        let ignored = c.apply_broker_conf(text).unwrap();
        assert_eq!(c.broker_cluster_name, "MyCluster");
        assert_eq!(c.broker_name, "broker-b");
        assert_eq!(c.file_reserved_time_hours, 48);
        assert_eq!(c.flush, FlushKind::Sync);
        assert_eq!(c.listen, "0.0.0.0:30911".parse().unwrap());
        assert_eq!(c.broker_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(c.namesrv_addr, vec!["10.0.0.1:9876", "10.0.0.2:9876"]);
        assert_eq!(c.store_dir, PathBuf::from("/data/rocketmq/store"));
        assert_eq!(c.sync_flush_timeout_ms, 3000);
        assert_eq!(c.segment_bytes, 104857600);
        assert_eq!(c.disk_max_used_space_ratio, 0.80);
        assert_eq!(c.disk_space_warning_level_ratio, 0.95);
        assert_eq!(c.max_message_size, 1 << 20);
        assert_eq!(c.default_topic_queue_nums, 4);
        assert!(!c.auto_create_topic_enable);
        assert!(!c.auto_create_subscription_group);
        assert_eq!(c.broker_permission, 4);
        assert_eq!(c.register_timeout_ms, 10_000);
        assert!(!c.long_polling_enable);
        assert_eq!(c.short_polling_ms, 500);
        assert_eq!(c.async_flush_interval_ms, 200);
        assert_eq!(c.max_pull_messages, 64);
        assert_eq!(c.max_pull_bytes, 524288);
        assert_eq!(c.idle_timeout_ms, 60_000);
        assert_eq!(c.client_channel_expired_ms, 90_000);
        assert_eq!(c.namesrv_address_url, None);
        let keys: Vec<&str> = ignored
            .iter()
            .map(|s| s.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            vec!["deleteWhen", "someFutureKey", "storePathCommitLog"]
        );
        c.validate().unwrap();
        // The listen IP is kept when only the port changes.
        let mut c = BrokerConfig {
            listen: "10.0.0.9:1".parse().unwrap(),
            ..Default::default()
        };
        c.apply_broker_conf("listenPort=2").unwrap();
        assert_eq!(c.listen, "10.0.0.9:2".parse().unwrap());
    }

    #[test]
    fn broker_conf_address_server() {
        let mut c = BrokerConfig::default();
        c.apply_broker_conf("fetchNamesrvAddrByAddressServer=true")
            .unwrap();
        assert_eq!(
            c.namesrv_address_url.as_deref(),
            Some("http://jmenv.tbsite.net:8080/rocketmq/nsaddr")
        );
        let mut c = BrokerConfig::default();
        c.apply_broker_conf(
            "rmqAddressServerDomain=ns.example.com\nfetchNamesrvAddrByAddressServer=true\nrmqAddressServerSubGroup=prod",
        )
        .unwrap();
        assert_eq!(
            c.namesrv_address_url.as_deref(),
            Some("http://ns.example.com:8080/rocketmq/prod")
        );
        let mut c = BrokerConfig::default();
        c.apply_broker_conf("fetchNamesrvAddrByAddressServer=true\nrmqAddressServerDomain=ns:80")
            .unwrap();
        assert_eq!(
            c.namesrv_address_url.as_deref(),
            Some("http://ns:80/rocketmq/nsaddr")
        );
    }

    #[test]
    fn broker_conf_bad_values_name_the_key() {
        for (text, key) in [
            ("brokerRole=SLAVE", "brokerRole"),
            ("brokerRole=LEADER", "brokerRole"),
            ("flushDiskType=SOMETIMES", "flushDiskType"),
            ("listenPort=99999", "listenPort"),
            ("diskMaxUsedSpaceRatio=0.75", "diskMaxUsedSpaceRatio"),
            ("autoCreateTopicEnable=yes", "autoCreateTopicEnable"),
            ("maxMessageSize=-1", "maxMessageSize"),
        ] {
            let mut c = BrokerConfig::default();
            let err = c.apply_broker_conf(text).expect_err(text);
            assert!(
                matches!(&err, ConfigError::BrokerConf { key: k, .. } if k == key),
                "{err}"
            );
            assert_eq!(c, BrokerConfig::default(), "a failed apply changes nothing");
        }
    }

    #[test]
    fn java_properties_syntax() {
        let p = parse_java_properties(
            "  a = 1  \n#x=1\n!y=2\nb:two words\nc\\=d=3\ne=\\u0041\\tz\nf=1\\\n   2\\\n 3\ng\nh=x\nh=y",
        );
        assert_eq!(p["a"], "1");
        assert!(!p.contains_key("#x"));
        assert_eq!(p["b"], "two words");
        assert_eq!(p["c=d"], "3");
        assert_eq!(p["e"], "A\tz");
        assert_eq!(p["f"], "123");
        assert_eq!(p["g"], "");
        assert_eq!(p["h"], "y");
    }

    #[test]
    fn overrides() {
        let mut c = BrokerConfig::default();
        c.apply_override("max_message_size=1048576").unwrap();
        assert_eq!(c.max_message_size, 1 << 20);
        c.apply_override("flush=sync").unwrap();
        assert_eq!(c.flush, FlushKind::Sync);
        c.apply_override("flush = \"async\"").unwrap();
        assert_eq!(c.flush, FlushKind::Async);
        c.apply_override("broker_name=123").unwrap();
        assert_eq!(c.broker_name, "123");
        c.apply_override("listen=127.0.0.1:1234").unwrap();
        assert_eq!(c.listen, "127.0.0.1:1234".parse().unwrap());
        c.apply_override("namesrv_addr=a:1;b:2").unwrap();
        assert_eq!(c.namesrv_addr, vec!["a:1", "b:2"]);
        c.apply_override("namesrv_addr=[\"c:3\"]").unwrap();
        assert_eq!(c.namesrv_addr, vec!["c:3"]);
        c.apply_override("broker_ip=10.0.0.7").unwrap();
        assert_eq!(c.broker_ip.as_deref(), Some("10.0.0.7"));
        c.apply_override("broker_ip=").unwrap();
        assert_eq!(c.broker_ip, None);
        c.apply_override("disk_max_used_space_ratio=0.5").unwrap();
        assert_eq!(c.disk_max_used_space_ratio, 0.5);
        c.apply_override("cpu_pinning=false").unwrap();
        assert!(!c.cpu_pinning);
        c.apply_override("store_dir=/tmp/x y").unwrap();
        assert_eq!(c.store_dir, PathBuf::from("/tmp/x y"));
        let before = c.clone();
        for bad in [
            "max_mesage_size=1",
            "maxMessageSize=1",
            "max_message_size=lots",
            "flush=sometimes",
            "noequals",
        ] {
            let err = c.apply_override(bad).expect_err(bad);
            assert!(matches!(err, ConfigError::Override { .. }), "{err}");
            assert_eq!(c, before, "{bad}: a failed override changes nothing");
        }
        let err = c
            .apply_override("max_mesage_size=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `max_mesage_size`"), "{err}");
    }

    #[test]
    fn properties_use_rocketmq_names() {
        let p = BrokerConfig::default().to_properties();
        assert_eq!(p["brokerClusterName"], "DefaultCluster");
        assert_eq!(p["listenPort"], "10911");
        assert_eq!(p["diskMaxUsedSpaceRatio"], "75");
        assert_eq!(p["flushDiskType"], "ASYNC_FLUSH");
        assert_eq!(p["namesrvAddr"], "127.0.0.1:9876");
        assert_eq!(p["max_message_size"], "4194304");
        assert_eq!(p["brokerIP1"], "127.0.0.1");
        // And broker.conf reads them back.
        let text: String = p.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let mut c = BrokerConfig::default();
        c.apply_broker_conf(&text).unwrap();
        c.broker_ip = None;
        assert_eq!(c, BrokerConfig::default());
    }
}
