//! Group commands: updateSubGroup, deleteSubGroup, consumerProgress, consumerConnection,
//! producerConnection, resetOffsetByTime.

use protocol::body::{MessageQueue, SubscriptionGroupConfig, TopicList};
use protocol::code::{request, response};
use protocol::header::{
    ConsumerGroupRequestHeader, DeleteSubscriptionGroupRequestHeader, GetConsumeStatsRequestHeader,
    GetProducerConnectionListRequestHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    ResetOffsetRequestHeader, SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use protocol::RemotingCommand;
use serde_json::{json, Value};

use super::cli::{
    ConsumerConnectionArgs, ConsumerProgressArgs, DeleteSubGroupArgs, Output,
    ProducerConnectionArgs, ResetOffsetByTimeArgs, UpdateSubGroupArgs,
};
use super::client::{route_masters, Admin, BrokerTarget};
use super::error::{AdminError, Role};
use super::format::{format_ms, now_ms, parse_timestamp, Table};
use super::{fastjson, for_each_broker};

/// The retry topic of a group, which brokers create when its consumers connect.
pub const RETRY_PREFIX: &str = "%RETRY%";

pub fn update_sub_group(
    admin: &mut Admin,
    args: &UpdateSubGroupArgs,
) -> Result<Output, AdminError> {
    let targets = admin.select(&args.target)?;
    let mut config = SubscriptionGroupConfig::named(args.group.clone());
    if let Some(v) = args.consume_enable {
        config.consume_enable = v;
    }
    if let Some(v) = args.consume_from_min_enable {
        config.consume_from_min_enable = v;
    }
    if let Some(v) = args.consume_broadcast_enable {
        config.consume_broadcast_enable = v;
    }
    if let Some(v) = args.consume_message_orderly {
        config.consume_message_orderly = v;
    }
    if let Some(v) = args.retry_queue_nums {
        config.retry_queue_nums = v;
    }
    if let Some(v) = args.retry_max_times {
        config.retry_max_times = v;
    }
    if let Some(v) = args.broker_id {
        config.broker_id = v;
    }
    if let Some(v) = args.which_broker_when_consume_slowly {
        config.which_broker_when_consume_slowly = v;
    }
    if let Some(v) = args.notify_consumer_ids_changed {
        config.notify_consumer_ids_changed_enable = v;
    }
    let body = serde_json::to_vec(&config).expect("a group config serializes");
    let mut out = for_each_broker(admin, &targets, |admin, target| {
        let req = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(body.clone());
        admin.call_ok(Role::Broker, &target.addr, req)?;
        Ok((
            Value::Null,
            format!("create subscription group to {} success.", target.addr),
        ))
    });
    let config = serde_json::to_value(&config).unwrap_or(Value::Null);
    out.text.push_str(&format!("{config}\n"));
    out.json["groupConfig"] = config;
    Ok(out)
}

pub fn delete_sub_group(
    admin: &mut Admin,
    args: &DeleteSubGroupArgs,
) -> Result<Output, AdminError> {
    let targets = admin.select(&args.target)?;
    Ok(for_each_broker(admin, &targets, |admin, target| {
        let req = RemotingCommand::request(request::DELETE_SUBSCRIPTIONGROUP).with_header(
            &DeleteSubscriptionGroupRequestHeader {
                group_name: args.group.clone(),
                clean_offset: args.remove_offset.unwrap_or(false),
            },
        );
        admin.call_ok(Role::Broker, &target.addr, req)?;
        Ok((
            Value::Null,
            format!(
                "delete subscription group [{}] from broker {} success.",
                args.group, target.addr
            ),
        ))
    }))
}

/// One queue of a `ConsumeStats` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeRow {
    pub queue: MessageQueue,
    pub broker_offset: i64,
    pub consumer_offset: i64,
    /// Store time of the last consumed message (0 if none).
    pub last_timestamp: i64,
}

impl ConsumeRow {
    pub fn diff(&self) -> i64 {
        (self.broker_offset - self.consumer_offset).max(0)
    }
}

/// A parsed `ConsumeStats` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumeStats {
    pub rows: Vec<ConsumeRow>,
    pub consume_tps: f64,
}

/// Reads `{"consumeTps":..,"offsetTable":{<MessageQueue>:{brokerOffset,consumerOffset,lastTimestamp}}}`.
pub fn parse_consume_stats(body: &[u8]) -> Result<ConsumeStats, String> {
    let v = fastjson::parse(body).map_err(|e| e.to_string())?;
    let mut stats = ConsumeStats {
        rows: Vec::new(),
        consume_tps: v["consumeTps"].as_f64().unwrap_or(0.0),
    };
    if let Some(table) = v["offsetTable"].as_object() {
        for (key, wrapper) in table {
            let queue = fastjson::key_object(key)
                .ok_or_else(|| format!("offsetTable key is not a MessageQueue: {key}"))?;
            stats.rows.push(ConsumeRow {
                queue,
                broker_offset: wrapper["brokerOffset"].as_i64().unwrap_or(0),
                consumer_offset: wrapper["consumerOffset"].as_i64().unwrap_or(0),
                last_timestamp: wrapper["lastTimestamp"].as_i64().unwrap_or(0),
            });
        }
    }
    stats.rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(stats)
}

/// GET_CONSUME_STATS on every target, merged. Brokers that do not know the group
/// (SUBSCRIPTION_GROUP_NOT_EXIST, TOPIC_NOT_EXIST) contribute nothing.
fn consume_stats(
    admin: &mut Admin,
    targets: &[BrokerTarget],
    group: &str,
    topic: Option<&str>,
) -> Result<ConsumeStats, AdminError> {
    let mut all = ConsumeStats::default();
    for target in targets {
        let req = RemotingCommand::request(request::GET_CONSUME_STATS).with_header(
            &GetConsumeStatsRequestHeader {
                consumer_group: group.to_owned(),
                topic: topic.map(str::to_owned),
                topic_list: None,
            },
        );
        let resp = admin.call(Role::Broker, &target.addr, req)?;
        match resp.code {
            response::SUCCESS => {}
            response::SUBSCRIPTION_GROUP_NOT_EXIST | response::TOPIC_NOT_EXIST
                if targets.len() > 1 =>
            {
                continue
            }
            code => {
                return Err(AdminError::Server {
                    role: Role::Broker,
                    addr: target.addr.clone(),
                    request: request::GET_CONSUME_STATS,
                    code,
                    remark: resp.remark,
                })
            }
        }
        let stats = parse_consume_stats(&resp.body).map_err(|reason| AdminError::BadResponse {
            role: Role::Broker,
            addr: target.addr.clone(),
            request: request::GET_CONSUME_STATS,
            reason,
        })?;
        all.consume_tps += stats.consume_tps;
        all.rows.extend(stats.rows);
    }
    all.rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(all)
}

pub fn consumer_progress(
    admin: &mut Admin,
    args: &ConsumerProgressArgs,
) -> Result<Output, AdminError> {
    match &args.group {
        Some(group) => group_progress(admin, group, args.topic.as_deref()),
        None => all_groups_progress(admin),
    }
}

fn group_progress(
    admin: &mut Admin,
    group: &str,
    topic: Option<&str>,
) -> Result<Output, AdminError> {
    let targets = match topic {
        Some(t) => admin.topic_masters(t)?,
        None => admin.all_masters()?,
    };
    let stats = consume_stats(admin, &targets, group, topic)?;
    if stats.rows.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no consume stats for group {group}: it has committed no offsets{}",
            topic.map_or(String::new(), |t| format!(" on topic {t}"))
        )));
    }
    let mut table = Table::new(&[
        "Topic",
        "Broker Name",
        "QID",
        "Broker Offset",
        "Consumer Offset",
        "Diff",
        "LastTime",
    ]);
    let mut rows = Vec::new();
    for r in &stats.rows {
        table.row(vec![
            r.queue.topic.clone(),
            r.queue.broker_name.clone(),
            r.queue.queue_id.to_string(),
            r.broker_offset.to_string(),
            r.consumer_offset.to_string(),
            r.diff().to_string(),
            format_ms(r.last_timestamp),
        ]);
        rows.push(json!({
            "topic": r.queue.topic, "brokerName": r.queue.broker_name, "queueId": r.queue.queue_id,
            "brokerOffset": r.broker_offset, "consumerOffset": r.consumer_offset,
            "diff": r.diff(), "lastTimestamp": r.last_timestamp,
        }));
    }
    let total: i64 = stats.rows.iter().map(ConsumeRow::diff).sum();
    let mut text = table.render();
    text.push_str(&format!(
        "\nConsume TPS: {:.2}\nConsume Diff Total: {total}\n",
        stats.consume_tps
    ));
    Ok(Output::new(
        json!({ "group": group, "queues": rows, "consumeTps": stats.consume_tps, "diffTotal": total }),
        text,
    ))
}

/// GET_CONSUMER_CONNECTION_LIST on each target until one knows the group online.
fn connection(
    admin: &mut Admin,
    targets: &[BrokerTarget],
    group: &str,
) -> Result<(String, Value), AdminError> {
    let mut last = None;
    for target in targets {
        let req = RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST).with_header(
            &ConsumerGroupRequestHeader {
                consumer_group: group.to_owned(),
            },
        );
        match admin.call_ok(Role::Broker, &target.addr, req) {
            Ok(resp) => {
                let value = fastjson::parse(&resp.body).map_err(|e| AdminError::BadResponse {
                    role: Role::Broker,
                    addr: target.addr.clone(),
                    request: request::GET_CONSUMER_CONNECTION_LIST,
                    reason: e.to_string(),
                })?;
                return Ok((target.addr.clone(), value));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| AdminError::NotFound("no broker to ask".into())))
}

fn all_groups_progress(admin: &mut Admin) -> Result<Output, AdminError> {
    let resp = admin.ns_call_ok(RemotingCommand::request(
        request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    ))?;
    let addr = admin.namesrv_addrs()[0].clone();
    let list: TopicList = Admin::body(
        Role::Nameserver,
        &addr,
        request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        &resp,
    )?;
    let targets = admin.all_masters()?;
    let mut table = Table::new(&["Group", "Count", "Type", "Model", "TPS", "Diff Total"]);
    let mut rows = Vec::new();
    for topic in &list.topic_list {
        let Some(group) = topic.strip_prefix(RETRY_PREFIX) else {
            continue;
        };
        let conn = connection(admin, &targets, group).ok().map(|(_, v)| v);
        let count = conn
            .as_ref()
            .and_then(|c| c["connectionSet"].as_array().map(Vec::len))
            .unwrap_or(0);
        let field = |k: &str| {
            conn.as_ref()
                .and_then(|c| c[k].as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into())
        };
        let stats = consume_stats(admin, &targets, group, None).ok();
        let diff: Option<i64> = stats
            .as_ref()
            .map(|s| s.rows.iter().map(ConsumeRow::diff).sum());
        let tps = stats.as_ref().map_or(0.0, |s| s.consume_tps);
        table.row(vec![
            group.to_owned(),
            count.to_string(),
            field("consumeType"),
            field("messageModel"),
            format!("{tps:.2}"),
            diff.map_or("-".into(), |d| d.to_string()),
        ]);
        rows.push(json!({
            "group": group, "count": count, "consumeType": field("consumeType"),
            "messageModel": field("messageModel"), "consumeTps": tps, "diffTotal": diff,
        }));
    }
    Ok(Output::new(json!({ "groups": rows }), table.render()))
}

fn connection_table(conns: &Value) -> (Table, Vec<Value>) {
    let mut table = Table::new(&["Id", "ClientId", "ClientAddr", "Language", "Version"]);
    let mut rows = Vec::new();
    for (i, c) in conns.as_array().into_iter().flatten().enumerate() {
        let s = |k: &str| match &c[k] {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        table.row(vec![
            (i + 1).to_string(),
            s("clientId"),
            s("clientAddr"),
            s("language"),
            s("version"),
        ]);
        rows.push(json!({
            "clientId": c["clientId"], "clientAddr": c["clientAddr"],
            "language": c["language"], "version": c["version"],
        }));
    }
    (table, rows)
}

pub fn consumer_connection(
    admin: &mut Admin,
    args: &ConsumerConnectionArgs,
) -> Result<Output, AdminError> {
    let targets = match &args.broker {
        Some(addr) => admin.select_brokers(Some(addr), None)?,
        None => admin.all_masters()?,
    };
    let (addr, conn) = connection(admin, &targets, &args.group)?;
    let (table, connections) = connection_table(&conn["connectionSet"]);
    let mut text = table.render();
    let mut subs = Table::new(&["Id", "Topic", "SubExpression"]);
    let mut subscriptions = Vec::new();
    if let Some(map) = conn["subscriptionTable"].as_object() {
        for (i, (topic, sub)) in map.iter().enumerate() {
            let expr = sub["subString"].as_str().unwrap_or("*");
            subs.row(vec![(i + 1).to_string(), topic.clone(), expr.to_owned()]);
            subscriptions.push(json!({
                "topic": topic, "subString": expr, "expressionType": sub["expressionType"],
            }));
        }
    }
    text.push_str("\nBelow is subscription:\n");
    text.push_str(&subs.render());
    let s = |k: &str| conn[k].as_str().unwrap_or("-").to_owned();
    text.push_str(&format!(
        "\nConsumeType: {}\nMessageModel: {}\nConsumeFromWhere: {}\n",
        s("consumeType"),
        s("messageModel"),
        s("consumeFromWhere")
    ));
    Ok(Output::new(
        json!({
            "group": args.group, "brokerAddr": addr, "connections": connections,
            "subscriptions": subscriptions, "consumeType": conn["consumeType"],
            "messageModel": conn["messageModel"], "consumeFromWhere": conn["consumeFromWhere"],
        }),
        text,
    ))
}

pub fn producer_connection(
    admin: &mut Admin,
    args: &ProducerConnectionArgs,
) -> Result<Output, AdminError> {
    let targets = admin.topic_masters(&args.topic)?;
    let mut last = None;
    for target in &targets {
        let req = RemotingCommand::request(request::GET_PRODUCER_CONNECTION_LIST).with_header(
            &GetProducerConnectionListRequestHeader {
                producer_group: args.group.clone(),
            },
        );
        match admin.call_ok(Role::Broker, &target.addr, req) {
            Ok(resp) => {
                let conn = fastjson::parse(&resp.body).map_err(|e| AdminError::BadResponse {
                    role: Role::Broker,
                    addr: target.addr.clone(),
                    request: request::GET_PRODUCER_CONNECTION_LIST,
                    reason: e.to_string(),
                })?;
                let (table, connections) = connection_table(&conn["connectionSet"]);
                return Ok(Output::new(
                    json!({ "group": args.group, "brokerAddr": target.addr, "connections": connections }),
                    table.render(),
                ));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| AdminError::NotFound(format!("topic {} has no broker", args.topic))))
}

/// Reads a `ResetOffsetBody` (`{"offsetTable":{<MessageQueue>:offset}}`).
pub fn parse_reset_offsets(body: &[u8]) -> Result<Vec<(MessageQueue, i64)>, String> {
    let v = fastjson::parse(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Some(table) = v["offsetTable"].as_object() {
        for (key, offset) in table {
            let mq = fastjson::key_object(key)
                .ok_or_else(|| format!("offsetTable key is not a MessageQueue: {key}"))?;
            out.push((mq, offset.as_i64().unwrap_or(-1)));
        }
    }
    out.sort();
    Ok(out)
}

pub fn reset_offset_by_time(
    admin: &mut Admin,
    args: &ResetOffsetByTimeArgs,
) -> Result<Output, AdminError> {
    let timestamp = parse_timestamp(&args.timestamp, now_ms()).ok_or_else(|| {
        AdminError::Usage(format!(
            "invalid timestamp {:?}: now, milliseconds, or yyyy-MM-dd#HH:mm:ss:SSS",
            args.timestamp
        ))
    })?;
    let route = admin.route(&args.topic)?;
    let targets = route_masters(&route);
    let mut table = Table::new(&["Broker Name", "QID", "Old Offset", "New Offset", "Method"]);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for target in &targets {
        let req = RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET).with_header(
            &ResetOffsetRequestHeader {
                group: args.group.clone(),
                topic: args.topic.clone(),
                queue_id: -1,
                offset: None,
                timestamp,
                is_force: args.force,
            },
        );
        let resp = admin.call(Role::Broker, &target.addr, req)?;
        match resp.code {
            response::SUCCESS => {
                let offsets =
                    parse_reset_offsets(&resp.body).map_err(|reason| AdminError::BadResponse {
                        role: Role::Broker,
                        addr: target.addr.clone(),
                        request: request::INVOKE_BROKER_TO_RESET_OFFSET,
                        reason,
                    })?;
                for (mq, offset) in offsets {
                    table.row(vec![
                        mq.broker_name.clone(),
                        mq.queue_id.to_string(),
                        "-".into(),
                        offset.to_string(),
                        "broker".into(),
                    ]);
                    rows.push(json!({
                        "brokerName": mq.broker_name, "queueId": mq.queue_id,
                        "oldOffset": null, "newOffset": offset, "method": "broker",
                    }));
                }
            }
            // The consumer is offline (RocketMQ's own fallback) or the broker lacks the
            // code: write the offsets directly.
            response::CONSUMER_NOT_ONLINE | response::REQUEST_CODE_NOT_SUPPORTED => {
                if resp.code == response::REQUEST_CODE_NOT_SUPPORTED {
                    notes.push(format!(
                        "note: {} does not support INVOKE_BROKER_TO_RESET_OFFSET; offsets were \
                         committed directly, and online consumers of {} may overwrite them",
                        target.addr, args.group
                    ));
                }
                let queues = route
                    .queue_datas
                    .iter()
                    .find(|q| q.broker_name == target.name)
                    .map_or(0, |q| q.read_queue_nums);
                for queue_id in 0..queues {
                    let (old, new, updated) = reset_queue_directly(
                        admin,
                        target,
                        &args.group,
                        &args.topic,
                        queue_id,
                        timestamp,
                        args.force,
                    )?;
                    table.row(vec![
                        target.name.clone(),
                        queue_id.to_string(),
                        old.map_or("-".into(), |o| o.to_string()),
                        new.to_string(),
                        if updated { "direct" } else { "kept" }.into(),
                    ]);
                    rows.push(json!({
                        "brokerName": target.name, "queueId": queue_id, "oldOffset": old,
                        "newOffset": if updated { new } else { old.unwrap_or(new) },
                        "method": if updated { "direct" } else { "kept" },
                    }));
                }
            }
            code => {
                return Err(AdminError::Server {
                    role: Role::Broker,
                    addr: target.addr.clone(),
                    request: request::INVOKE_BROKER_TO_RESET_OFFSET,
                    code,
                    remark: resp.remark,
                })
            }
        }
    }
    let mut text = table.render();
    for n in &notes {
        text.push_str(n);
        text.push('\n');
    }
    Ok(Output::new(
        json!({ "group": args.group, "topic": args.topic, "timestamp": timestamp, "queues": rows }),
        text,
    ))
}

/// `ResetOffsetByTimeOldCommand`: search the offset for the time, and commit it when
/// forced or when it moves the group back. Returns (old, new, committed).
fn reset_queue_directly(
    admin: &mut Admin,
    target: &BrokerTarget,
    group: &str,
    topic: &str,
    queue_id: i32,
    timestamp: i64,
    force: bool,
) -> Result<(Option<i64>, i64, bool), AdminError> {
    let req = RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(
        &SearchOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            timestamp,
            boundary_type: None,
        },
    );
    let resp = admin.call_ok(Role::Broker, &target.addr, req)?;
    let new = offset_header(&resp, target, request::SEARCH_OFFSET_BY_TIMESTAMP)?;
    let req = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET).with_header(
        &QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            set_zero_if_not_found: Some(false),
        },
    );
    let resp = admin.call(Role::Broker, &target.addr, req)?;
    let old = match resp.code {
        response::SUCCESS => Some(offset_header(
            &resp,
            target,
            request::QUERY_CONSUMER_OFFSET,
        )?),
        _ => None,
    };
    let update = force || old.is_none_or(|o| new <= o);
    if update {
        let req = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(
            &UpdateConsumerOffsetRequestHeader {
                consumer_group: group.to_owned(),
                topic: topic.to_owned(),
                queue_id,
                commit_offset: new,
            },
        );
        admin.call_ok(Role::Broker, &target.addr, req)?;
    }
    Ok((old, new, update))
}

fn offset_header(
    resp: &RemotingCommand,
    target: &BrokerTarget,
    request: i32,
) -> Result<i64, AdminError> {
    resp.header::<OffsetResponseHeader>()
        .map(|h| h.offset)
        .map_err(|e| AdminError::BadResponse {
            role: Role::Broker,
            addr: target.addr.clone(),
            request,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_stats_from_our_broker_and_java() {
        let ours = br#"{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":7},{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":3,"consumerOffset":3,"lastTimestamp":0}}}"#;
        let s = parse_consume_stats(ours).unwrap();
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].queue.queue_id, 0);
        assert_eq!(s.rows[1].diff(), 6);
        assert_eq!(s.rows[1].last_timestamp, 7);
        // Java's fastjson output: field order differs, tps non-zero, a consumer ahead of
        // the broker (after truncation) never shows a negative lag.
        let java = br#"{"consumeTps":1.5,"offsetTable":{{"topic":"T","brokerName":"b","queueId":0}:{"brokerOffset":1,"consumerOffset":2,"lastTimestamp":0,"pullOffset":2}}}"#;
        let s = parse_consume_stats(java).unwrap();
        assert_eq!(s.consume_tps, 1.5);
        assert_eq!(s.rows[0].diff(), 0);
        assert!(parse_consume_stats(br#"{"offsetTable":{{"x":1}:{}}}"#)
            .is_ok_and(|s| s.rows[0].queue.topic.is_empty()));
        assert!(parse_consume_stats(br#"{"offsetTable":{"notjson":{}}}"#).is_err());
        let reset = parse_reset_offsets(
            br#"{"offsetTable":{{"brokerName":"b","queueId":3,"topic":"T"}:42}}"#,
        )
        .unwrap();
        assert_eq!(reset[0].0.queue_id, 3);
        assert_eq!(reset[0].1, 42);
    }
}
