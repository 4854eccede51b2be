//! The RocketMQ remoting protocol as bytes and types, and nothing else.
//!
//! This crate turns wire bytes into typed values and back: remoting frames with JSON or
//! ROCKETMQ binary headers ([`frame`], [`command`]), the request and response codes
//! ([`code`]), typed command headers carried in `extFields` ([`header`]), the commit-log
//! record and batch layouts with message ids, unique keys and tag hashes ([`message`]),
//! and the JSON bodies exchanged with nameservers and brokers ([`body`], [`json`]).
//!
//! It deliberately does no I/O: no sockets, no files, no async, no clocks (callers pass
//! times in). Every length read from the wire is bounded before anything is allocated for
//! it, and malformed input is an error value, never a panic. Both the frame decoder and the
//! record decoder are fuzzed (`protocol/fuzz`).

pub mod body;
pub mod code;
pub mod command;
pub mod ext;
pub mod frame;
pub mod header;
pub mod json;
pub mod message;

pub use command::{LanguageCode, RemotingCommand, SerializeType};
pub use ext::{ExtFields, HeaderError};
pub use frame::{EncodeError, FrameDecoder, FrameError, DEFAULT_MAX_FRAME_BYTES};
