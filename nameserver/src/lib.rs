//! The nameserver: brokers register and heartbeat here, it expires the ones that stop,
//! and it answers clients' route queries (which broker holds which queues of a topic).
//!
//! RocketMQ-compatible on the wire (codes 100–106, 205/206, 216/217, 219, 224, 304,
//! 311–313, 318/319, 322, 327, 901, 904; everything else REQUEST_CODE_NOT_SUPPORTED).
//! State lives in memory on one glommio executor; only KV config is persisted. It never
//! touches message storage.

pub mod config;
pub mod http;
pub mod kv;
pub mod processor;
pub mod route;
pub mod server;

pub use config::NamesrvConfig;
pub use processor::NameServer;
