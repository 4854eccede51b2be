//! The admin tool (`rmqadmin`): mqadmin's sub-commands over the remoting protocol.
//!
//! [`cli`] parses the command line and prints; [`client::Admin`] holds the connections
//! and the requests commands share; [`topic`], [`broker`], [`group`] and [`msg`] are the
//! commands, each returning an [`cli::Output`] with a JSON and a text form.

pub mod broker;
pub mod cli;
pub mod client;
pub mod error;
pub mod fastjson;
pub mod format;
pub mod group;
pub mod message;
pub mod msg;
pub mod topic;

pub use cli::{main_with_args, Cli, Output};
pub use client::Admin;
pub use error::{AdminError, Role};

use client::BrokerTarget;
use serde_json::{json, Value};

/// Runs `f` on every target, collecting per-broker JSON results and `OK`/`FAILED` lines;
/// the first failure becomes the output's error (so the exit code reports it) while
/// the other brokers' results are still printed.
pub(crate) fn for_each_broker(
    admin: &mut Admin,
    targets: &[BrokerTarget],
    mut f: impl FnMut(&mut Admin, &BrokerTarget) -> Result<(Value, String), AdminError>,
) -> Output {
    let mut results = Vec::new();
    let mut text = String::new();
    let mut first_error = None;
    for target in targets {
        match f(admin, target) {
            Ok((value, line)) => {
                results.push(json!({
                    "brokerName": target.name, "brokerAddr": target.addr, "ok": true, "result": value,
                }));
                text.push_str(&line);
                if !line.ends_with('\n') {
                    text.push('\n');
                }
            }
            Err(e) => {
                results.push(json!({
                    "brokerName": target.name, "brokerAddr": target.addr, "ok": false, "error": e.to_json(),
                }));
                text.push_str(&format!("FAILED on {} {}: {e}\n", target.name, target.addr));
                first_error.get_or_insert(e);
            }
        }
    }
    Output {
        json: json!({ "brokers": results }),
        text,
        error: first_error,
    }
}
