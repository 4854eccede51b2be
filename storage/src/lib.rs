//! The storage engine of one broker shard: a commit log of RocketMQ records appended
//! with direct I/O through io_uring, consume queues and a key index over it, recovery
//! and retention.
//!
//! It knows nothing of the network: callers hand it records and ask for bytes back.
//! All I/O goes through [`io::Backend`], so the same code runs on glommio's `DmaFile`
//! and on the fault-injecting in-memory backend the tests use. Everything runs on the
//! shard's own glommio executor; nothing here is `Send`.
//!
//! Built so far: the commit log ([`commitlog`]), consume queues ([`consumequeue`]), the
//! checkpoint ([`checkpoint`]), the key index ([`index`]) and the shard that ties them
//! together with retention and lookup by time ([`shard`]).

pub mod checkpoint;
pub mod commitlog;
pub mod consumequeue;
pub mod index;
pub mod io;
pub mod shard;
pub mod turnstile;
pub mod watermark;

pub use commitlog::{CommitLog, CommitLogConfig, FlushMode, StoreError};
pub use consumequeue::CqEntry;
pub use shard::{Shard, ShardConfig};
