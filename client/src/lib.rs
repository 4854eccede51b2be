//! Client side of the RocketMQ remoting protocol: a small blocking connection
//! ([`remoting`]) and the admin CLI built on it ([`admin`], binary `rmqadmin`).
//!
//! The admin tool speaks only the remoting protocol, through the `protocol` crate, so it
//! works against our nameserver and broker and against Apache RocketMQ itself. Not here
//! yet: the async producer and consumer library (issue 6's other half).

pub mod admin;
pub mod remoting;
