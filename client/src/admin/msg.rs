//! Message commands: queryMsgById, queryMsgByKey, queryMsgByUniqueKey, queryMsgByOffset,
//! printMsg, sendMessage, consumeMessage.

use protocol::body::TopicRouteData;
use protocol::code::{request, response};
use protocol::header::{
    OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryMessageRequestHeader, QueueRequestHeader, SearchOffsetRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, ViewMessageRequestHeader,
};
use protocol::message::record::RecordView;
use protocol::message::{decode_offset_msg_id, perm, property, pull_sys_flag, UniqIdGenerator};
use protocol::RemotingCommand;
use serde_json::{json, Value};

use super::cli::{
    ConsumeMessageArgs, Output, PrintMsgArgs, QueryMsgByIdArgs, QueryMsgByKeyArgs,
    QueryMsgByOffsetArgs, QueryMsgByUniqueKeyArgs, SendMessageArgs,
};
use super::client::{route_masters, Admin, BrokerTarget};
use super::error::{AdminError, Role};
use super::format::{format_ms, now_ms, parse_timestamp, Table};
use super::message::{decode_records, message_json, message_line, message_text, msg_id};
use super::topic::validate_topic;

/// The group pulls are made for (RocketMQ's `MixAll.TOOLS_CONSUMER_GROUP`).
pub const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// The group sendMessage produces as.
pub const TOOLS_PRODUCER_GROUP: &str = "TOOLS_PRODUCER";
/// Messages per pull.
const PULL_BATCH: i32 = 32;

fn bad_response(target: &str, request: i32, reason: String) -> AdminError {
    AdminError::BadResponse {
        role: Role::Broker,
        addr: target.to_owned(),
        request,
        reason,
    }
}

fn records_of(
    addr: &str,
    request: i32,
    resp: &RemotingCommand,
) -> Result<Vec<RecordView>, AdminError> {
    decode_records(&resp.body).map_err(|reason| bad_response(addr, request, reason))
}

fn timestamp_arg(text: Option<&str>, default: i64) -> Result<i64, AdminError> {
    match text {
        None => Ok(default),
        Some(t) => parse_timestamp(t, now_ms()).ok_or_else(|| {
            AdminError::Usage(format!(
                "invalid timestamp {t:?}: milliseconds, now, or YYYY-MM-DD[ HH:MM:SS[.mmm]] (UTC)"
            ))
        }),
    }
}

/// Text and JSON for a list of messages shown in full.
fn messages_output(records: &[RecordView]) -> Output {
    let text = records
        .iter()
        .map(message_text)
        .collect::<Vec<_>>()
        .join("\n");
    Output::new(
        json!({ "messages": records.iter().map(message_json).collect::<Vec<_>>() }),
        text,
    )
}

fn view_message(
    admin: &mut Admin,
    addr: &str,
    offset: i64,
    topic: Option<&str>,
) -> Result<Vec<RecordView>, AdminError> {
    let req = RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_header(
        &ViewMessageRequestHeader {
            topic: topic.map(str::to_owned),
            offset,
        },
    );
    let resp = admin.call_ok(Role::Broker, addr, req)?;
    records_of(addr, request::VIEW_MESSAGE_BY_ID, &resp)
}

pub fn query_by_id(admin: &mut Admin, args: &QueryMsgByIdArgs) -> Result<Output, AdminError> {
    let mut records = Vec::new();
    for id in args
        .msg_id
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match decode_offset_msg_id(id) {
            Ok((addr, offset)) => {
                records.extend(view_message(admin, &addr.to_string(), offset, args.topic.as_deref())?);
            }
            Err(e) => match &args.topic {
                Some(topic) => records.extend(query(admin, topic, id, 32, 0, i64::MAX, true)?),
                None => {
                    return Err(AdminError::Usage(format!(
                        "{id} is not an offset msgId ({e}); pass -t TOPIC to look it up as a unique key"
                    )))
                }
            },
        }
    }
    Ok(messages_output(&records))
}

/// QUERY_MESSAGE on every master of the topic; QUERY_NOT_FOUND from all of them is the
/// error.
fn query(
    admin: &mut Admin,
    topic: &str,
    key: &str,
    max_num: i32,
    begin: i64,
    end: i64,
    unique: bool,
) -> Result<Vec<RecordView>, AdminError> {
    let targets = admin.topic_masters(topic)?;
    let mut records = Vec::new();
    let mut not_found = None;
    for target in &targets {
        let req = RemotingCommand::request(request::QUERY_MESSAGE).with_header(
            &QueryMessageRequestHeader {
                topic: topic.to_owned(),
                key: key.to_owned(),
                max_num,
                begin_timestamp: begin,
                end_timestamp: end,
                unique_key_query: unique.then_some(true),
            },
        );
        match admin.call_ok(Role::Broker, &target.addr, req) {
            Ok(resp) => {
                let found = records_of(&target.addr, request::QUERY_MESSAGE, &resp)?;
                // The index matches hashes: keep only the records that carry the key.
                records.extend(found.into_iter().filter(|r| {
                    r.topic_str() == topic
                        && if unique {
                            r.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == Some(key)
                        } else {
                            r.property(property::KEYS)
                                .is_some_and(|k| k.split(' ').any(|k| k == key))
                        }
                }));
            }
            Err(e) if e.server_code() == Some(response::QUERY_NOT_FOUND) => {
                not_found = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    if records.is_empty() {
        return Err(not_found.unwrap_or_else(|| {
            AdminError::NotFound(format!("no message with key {key} in topic {topic}"))
        }));
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.store_timestamp));
    Ok(records)
}

pub fn query_by_key(admin: &mut Admin, args: &QueryMsgByKeyArgs) -> Result<Output, AdminError> {
    let begin = timestamp_arg(args.begin.as_deref(), 0)?;
    let end = timestamp_arg(args.end.as_deref(), i64::MAX)?;
    let records = query(
        admin,
        &args.topic,
        &args.key,
        args.max_num.max(1),
        begin,
        end,
        false,
    )?;
    let mut table = Table::new(&["Message ID", "QID", "Offset", "Store Time"]);
    for r in &records {
        table.row(vec![
            msg_id(r),
            r.queue_id.to_string(),
            r.queue_offset.to_string(),
            format_ms(r.store_timestamp),
        ]);
    }
    Ok(Output::new(
        json!({ "messages": records.iter().map(message_json).collect::<Vec<_>>() }),
        table.render(),
    ))
}

pub fn query_by_unique_key(
    admin: &mut Admin,
    args: &QueryMsgByUniqueKeyArgs,
) -> Result<Output, AdminError> {
    let mut records = query(admin, &args.topic, &args.msg_id, 32, 0, i64::MAX, true)?;
    if !args.show_all {
        records.truncate(1);
    }
    Ok(messages_output(&records))
}

/// The master of `broker_name` in a route.
fn broker_of(
    route: &TopicRouteData,
    topic: &str,
    broker_name: &str,
) -> Result<BrokerTarget, AdminError> {
    route_masters(route)
        .into_iter()
        .find(|b| b.name == broker_name)
        .ok_or_else(|| {
            AdminError::NotFound(format!("broker {broker_name} does not serve topic {topic}"))
        })
}

/// One pull: the records found and where the next pull starts.
struct Pulled {
    records: Vec<RecordView>,
    next_offset: i64,
    /// Nothing more at or after the offset asked.
    exhausted: bool,
}

/// The queue and filter a series of pulls reads.
struct PullFrom<'a> {
    target: &'a BrokerTarget,
    group: &'a str,
    topic: &'a str,
    queue_id: i32,
    subscription: &'a str,
}

fn pull(
    admin: &mut Admin,
    from: &PullFrom<'_>,
    offset: i64,
    max: i32,
) -> Result<Pulled, AdminError> {
    let PullFrom {
        target,
        group,
        topic,
        queue_id,
        subscription,
    } = *from;
    let req =
        RemotingCommand::request(request::PULL_MESSAGE).with_header(&PullMessageRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: max,
            sys_flag: pull_sys_flag::SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some(subscription.to_owned()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
            request_source: None,
            proxy_forward_client_id: None,
            broker_name: Some(target.name.clone()),
        });
    let resp = admin.call(Role::Broker, &target.addr, req)?;
    let next = resp
        .header::<PullMessageResponseHeader>()
        .map(|h| h.next_begin_offset)
        .unwrap_or(offset);
    match resp.code {
        response::SUCCESS => {
            let records = records_of(&target.addr, request::PULL_MESSAGE, &resp)?;
            Ok(Pulled {
                exhausted: records.is_empty() && next <= offset,
                records,
                next_offset: next,
            })
        }
        // Filtered out: go on from the next offset.
        response::PULL_RETRY_IMMEDIATELY => Ok(Pulled {
            records: Vec::new(),
            exhausted: next <= offset,
            next_offset: next,
        }),
        response::PULL_NOT_FOUND | response::PULL_OFFSET_MOVED => Ok(Pulled {
            records: Vec::new(),
            exhausted: true,
            next_offset: next,
        }),
        code => Err(AdminError::Server {
            role: Role::Broker,
            addr: target.addr.clone(),
            request: request::PULL_MESSAGE,
            code,
            remark: resp.remark,
        }),
    }
}

pub fn query_by_offset(
    admin: &mut Admin,
    args: &QueryMsgByOffsetArgs,
) -> Result<Output, AdminError> {
    let route = admin.route(&args.topic)?;
    let target = broker_of(&route, &args.topic, &args.broker_name)?;
    let from = PullFrom {
        target: &target,
        group: TOOLS_CONSUMER_GROUP,
        topic: &args.topic,
        queue_id: args.queue_id,
        subscription: "*",
    };
    let pulled = pull(admin, &from, args.offset, 1)?;
    let records: Vec<RecordView> = pulled
        .records
        .into_iter()
        .filter(|r| r.queue_offset == args.offset)
        .collect();
    if records.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no message at offset {} of {}/{}/{}",
            args.offset, args.topic, args.broker_name, args.queue_id
        )));
    }
    Ok(messages_output(&records))
}

fn queue_offset(
    admin: &mut Admin,
    target: &BrokerTarget,
    code: i32,
    topic: &str,
    queue_id: i32,
    timestamp: Option<i64>,
) -> Result<i64, AdminError> {
    let req = match timestamp {
        Some(timestamp) => RemotingCommand::request(code).with_header(&SearchOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            timestamp,
            boundary_type: None,
        }),
        None => RemotingCommand::request(code).with_header(&QueueRequestHeader {
            topic: topic.to_owned(),
            queue_id,
        }),
    };
    let resp = admin.call_ok(Role::Broker, &target.addr, req)?;
    resp.header::<OffsetResponseHeader>()
        .map(|h| h.offset)
        .map_err(|e| bad_response(&target.addr, code, e.to_string()))
}

/// A queue range to read: `[begin, end)`.
struct QueueRange {
    target: BrokerTarget,
    queue_id: i32,
    begin: i64,
    end: i64,
}

/// Pulls every range in turn, calling `f` per record, until `limit` records.
fn read_ranges(
    admin: &mut Admin,
    topic: &str,
    group: &str,
    subscription: &str,
    ranges: &[QueueRange],
    limit: usize,
    mut f: impl FnMut(&RecordView),
) -> Result<usize, AdminError> {
    let mut seen = 0;
    for range in ranges {
        let mut offset = range.begin;
        while offset < range.end && seen < limit {
            let max = (range.end - offset).min(PULL_BATCH as i64) as i32;
            let from = PullFrom {
                target: &range.target,
                group,
                topic,
                queue_id: range.queue_id,
                subscription,
            };
            let pulled = pull(admin, &from, offset, max)?;
            for r in pulled.records.iter().filter(|r| r.queue_offset < range.end) {
                if seen == limit {
                    break;
                }
                f(r);
                seen += 1;
            }
            if pulled.exhausted || pulled.next_offset <= offset {
                break;
            }
            offset = pulled.next_offset;
        }
    }
    Ok(seen)
}

/// The readable queues of a route, optionally of one broker / one queue.
fn queues_of(
    route: &TopicRouteData,
    broker: Option<&str>,
    queue: Option<i32>,
) -> Vec<(BrokerTarget, i32)> {
    let masters = route_masters(route);
    let mut out = Vec::new();
    for target in masters {
        if broker.is_some_and(|b| b != target.name) {
            continue;
        }
        let Some(q) = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == target.name)
        else {
            continue;
        };
        if !perm::is_readable(q.perm) {
            continue;
        }
        for queue_id in 0..q.read_queue_nums {
            if queue.is_none_or(|id| id == queue_id) {
                out.push((target.clone(), queue_id));
            }
        }
    }
    out
}

fn ranges_by_time(
    admin: &mut Admin,
    topic: &str,
    queues: Vec<(BrokerTarget, i32)>,
    begin: Option<i64>,
    end: Option<i64>,
) -> Result<Vec<QueueRange>, AdminError> {
    let mut ranges = Vec::new();
    for (target, queue_id) in queues {
        let b = match begin {
            Some(t) => queue_offset(
                admin,
                &target,
                request::SEARCH_OFFSET_BY_TIMESTAMP,
                topic,
                queue_id,
                Some(t),
            )?,
            None => queue_offset(
                admin,
                &target,
                request::GET_MIN_OFFSET,
                topic,
                queue_id,
                None,
            )?,
        };
        let e = match end {
            Some(t) => queue_offset(
                admin,
                &target,
                request::SEARCH_OFFSET_BY_TIMESTAMP,
                topic,
                queue_id,
                Some(t),
            )?,
            None => queue_offset(
                admin,
                &target,
                request::GET_MAX_OFFSET,
                topic,
                queue_id,
                None,
            )?,
        };
        ranges.push(QueueRange {
            target,
            queue_id,
            begin: b,
            end: e,
        });
    }
    Ok(ranges)
}

pub fn print_msg(admin: &mut Admin, args: &PrintMsgArgs) -> Result<Output, AdminError> {
    let begin = args
        .begin
        .as_deref()
        .map(|t| timestamp_arg(Some(t), 0))
        .transpose()?;
    let end = args
        .end
        .as_deref()
        .map(|t| timestamp_arg(Some(t), 0))
        .transpose()?;
    let route = admin.route(&args.topic)?;
    let queues = queues_of(&route, None, None);
    let ranges = ranges_by_time(admin, &args.topic, queues, begin, end)?;
    let mut text = String::new();
    let mut messages = Vec::new();
    let mut queue_rows = Vec::new();
    for range in &ranges {
        text.push_str(&format!(
            "MessageQueue [topic={}, brokerName={}, queueId={}] offsets [{}, {})\n",
            args.topic, range.target.name, range.queue_id, range.begin, range.end
        ));
        queue_rows.push(json!({
            "brokerName": range.target.name, "queueId": range.queue_id,
            "beginOffset": range.begin, "endOffset": range.end,
        }));
        let left = args.limit.saturating_sub(messages.len());
        read_ranges(
            admin,
            &args.topic,
            TOOLS_CONSUMER_GROUP,
            &args.sub_expression,
            std::slice::from_ref(range),
            left,
            |r| {
                text.push_str(&message_line(r, args.print_body));
                text.push('\n');
                messages.push(message_json(r));
            },
        )?;
    }
    Ok(Output::new(
        json!({ "topic": args.topic, "queues": queue_rows, "messages": messages }),
        text,
    ))
}

pub fn consume_message(admin: &mut Admin, args: &ConsumeMessageArgs) -> Result<Output, AdminError> {
    if args.queue_id.is_some() && args.broker_name.is_none() {
        return Err(AdminError::Usage("-i queueId needs -b brokerName".into()));
    }
    if args.offset.is_some() && args.queue_id.is_none() {
        return Err(AdminError::Usage(
            "-o offset needs -b brokerName and -i queueId".into(),
        ));
    }
    let begin = args
        .begin
        .as_deref()
        .map(|t| timestamp_arg(Some(t), 0))
        .transpose()?;
    let end = args
        .end
        .as_deref()
        .map(|t| timestamp_arg(Some(t), 0))
        .transpose()?;
    let route = admin.route(&args.topic)?;
    let queues = queues_of(&route, args.broker_name.as_deref(), args.queue_id);
    if queues.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no readable queue of topic {} matches",
            args.topic
        )));
    }
    let mut ranges = ranges_by_time(admin, &args.topic, queues, begin, end)?;
    if let Some(offset) = args.offset {
        for r in &mut ranges {
            r.begin = offset;
        }
    }
    let mut text = String::new();
    let mut messages = Vec::new();
    read_ranges(
        admin,
        &args.topic,
        &args.group,
        "*",
        &ranges,
        args.count,
        |r| {
            text.push_str(&message_line(r, true));
            text.push('\n');
            messages.push(message_json(r));
        },
    )?;
    text.push_str(&format!("Consumed {} messages\n", messages.len()));
    Ok(Output::new(
        json!({ "topic": args.topic, "count": messages.len(), "messages": messages }),
        text,
    ))
}

/// Send statuses RocketMQ derives from a send's response code.
fn send_status(code: i32) -> Option<&'static str> {
    match code {
        response::SUCCESS => Some("SEND_OK"),
        response::FLUSH_DISK_TIMEOUT => Some("FLUSH_DISK_TIMEOUT"),
        response::FLUSH_SLAVE_TIMEOUT => Some("FLUSH_SLAVE_TIMEOUT"),
        response::SLAVE_NOT_AVAILABLE => Some("SLAVE_NOT_AVAILABLE"),
        _ => None,
    }
}

/// Queues of a topic created by sending to it (the Java producer's
/// `defaultTopicQueueNums`).
const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

pub fn send_message(admin: &mut Admin, args: &SendMessageArgs) -> Result<Output, AdminError> {
    validate_topic(&args.topic)?;
    // An unknown topic is sent through TBW102's brokers, which create it (auto-create)
    // with at most DEFAULT_TOPIC_QUEUE_NUMS queues: like the Java producer, only those
    // queues are used.
    let (route, queue_cap) = match admin.route(&args.topic) {
        Ok(r) => (r, i32::MAX),
        Err(e) if e.server_code() == Some(response::TOPIC_NOT_EXIST) => match admin.route("TBW102")
        {
            Ok(r) => (r, DEFAULT_TOPIC_QUEUE_NUMS),
            Err(_) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let writable: Vec<(BrokerTarget, i32)> = route_masters(&route)
        .into_iter()
        .filter(|t| args.broker_name.as_ref().is_none_or(|b| *b == t.name))
        .filter_map(|t| {
            let q = route.queue_datas.iter().find(|q| q.broker_name == t.name)?;
            (perm::is_writeable(q.perm) && q.write_queue_nums > 0)
                .then_some((t, q.write_queue_nums.min(queue_cap)))
        })
        .collect();
    let Some((target, queues)) = writable.into_iter().next() else {
        return Err(AdminError::NotFound(match &args.broker_name {
            Some(b) => format!("broker {b} has no writable queue of topic {}", args.topic),
            None => format!("topic {} has no writable queue", args.topic),
        }));
    };
    let queue_id = match args.queue_id {
        Some(q) if q < 0 || q >= queues => {
            return Err(AdminError::Usage(format!(
                "queue {q} is not within 0..{queues} on broker {}",
                target.name
            )))
        }
        Some(q) => q,
        None => (now_ms() as u64 % queues as u64) as i32,
    };
    let uniq = UniqIdGenerator::new(
        std::net::Ipv4Addr::LOCALHOST.into(),
        std::process::id(),
        now_ms() as i32,
    )
    .next_id(now_ms());
    let mut props: Vec<(&str, &str)> = Vec::new();
    if let Some(tags) = &args.tags {
        props.push((property::TAGS, tags));
    }
    if let Some(keys) = &args.keys {
        props.push((property::KEYS, keys));
    }
    props.push((property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &uniq));
    props.push((property::WAIT_STORE_MSG_OK, "true"));
    let properties = String::from_utf8(protocol::message::encode_properties(props))
        .expect("properties built from strings are UTF-8");
    let header = SendMessageRequestHeaderV2 {
        a: TOOLS_PRODUCER_GROUP.into(),
        b: args.topic.clone(),
        c: "TBW102".into(),
        d: DEFAULT_TOPIC_QUEUE_NUMS,
        e: queue_id,
        f: 0,
        g: now_ms(),
        h: 0,
        i: Some(properties),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(false),
        n: Some(target.name.clone()),
    };
    let req = RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&header)
        .with_body(args.body.clone().into_bytes());
    let resp = admin.call(Role::Broker, &target.addr, req)?;
    let Some(status) = send_status(resp.code) else {
        return Err(AdminError::Server {
            role: Role::Broker,
            addr: target.addr.clone(),
            request: request::SEND_MESSAGE_V2,
            code: resp.code,
            remark: resp.remark,
        });
    };
    let h: SendMessageResponseHeader = resp
        .header()
        .map_err(|e| bad_response(&target.addr, request::SEND_MESSAGE_V2, e.to_string()))?;
    let mut table = Table::new(&["Broker Name", "QID", "Send Result", "MsgId"]);
    table.row(vec![
        target.name.clone(),
        h.queue_id.to_string(),
        status.into(),
        uniq.clone(),
    ]);
    let json: Value = json!({
        "brokerName": target.name, "brokerAddr": target.addr, "queueId": h.queue_id,
        "queueOffset": h.queue_offset, "sendStatus": status, "msgId": uniq,
        "offsetMsgId": h.msg_id, "topic": args.topic,
    });
    Ok(Output::new(json, table.render()))
}
