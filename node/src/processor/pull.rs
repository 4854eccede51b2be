//! PULL_MESSAGE (11): runs on the shard that owns the queue, so appends wake its long
//! polls without crossing threads.
//!
//! Statuses and codes follow RocketMQ's `DefaultMessageStore.getMessage` and
//! `PullMessageProcessor`: an empty queue answers PULL_NOT_FOUND at offset 0 and
//! PULL_OFFSET_MOVED elsewhere; an offset below the minimum or past the maximum answers
//! PULL_OFFSET_MOVED with the corrected `nextBeginOffset`; the offset right at the end
//! answers PULL_NOT_FOUND, after parking up to `suspendTimeoutMillis` when the client
//! allows it; a scan that found only other tags answers PULL_RETRY_IMMEDIATELY.

use bytes::BytesMut;
use protocol::code::response;
use protocol::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use protocol::message::{java_string_hash, perm, pull_sys_flag};
use protocol::RemotingCommand;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::config::FlushKind;
use crate::server::Origin;
use crate::shard::ShardCtx;

/// Largest single read serving one pull: records of one queue interleave with others in
/// the log, so a pull's records lie within a range a few times their total size.
const MAX_SPAN: i64 = 1 << 20;

/// Which messages a pull accepts: by tag hash (in the consume queue) or by an SQL92
/// expression over the message's properties (evaluated on the stored record).
#[derive(Debug, Clone)]
pub enum TagFilter {
    All,
    Codes(HashSet<i64>),
    Sql(crate::filter::Sql92Filter),
}

impl PartialEq for TagFilter {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TagFilter::All, TagFilter::All) => true,
            (TagFilter::Codes(a), TagFilter::Codes(b)) => a == b,
            _ => false,
        }
    }
}

impl TagFilter {
    /// The filter for a subscription: TAG or SQL92 (case-insensitive). Retry topics
    /// take every message under SQL92: their messages were filtered when first pulled
    /// (RocketMQ's `ExpressionForRetryMessageFilter`). `Err((code, remark))` as RocketMQ
    /// answers an expression it cannot use.
    pub fn compile(kind: &str, expression: &str, topic: &str) -> Result<Self, (i32, String)> {
        if kind.eq_ignore_ascii_case("TAG") {
            return Ok(Self::parse(expression));
        }
        if !kind.eq_ignore_ascii_case("SQL92") {
            return Err((
                response::SYSTEM_ERROR,
                format!("The broker does not support consumer to filter message by {kind}"),
            ));
        }
        if topic.starts_with(crate::processor::consumer::RETRY_GROUP_TOPIC_PREFIX) {
            return Ok(TagFilter::All);
        }
        crate::filter::Sql92Filter::compile(expression)
            .map(TagFilter::Sql)
            .map_err(|e| {
                (
                    response::SUBSCRIPTION_PARSE_FAILED,
                    format!("parse the consumer's subscription[{expression}] failed: {e}"),
                )
            })
    }

    /// Whether a record passes, given its properties (only SQL92 needs them).
    fn accepts_record(&self, record: &[u8]) -> bool {
        match self {
            TagFilter::Sql(f) => record_properties(record).is_some_and(|p| f.matches(p)),
            _ => true,
        }
    }

    /// A TAG expression: `*` (or empty) for all, else tags separated by `||`.
    pub fn parse(expression: &str) -> Self {
        let e = expression.trim();
        if e.is_empty() || e == "*" {
            return TagFilter::All;
        }
        let codes = e
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| java_string_hash(t) as i64)
            .collect::<HashSet<_>>();
        if codes.is_empty() {
            TagFilter::All
        } else {
            TagFilter::Codes(codes)
        }
    }

    pub fn accepts(&self, tags_code: i64) -> bool {
        match self {
            TagFilter::All | TagFilter::Sql(_) => true,
            TagFilter::Codes(c) => c.contains(&tags_code),
        }
    }
}

/// `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Found,
    NoMessageInQueue,
    OffsetTooSmall,
    OffsetOverflowOne,
    OffsetOverflowBadly,
    NoMatchedMessage,
    OffsetFoundNull,
}

struct Got {
    status: Status,
    next_begin: u64,
    min: u64,
    max: u64,
    body: BytesMut,
    count: usize,
}

pub async fn pull(ctx: &Rc<ShardCtx>, origin: Origin, req: &RemotingCommand) -> RemotingCommand {
    let h: PullMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return super::bad_header(req, e),
    };
    let broker = &ctx.broker;
    if let Some(refused) = super::broker_forbids(ctx, req, perm::READ, "pulling") {
        return refused;
    }
    let group = match broker.meta.groups.find_or_create(
        &h.consumer_group,
        broker.config.auto_create_subscription_group,
    ) {
        Ok(Some(g)) => g,
        Ok(None) => {
            return req.error_response(
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                super::with_faq(format!(
                    "subscription group [{}] does not exist,",
                    h.consumer_group
                )),
            )
        }
        Err(e) => return req.error_response(response::SYSTEM_ERROR, e.to_string()),
    };
    if !group.consume_enable {
        return req.error_response(
            response::NO_PERMISSION,
            format!("subscription group no permission, {}", h.consumer_group),
        );
    }
    let Some(topic) = broker.meta.topics.get(&h.topic) else {
        return super::topic_not_exist(req, &h.topic);
    };
    if !perm::is_readable(topic.perm) {
        return req.error_response(
            response::NO_PERMISSION,
            format!("the topic[{}] pulling message is forbidden", h.topic),
        );
    }
    if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums {
        return req.error_response(
            response::INVALID_PARAMETER,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}] consumer:[{}]",
                h.queue_id, h.topic, topic.read_queue_nums, origin.peer
            ),
        );
    }
    let has_subscription = h.sys_flag & pull_sys_flag::SUBSCRIPTION != 0;
    let filter = if has_subscription {
        let expression_type = h.expression_type.as_deref().unwrap_or("TAG");
        match TagFilter::compile(
            expression_type,
            h.subscription.as_deref().unwrap_or("*"),
            &h.topic,
        ) {
            Ok(f) => f,
            Err(r) => return req.error_response(r.0, r.1),
        }
    } else {
        let Some(info) = broker.clients.consumer_group(&h.consumer_group) else {
            return req.error_response(
                response::SUBSCRIPTION_NOT_EXIST,
                super::with_faq("the consumer's group info not exist"),
            );
        };
        let Some(sub) = info.subscriptions.get(&h.topic) else {
            return req.error_response(
                response::SUBSCRIPTION_NOT_EXIST,
                super::with_faq("the consumer's subscription not exist"),
            );
        };
        if sub.sub_version < h.sub_version {
            return req.error_response(
                response::SUBSCRIPTION_NOT_LATEST,
                "the consumer's subscription not latest",
            );
        }
        let expression_type = sub.expression_type.as_deref().unwrap_or("TAG");
        match TagFilter::compile(expression_type, &sub.sub_string, &h.topic) {
            Ok(f) => f,
            Err(r) => return req.error_response(r.0, r.1),
        }
    };

    let suspend = h.sys_flag & pull_sys_flag::SUSPEND != 0;
    if h.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && suspend && h.commit_offset >= 0 {
        broker
            .meta
            .offsets
            .commit(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    }

    let config = &broker.config;
    let max_msgs = (h.max_msg_nums.max(1) as usize).min(config.max_pull_messages.max(1));
    let max_bytes = h
        .max_msg_bytes
        .filter(|&b| b > 0)
        .map_or(config.max_pull_bytes, |b| {
            (b as usize).min(config.max_pull_bytes)
        });
    let wait = if !suspend {
        Duration::ZERO
    } else if config.long_polling_enable {
        Duration::from_millis(h.suspend_timeout_millis.max(0) as u64)
    } else {
        Duration::from_millis(config.short_polling_ms)
    };
    let deadline = Instant::now() + wait;
    let offset = h.queue_offset.max(0) as u64;
    loop {
        let generation = ctx.arrivals.generation();
        let got = match get_messages(
            ctx, &h.topic, h.queue_id, offset, max_msgs, max_bytes, &filter,
        )
        .await
        {
            Ok(g) => g,
            Err(e) => return req.error_response(response::SYSTEM_ERROR, e.to_string()),
        };
        let code = match got.status {
            Status::Found => response::SUCCESS,
            Status::NoMatchedMessage => response::PULL_RETRY_IMMEDIATELY,
            Status::NoMessageInQueue if h.queue_offset != 0 => response::PULL_OFFSET_MOVED,
            Status::NoMessageInQueue | Status::OffsetFoundNull | Status::OffsetOverflowOne => {
                response::PULL_NOT_FOUND
            }
            Status::OffsetOverflowBadly | Status::OffsetTooSmall => response::PULL_OFFSET_MOVED,
        };
        let now = Instant::now();
        if code == response::PULL_NOT_FOUND
            && now < deadline
            && !broker.shutting_down.load(Ordering::Relaxed)
        {
            // Park until something arrives on the queue or the poll times out; appends
            // on this shard wake us. An arrival while reading means: look again now.
            if ctx.arrivals.generation() == generation {
                futures_lite::future::or(
                    arrival(ctx, &h.topic, h.queue_id),
                    glommio::timer::sleep(deadline - now),
                )
                .await;
            }
            continue;
        }
        if got.count > 0 {
            broker
                .stats
                .get_msgs
                .fetch_add(got.count as u64, Ordering::Relaxed);
            broker
                .stats
                .get_bytes
                .fetch_add(got.body.len() as u64, Ordering::Relaxed);
        }
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: got.next_begin as i64,
            min_offset: got.min as i64,
            max_offset: got.max as i64,
            offset_delta: None,
            topic_sys_flag: Some(topic.topic_sys_flag),
            group_sys_flag: Some(group.group_sys_flag),
            forbidden_type: None,
        };
        return req
            .response(code)
            .with_header(&header)
            .with_body(got.body.freeze());
    }
}

/// Resolves at the next append to the queue (or spuriously; callers re-check).
pub async fn arrival(ctx: &Rc<ShardCtx>, topic: &str, queue_id: i32) {
    let mut registered = false;
    futures_lite::future::poll_fn(|cx| {
        if registered {
            Poll::Ready(())
        } else {
            ctx.arrivals.register(topic, queue_id, cx.waker());
            registered = true;
            Poll::Pending
        }
    })
    .await
}

async fn get_messages(
    ctx: &Rc<ShardCtx>,
    topic: &str,
    queue_id: i32,
    offset: u64,
    max_msgs: usize,
    max_bytes: usize,
    filter: &TagFilter,
) -> Result<Got, storage::StoreError> {
    let store = &ctx.store;
    let min = store.min_queue_offset(topic, queue_id);
    let max = store.max_queue_offset(topic, queue_id);
    let mut got = Got {
        status: Status::NoMessageInQueue,
        next_begin: offset,
        min,
        max,
        body: BytesMut::new(),
        count: 0,
    };
    if max == 0 {
        got.next_begin = 0;
        return Ok(got);
    }
    if offset < min {
        got.status = Status::OffsetTooSmall;
        got.next_begin = min;
        return Ok(got);
    }
    if offset == max {
        got.status = Status::OffsetOverflowOne;
        return Ok(got);
    }
    if offset > max {
        got.status = Status::OffsetOverflowBadly;
        got.next_begin = max;
        return Ok(got);
    }
    // With a filter, scan further than the batch to find matches (RocketMQ scans up to
    // 16 000 bytes of consume queue, 800 entries).
    let scan = match filter {
        TagFilter::All => max_msgs,
        TagFilter::Codes(_) | TagFilter::Sql(_) => max_msgs.max(800),
    };
    let entries = store.entries(topic, queue_id, offset, scan).await?;
    if entries.is_empty() {
        got.status = Status::OffsetFoundNull;
        got.next_begin = offset + 1;
        return Ok(got);
    }
    let mut next = offset;
    let mut selected = Vec::with_capacity(max_msgs.min(entries.len()));
    let mut bytes = 0usize;
    // Under sync flush a consumer sees only durable records: one it consumed can then
    // never vanish in a crash (and its offset never point past the recovered queue).
    let durable = match ctx.broker.config.flush {
        FlushKind::Sync => store.log().durable_pos(),
        FlushKind::Async => u64::MAX,
    };
    for entry in &entries {
        if selected.len() >= max_msgs
            || (!selected.is_empty() && bytes + entry.size as usize > max_bytes)
            || storage::commitlog::split_offset(entry.offset).1 + entry.size as u64 > durable
        {
            break;
        }
        next += 1;
        if filter.accepts(entry.tags_code) {
            bytes += entry.size as usize;
            selected.push(*entry);
        }
    }
    got.body.reserve(bytes);
    let segment_bytes = ctx.broker.config.segment_bytes;
    let mut i = 0;
    while i < selected.len() {
        // One read covers neighbours in the same segment that lie close together (a
        // backlog read from disk is one large direct read, not one per record).
        let start = selected[i].offset;
        let segment = storage::commitlog::split_offset(start).1 / segment_bytes;
        let mut end = start + selected[i].size as i64;
        let mut j = i + 1;
        while let Some(e) = selected.get(j) {
            let e_end = e.offset + e.size as i64;
            if e.offset < end
                || e_end - start > MAX_SPAN
                || storage::commitlog::split_offset(e.offset).1 / segment_bytes != segment
            {
                break;
            }
            end = e_end;
            j += 1;
        }
        let span = store.log().read(start, (end - start) as usize).await?;
        for e in &selected[i..j] {
            let at = (e.offset - start) as usize;
            let record = &span[at..at + e.size as usize];
            if filter.accepts_record(record) {
                got.body.extend_from_slice(record);
                got.count += 1;
            }
        }
        i = j;
    }
    got.next_begin = next;
    if next == offset {
        // The first record is not durable yet: as if at the end of the queue.
        got.status = Status::OffsetOverflowOne;
        return Ok(got);
    }
    got.status = if got.count > 0 {
        Status::Found
    } else {
        Status::NoMatchedMessage
    };
    Ok(got)
}

/// The properties of a stored record, found by its length fields.
fn record_properties(record: &[u8]) -> Option<&[u8]> {
    use protocol::message::record::{pos_body_len, POS_SYS_FLAG};
    let be32 = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(record.get(at..at + 4)?.try_into().ok()?))
    };
    let flag = be32(POS_SYS_FLAG)?;
    let body_len = usize::try_from(be32(pos_body_len(flag))?).ok()?;
    let topic_at = pos_body_len(flag) + 4 + body_len;
    let topic_len = if protocol::message::record::MAGIC_V2 == be32(4)? {
        u16::from_be_bytes(record.get(topic_at..topic_at + 2)?.try_into().ok()?) as usize + 2
    } else {
        *record.get(topic_at)? as usize + 1
    };
    let props_at = topic_at + topic_len;
    let props_len =
        u16::from_be_bytes(record.get(props_at..props_at + 2)?.try_into().ok()?) as usize;
    record.get(props_at + 2..props_at + 2 + props_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_found_in_stored_records() {
        for topic in ["T", &"x".repeat(300)] {
            let props = protocol::message::encode_properties([("a", "1"), ("TAGS", "B")]);
            let w = protocol::message::record::RecordWriter {
                queue_id: 0,
                flag: 0,
                queue_offset: 0,
                physical_offset: 0,
                sys_flag: 0,
                born_timestamp: 0,
                born_host: "127.0.0.1:1".parse().unwrap(),
                store_timestamp: 0,
                store_host: "[::1]:2".parse().unwrap(),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: b"body",
                topic,
                properties: &props,
            };
            let bytes = w.to_vec().unwrap();
            assert_eq!(record_properties(&bytes), Some(&props[..]));
            let f = TagFilter::compile("SQL92", "a = '1' AND TAGS = 'B'", "T").unwrap();
            assert!(f.accepts_record(&bytes));
            let f = TagFilter::compile("sql92", "a > 5", "T").unwrap();
            assert!(!f.accepts_record(&bytes));
            assert!(
                !f.accepts_record(&bytes[..20]),
                "a truncated record never matches"
            );
        }
        assert_eq!(
            TagFilter::compile("SQL92", "a = ", "T").unwrap_err().0,
            response::SUBSCRIPTION_PARSE_FAILED
        );
        assert_eq!(
            TagFilter::compile("SQL92", "a = ", "%RETRY%g").unwrap(),
            TagFilter::All
        );
        assert_eq!(
            TagFilter::compile("XPATH", "x", "T").unwrap_err().0,
            response::SYSTEM_ERROR
        );
    }

    #[test]
    fn tag_expressions() {
        assert_eq!(TagFilter::parse("*"), TagFilter::All);
        assert_eq!(TagFilter::parse(" "), TagFilter::All);
        let f = TagFilter::parse("TagA || TagB");
        assert!(f.accepts(java_string_hash("TagA") as i64));
        assert!(f.accepts(java_string_hash("TagB") as i64));
        assert!(!f.accepts(java_string_hash("TagC") as i64));
    }
}
