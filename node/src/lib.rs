//! The broker (`node`): assembles `protocol` and `storage` into a thread-per-core
//! RocketMQ-compatible remoting server, one glommio executor and one store shard per
//! core.
//!
//! - [`broker`]: start and stop; broker-wide state shared by the shards.
//! - [`server`]: a shard's executor, its listener and connections.
//! - [`shard`]: per-shard state, queue ownership and the mesh between shards.
//! - [`processor`]: what each request code does.
//! - [`clients`]: producers and consumers known from heartbeats.
//! - [`meta`]: topics, subscription groups and consumer offsets, persisted.
//! - [`register`]: registration with the nameservers.

pub mod broker;
pub mod clients;
pub mod config;
pub mod filter;
pub mod locks;
pub mod meta;
pub mod processor;
pub mod register;
pub mod remote;
pub mod schedule;
pub mod server;
pub mod shard;
pub mod tasks;
pub mod transaction;
