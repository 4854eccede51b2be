//! Client library: producers and consumers speaking the RocketMQ remoting protocol, and the admin CLI built on it.
//!
//! Not built yet: this crate is a placeholder in the workspace layout.
