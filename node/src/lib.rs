//! The broker (`node`): assembles `protocol` and `storage` into a thread-per-core RocketMQ-compatible remoting server, one glommio executor and one store shard per core.
//!
//! Not built yet: this crate is a placeholder in the workspace layout.
