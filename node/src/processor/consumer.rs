//! Client management and consumer offsets: HEART_BEAT (34), UNREGISTER_CLIENT (35),
//! GET_CONSUMER_LIST_BY_GROUP (38), NOTIFY_CONSUMER_IDS_CHANGED (40, pushed),
//! QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15), CHECK_CLIENT_CONFIG (46),
//! GET_CONSUMER_CONNECTION_LIST (203), GET_PRODUCER_CONNECTION_LIST (204).

use protocol::body::{
    CheckClientRequestBody, ConsumerListByGroupResponseBody, HeartbeatData, TopicConfig,
};
use protocol::code::{request, response};
use protocol::header::{
    ConsumerGroupRequestHeader, GetProducerConnectionListRequestHeader, OffsetResponseHeader,
    QueryConsumerOffsetRequestHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use protocol::json::{self, JsonStyle};
use protocol::message::perm;
use protocol::RemotingCommand;
use std::rc::Rc;

use crate::clients::{ClientChannel, Notify};
use crate::server::Origin;
use crate::shard::ShardCtx;

pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";

/// Tells each member of a changed group to rebalance now (oneway, as RocketMQ does).
pub fn notify_changes(ctx: &Rc<ShardCtx>, changes: impl IntoIterator<Item = Notify>) {
    for change in changes {
        for conn in change.conns {
            let mut cmd =
                RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED).with_oneway();
            cmd.ext_fields.insert("consumerGroup", change.group.clone());
            ctx.deliver(conn, cmd, false);
        }
    }
}

pub fn heartbeat(ctx: &Rc<ShardCtx>, origin: Origin, req: &RemotingCommand) -> RemotingCommand {
    let data: HeartbeatData = match json::from_slice(&req.body) {
        Ok(d) => d,
        Err(e) => {
            return req.error_response(response::SYSTEM_ERROR, format!("bad heartbeat body: {e}"))
        }
    };
    let broker = &ctx.broker;
    let now = broker.now_ms();
    let channel = ClientChannel {
        client_id: data.client_id.clone(),
        conn: origin.conn,
        addr: origin.peer,
        language: req.language.name().to_owned(),
        version: req.version,
        last_update_ms: now,
    };
    let mut changes = Vec::new();
    for consumer in &data.consumer_data_set {
        let group = match broker.meta.groups.find_or_create(
            &consumer.group_name,
            broker.config.auto_create_subscription_group,
        ) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(group = %consumer.group_name, error = %e, "cannot persist a subscription group");
                None
            }
        };
        let mut notify_enabled = true;
        if let Some(group) = &group {
            notify_enabled = group.notify_consumer_ids_changed_enable;
            // Consumers subscribe to their retry topic; it must exist to be routed.
            let retry = format!("{RETRY_GROUP_TOPIC_PREFIX}{}", consumer.group_name);
            if broker.meta.topics.get(&retry).is_none() {
                let queues = group.retry_queue_nums.max(1);
                let config = TopicConfig {
                    topic_name: retry.clone(),
                    read_queue_nums: queues,
                    write_queue_nums: queues,
                    perm: perm::READ_WRITE,
                    ..Default::default()
                };
                match broker.meta.topics.create_if_absent(config) {
                    Ok(_) => broker.topics_changed(),
                    Err(e) => {
                        tracing::error!(topic = %retry, error = %e, "cannot create a retry topic")
                    }
                }
            }
        }
        if let Some(change) = broker.clients.register_consumer(consumer, channel.clone()) {
            if notify_enabled {
                changes.push(change);
            }
        }
    }
    for producer in &data.producer_data_set {
        broker
            .clients
            .register_producer(&producer.group_name, channel.clone());
    }
    notify_changes(ctx, changes);
    req.response(response::SUCCESS)
}

pub fn unregister_client(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: UnregisterClientRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let change = ctx.broker.clients.unregister(
        &h.client_id,
        h.producer_group.as_deref(),
        h.consumer_group.as_deref(),
    );
    notify_changes(ctx, change);
    req.response(response::SUCCESS)
}

pub fn consumer_list(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: ConsumerGroupRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    match ctx.broker.clients.consumer_group(&h.consumer_group) {
        Some(info) if !info.channels.is_empty() => {
            let body = ConsumerListByGroupResponseBody {
                consumer_id_list: info.client_ids(),
            };
            req.response(response::SUCCESS)
                .with_body(json::to_vec(&body, JsonStyle::Standard, &[]))
        }
        _ => req.error_response(
            response::SYSTEM_ERROR,
            format!("no consumer for this group, {}", h.consumer_group),
        ),
    }
}

/// Runs on the shard that owns the queue (it needs the queue's offsets).
pub async fn query_offset(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: QueryConsumerOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    if let Some(offset) = broker
        .meta
        .offsets
        .query(&h.consumer_group, &h.topic, h.queue_id)
    {
        if offset >= 0 {
            return req
                .response(response::SUCCESS)
                .with_header(&OffsetResponseHeader { offset });
        }
    }
    if h.set_zero_if_not_found == Some(false) {
        return req.error_response(
            response::QUERY_NOT_FOUND,
            "Not found, do not set to zero, maybe this group boot first",
        );
    }
    // RocketMQ starts a new group at 0 when the queue still begins at 0 and its first
    // message is no longer in memory (a backlog); otherwise the client decides from its
    // consume-from-where. "In memory" here: within the shard's tail cache.
    let store = &ctx.store;
    let min = store.min_queue_offset(&h.topic, h.queue_id);
    let first_in_memory = match store.entries(&h.topic, h.queue_id, 0, 1).await {
        Ok(entries) => entries.first().is_some_and(|e| {
            (store.log().max_offset() - e.offset) as u64 <= broker.config.cache_bytes as u64
        }),
        Err(_) => false,
    };
    if min == 0 && !first_in_memory {
        return req
            .response(response::SUCCESS)
            .with_header(&OffsetResponseHeader { offset: 0 });
    }
    req.error_response(
        response::QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    )
}

pub fn update_offset(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: UpdateConsumerOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    if ctx.broker.meta.topics.get(&h.topic).is_none() {
        return req.error_response(
            response::TOPIC_NOT_EXIST,
            format!("Topic {} not exist!", h.topic),
        );
    }
    ctx.broker
        .meta
        .offsets
        .commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    req.response(response::SUCCESS)
}

pub fn check_client_config(_ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let body: CheckClientRequestBody = match json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return req.error_response(response::SYSTEM_ERROR, format!("bad body: {e}")),
    };
    let sub = &body.subscription_data;
    let kind = sub.expression_type.as_deref().unwrap_or("TAG");
    // A retry topic would accept anything; check the expression itself.
    match super::pull::TagFilter::compile(kind, &sub.sub_string, &sub.topic) {
        Ok(_) => req.response(response::SUCCESS),
        Err((code, remark)) => req.error_response(code, remark),
    }
}

fn connection_json(c: &ClientChannel) -> serde_json::Value {
    serde_json::json!({
        "clientId": c.client_id,
        "clientAddr": c.addr.to_string(),
        "language": c.language,
        "version": c.version,
    })
}

pub fn connection_list(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: ConsumerGroupRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let Some(info) = ctx.broker.clients.consumer_group(&h.consumer_group) else {
        return req.error_response(
            response::CONSUMER_NOT_ONLINE,
            format!("the consumer group[{}] not online", h.consumer_group),
        );
    };
    let body = serde_json::json!({
        "connectionSet": info.channels.values().map(connection_json).collect::<Vec<_>>(),
        "subscriptionTable": info.subscriptions,
        "consumeType": info.consume_type,
        "messageModel": info.message_model,
        "consumeFromWhere": info.consume_from_where,
    });
    req.response(response::SUCCESS)
        .with_body(body.to_string().into_bytes())
}

pub fn producer_connection_list(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: GetProducerConnectionListRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let channels = ctx.broker.clients.producer_group(&h.producer_group);
    if channels.is_empty() {
        return req.error_response(
            response::SYSTEM_ERROR,
            format!("the producer group[{}] not exist", h.producer_group),
        );
    }
    let body = serde_json::json!({
        "connectionSet": channels.iter().map(connection_json).collect::<Vec<_>>(),
    });
    req.response(response::SUCCESS)
        .with_body(body.to_string().into_bytes())
}

pub fn lock_batch(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let body: protocol::body::LockBatchRequestBody = match json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return req.error_response(response::SYSTEM_ERROR, format!("bad body: {e}")),
    };
    let broker = &ctx.broker;
    let locked = broker.locks.try_lock(
        &body.consumer_group,
        &body.mq_set,
        &body.client_id,
        broker.now_ms(),
    );
    let answer = protocol::body::LockBatchResponseBody {
        lock_ok_mq_set: locked,
    };
    req.response(response::SUCCESS)
        .with_body(json::to_vec(&answer, JsonStyle::Standard, &[]))
}

pub fn unlock_batch(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let body: protocol::body::LockBatchRequestBody = match json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return req.error_response(response::SYSTEM_ERROR, format!("bad body: {e}")),
    };
    ctx.broker
        .locks
        .unlock(&body.consumer_group, &body.mq_set, &body.client_id);
    req.response(response::SUCCESS)
}
