//! The client library's errors: every failure names what it was talking to.

use protocol::{EncodeError, FrameError, HeaderError};
use std::io;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("connection to {addr} failed: {message}")]
    Io { addr: String, message: String },
    #[error("{addr} did not answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("bad frame from {addr}: {message}")]
    Frame { addr: String, message: String },
    #[error("request cannot be encoded: {0}")]
    Encode(String),
    #[error("bad answer from {addr}: {message}")]
    BadAnswer { addr: String, message: String },
    /// The broker or nameserver answered with an error code.
    #[error("{addr} answered code {code}: {remark}")]
    Broker {
        addr: String,
        code: i32,
        remark: String,
    },
    #[error("no nameserver address configured (set one, or NAMESRV_ADDR)")]
    NoNameserver,
    #[error("no route for topic {topic}: {reason}")]
    NoRoute { topic: String, reason: String },
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the client is shut down")]
    ShutDown,
    #[error("local offset store {path}: {message}")]
    OffsetStore { path: String, message: String },
}

impl ClientError {
    pub(crate) fn io(addr: &str, e: &io::Error) -> Self {
        ClientError::Io {
            addr: addr.to_owned(),
            message: e.to_string(),
        }
    }

    pub(crate) fn frame(addr: &str, e: &FrameError) -> Self {
        ClientError::Frame {
            addr: addr.to_owned(),
            message: e.to_string(),
        }
    }

    pub(crate) fn header(addr: &str, e: &HeaderError) -> Self {
        ClientError::BadAnswer {
            addr: addr.to_owned(),
            message: e.to_string(),
        }
    }

    pub(crate) fn encode(e: &EncodeError) -> Self {
        ClientError::Encode(e.to_string())
    }

    /// The response code, when the peer answered with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A failure of the transport (as opposed to an answer): worth trying another broker.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Io { .. }
                | ClientError::Timeout { .. }
                | ClientError::Closed { .. }
                | ClientError::Frame { .. }
        )
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
