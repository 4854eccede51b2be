//! Topics, subscription groups, offsets by queue and time, message lookup, runtime
//! information: what producers, consumers and `mqadmin` ask besides send and pull.

use bytes::BytesMut;
use protocol::body::{KvTable, TopicConfig};
use protocol::code::response;
use protocol::header::OffsetResponseHeader;
use protocol::header::{
    CreateTopicRequestHeader, DeleteSubscriptionGroupRequestHeader, GetBrokerConfigResponseHeader,
    GetMaxOffsetRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    QueueRequestHeader, SearchOffsetRequestHeader, TimestampResponseHeader, TopicRequestHeader,
    ViewMessageRequestHeader,
};
use protocol::json::{self, JsonStyle};
use protocol::RemotingCommand;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use crate::shard::ShardCtx;

pub fn create_topic(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: CreateTopicRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    if let Err(e) = h.check() {
        return super::bad_header(req, e);
    }
    if let Err(remark) = ctx.broker.meta.topics.check_create(&h.topic) {
        return req.error_response(response::SYSTEM_ERROR, remark);
    }
    if h.read_queue_nums <= 0
        || h.write_queue_nums <= 0
        || h.read_queue_nums > 1024
        || h.write_queue_nums > 1024
    {
        return req.error_response(
            response::SYSTEM_ERROR,
            format!(
                "queue numbers must be within 1..=1024, got read {} write {}",
                h.read_queue_nums, h.write_queue_nums
            ),
        );
    }
    let attributes = h
        .attributes
        .as_deref()
        .map(parse_attributes)
        .unwrap_or_default();
    let config = TopicConfig {
        topic_name: h.topic.clone(),
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_filter_type: h.topic_filter_type.clone(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order,
        attributes,
    };
    if ctx.broker.meta.topics.get(&h.topic).as_ref() == Some(&config) {
        return req.response(response::SUCCESS);
    }
    match ctx.broker.meta.topics.put(config) {
        Ok(()) => {
            tracing::info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums, perm = h.perm, "topic created or updated");
            ctx.broker.topics_changed();
            req.response(response::SUCCESS)
        }
        Err(e) => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

/// `+key=value,+key2=value2` (RocketMQ's attribute syntax; the sign says add or delete).
fn parse_attributes(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|kv| {
            let kv = kv.trim().trim_start_matches('+');
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

pub fn delete_topic(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: TopicRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    if crate::meta::topics::is_system_topic(&h.topic) {
        return req.error_response(
            response::SYSTEM_ERROR,
            format!("The topic[{}] is conflict with system topic.", h.topic),
        );
    }
    match ctx.broker.meta.topics.delete(&h.topic) {
        Ok(_) => {
            ctx.broker.meta.offsets.remove_topic(&h.topic);
            ctx.broker.topics_changed();
            req.response(response::SUCCESS)
        }
        Err(e) => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

pub fn all_topic_config(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let wrapper = ctx.broker.meta.topics.serialize_wrapper();
    req.response(response::SUCCESS)
        .with_body(json::to_vec(&wrapper, JsonStyle::Standard, &[]))
}

fn queue_header(req: &RemotingCommand) -> Result<(String, i32), RemotingCommand> {
    match req.header::<QueueRequestHeader>() {
        Ok(h) => Ok((h.topic, h.queue_id)),
        Err(e) => Err(super::bad_header(req, e)),
    }
}

pub fn max_offset(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: GetMaxOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let offset = ctx.store.max_queue_offset(&h.topic, h.queue_id) as i64;
    req.response(response::SUCCESS)
        .with_header(&OffsetResponseHeader { offset })
}

pub fn min_offset(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let (topic, queue_id) = match queue_header(req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let offset = ctx.store.min_queue_offset(&topic, queue_id) as i64;
    req.response(response::SUCCESS)
        .with_header(&OffsetResponseHeader { offset })
}

pub async fn search_offset(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: SearchOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    match ctx
        .store
        .search_offset_by_time(&h.topic, h.queue_id, h.timestamp)
        .await
    {
        Ok(offset) => req
            .response(response::SUCCESS)
            .with_header(&OffsetResponseHeader {
                offset: offset as i64,
            }),
        Err(e) => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

pub async fn earliest_time(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let (topic, queue_id) = match queue_header(req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match ctx.store.earliest_store_time(&topic, queue_id).await {
        Ok(t) => req
            .response(response::SUCCESS)
            .with_header(&TimestampResponseHeader {
                timestamp: t.unwrap_or(-1),
            }),
        Err(e) => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

/// QUERY_MESSAGE: asks every shard's index, newest first, up to `maxNum`.
pub async fn query_message(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: QueryMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    // RocketMQ caps the answer at defaultQueryMaxNum (32).
    let max = h.max_num.clamp(1, 64) as usize;
    let unique = h.unique_key_query == Some(true);
    let max = if unique { 1.max(max.min(32)) } else { max };
    let (topic, key) = (h.topic.clone(), h.key.clone());
    let (begin, end) = (h.begin_timestamp, h.end_timestamp);
    let found: Vec<Vec<(i64, bytes::Bytes)>> = ctx
        .on_all(move |shard: Rc<ShardCtx>| {
            let (topic, key) = (topic.clone(), key.clone());
            Box::pin(async move {
                match shard
                    .store
                    .query_by_key(&topic, &key, max, begin, end)
                    .await
                {
                    Ok(records) => records
                        .into_iter()
                        .map(|r| {
                            let bytes = bytes::Bytes::copy_from_slice(&r);
                            let ts = store_timestamp(&bytes);
                            (ts, bytes)
                        })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "index query failed");
                        Vec::new()
                    }
                }
            })
        })
        .await;
    let mut all: Vec<(i64, bytes::Bytes)> = found.into_iter().flatten().collect();
    all.sort_by_key(|r| std::cmp::Reverse(r.0));
    all.truncate(max);
    if all.is_empty() {
        return req.error_response(
            response::QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        );
    }
    let mut body = BytesMut::new();
    for (_, r) in &all {
        body.extend_from_slice(r);
    }
    let last = all.first().map_or(0, |(ts, _)| *ts);
    req.response(response::SUCCESS)
        .with_header(&QueryMessageResponseHeader {
            index_last_update_timestamp: last,
            index_last_update_phyoffset: 0,
        })
        .with_body(body.freeze())
}

fn store_timestamp(record: &[u8]) -> i64 {
    let flag = record
        .get(protocol::message::record::POS_SYS_FLAG..protocol::message::record::POS_SYS_FLAG + 4)
        .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let at = protocol::message::record::pos_store_timestamp(flag);
    record
        .get(at..at + 8)
        .map_or(0, |b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

/// VIEW_MESSAGE_BY_ID: runs on the shard the offset names.
pub async fn view_message(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: ViewMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let not_found = || {
        req.error_response(
            response::SYSTEM_ERROR,
            format!("can not find message by the offset, {}", h.offset),
        )
    };
    // The record's own bytes: re-encoding the decoded view gives them back unchanged.
    let Some(view) = ctx.read_record_at(h.offset).await else {
        return not_found();
    };
    let Ok(record) = ctx.store.log().read(h.offset, view.total_size).await else {
        return not_found();
    };
    let bytes = bytes::Bytes::copy_from_slice(&record);
    req.response(response::SUCCESS).with_body(bytes)
}

pub async fn runtime_info(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let broker = &ctx.broker;
    let offsets: Vec<(i64, i64)> = ctx
        .on_all(|shard: Rc<ShardCtx>| {
            Box::pin(async move {
                (
                    shard.store.log().min_offset(),
                    shard.store.log().max_offset(),
                )
            })
        })
        .await;
    let stats = &broker.stats;
    let (producers, consumers) = broker.clients.counts();
    let mut table = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        table.insert(k.to_owned(), v);
    };
    put("brokerVersionDesc", "V5_3_3".into());
    put(
        "brokerVersion",
        protocol::command::SERVER_VERSION.to_string(),
    );
    put("bootTimestamp", broker.boot_ms.to_string());
    put(
        "runtime",
        format!("[ {} seconds ]", broker.started.elapsed().as_secs()),
    );
    put(
        "msgPutTotalTodayNow",
        stats.put_msgs.load(Ordering::Relaxed).to_string(),
    );
    put(
        "msgGetTotalTodayNow",
        stats.get_msgs.load(Ordering::Relaxed).to_string(),
    );
    put("msgPutTotalTodayMorning", "0".into());
    put("msgGetTotalTodayMorning", "0".into());
    put("msgPutTotalYesterdayMorning", "0".into());
    put("msgGetTotalYesterdayMorning", "0".into());
    put(
        "putBytesTotal",
        stats.put_bytes.load(Ordering::Relaxed).to_string(),
    );
    put(
        "getBytesTotal",
        stats.get_bytes.load(Ordering::Relaxed).to_string(),
    );
    put("shards", ctx.shards().to_string());
    put(
        "commitLogMinOffset",
        offsets.iter().map(|o| o.0).min().unwrap_or(0).to_string(),
    );
    put(
        "commitLogMaxOffset",
        offsets.iter().map(|o| o.1).max().unwrap_or(0).to_string(),
    );
    put("producerCount", producers.to_string());
    put("consumerCount", consumers.to_string());
    put(
        "connections",
        stats.connections.load(Ordering::Relaxed).to_string(),
    );
    put("brokerActive", "true".into());
    let body = KvTable { table };
    req.response(response::SUCCESS)
        .with_body(json::to_vec(&body, JsonStyle::Standard, &[]))
}

pub fn broker_config(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let mut props = ctx.broker.config.to_properties();
    props.insert(
        "brokerPermission".to_owned(),
        ctx.broker.permission().to_string(),
    );
    let text = protocol::body::format_properties(&props);
    let version = ctx.broker.meta.topics.data_version();
    let version = serde_json::to_string(&version).unwrap_or_default();
    req.response(response::SUCCESS)
        .with_header(&GetBrokerConfigResponseHeader { version })
        .with_body(text.into_bytes())
}

pub fn create_group(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let config: protocol::body::SubscriptionGroupConfig = match json::from_slice(&req.body) {
        Ok(c) => c,
        Err(e) => return req.error_response(response::SYSTEM_ERROR, format!("bad body: {e}")),
    };
    if config.group_name.is_empty() {
        return req.error_response(response::SYSTEM_ERROR, "groupName is empty");
    }
    match ctx.broker.meta.groups.put(config) {
        Ok(()) => req.response(response::SUCCESS),
        Err(e) => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

pub fn delete_group(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: DeleteSubscriptionGroupRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    match ctx.broker.meta.groups.delete(&h.group_name) {
        Ok(_) => {
            if h.clean_offset {
                ctx.broker.meta.offsets.remove_group(&h.group_name);
            }
            req.response(response::SUCCESS)
        }
        Err(e) => req.error_response(response::SYSTEM_ERROR, e.to_string()),
    }
}

pub fn all_groups(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let groups = ctx.broker.meta.groups.all();
    let table: BTreeMap<String, protocol::body::SubscriptionGroupConfig> = groups
        .into_iter()
        .map(|g| (g.group_name.clone(), g))
        .collect();
    let body = serde_json::json!({
        "subscriptionGroupTable": table,
        "dataVersion": ctx.broker.meta.groups.data_version(),
    });
    req.response(response::SUCCESS)
        .with_body(body.to_string().into_bytes())
}

/// Per-queue figures a shard reports for its own queues of one topic.
#[derive(Debug, Clone, Copy)]
struct QueueFigures {
    queue_id: i32,
    min: i64,
    max: i64,
    /// Store time of the newest message (0 when empty).
    last_ms: i64,
    /// Store time of the message before `at`, when asked.
    at_ms: i64,
}

/// Store time of the message at logical offset `index` of a queue, 0 if none.
async fn time_at(ctx: &Rc<ShardCtx>, topic: &str, queue_id: i32, index: i64) -> i64 {
    if index < 0 {
        return 0;
    }
    let Ok(entries) = ctx.store.entries(topic, queue_id, index as u64, 1).await else {
        return 0;
    };
    match entries.first() {
        Some(e) => ctx
            .store
            .log()
            .store_timestamp(e.offset, e.size as usize)
            .await
            .unwrap_or(0),
        None => 0,
    }
}

/// Figures for every queue of `topic` (queues 0..`queues`), gathered from their shards;
/// `at` gives, per queue, an offset whose previous message's store time is wanted.
async fn queue_figures(
    ctx: &Rc<ShardCtx>,
    topic: &str,
    queues: i32,
    at: std::collections::HashMap<i32, i64>,
) -> Vec<QueueFigures> {
    let topic = topic.to_owned();
    let shards = ctx.shards();
    let per_shard: Vec<Vec<QueueFigures>> = ctx
        .on_all(move |shard: Rc<ShardCtx>| {
            let (topic, at) = (topic.clone(), at.clone());
            Box::pin(async move {
                let mut out = Vec::new();
                for q in
                    (0..queues).filter(|&q| crate::shard::owner_of(&topic, q, shards) == shard.id)
                {
                    let min = shard.store.min_queue_offset(&topic, q) as i64;
                    let max = shard.store.max_queue_offset(&topic, q) as i64;
                    let last_ms = time_at(&shard, &topic, q, max - 1).await;
                    let at_ms = match at.get(&q) {
                        Some(&o) => time_at(&shard, &topic, q, o - 1).await,
                        None => 0,
                    };
                    out.push(QueueFigures {
                        queue_id: q,
                        min,
                        max,
                        last_ms,
                        at_ms,
                    });
                }
                out
            })
        })
        .await;
    let mut all: Vec<QueueFigures> = per_shard.into_iter().flatten().collect();
    all.sort_by_key(|f| f.queue_id);
    all
}

/// A `MessageQueue` as a fastjson map key: fastjson writes maps keyed by objects with
/// the object itself as the key (not strict JSON; Java admin tools parse it so).
fn mq_key(topic: &str, broker_name: &str, queue_id: i32) -> String {
    serde_json::json!({ "brokerName": broker_name, "queueId": queue_id, "topic": topic })
        .to_string()
}

/// A fastjson map `{<MessageQueue>:value,...}` of this broker's queues.
fn mq_map<'a, V: std::fmt::Display>(
    broker_name: &str,
    entries: impl IntoIterator<Item = (&'a str, i32, V)>,
) -> String {
    let entries: Vec<String> = entries
        .into_iter()
        .map(|(topic, queue_id, value)| format!("{}:{value}", mq_key(topic, broker_name, queue_id)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// GET_TOPIC_STATS_INFO (202): min/max offset and last update time of every queue.
pub async fn topic_stats(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: TopicRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let Some(config) = ctx.broker.meta.topics.get(&h.topic) else {
        return req.error_response(
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist", h.topic),
        );
    };
    let figures = queue_figures(ctx, &h.topic, config.write_queue_nums, Default::default()).await;
    let table = mq_map(
        &ctx.broker.config.broker_name,
        figures.iter().map(|f| {
            let value = serde_json::json!({ "lastUpdateTimestamp": f.last_ms, "maxOffset": f.max, "minOffset": f.min });
            (h.topic.as_str(), f.queue_id, value)
        }),
    );
    let body = format!("{{\"offsetTable\":{table}}}");
    req.response(response::SUCCESS).with_body(body.into_bytes())
}

/// GET_CONSUME_STATS (208): per queue, the broker's max offset and the group's
/// committed offset, for one topic or every topic the group has offsets in.
pub async fn consume_stats(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: protocol::header::GetConsumeStatsRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    let topics: Vec<String> = match h.topic.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => vec![t.to_owned()],
        None => broker.meta.offsets.topics_for_group(&h.consumer_group),
    };
    let mut entries = Vec::new();
    for topic in &topics {
        let Some(config) = broker.meta.topics.get(topic) else {
            continue;
        };
        let committed: std::collections::HashMap<i32, i64> = broker
            .meta
            .offsets
            .queue_offsets(&h.consumer_group, topic)
            .into_iter()
            .collect();
        let figures = queue_figures(ctx, topic, config.write_queue_nums, committed.clone()).await;
        for f in figures {
            let consumer = committed.get(&f.queue_id).copied().unwrap_or(0).max(0);
            let value = serde_json::json!({
                "brokerOffset": f.max,
                "consumerOffset": consumer,
                "lastTimestamp": f.at_ms,
            });
            entries.push((topic.as_str(), f.queue_id, value));
        }
    }
    let table = mq_map(&broker.config.broker_name, entries);
    let body = format!("{{\"consumeTps\":0.0,\"offsetTable\":{table}}}");
    req.response(response::SUCCESS).with_body(body.into_bytes())
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222), as RocketMQ's `Broker2Client.resetOffset`: for
/// every queue of the topic, the offset of the first message stored at or after
/// `timestamp` (the max offset for -1), taken when `isForce` or when it lies before the
/// group's offset. The group's offsets are set here and its online consumers told
/// (RESET_CONSUMER_CLIENT_OFFSET, oneway) so they do not overwrite them.
pub async fn reset_offset(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: protocol::header::ResetOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    let Some(config) = broker.meta.topics.get(&h.topic) else {
        return req.error_response(
            response::SYSTEM_ERROR,
            format!(
                "[reset-offset] reset offset failed, no topic in this broker. topic={}",
                h.topic
            ),
        );
    };
    let queues = config.write_queue_nums;
    let shards = ctx.shards();
    let (topic, timestamp) = (h.topic.clone(), h.timestamp);
    let found: Vec<Vec<(i32, i64)>> = ctx
        .on_all(move |shard: Rc<ShardCtx>| {
            let topic = topic.clone();
            Box::pin(async move {
                let mut out = Vec::new();
                for q in
                    (0..queues).filter(|&q| crate::shard::owner_of(&topic, q, shards) == shard.id)
                {
                    let offset = if timestamp == -1 {
                        shard.store.max_queue_offset(&topic, q) as i64
                    } else {
                        shard
                            .store
                            .search_offset_by_time(&topic, q, timestamp)
                            .await
                            .map_or(0, |o| o as i64)
                    };
                    out.push((q, offset));
                }
                out
            })
        })
        .await;
    let mut table: Vec<(i32, i64)> = found.into_iter().flatten().collect();
    table.sort_unstable();
    let offsets = &broker.meta.offsets;
    for (q, offset) in table.iter_mut() {
        if h.queue_id >= 0 && *q != h.queue_id {
            continue;
        }
        let current = offsets.query(&h.group, &h.topic, *q);
        if !h.is_force {
            if let Some(c) = current.filter(|&c| c >= 0 && c <= *offset) {
                *offset = c;
            }
        }
        offsets.commit(&h.group, &h.topic, *q, *offset);
    }
    if h.queue_id >= 0 {
        table.retain(|(q, _)| *q == h.queue_id);
    }
    let reset = mq_map(
        &broker.config.broker_name,
        table.iter().map(|&(q, o)| (h.topic.as_str(), q, o)),
    );
    let body = format!("{{\"offsetTable\":{reset}}}");
    if let Some(info) = broker.clients.consumer_group(&h.group) {
        let mut notify =
            RemotingCommand::request(protocol::code::request::RESET_CONSUMER_CLIENT_OFFSET)
                .with_header(&protocol::header::ResetOffsetRequestHeader {
                    group: h.group.clone(),
                    topic: h.topic.clone(),
                    queue_id: h.queue_id,
                    offset: h.offset,
                    timestamp: h.timestamp,
                    is_force: h.is_force,
                })
                .with_body(body.clone().into_bytes())
                .with_oneway();
        notify.remark = None;
        for channel in info.channels.values() {
            ctx.deliver(channel.conn, notify.clone(), false);
        }
    }
    req.response(response::SUCCESS).with_body(body.into_bytes())
}

/// GET_ALL_CONSUMER_OFFSET (43): the whole offset table, as `consumerOffset.json`.
pub fn all_consumer_offsets(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    req.response(response::SUCCESS)
        .with_body(ctx.broker.meta.offsets.to_json())
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300): groups that subscribe to or have offsets in a topic.
pub fn topic_consumed_by(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: TopicRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    let mut groups: std::collections::BTreeSet<String> = broker
        .meta
        .offsets
        .groups_for_topic(&h.topic)
        .into_iter()
        .collect();
    for g in broker.clients.consumer_groups() {
        if broker.clients.subscription(&g, &h.topic).is_some() {
            groups.insert(g);
        }
    }
    let body = serde_json::json!({ "groupList": groups });
    req.response(response::SUCCESS)
        .with_body(body.to_string().into_bytes())
}

/// UPDATE_BROKER_CONFIG (25): the keys that can change while running (today
/// `brokerPermission`, as `mqadmin wipeWritePerm`-style operations use). Any other key
/// is refused and nothing is applied; restart with the new config for those.
pub fn update_broker_config(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let text = String::from_utf8_lossy(&req.body);
    let props = protocol::body::parse_properties(&text);
    let refused: Vec<&str> = props
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "brokerPermission")
        .collect();
    if !refused.is_empty() {
        return req.error_response(
            response::SYSTEM_ERROR,
            format!(
                "these keys cannot change at runtime (restart with them in the config): {}",
                refused.join(", ")
            ),
        );
    }
    if let Some(v) = props.get("brokerPermission") {
        match v.trim().parse::<i32>() {
            Ok(p) if (0..=7).contains(&p) => {
                ctx.broker.permission.store(p, Ordering::Relaxed);
                tracing::info!(permission = p, "broker permission updated");
                ctx.broker.topics_changed();
            }
            _ => {
                return req.error_response(
                    response::SYSTEM_ERROR,
                    format!("brokerPermission {v:?} is not 0..=7"),
                )
            }
        }
    }
    req.response(response::SUCCESS)
}
