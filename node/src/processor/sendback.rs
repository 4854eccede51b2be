//! CONSUMER_SEND_MSG_BACK (36): a consumer gives a message back for a later retry.
//!
//! As RocketMQ's `consumerSendMsgBack`: the message is read by its commit-log offset,
//! stored again in `%RETRY%<group>` with delay level `3 + reconsumeTimes` (or the level
//! the client asked for), and its reconsume count raised; past the group's max
//! reconsume times (16 by default) or with a negative level it goes to `%DLQ%<group>`
//! instead. `RETRY_TOPIC` keeps the original topic and `ORIGIN_MESSAGE_ID` the original
//! id. Runs on the shard holding the offset; the new record is put on the shard that
//! owns its retry (or DLQ) queue.

use bytes::Bytes;
use protocol::body::TopicConfig;
use protocol::code::response;
use protocol::header::ConsumerSendMsgBackRequestHeader;
use protocol::message::record::RecordWriter;
use protocol::message::{append_property, get_property, iter_properties, perm, property};
use protocol::RemotingCommand;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::broker::wall_ms;
use crate::meta::topics::{dlq_topic, retry_topic};
use crate::server::Origin;
use crate::shard::{owner_of, ShardCtx};

/// A message to store on another shard (everything `Send`).
struct Owned {
    topic: String,
    queue_id: i32,
    flag: i32,
    sys_flag: i32,
    born_timestamp: i64,
    born_host: SocketAddr,
    reconsume_times: i32,
    body: Bytes,
    properties: Vec<u8>,
}

pub async fn send_back(
    ctx: &Rc<ShardCtx>,
    _origin: Origin,
    req: &RemotingCommand,
) -> RemotingCommand {
    let h: ConsumerSendMsgBackRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    if let Some(refused) = super::broker_forbids(ctx, req, perm::WRITE, "sending") {
        return refused;
    }
    let group = match broker
        .meta
        .groups
        .find_or_create(&h.group, broker.config.auto_create_subscription_group)
    {
        Ok(Some(g)) => g,
        Ok(None) => {
            return req.error_response(
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                super::with_faq(format!("subscription group not exist, {}", h.group)),
            )
        }
        Err(e) => return req.error_response(response::SYSTEM_ERROR, e.to_string()),
    };
    if group.retry_queue_nums <= 0 {
        return req.response(response::SUCCESS);
    }
    let not_found = || {
        req.error_response(
            response::SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        )
    };
    let Some(view) = ctx.read_record_at(h.offset).await else {
        return not_found();
    };

    let max_reconsume = h.max_reconsume_times.unwrap_or(group.retry_max_times);
    let dead = view.reconsume_times >= max_reconsume || h.delay_level < 0;
    let (topic, queues, delay) = if dead {
        (dlq_topic(&h.group), 1, None)
    } else {
        let level = if h.delay_level == 0 {
            3 + view.reconsume_times
        } else {
            h.delay_level
        };
        (retry_topic(&h.group), group.retry_queue_nums, Some(level))
    };
    let config = TopicConfig {
        topic_name: topic.clone(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: perm::READ_WRITE,
        ..Default::default()
    };
    match broker.meta.topics.create_if_absent(config) {
        Ok(c) if !perm::is_writeable(c.perm) => {
            return req.error_response(
                response::NO_PERMISSION,
                format!("the topic[{topic}] sending message is forbidden"),
            )
        }
        Ok(_) => broker.topics_changed(),
        Err(e) => return req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
    let queue_id = (wall_ms() as u64 % queues.max(1) as u64) as i32;

    let mut properties = Vec::with_capacity(view.properties.len() + 96);
    for (k, v) in iter_properties(&view.properties) {
        if k != property::DELAY_TIME_LEVEL && k != property::WAIT_STORE_MSG_OK {
            append_property(&mut properties, k, v);
        }
    }
    if get_property(&view.properties, property::RETRY_TOPIC).is_none() {
        append_property(&mut properties, property::RETRY_TOPIC, view.topic_str());
    }
    if get_property(&view.properties, property::ORIGIN_MESSAGE_ID).is_none() {
        // As RocketMQ: the looked-up message's own (offset) id, whatever the header says.
        let origin =
            protocol::message::id::encode_offset_msg_id(view.store_host, view.physical_offset);
        append_property(&mut properties, property::ORIGIN_MESSAGE_ID, &origin);
    }
    append_property(&mut properties, property::WAIT_STORE_MSG_OK, "false");
    if let Some(level) = delay {
        append_property(
            &mut properties,
            property::DELAY_TIME_LEVEL,
            &level.to_string(),
        );
    }
    let msg = Owned {
        topic: topic.clone(),
        queue_id,
        flag: view.flag,
        sys_flag: view.sys_flag,
        born_timestamp: view.born_timestamp,
        born_host: view.born_host,
        reconsume_times: view.reconsume_times + 1,
        body: view.body.clone(),
        properties,
    };
    let owner = owner_of(&topic, queue_id, ctx.shards());
    let stored = ctx
        .call_on(owner, move |c| {
            Box::pin(async move { put_owned(&c, msg).await })
        })
        .await;
    match stored {
        Some(Ok(())) => req.response(response::SUCCESS),
        Some(Err(e)) => req.error_response(response::SYSTEM_ERROR, e),
        None => req.error_response(
            response::SYSTEM_BUSY,
            "[REJECTREQUEST]system busy, start flow control for a while",
        ),
    }
}

/// Stores a message on this shard (which owns its queue), through the delay levels when
/// it carries a `DELAY`.
async fn put_owned(ctx: &Rc<ShardCtx>, msg: Owned) -> Result<(), String> {
    let levels = ctx.broker.delay_levels.len();
    let (topic, queue_id, properties) = match crate::schedule::delay_level(&msg.properties, levels)
    {
        Some(level) => (
            crate::schedule::SCHEDULE_TOPIC.to_owned(),
            crate::schedule::schedule_queue(level, ctx.id, ctx.shards()),
            crate::schedule::schedule_properties(&msg.properties, &msg.topic, msg.queue_id),
        ),
        None => (msg.topic.clone(), msg.queue_id, msg.properties.clone()),
    };
    let record = RecordWriter {
        queue_id,
        flag: msg.flag,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: msg.sys_flag,
        born_timestamp: msg.born_timestamp,
        born_host: msg.born_host,
        store_timestamp: 0,
        store_host: ctx.broker.store_host,
        reconsume_times: msg.reconsume_times,
        prepared_transaction_offset: 0,
        body: &msg.body,
        topic: &topic,
        properties: &properties,
    };
    ctx.put_one(record).await.map_err(|e| e.to_string())?;
    Ok(())
}
