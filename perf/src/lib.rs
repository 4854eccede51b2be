//! Benchmark harness: load generators, named scenarios and reports, for this broker and
//! any RocketMQ-protocol broker.
//!
//! - `rmq_bench` (`src/bin/rmq_bench.rs`): the remoting load generator (produce at a
//!   rate or closed loop, consume with pause/resume, progress lines, JSON series).
//! - `rmq_perf` (`src/bin/rmq_perf.rs`): named scenarios (sweep, soak, queues, latency,
//!   recovery) against a broker it starts on a scratch store or any `--target`, each
//!   writing a JSON [`report`] and an SVG plot; `compare` lays two reports side by side.
//! - `storage_bench`: the storage commit log against the raw disk.
//!
//! Helpers: host description ([`host`]), raw-disk reference ([`disk`]), a blocking
//! remoting client for set-up and probes ([`remoting`]), block-device counters
//! ([`devstat`]), latency summaries ([`latency`]) and an `fio` runner ([`fio`]). The
//! harness measures; it asserts no speeds.

pub mod devstat;
pub mod disk;
pub mod fio;
pub mod host;
pub mod latency;
pub mod remoting;
pub mod report;
