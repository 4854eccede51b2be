//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and batches
//! flagged on 10/310. Runs on the shard that owns the queue.
//!
//! The message body is the request's `Bytes`, read once from the socket; it is encoded
//! into the commit-log record in the shard's write buffer (one copy) and that buffer is
//! what goes to disk and, later, to consumers.

use protocol::code::{request, response};
use protocol::header::{SendMessageRequestHeader, SendMessageResponseHeader};
use protocol::message::record::{decode_batch, RecordWriter};
use protocol::message::{get_property, perm, property, sys_flag};
use protocol::RemotingCommand;
use std::rc::Rc;
use storage::StoreError;

use crate::broker::wall_ms;
use crate::server::Origin;
use crate::shard::ShardCtx;

pub fn is_send(code: i32) -> bool {
    matches!(
        code,
        request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE
    )
}

const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";

/// Most messages one batch may hold (RocketMQ bounds a batch by its 4 MiB body only).
const MAX_BATCH_MESSAGES: usize = 100_000;

pub async fn send(ctx: &Rc<ShardCtx>, origin: Origin, req: &RemotingCommand) -> RemotingCommand {
    let header = match SendMessageRequestHeader::from_request(req.code, &req.ext_fields) {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    let config = &broker.config;
    if let Some(refused) = super::broker_forbids(ctx, req, perm::WRITE, "sending") {
        return refused;
    }
    if let Err(remark) = crate::meta::topics::validate_topic_name(&header.topic) {
        return req.error_response(response::SYSTEM_ERROR, remark);
    }
    let topic_config = match broker.meta.topics.get(&header.topic) {
        Some(c) => c,
        None if header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
            || header.topic.starts_with(DLQ_GROUP_TOPIC_PREFIX) =>
        {
            let config = protocol::body::TopicConfig {
                topic_name: header.topic.clone(),
                read_queue_nums: 1,
                write_queue_nums: 1,
                perm: perm::READ_WRITE,
                ..Default::default()
            };
            match broker.meta.topics.create_if_absent(config) {
                Ok(c) => {
                    broker.topics_changed();
                    c
                }
                Err(e) => return req.error_response(response::SYSTEM_ERROR, e.to_string()),
            }
        }
        None => match auto_create(ctx, &header) {
            Some(c) => c,
            None => return super::topic_not_exist(req, &header.topic),
        },
    };
    if !perm::is_writeable(topic_config.perm) {
        return req.error_response(
            response::NO_PERMISSION,
            format!("the topic[{}] sending message is forbidden", header.topic),
        );
    }
    let valid_queues = topic_config
        .write_queue_nums
        .max(topic_config.read_queue_nums);
    let mut header = header;
    if header.queue_id < 0 {
        // RocketMQ picks a queue at random; a multi-shard broker routes those before they
        // get here, except for a topic this request creates: pick one this shard owns.
        let local: Vec<i32> = (0..topic_config.write_queue_nums.max(1))
            .filter(|&q| crate::shard::owner_of(&header.topic, q, ctx.shards()) == ctx.id)
            .collect();
        match local.get(wall_ms() as usize % local.len().max(1)) {
            Some(&q) => header.queue_id = q,
            None => {
                return req.error_response(
                    response::SYSTEM_BUSY,
                    "[REJECTREQUEST]no queue of this new topic on this shard, try again",
                )
            }
        }
    }
    if header.queue_id >= valid_queues {
        return req.error_response(
            response::INVALID_PARAMETER,
            format!(
                "request queueId[{}] is illegal, {:?} Producer: {}",
                header.queue_id, topic_config, origin.peer
            ),
        );
    }
    if crate::shard::owner_of(&header.topic, header.queue_id, ctx.shards()) != ctx.id {
        // Only a header the router could not read gets here; it parsed differently.
        return req.error_response(
            response::SYSTEM_ERROR,
            format!("queueId[{}] does not belong to this shard", header.queue_id),
        );
    }
    let prepared = sys_flag::transaction_value(header.sys_flag) == sys_flag::TRANSACTION_PREPARED;
    let illegal = || {
        req.error_response(
            response::MESSAGE_ILLEGAL,
            format!(
                "the message is illegal, maybe msg body or properties length not matched. \
                 msg body length limit {}B, msg properties length limit 32KB.",
                config.max_message_size
            ),
        )
    };
    if req.body.len() > config.max_message_size {
        return illegal();
    }

    let props = header.properties.as_deref().unwrap_or("");
    let mut properties = Vec::with_capacity(props.len() + 32);
    properties.extend_from_slice(props.as_bytes());
    if get_property(&properties, property::CLUSTER).is_none() {
        protocol::message::append_property(
            &mut properties,
            property::CLUSTER,
            &config.broker_cluster_name,
        );
    }
    if properties.len() > protocol::message::MAX_PROPERTIES_BYTES {
        return illegal();
    }
    let wait_store = get_property(&properties, property::WAIT_STORE_MSG_OK) != Some("false");
    let batch = header.is_batch(req.code);
    // A delayed message waits in its level's schedule queue on this shard.
    let mut stored_queue = header.queue_id;
    let mut stored_topic: &str = &header.topic;
    let mut stored_sys_flag = header.sys_flag;
    if prepared {
        if batch {
            return req.error_response(
                response::MESSAGE_ILLEGAL,
                "batch messages do not support transactions",
            );
        }
        // A half message: stored aside, invisible, until END_TRANSACTION.
        properties =
            crate::transaction::half_properties(&properties, &header.topic, header.queue_id);
        if properties.len() > protocol::message::MAX_PROPERTIES_BYTES {
            return illegal();
        }
        stored_topic = crate::meta::topics::TRANS_HALF_TOPIC;
        stored_queue = crate::transaction::local_queue(stored_topic, ctx.id, ctx.shards());
        stored_sys_flag = header.sys_flag & !sys_flag::TRANSACTION_ROLLBACK;
    } else if !batch && !crate::meta::topics::is_system_topic(&header.topic) {
        let now = wall_ms();
        let due = match crate::schedule::timer_due(&properties, now) {
            Ok(due) => due,
            Err(reason) => return req.error_response(response::MESSAGE_ILLEGAL, reason),
        };
        if let Some(due) = due.filter(|&due| due > now) {
            let max_ms = config.timer_max_delay_sec.saturating_mul(1000) as i64;
            if due - now > max_ms {
                return req.error_response(
                    response::MESSAGE_ILLEGAL,
                    format!(
                        "timer message delay {} ms exceeds the maximum of {} s",
                        due - now,
                        config.timer_max_delay_sec
                    ),
                );
            }
            properties =
                crate::schedule::timer_properties(&properties, &header.topic, header.queue_id, due);
            if properties.len() > protocol::message::MAX_PROPERTIES_BYTES {
                return illegal();
            }
            let level = crate::schedule::timer_level(due - now, &broker.timer_levels);
            stored_topic = crate::schedule::TIMER_TOPIC;
            stored_queue = crate::schedule::timer_queue(level, ctx.id, ctx.shards());
        } else if let Some(level) =
            crate::schedule::delay_level(&properties, broker.delay_levels.len())
        {
            properties =
                crate::schedule::schedule_properties(&properties, &header.topic, header.queue_id);
            if properties.len() > protocol::message::MAX_PROPERTIES_BYTES {
                return illegal();
            }
            stored_topic = crate::schedule::SCHEDULE_TOPIC;
            stored_queue = crate::schedule::schedule_queue(level, ctx.id, ctx.shards());
        }
    }
    let template = RecordWriter {
        queue_id: stored_queue,
        flag: header.flag,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: stored_sys_flag,
        born_timestamp: header.born_timestamp,
        born_host: origin.peer,
        store_timestamp: 0,
        store_host: broker.store_host,
        reconsume_times: header.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
        body: &req.body,
        topic: stored_topic,
        properties: &properties,
    };
    let entries;
    let mut entry_props = Vec::new();
    let mut records = if batch {
        if crate::schedule::delay_level(&properties, broker.delay_levels.len()).is_some() {
            // RocketMQ refuses delayed batches (CommitLog.asyncPutMessages).
            return illegal();
        }
        if header.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            return req.error_response(
                response::MESSAGE_ILLEGAL,
                "batch request does not support retry group",
            );
        }
        entries = match decode_batch(&req.body, MAX_BATCH_MESSAGES) {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => return req.error_response(response::MESSAGE_ILLEGAL, "empty batch"),
            Err(e) => {
                return req.error_response(
                    response::MESSAGE_ILLEGAL,
                    format!("the batch body is malformed: {e}"),
                )
            }
        };
        // Each message keeps its own properties; the cluster goes on each like the
        // single-message path.
        for e in &entries {
            let mut p = Vec::with_capacity(e.properties.len() + 32);
            p.extend_from_slice(&e.properties);
            if get_property(&p, property::CLUSTER).is_none() {
                protocol::message::append_property(
                    &mut p,
                    property::CLUSTER,
                    &config.broker_cluster_name,
                );
            }
            if p.len() > protocol::message::MAX_PROPERTIES_BYTES {
                return illegal();
            }
            entry_props.push(p);
        }
        entries
            .iter()
            .zip(&entry_props)
            .map(|(e, p)| RecordWriter {
                flag: e.flag,
                body: &e.body,
                properties: p,
                // A batch is stored as separate messages.
                sys_flag: header.sys_flag & !sys_flag::INNER_BATCH,
                ..template
            })
            .collect::<Vec<_>>()
    } else {
        vec![template]
    };

    let now = wall_ms();
    let appended = match ctx.store.put(&mut records, now).await {
        Ok(a) => a,
        Err(e) => return store_error(req, &ctx.broker.advertised, e, illegal),
    };
    let (stored_topic, stored_queue) = (records[0].topic, records[0].queue_id);
    if prepared {
        let r = &records[0];
        let size = r.encoded_len().unwrap_or(0);
        crate::transaction::opened(ctx, r.queue_offset, r.physical_offset, size, now);
    }
    notify_stored(ctx, stored_topic, stored_queue, appended, !wait_store);
    let sync_flush = config.flush == crate::config::FlushKind::Sync;
    let stats = &broker.stats;
    stats
        .put_msgs
        .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
    stats.put_bytes.fetch_add(
        records.iter().map(|r| r.body.len() as u64).sum(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut code = response::SUCCESS;
    let mut remark = None;
    if wait_store {
        let acked = ctx.store.wait_acked(&appended).await;
        if sync_flush && acked.is_ok() {
            ctx.arrivals.notify(stored_topic, stored_queue);
        }
        if let Err(e) = acked {
            match e {
                StoreError::FlushTimeout { .. } => {
                    code = response::FLUSH_DISK_TIMEOUT;
                    remark = Some(e.to_string());
                }
                e => return store_error(req, &ctx.broker.advertised, e, illegal),
            }
        }
    }
    let msg_id = records
        .iter()
        .map(|r| protocol::message::id::encode_offset_msg_id(broker.store_host, r.physical_offset))
        .collect::<Vec<_>>()
        .join(",");
    let first = &records[0];
    let out = SendMessageResponseHeader {
        msg_id,
        queue_id: header.queue_id,
        queue_offset: first.queue_offset,
        transaction_id: get_property(first.properties, property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .map(str::to_owned),
        batch_uniq_id: None,
        recall_handle: None,
    };
    let mut resp = req.response(code).with_header(&out);
    resp.remark = remark;
    resp.ext_fields
        .insert(property::MSG_REGION, "DefaultRegion");
    resp.ext_fields.insert(property::TRACE_SWITCH, "true");
    resp
}

/// A message sent straight to `%RETRY%<group>` (clients do when send-back fails) whose
/// reconsume times exceed the max goes to `%DLQ%<group>` queue 0 without delay, as
/// RocketMQ's `handleRetryAndDLQ`: rewrites the request's topic, queue and `DELAY`.
pub fn retry_past_max_to_dlq(ctx: &Rc<ShardCtx>, req: &mut RemotingCommand) {
    let v2 = req.code == protocol::code::request::SEND_MESSAGE_V2
        || (req.code == protocol::code::request::SEND_BATCH_MESSAGE
            && req.ext_fields.get("producerGroup").is_none());
    let (topic_key, queue_key, props_key, times_key, max_key) = if v2 {
        ("b", "e", "i", "j", "l")
    } else {
        (
            "topic",
            "queueId",
            "properties",
            "reconsumeTimes",
            "maxReconsumeTimes",
        )
    };
    let Some(group) = req
        .ext_fields
        .get(topic_key)
        .and_then(|t| t.strip_prefix(RETRY_GROUP_TOPIC_PREFIX))
        .map(str::to_owned)
    else {
        return;
    };
    let int = |key: &str| {
        req.ext_fields
            .get(key)
            .and_then(|v| v.trim().parse::<i32>().ok())
    };
    let times = int(times_key).unwrap_or(0);
    let max = int(max_key).unwrap_or_else(|| {
        ctx.broker
            .meta
            .groups
            .get(&group)
            .map_or(16, |g| g.retry_max_times)
    });
    if times <= max {
        return;
    }
    let props = req.ext_fields.get(props_key).unwrap_or("").to_owned();
    let mut out = Vec::with_capacity(props.len() + 8);
    for (k, v) in protocol::message::iter_properties(props.as_bytes()) {
        if k != property::DELAY_TIME_LEVEL {
            protocol::message::append_property(&mut out, k, v);
        }
    }
    protocol::message::append_property(&mut out, property::DELAY_TIME_LEVEL, "0");
    req.ext_fields
        .insert(topic_key, crate::meta::topics::dlq_topic(&group));
    req.ext_fields.insert(queue_key, "0");
    req.ext_fields
        .insert(props_key, String::from_utf8_lossy(&out).into_owned());
}

/// Wakes the long polls of a queue records were just put to. Under async flush at once;
/// under sync flush once durable (consumers see only durable records): here by a task
/// when `nobody_waits`, else the caller notifies after its own wait.
pub fn notify_stored(
    ctx: &Rc<ShardCtx>,
    topic: &str,
    queue_id: i32,
    appended: storage::commitlog::Appended,
    nobody_waits: bool,
) {
    if ctx.broker.config.flush != crate::config::FlushKind::Sync {
        ctx.arrivals.notify(topic, queue_id);
    } else if nobody_waits {
        let (c, topic) = (ctx.clone(), topic.to_owned());
        glommio::spawn_local(async move {
            if c.store.wait_acked(&appended).await.is_ok() {
                c.arrivals.notify(&topic, queue_id);
            }
        })
        .detach();
    }
}

fn store_error(
    req: &RemotingCommand,
    broker_addr: &str,
    e: StoreError,
    illegal: impl Fn() -> RemotingCommand,
) -> RemotingCommand {
    match e {
        StoreError::RecordTooLarge { .. } | StoreError::Record(_) => illegal(),
        StoreError::DiskFull { .. } => req.error_response(
            response::SERVICE_NOT_AVAILABLE,
            format!(
                "the broker's disk is full [{e}], messages are put to the slave, message store has been shut down, etc. ({broker_addr})"
            ),
        ),
        StoreError::Poisoned { .. } | StoreError::Closed => req.error_response(
            response::SERVICE_NOT_AVAILABLE,
            format!("service not available now: {e}"),
        ),
        StoreError::FlushTimeout { .. } => {
            req.error_response(response::FLUSH_DISK_TIMEOUT, e.to_string())
        }
        e => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

/// Creates a topic a producer sends to from its default topic (TBW102), as RocketMQ's
/// `createTopicInSendMessageMethod` does, and tells the nameservers.
fn auto_create(
    ctx: &Rc<ShardCtx>,
    header: &SendMessageRequestHeader,
) -> Option<protocol::body::TopicConfig> {
    let broker = &ctx.broker;
    if !broker.config.auto_create_topic_enable {
        return None;
    }
    match broker.meta.topics.create_from_template(
        &header.topic,
        &header.default_topic,
        Some(header.default_topic_queue_nums),
    ) {
        Ok(Some(c)) => {
            tracing::info!(topic = %header.topic, queues = c.write_queue_nums, "topic auto-created");
            broker.topics_changed();
            Some(c)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(topic = %header.topic, error = %e, "cannot persist an auto-created topic");
            None
        }
    }
}
