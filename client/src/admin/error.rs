//! What can go wrong in an admin command, and the exit code each case maps to.

use crate::remoting::RemotingError;
use std::fmt;

/// Exit codes scripts can rely on.
pub mod exit {
    pub const SUCCESS: i32 = 0;
    /// A server answered with an error code, or the answer was unusable.
    pub const SERVER_ERROR: i32 = 1;
    /// Bad arguments.
    pub const USAGE: i32 = 2;
    /// A nameserver or broker could not be reached (refused, unresolvable, timed out).
    pub const UNREACHABLE: i32 = 3;
}

/// Who a request went to, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Nameserver,
    Broker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Nameserver => "nameserver",
            Role::Broker => "broker",
        })
    }
}

/// An admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {role} {addr}: {}", reason(.source))]
    Unreachable {
        role: Role,
        addr: String,
        source: RemotingError,
    },
    #[error("{}: {} ({role} {addr}, {})", code_name(*.code), .remark.as_deref().unwrap_or("no remark"), request_name(*.request))]
    Server {
        role: Role,
        addr: String,
        request: i32,
        code: i32,
        remark: Option<String>,
    },
    #[error("unexpected answer from {role} {addr} to {}: {reason}", request_name(*.request))]
    BadResponse {
        role: Role,
        addr: String,
        request: i32,
        reason: String,
    },
    #[error("{0}")]
    NotFound(String),
}

fn reason(e: &RemotingError) -> String {
    match e {
        RemotingError::Connect { source, .. } => source.kind().to_string(),
        RemotingError::Resolve { reason, .. } => format!("cannot resolve: {reason}"),
        RemotingError::Timeout { timeout_ms, .. } => format!("no answer within {timeout_ms} ms"),
        RemotingError::Closed { .. } => "connection closed".to_owned(),
        RemotingError::Io { source, .. } => source.to_string(),
        RemotingError::Frame { source, .. } => format!("bad frame: {source}"),
        RemotingError::Encode { source, .. } => format!("cannot encode request: {source}"),
    }
}

/// `TOPIC_NOT_EXIST`, or the number when the code has no name.
pub fn code_name(code: i32) -> String {
    protocol::code::response::name(code).map_or_else(|| format!("CODE_{code}"), str::to_owned)
}

fn request_name(code: i32) -> String {
    protocol::code::request::name(code).map_or_else(|| format!("request {code}"), str::to_owned)
}

impl AdminError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AdminError::Usage(_) => exit::USAGE,
            AdminError::Unreachable { .. } => exit::UNREACHABLE,
            AdminError::Server { .. }
            | AdminError::BadResponse { .. }
            | AdminError::NotFound(_) => exit::SERVER_ERROR,
        }
    }

    /// The server's response code, if a server answered with one.
    pub fn server_code(&self) -> Option<i32> {
        match self {
            AdminError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A stable JSON form for `--json` output.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let message = self.to_string();
        match self {
            AdminError::Usage(_) => json!({ "kind": "usage", "message": message }),
            AdminError::Unreachable { role, addr, .. } => json!({
                "kind": "unreachable", "role": role.to_string(), "addr": addr, "message": message,
            }),
            AdminError::Server {
                role,
                addr,
                request,
                code,
                remark,
            } => json!({
                "kind": "server", "role": role.to_string(), "addr": addr, "request": request,
                "code": code, "name": code_name(*code), "remark": remark, "message": message,
            }),
            AdminError::BadResponse { role, addr, .. } => json!({
                "kind": "bad_response", "role": role.to_string(), "addr": addr, "message": message,
            }),
            AdminError::NotFound(_) => json!({ "kind": "not_found", "message": message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_code_and_the_peer() {
        let e = AdminError::Server {
            role: Role::Nameserver,
            addr: "127.0.0.1:9876".into(),
            request: 105,
            code: 17,
            remark: Some("No topic route info".into()),
        };
        assert_eq!(
            e.to_string(),
            "TOPIC_NOT_EXIST: No topic route info (nameserver 127.0.0.1:9876, GET_ROUTEINFO_BY_TOPIC)"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_json()["name"], "TOPIC_NOT_EXIST");
        let e = AdminError::Unreachable {
            role: Role::Nameserver,
            addr: "127.0.0.1:1".into(),
            source: RemotingError::Connect {
                addr: "127.0.0.1:1".into(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "cannot reach nameserver 127.0.0.1:1: connection refused"
        );
        assert_eq!(e.exit_code(), 3);
    }
}
