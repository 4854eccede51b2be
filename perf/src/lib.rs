//! Benchmark harness: load generators, named scenarios and reports, for this broker and any RocketMQ-protocol broker.
//!
//! Built so far: `storage_bench` (`src/bin/storage_bench.rs`), which measures the
//! storage commit log against the raw bandwidth of the disk it runs on, and the helpers
//! it uses: host description ([`host`]), block-device counters ([`devstat`]), latency
//! summaries ([`latency`]), an `fio` runner ([`fio`]) and a zero-filling storage backend
//! ([`zerofill`]).

pub mod devstat;
pub mod fio;
pub mod host;
pub mod latency;
pub mod zerofill;
