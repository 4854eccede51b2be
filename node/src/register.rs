//! Registration with the nameservers: at start, every `register_broker_interval_ms`,
//! soon after a topic changes, and unregistration at clean shutdown. Runs on shard 0.
//!
//! The connection to each nameserver stays open: a nameserver drops a broker whose
//! registering connection closes.

use protocol::body::RegisterBrokerBody;
use protocol::code::{request, response};
use protocol::header::{BrokerIdentityRequestHeader, RegisterBrokerRequestHeader};
use protocol::json::{self, JsonStyle};
use protocol::RemotingCommand;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::remote::Outbound;

thread_local! {
    /// Open connections to nameservers, by address (shard 0 only).
    static CONNS: RefCell<HashMap<String, Outbound>> = RefCell::new(HashMap::new());
    /// One registration round at a time.
    static LOCK: std::rc::Rc<glommio::sync::Semaphore> = std::rc::Rc::new(glommio::sync::Semaphore::new(1));
}

fn register_request(broker: &Broker) -> RemotingCommand {
    let mut wrapper = broker.meta.topics.serialize_wrapper();
    // A broker that may not be written (or read) registers its topics so.
    let permission = broker.permission();
    if permission & protocol::message::perm::READ_WRITE != protocol::message::perm::READ_WRITE {
        for topic in wrapper.topic_config_table.values_mut() {
            topic.perm &= permission;
        }
    }
    let body = json::to_vec(
        &RegisterBrokerBody {
            topic_config_serialize_wrapper: wrapper,
            filter_server_list: Vec::new(),
        },
        JsonStyle::Standard,
        &[],
    );
    let ha_port = broker.config.listen.port().wrapping_add(1);
    let host = broker
        .advertised
        .rsplit_once(':')
        .map_or(broker.advertised.as_str(), |(h, _)| h);
    let header = RegisterBrokerRequestHeader {
        broker_name: broker.config.broker_name.clone(),
        broker_addr: broker.advertised.clone(),
        cluster_name: broker.config.broker_cluster_name.clone(),
        ha_server_addr: format!("{host}:{ha_port}"),
        broker_id: broker.config.broker_id as i64,
        heartbeat_timeout_millis: None,
        enable_acting_master: None,
        compressed: false,
        body_crc32: protocol::message::body_crc(&body),
    };
    RemotingCommand::request(request::REGISTER_BROKER)
        .with_header(&header)
        .with_body(body)
}

fn unregister_request(broker: &Broker) -> RemotingCommand {
    RemotingCommand::request(request::UNREGISTER_BROKER).with_header(&BrokerIdentityRequestHeader {
        broker_name: broker.config.broker_name.clone(),
        broker_addr: broker.advertised.clone(),
        cluster_name: broker.config.broker_cluster_name.clone(),
        broker_id: broker.config.broker_id as i64,
    })
}

/// Sends `cmd` to one nameserver over its kept connection (reconnecting once).
async fn invoke(
    addr: &str,
    cmd: RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, String> {
    for attempt in 0..2 {
        let conn = CONNS.with(|c| c.borrow_mut().remove(addr));
        let mut conn = match conn {
            Some(c) => c,
            None => Outbound::connect(addr, timeout)
                .await
                .map_err(|e| e.to_string())?,
        };
        match conn.invoke(cmd.clone(), timeout).await {
            Ok(answer) => {
                CONNS.with(|c| c.borrow_mut().insert(addr.to_owned(), conn));
                return Ok(answer);
            }
            Err(e) if attempt == 0 => {
                tracing::debug!(namesrv = addr, error = %e, "nameserver connection failed; reconnecting");
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("unreachable".into())
}

async fn round(broker: &Arc<Broker>, cmd: RemotingCommand) -> Vec<(String, Result<(), String>)> {
    let lock = LOCK.with(|l| l.clone());
    let _permit = lock.acquire_permit(1).await;
    let timeout = Duration::from_millis(broker.config.register_timeout_ms);
    let mut out = Vec::new();
    for addr in &broker.config.namesrv_addr {
        let result = match invoke(addr, cmd.clone(), timeout).await {
            Ok(answer) if answer.code == response::SUCCESS => Ok(()),
            Ok(answer) => Err(format!(
                "code {} {}",
                answer.code,
                answer.remark.unwrap_or_default()
            )),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(namesrv = %addr, error = %e, "nameserver request failed");
        }
        out.push((addr.clone(), result));
    }
    out
}

/// Registers with every nameserver once; returns each one's outcome.
pub async fn register_all(broker: &Arc<Broker>) -> Vec<(String, Result<(), String>)> {
    let cmd = register_request(broker);
    round(broker, cmd).await
}

pub async fn unregister_all(broker: &Arc<Broker>) {
    let cmd = unregister_request(broker);
    round(broker, cmd).await;
    CONNS.with(|c| c.borrow_mut().clear());
}
