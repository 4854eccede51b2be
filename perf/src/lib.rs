//! Benchmark harness: load generators, named scenarios and reports, for this broker and any RocketMQ-protocol broker.
//!
//! Not built yet: this crate is a placeholder in the workspace layout.
