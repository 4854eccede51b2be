//! Delay levels and consumer retry / dead-letter queues, end to end: the real broker
//! registered with the real nameserver, driven over TCP with our own `protocol` crate.
//!
//! Expected behaviour follows Apache RocketMQ 5.3:
//! - `HookUtils.transformDelayLevelMessage`: a single message with `DELAY` > 0 waits in
//!   `SCHEDULE_TOPIC_XXXX`, a level above the last is clamped to the last, `REAL_TOPIC` /
//!   `REAL_QID` name where it goes;
//! - `ScheduleMessageService.messageTimeUp`: the due message is put to its real topic and
//!   queue with its body and properties, `DELAY` cleared, `REAL_TOPIC` / `REAL_QID` kept;
//! - `AbstractSendMessageProcessor.consumerSendMsgBack`: CONSUMER_SEND_MSG_BACK stores the
//!   message in `%RETRY%<group>` with delay level `3 + reconsumeTimes` (or the requested
//!   level), `reconsumeTimes + 1`, `RETRY_TOPIC` and `ORIGIN_MESSAGE_ID`; with
//!   `reconsumeTimes >= maxReconsumeTimes` or a negative level it goes to `%DLQ%<group>`
//!   at once;
//! - `SendMessageProcessor.handleRetryAndDLQ`: a message sent straight to `%RETRY%<group>`
//!   past the max reconsume times goes to the DLQ (what clients do when send-back fails).
//!
//! Time is asserted from below only, on one clock: a delivered message's store timestamp
//! is at least its delay after the test sent it. Everything else waits with generous
//! deadlines.

use e2e::*;
use protocol::code::{request, response};
use protocol::header::{
    ConsumerSendMsgBackRequestHeader, GetMaxOffsetRequestHeader, OffsetResponseHeader,
    SendMessageRequestHeaderV2,
};
use protocol::message::record::RecordView;
use protocol::message::{decode_offset_msg_id, encode_offset_msg_id, property};
use protocol::RemotingCommand;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Generous deadline for anything asynchronous (deliveries, registration).
const EVENTUALLY: Duration = Duration::from_secs(30);

/// Short delay levels for tests: level 1 = 1 s, 2 = 2 s, 3 = 3 s.
const SHORT_LEVELS: &str = "1s 2s 3s";

/// Levels for retry tests: level 1 = 1 s, every higher level = 1 h. A message that should
/// go to the DLQ at once would only show up an hour later if the broker delayed it.
const RETRY_LEVELS: &str = "1s 1h";

fn start_cluster(levels: &str) -> Cluster {
    Cluster::start(&["--set", &format!("message_delay_level={levels}")])
}

/// A message the test sent, and when.
#[derive(Debug)]
struct Sent {
    body: Vec<u8>,
    uniq_key: String,
    /// Wall-clock milliseconds taken just before the send: the broker stored it later.
    sent_ms: i64,
    sent_at: Instant,
    /// The commit-log offset named by the send response's offset msgId.
    physical_offset: i64,
}

/// Sends one message with tags, keys, a user property and (when `delay` is given) a
/// `DELAY` property; asserts success and that the response names the original queue.
fn send(
    client: &mut RemotingClient,
    topic: &str,
    queue_id: i32,
    body: &str,
    delay: Option<&str>,
) -> Sent {
    let uniq_key = next_uniq_key();
    let tags = tags_of(body);
    let keys = keys_of(body);
    let user = user_of(body);
    let mut properties = vec![("userProp", user.as_str())];
    if let Some(level) = delay {
        properties.push((property::DELAY_TIME_LEVEL, level));
    }
    let sent_ms = now_ms();
    let sent_at = Instant::now();
    let header = send_ok(
        client,
        &OutMessage {
            topic,
            queue_id,
            body: body.as_bytes(),
            tags: Some(&tags),
            keys: Some(&keys),
            properties: &properties,
            uniq_key: Some(uniq_key.clone()),
        },
    );
    assert_eq!(
        header.queue_id, queue_id,
        "the send response names the original queue, delayed or not"
    );
    let (_, physical_offset) = decode_offset_msg_id(&header.msg_id)
        .unwrap_or_else(|e| panic!("msgId {:?} is not an offset msgId: {e}", header.msg_id));
    Sent {
        body: body.as_bytes().to_vec(),
        uniq_key,
        sent_ms,
        sent_at,
        physical_offset,
    }
}

fn tags_of(body: &str) -> String {
    format!("Tag{}", body.len() % 3)
}

fn keys_of(body: &str) -> String {
    format!("key-{body} shared")
}

fn user_of(body: &str) -> String {
    format!("user-{body}")
}

/// Asserts that `record` carries `sent`'s body, tags, keys, user property and UNIQ_KEY.
fn assert_content(record: &RecordView, sent: &Sent, what: &str) {
    let body = String::from_utf8(sent.body.clone()).expect("UTF-8 body");
    assert_eq!(&record.body[..], &sent.body[..], "{what}: body");
    assert_eq!(record.tags(), Some(tags_of(&body).as_str()), "{what}: tags");
    assert_eq!(
        record.property(property::KEYS),
        Some(keys_of(&body).as_str()),
        "{what}: keys"
    );
    assert_eq!(
        record.property("userProp"),
        Some(user_of(&body).as_str()),
        "{what}: user property"
    );
    assert_eq!(
        record.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX),
        Some(sent.uniq_key.as_str()),
        "{what}: UNIQ_KEY"
    );
}

/// Everything in a queue from offset 0 to its end; empty while the queue (or its topic)
/// does not exist yet.
fn read_queue(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Vec<RecordView> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let (resp, records) = pull(client, group, topic, queue_id, offset, 32);
        if resp.code != response::SUCCESS {
            return all;
        }
        assert!(!records.is_empty(), "SUCCESS without records: {resp:?}");
        let next = pull_header(&resp).next_begin_offset;
        assert!(next > offset, "no progress from {offset}: {resp:?}");
        offset = next;
        all.extend(records);
    }
}

/// Waits until a queue holds at least `n` records and returns them all.
fn wait_for_records(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    n: usize,
) -> Vec<RecordView> {
    let mut got = Vec::new();
    let arrived = eventually(EVENTUALLY, || {
        got = read_queue(client, group, topic, queue_id);
        got.len() >= n
    });
    assert!(
        arrived,
        "{topic}/{queue_id}: {} of {n} records within {EVENTUALLY:?}: {:?}",
        got.len(),
        bodies(&got)
    );
    got
}

fn bodies(records: &[RecordView]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// Asserts that `topic`/`queue_id` has nothing yet, when the test looked before `delay`
/// had passed since `sent` (a slow machine may look later; then there is nothing to say).
fn assert_not_yet_delivered(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    sent: &Sent,
    delay: Duration,
) {
    let records = read_queue(client, group, topic, queue_id);
    if sent.sent_at.elapsed() < delay {
        assert!(
            records.is_empty(),
            "{topic}/{queue_id} has {:?} before the {delay:?} delay passed",
            bodies(&records)
        );
    } else {
        eprintln!("looked only after {delay:?}: the not-yet check is skipped");
    }
}

/// CONSUMER_SEND_MSG_BACK (36) as a Java push consumer sends it.
fn send_back(
    client: &mut RemotingClient,
    offset: i64,
    group: &str,
    delay_level: i32,
    origin_msg_id: &str,
    origin_topic: &str,
    max_reconsume_times: Option<i32>,
) -> RemotingCommand {
    client.call(
        RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK).with_header(
            &ConsumerSendMsgBackRequestHeader {
                offset,
                group: group.into(),
                delay_level,
                origin_msg_id: Some(origin_msg_id.into()),
                origin_topic: Some(origin_topic.into()),
                unit_mode: false,
                max_reconsume_times,
            },
        ),
    )
}

fn send_back_ok(
    client: &mut RemotingClient,
    offset: i64,
    group: &str,
    delay_level: i32,
    origin_msg_id: &str,
    origin_topic: &str,
    max_reconsume_times: Option<i32>,
) {
    let resp = send_back(
        client,
        offset,
        group,
        delay_level,
        origin_msg_id,
        origin_topic,
        max_reconsume_times,
    );
    assert_eq!(
        resp.code,
        response::SUCCESS,
        "send-back of offset {offset} (level {delay_level}): {resp:?}"
    );
}

fn max_offset(client: &mut RemotingClient, topic: &str, queue_id: i32) -> Option<i64> {
    let resp = client.call(
        RemotingCommand::request(request::GET_MAX_OFFSET).with_header(&GetMaxOffsetRequestHeader {
            topic: topic.into(),
            queue_id,
            committed: true,
        }),
    );
    (resp.code == response::SUCCESS).then(|| {
        resp.header::<OffsetResponseHeader>()
            .unwrap_or_else(|e| panic!("{e}: {resp:?}"))
            .offset
    })
}

fn retry_topic(group: &str) -> String {
    format!("%RETRY%{group}")
}

fn dlq_topic(group: &str) -> String {
    format!("%DLQ%{group}")
}

/// Asserts a record came through the delay levels to `topic`/`queue_id`: `DELAY` gone,
/// `REAL_TOPIC` / `REAL_QID` kept, stored at least `delay` after `since_ms`.
fn assert_delivered(
    record: &RecordView,
    topic: &str,
    queue_id: i32,
    since_ms: i64,
    delay: Duration,
) {
    assert_eq!(record.topic_str(), topic, "delivered to its real topic");
    assert_eq!(record.queue_id, queue_id, "delivered to its real queue");
    assert_eq!(
        record.property(property::DELAY_TIME_LEVEL),
        None,
        "DELAY is cleared on delivery (ScheduleMessageService.messageTimeUp)"
    );
    assert_eq!(record.property(property::REAL_TOPIC), Some(topic));
    assert_eq!(
        record.property(property::REAL_QUEUE_ID),
        Some(queue_id.to_string().as_str())
    );
    let waited = record.store_timestamp - since_ms;
    assert!(
        waited >= delay.as_millis() as i64,
        "delivered {waited} ms after the send, before its {delay:?} delay"
    );
}

#[test]
fn delayed_message_arrives_after_its_delay_with_its_content() {
    let c = start_cluster(SHORT_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("Delay1");
    let group = unique_name("g_delay1");
    // The topic exists (4 queues) before the delayed send.
    let plain = send(&mut client, &topic, 0, "plain, not delayed", None);
    let sent = send(&mut client, &topic, 2, "delayed by level 1", Some("1"));
    assert_not_yet_delivered(
        &mut client,
        &group,
        &topic,
        2,
        &sent,
        Duration::from_secs(1),
    );

    let got = wait_for_records(&mut client, &group, &topic, 2, 1);
    assert_eq!(got.len(), 1, "{:?}", bodies(&got));
    let record = &got[0];
    assert_content(record, &sent, "delivered");
    assert_delivered(record, &topic, 2, sent.sent_ms, Duration::from_secs(1));
    assert_eq!(record.queue_offset, 0);
    assert_eq!(record.reconsume_times, 0);
    assert_ne!(
        record.physical_offset, sent.physical_offset,
        "the delivered record is a new one (the send answered the schedule record's offset)"
    );
    // The consume-queue entry has the right tag code: a tag filter finds it.
    let tag = tags_of("delayed by level 1");
    let (resp, filtered) = pull_filtered(&mut client, &group, &topic, 2, 0, 32, &tag);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(bodies(&filtered), vec!["delayed by level 1".to_owned()]);
    let (resp, filtered) = pull_filtered(&mut client, &group, &topic, 2, 0, 32, "NoSuchTag");
    assert!(filtered.is_empty(), "{resp:?}");

    // The undelayed message was not affected.
    let q0 = read_queue(&mut client, &group, &topic, 0);
    assert_eq!(q0.len(), 1);
    assert_content(&q0[0], &plain, "undelayed");
    assert_eq!(q0[0].property(property::REAL_TOPIC), None);
    assert_eq!(q0[0].physical_offset, plain.physical_offset);
}

#[test]
fn delay_above_the_last_level_is_clamped_to_the_last() {
    let c = start_cluster(SHORT_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("DelayClamp");
    let group = unique_name("g_delay_clamp");
    send(&mut client, &topic, 0, "creates the topic", None);
    let sent = send(&mut client, &topic, 1, "delayed by level 99", Some("99"));
    assert_not_yet_delivered(
        &mut client,
        &group,
        &topic,
        1,
        &sent,
        Duration::from_secs(2),
    );

    let got = wait_for_records(&mut client, &group, &topic, 1, 1);
    assert_eq!(got.len(), 1, "{:?}", bodies(&got));
    assert_content(&got[0], &sent, "clamped");
    // Level 99 is level 3 (3 s); loosely: certainly not before level 2's delay (2 s).
    assert_delivered(&got[0], &topic, 1, sent.sent_ms, Duration::from_secs(2));
}

#[test]
fn delayed_messages_on_several_levels_and_queues_arrive_once_in_their_queues() {
    let c = start_cluster(SHORT_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("DelayMany");
    let group = unique_name("g_delay_many");
    // body -> (queue, level); level 0 is not delayed.
    let mut expected: BTreeMap<String, (i32, u64, Sent)> = BTreeMap::new();
    for round in 0..2 {
        for q in 0..4 {
            for level in [3u64, 0, 2, 1] {
                let body = format!("q{q} level{level} round{round}");
                let delay = (level > 0).then(|| level.to_string());
                let sent = send(&mut client, &topic, q, &body, delay.as_deref());
                expected.insert(body, (q, level, sent));
            }
        }
    }
    let per_queue = expected.len() / 4;
    let mut by_queue = BTreeMap::new();
    for q in 0..4 {
        by_queue.insert(
            q,
            wait_for_records(&mut client, &group, &topic, q, per_queue),
        );
    }
    // A grace period for duplicates to show up (not a timing assertion).
    std::thread::sleep(Duration::from_secs(2));
    for q in 0..4 {
        let records = read_queue(&mut client, &group, &topic, q);
        assert_eq!(
            records.len(),
            by_queue[&q].len(),
            "queue {q} grew after every message arrived: {:?}",
            bodies(&records)
        );
        let mut seen = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.queue_offset, i as i64, "queue {q}: offsets are dense");
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let (queue, level, sent) = expected
                .get(&body)
                .unwrap_or_else(|| panic!("queue {q}: unexpected message {body:?}"));
            assert_eq!(*queue, q, "{body:?} delivered to the wrong queue");
            assert_content(r, sent, &body);
            if *level > 0 {
                assert_delivered(r, &topic, q, sent.sent_ms, Duration::from_secs(*level));
            } else {
                assert_eq!(r.property(property::REAL_TOPIC), None, "{body:?}");
            }
            *seen.entry(body).or_insert(0) += 1;
        }
        let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            duplicated.is_empty(),
            "queue {q}: duplicates {duplicated:?}"
        );
        assert_eq!(seen.len(), per_queue, "queue {q}: {:?}", seen.keys());
    }
}

#[test]
fn a_delayed_message_survives_a_clean_restart_and_is_delivered_once() {
    let mut c = start_cluster("1s 5s");
    let mut client = c.connect_broker();
    let topic = unique_name("DelayRestart");
    let group = unique_name("g_delay_restart");
    send(&mut client, &topic, 0, "creates the topic", None);
    // One delayed message delivered before the restart...
    let early = send(
        &mut client,
        &topic,
        1,
        "delivered before the restart",
        Some("1"),
    );
    wait_for_records(&mut client, &group, &topic, 1, 1);
    // ...and one due only after it.
    let late = send(&mut client, &topic, 2, "due after the restart", Some("2"));
    assert_not_yet_delivered(
        &mut client,
        &group,
        &topic,
        2,
        &late,
        Duration::from_secs(5),
    );
    drop(client);

    c.restart_broker();
    let mut client = c.connect_broker();
    let got = wait_for_records(&mut client, &group, &topic, 2, 1);
    assert_content(&got[0], &late, "after the restart");
    assert_delivered(&got[0], &topic, 2, late.sent_ms, Duration::from_secs(5));
    // A grace period for re-deliveries to show up (not a timing assertion).
    std::thread::sleep(Duration::from_secs(2));
    let q1 = read_queue(&mut client, &group, &topic, 1);
    assert_eq!(
        bodies(&q1),
        vec!["delivered before the restart".to_owned()],
        "a clean shutdown persists the delivery progress: no re-delivery"
    );
    assert_content(&q1[0], &early, "before the restart");
    let q2 = read_queue(&mut client, &group, &topic, 2);
    assert_eq!(bodies(&q2), vec!["due after the restart".to_owned()]);
}

#[test]
fn a_delayed_message_survives_kill_9() {
    // Sync flush: an acknowledged send is durable, so a message lost to the crash would
    // be the delay levels' fault, not the (async) flush's.
    let mut c = Cluster::start(&["--set", "message_delay_level=1s 5s", "--set", "flush=sync"]);
    let mut client = c.connect_broker();
    let topic = unique_name("DelayCrash");
    let group = unique_name("g_delay_crash");
    send(&mut client, &topic, 0, "creates the topic", None);
    let early = send(
        &mut client,
        &topic,
        1,
        "delivered before the crash",
        Some("1"),
    );
    wait_for_records(&mut client, &group, &topic, 1, 1);
    let late = send(&mut client, &topic, 2, "due after the crash", Some("2"));
    drop(client);

    c.kill_and_restart_broker();
    let mut client = c.connect_broker();
    let got = wait_for_records(&mut client, &group, &topic, 2, 1);
    // At least once: a crash may re-deliver, never lose.
    for r in &got {
        assert_content(r, &late, "after the crash");
        assert_delivered(r, &topic, 2, late.sent_ms, Duration::from_secs(5));
    }
    let q1 = read_queue(&mut client, &group, &topic, 1);
    assert!(
        !q1.is_empty(),
        "the message delivered before the crash is lost"
    );
    for r in &q1 {
        assert_content(r, &early, "before the crash");
    }
}

#[test]
fn send_back_goes_to_the_retry_topic_after_its_delay_then_to_the_dlq() {
    let c = start_cluster(RETRY_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("SendBack");
    let group = unique_name("g_send_back");
    let retry = retry_topic(&group);
    let dlq = dlq_topic(&group);
    let sent = send(&mut client, &topic, 1, "consumed, then given back", None);
    let (resp, pulled) = pull(&mut client, &group, &topic, 1, 0, 32);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let original = &pulled[0];
    assert_eq!(original.physical_offset, sent.physical_offset);

    // First failure: level 1 (1 s), as a client asking for it; originMsgId is what a
    // Java client passes (its msgId, the UNIQ_KEY).
    let back_ms = now_ms();
    let back_at = Instant::now();
    send_back_ok(
        &mut client,
        original.physical_offset,
        &group,
        1,
        &sent.uniq_key,
        &topic,
        None,
    );
    let back = Sent {
        sent_ms: back_ms,
        sent_at: back_at,
        ..sent
    };
    assert_not_yet_delivered(
        &mut client,
        &group,
        &retry,
        0,
        &back,
        Duration::from_secs(1),
    );
    let got = wait_for_records(&mut client, &group, &retry, 0, 1);
    assert_eq!(got.len(), 1, "{:?}", bodies(&got));
    let retried = &got[0];
    assert_content(retried, &back, "retry");
    assert_delivered(retried, &retry, 0, back_ms, Duration::from_secs(1));
    assert_eq!(retried.reconsume_times, 1, "reconsumeTimes + 1");
    assert_eq!(
        retried.property(property::RETRY_TOPIC),
        Some(topic.as_str())
    );
    let origin_id = retried
        .property(property::ORIGIN_MESSAGE_ID)
        .expect("ORIGIN_MESSAGE_ID on the retry message")
        .to_owned();
    assert!(!origin_id.is_empty());
    assert_eq!(retried.born_timestamp, original.born_timestamp);
    assert_eq!(retried.flag, original.flag);

    // Second failure with maxReconsumeTimes 1: reconsumeTimes 1 >= 1, dead at once (a
    // delayed retry would be level 3 + 1, clamped to the last: an hour).
    send_back_ok(
        &mut client,
        retried.physical_offset,
        &group,
        0,
        &sent_uniq(retried),
        &topic,
        Some(1),
    );
    let dead = wait_for_records(&mut client, &group, &dlq, 0, 1);
    assert_eq!(dead.len(), 1, "{:?}", bodies(&dead));
    let d = &dead[0];
    assert_eq!(d.topic_str(), dlq);
    assert_eq!(d.queue_id, 0);
    assert_content(d, &back, "DLQ");
    assert_eq!(d.reconsume_times, 2);
    assert_eq!(
        d.property(property::RETRY_TOPIC),
        Some(topic.as_str()),
        "kept"
    );
    assert_eq!(
        d.property(property::ORIGIN_MESSAGE_ID),
        Some(origin_id.as_str()),
        "the first ORIGIN_MESSAGE_ID is kept"
    );
    assert!(
        matches!(d.property(property::DELAY_TIME_LEVEL), None | Some("0")),
        "no delay on a DLQ message: {:?}",
        d.property(property::DELAY_TIME_LEVEL)
    );
    // The retry queue got nothing more.
    assert_eq!(bodies(&read_queue(&mut client, &group, &retry, 0)).len(), 1);
}

fn sent_uniq(record: &RecordView) -> String {
    record
        .property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        .expect("UNIQ_KEY")
        .to_owned()
}

/// RocketMQ takes `ORIGIN_MESSAGE_ID` from the message it looked up, never from the
/// header: the message's own property, else its (offset) msgId
/// (`AbstractSendMessageProcessor.consumerSendMsgBack`: `getOriginMessageId(msgExt)`,
/// blank -> `msgExt.getMsgId()`, which `lookMessageByOffset` decodes as the offset msgId).
#[test]
fn send_back_origin_message_id_is_the_original_offset_msg_id() {
    let c = start_cluster(RETRY_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("OriginId");
    let group = unique_name("g_origin_id");
    let sent = send(&mut client, &topic, 0, "origin id", None);
    let (_, pulled) = pull(&mut client, &group, &topic, 0, 0, 32);
    let original = &pulled[0];
    send_back_ok(
        &mut client,
        original.physical_offset,
        &group,
        1,
        &sent.uniq_key,
        &topic,
        None,
    );
    let got = wait_for_records(&mut client, &group, &retry_topic(&group), 0, 1);
    let offset_id = encode_offset_msg_id(original.store_host, original.physical_offset);
    assert_eq!(
        got[0].property(property::ORIGIN_MESSAGE_ID),
        Some(offset_id.as_str()),
        "ORIGIN_MESSAGE_ID is the original's offset msgId (header originMsgId was {})",
        sent.uniq_key
    );
}

#[test]
fn send_back_with_a_negative_level_or_past_the_group_max_goes_to_the_dlq_at_once() {
    let c = start_cluster(RETRY_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("SendBackDlq");
    let group = unique_name("g_send_back_dlq");
    let retry = retry_topic(&group);
    let dlq = dlq_topic(&group);

    // delayLevel -1: the client says "dead now", whatever the reconsume count.
    let first = send(&mut client, &topic, 0, "dead by level -1", None);
    send_back_ok(
        &mut client,
        first.physical_offset,
        &group,
        -1,
        &first.uniq_key,
        &topic,
        None,
    );
    let dead = wait_for_records(&mut client, &group, &dlq, 0, 1);
    assert_eq!(dead.len(), 1, "{:?}", bodies(&dead));
    assert_content(&dead[0], &first, "DLQ by level -1");
    assert_eq!(dead[0].reconsume_times, 1);
    assert_eq!(
        dead[0].property(property::RETRY_TOPIC),
        Some(topic.as_str())
    );
    assert!(dead[0].property(property::ORIGIN_MESSAGE_ID).is_some());

    // reconsumeTimes 16 (sent so by a producer) against the group's default retryMaxTimes
    // 16, no maxReconsumeTimes in the header: dead at once.
    let uniq_key = next_uniq_key();
    let body = "dead by the group's max";
    let (tags, keys, user) = (tags_of(body), keys_of(body), user_of(body));
    let mut cmd = send_request(&OutMessage {
        topic: &topic,
        queue_id: 1,
        body: body.as_bytes(),
        tags: Some(&tags),
        keys: Some(&keys),
        properties: &[("userProp", &user)],
        uniq_key: Some(uniq_key.clone()),
    });
    let mut header: SendMessageRequestHeaderV2 = cmd.header().expect("own header");
    header.j = Some(16);
    cmd = RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&header)
        .with_body(cmd.body.clone());
    let resp = client.call(cmd);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let (_, pulled) = pull(&mut client, &group, &topic, 1, 0, 32);
    assert_eq!(pulled[0].reconsume_times, 16, "reconsumeTimes as sent");
    send_back_ok(
        &mut client,
        pulled[0].physical_offset,
        &group,
        0,
        &uniq_key,
        &topic,
        None,
    );
    let dead = wait_for_records(&mut client, &group, &dlq, 0, 2);
    assert_eq!(bodies(&dead), vec!["dead by level -1", body]);
    assert_eq!(dead[1].reconsume_times, 17);
    assert_eq!(
        dead[1].property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX),
        Some(uniq_key.as_str())
    );
    // Neither went through the retry topic.
    assert!(read_queue(&mut client, &group, &retry, 0).is_empty());
}

#[test]
fn send_back_of_an_unknown_offset_is_a_system_error() {
    let c = start_cluster(RETRY_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("SendBackBad");
    let group = unique_name("g_send_back_bad");
    let sent = send(&mut client, &topic, 0, "something to look past", None);
    // Far past the end of the commit log (AbstractSendMessageProcessor: "look message by
    // offset failed").
    let resp = send_back(
        &mut client,
        sent.physical_offset + (1 << 30),
        &group,
        0,
        &sent.uniq_key,
        &topic,
        None,
    );
    assert_eq!(resp.code, response::SYSTEM_ERROR, "{resp:?}");
    assert!(
        resp.remark
            .as_deref()
            .is_some_and(|r| r.contains("look message by offset failed")),
        "{resp:?}"
    );
    assert!(read_queue(&mut client, &group, &retry_topic(&group), 0).is_empty());
}

/// `SendMessageProcessor.handleRetryAndDLQ`: a message sent straight to `%RETRY%<group>`
/// (a client whose send-back failed does so) with `reconsumeTimes` above the max goes to
/// `%DLQ%<group>`; at or below it, it stays a retry message.
#[test]
fn a_message_sent_to_the_retry_topic_past_the_max_goes_to_the_dlq() {
    let c = start_cluster(RETRY_LEVELS);
    let mut client = c.connect_broker();
    let group = unique_name("g_direct_retry");
    let retry = retry_topic(&group);
    let dlq = dlq_topic(&group);
    // A consumer of the group exists (its heartbeat creates the retry topic).
    let resp = client.call(consumer_heartbeat(
        &unique_name("client"),
        &group,
        "SomeTopic",
    ));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let mut send_retry = |body: &str, reconsume_times: i32| {
        let max = "3";
        let mut cmd = send_request(&OutMessage {
            topic: &retry,
            queue_id: 0,
            body: body.as_bytes(),
            properties: &[
                (property::RETRY_TOPIC, "SomeTopic"),
                (property::MAX_RECONSUME_TIMES, max),
            ],
            ..Default::default()
        });
        let mut header: SendMessageRequestHeaderV2 = cmd.header().expect("own header");
        header.j = Some(reconsume_times);
        header.l = Some(max.parse().expect("number"));
        cmd = RemotingCommand::request(request::SEND_MESSAGE_V2)
            .with_header(&header)
            .with_body(cmd.body.clone());
        let resp = client.call(cmd);
        assert_eq!(resp.code, response::SUCCESS, "send {body:?}: {resp:?}");
    };
    send_retry("retry at the max", 3);
    send_retry("retry past the max", 4);
    let (mut retried, mut dead) = (Vec::new(), Vec::new());
    let both = eventually(EVENTUALLY, || {
        retried = read_queue(&mut client, &group, &retry, 0);
        dead = read_queue(&mut client, &group, &dlq, 0);
        retried.len() + dead.len() >= 2
    });
    assert!(
        both,
        "retry {:?}, DLQ {:?}",
        bodies(&retried),
        bodies(&dead)
    );
    assert_eq!(
        (bodies(&retried), bodies(&dead)),
        (
            vec!["retry at the max".to_owned()],
            vec!["retry past the max".to_owned()]
        ),
        "(retry queue, DLQ)"
    );
    assert_eq!(dead[0].reconsume_times, 4);
}

/// Waits for a route of `topic` at the nameserver; asserts one readable and writable
/// queue on the broker (retry and DLQ topics have one queue by default).
fn assert_routed_with_one_queue(c: &Cluster, topic: &str) {
    let mut ns = c.connect_ns();
    let mut found = None;
    let routed = eventually(EVENTUALLY, || {
        found = route(&mut ns, topic);
        found.is_some()
    });
    assert!(routed, "no route for {topic} within {EVENTUALLY:?}");
    let route = found.expect("route");
    assert_eq!(route.queue_datas.len(), 1, "{route:?}");
    let q = &route.queue_datas[0];
    assert_eq!((q.read_queue_nums, q.write_queue_nums), (1, 1), "{route:?}");
    assert_eq!(q.perm & 6, 6, "readable and writable: {route:?}");
    assert_eq!(route.broker_datas.len(), 1, "{route:?}");
    assert_eq!(
        route.broker_datas[0]
            .broker_addrs
            .get(&0)
            .map(String::as_str),
        Some(c.broker_addr().to_string().as_str()),
        "{route:?}"
    );
}

#[test]
fn retry_and_dlq_topics_are_routed_after_a_heartbeat_or_a_send_back() {
    let c = start_cluster(RETRY_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("RetryRoute");
    send(&mut client, &topic, 0, "routes", None);

    // A consumer's heartbeat creates its group's retry topic.
    let by_heartbeat = unique_name("g_route_heartbeat");
    let resp = client.call(consumer_heartbeat(
        &unique_name("client"),
        &by_heartbeat,
        &topic,
    ));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_routed_with_one_queue(&c, &retry_topic(&by_heartbeat));

    // A send-back creates the retry topic of a group never seen before...
    let by_send_back = unique_name("g_route_send_back");
    let sent = send(&mut client, &topic, 1, "given back", None);
    send_back_ok(
        &mut client,
        sent.physical_offset,
        &by_send_back,
        1,
        &sent.uniq_key,
        &topic,
        None,
    );
    assert_routed_with_one_queue(&c, &retry_topic(&by_send_back));
    assert!(max_offset(&mut client, &retry_topic(&by_send_back), 0).is_some());

    // ...and a dead one its DLQ topic.
    let dead_group = unique_name("g_route_dlq");
    send_back_ok(
        &mut client,
        sent.physical_offset,
        &dead_group,
        -1,
        &sent.uniq_key,
        &topic,
        None,
    );
    assert_routed_with_one_queue(&c, &dlq_topic(&dead_group));
}

/// Delay levels are for single messages: a batch whose properties carry `DELAY` > 0 is
/// refused (`CommitLog.asyncPutMessages`: MESSAGE_ILLEGAL, answered as MESSAGE_ILLEGAL
/// by `SendMessageProcessor.handlePutMessageResult`), and nothing of it is stored.
#[test]
fn a_delayed_batch_is_illegal() {
    let c = start_cluster(SHORT_LEVELS);
    let mut client = c.connect_broker();
    let topic = unique_name("DelayBatch");
    let group = unique_name("g_delay_batch");
    send(&mut client, &topic, 0, "creates the topic", None);
    let mut body = Vec::new();
    for i in 0..2 {
        let uniq = next_uniq_key();
        let props = protocol::message::encode_properties([
            (property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, uniq.as_str()),
            (property::WAIT_STORE_MSG_OK, "true"),
        ]);
        protocol::message::record::encode_batch_entry(
            &mut body,
            0,
            format!("batch entry {i}").as_bytes(),
            &props,
        )
        .expect("batch entry");
    }
    let properties = protocol::message::encode_properties([
        (property::WAIT_STORE_MSG_OK, "true"),
        (property::DELAY_TIME_LEVEL, "1"),
    ]);
    let header = SendMessageRequestHeaderV2 {
        a: "e2e-producer".into(),
        b: topic.clone(),
        c: "TBW102".into(),
        d: 4,
        e: 1,
        f: 0,
        g: now_ms(),
        h: 0,
        i: Some(String::from_utf8(properties).expect("UTF-8 properties")),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(true),
        n: Some("broker-a".into()),
    };
    let resp = client.call(
        RemotingCommand::request(request::SEND_BATCH_MESSAGE)
            .with_header(&header)
            .with_body(body),
    );
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    // Not stored now, nor delivered later (a grace period, not a timing assertion).
    std::thread::sleep(Duration::from_secs(2));
    assert!(read_queue(&mut client, &group, &topic, 1).is_empty());
}
