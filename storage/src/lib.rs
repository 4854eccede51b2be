//! Storage engine: per-shard commit log on io_uring with O_DIRECT, consume queues, key index, recovery and retention. Knows nothing of the network.
//!
//! Not built yet: this crate is a placeholder in the workspace layout.
