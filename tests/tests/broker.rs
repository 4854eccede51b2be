//! The real broker binary, registered with the real nameserver, driven over TCP with our
//! own `protocol` crate as the client.
//!
//! Expected codes follow Apache RocketMQ 5.3 (`PullMessageProcessor.composeResponseHeader`,
//! `DefaultMessageStore.getMessage`, `ConsumerManageProcessor`, `QueryMessageProcessor`,
//! `AdminBrokerProcessor`); each test names the rule it checks.

use e2e::*;
use protocol::body::{
    ConsumerListByGroupResponseBody, KvTable, SubscriptionData, TopicConfigSerializeWrapper,
};
use protocol::code::{request, response};
use protocol::header::*;
use protocol::json::{self, JsonStyle};
use protocol::message::record::RecordView;
use protocol::message::{decode_offset_msg_id, property};
use protocol::RemotingCommand;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Generous deadline for anything asynchronous (registration, index building).
const EVENTUALLY: Duration = Duration::from_secs(30);

fn out<'a>(topic: &'a str, queue_id: i32, body: &'a [u8]) -> OutMessage<'a> {
    OutMessage {
        topic,
        queue_id,
        body,
        ..Default::default()
    }
}

/// What a test sent and the broker acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    queue_id: i32,
    queue_offset: i64,
    body: Vec<u8>,
    uniq_key: String,
    store_host: SocketAddr,
    physical_offset: i64,
}

fn send_acked(client: &mut RemotingClient, topic: &str, queue_id: i32, body: &[u8]) -> Acked {
    let uniq = next_uniq_key();
    let header = send_ok(
        client,
        &OutMessage {
            uniq_key: Some(uniq.clone()),
            ..out(topic, queue_id, body)
        },
    );
    assert_eq!(header.queue_id, queue_id);
    let (store_host, physical_offset) = decode_offset_msg_id(&header.msg_id)
        .unwrap_or_else(|e| panic!("msgId {:?} is not an offset msgId: {e}", header.msg_id));
    Acked {
        queue_id,
        queue_offset: header.queue_offset,
        body: body.to_vec(),
        uniq_key: uniq,
        store_host,
        physical_offset,
    }
}

/// Asserts that `records` are exactly the acknowledged messages of one queue, in order.
fn assert_same(topic: &str, acked: &[&Acked], records: &[RecordView]) {
    assert_eq!(
        records.len(),
        acked.len(),
        "record count in {topic}: got offsets {:?}",
        records.iter().map(|r| r.queue_offset).collect::<Vec<_>>()
    );
    for (a, r) in acked.iter().zip(records) {
        assert_eq!(r.topic_str(), topic);
        assert_eq!(r.queue_id, a.queue_id);
        assert_eq!(r.queue_offset, a.queue_offset);
        assert_eq!(
            &r.body[..],
            &a.body[..],
            "body at offset {}",
            a.queue_offset
        );
        assert_eq!(
            r.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX),
            Some(a.uniq_key.as_str())
        );
        assert_eq!(
            r.physical_offset, a.physical_offset,
            "the offset msgId of the send response names the record's commit-log offset"
        );
        assert_eq!(r.store_host, a.store_host);
    }
}

fn get_offset(client: &mut RemotingClient, code: i32, topic: &str, queue_id: i32) -> i64 {
    let cmd = if code == request::GET_MAX_OFFSET {
        RemotingCommand::request(code).with_header(&GetMaxOffsetRequestHeader {
            topic: topic.into(),
            queue_id,
            committed: true,
        })
    } else {
        RemotingCommand::request(code).with_header(&QueueRequestHeader {
            topic: topic.into(),
            queue_id,
        })
    };
    let resp = client.call(cmd);
    assert_eq!(resp.code, response::SUCCESS, "code {code}: {resp:?}");
    resp.header::<OffsetResponseHeader>()
        .unwrap_or_else(|e| panic!("{e}: {resp:?}"))
        .offset
}

fn search_offset(client: &mut RemotingClient, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
    let resp = client.call(
        RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(
            &SearchOffsetRequestHeader {
                topic: topic.into(),
                queue_id,
                timestamp,
                boundary_type: None,
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    resp.header::<OffsetResponseHeader>()
        .unwrap_or_else(|e| panic!("{e}: {resp:?}"))
        .offset
}

fn query_message(
    client: &mut RemotingClient,
    topic: &str,
    key: &str,
    unique: bool,
) -> RemotingCommand {
    client.call(
        RemotingCommand::request(request::QUERY_MESSAGE).with_header(&QueryMessageRequestHeader {
            topic: topic.into(),
            key: key.into(),
            max_num: 64,
            begin_timestamp: 0,
            end_timestamp: now_ms() + 3_600_000,
            unique_key_query: unique.then_some(true),
        }),
    )
}

fn view_message(client: &mut RemotingClient, offset: i64) -> RemotingCommand {
    client.call(
        RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_header(
            &ViewMessageRequestHeader {
                topic: None,
                offset,
            },
        ),
    )
}

fn all_topics(client: &mut RemotingClient) -> TopicConfigSerializeWrapper {
    let resp = client.call(RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    json::from_slice(&resp.body).unwrap_or_else(|e| panic!("GET_ALL_TOPIC_CONFIG body: {e:?}"))
}

#[test]
fn send_and_pull_round_trip_on_several_queues() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("RoundTrip");
    let group = unique_name("g_round_trip");
    let mut acked: BTreeMap<i32, Vec<(Acked, String, String, String)>> = BTreeMap::new();
    let mut physical = BTreeSet::new();
    for q in 0..4 {
        for i in 0..3 {
            let body = format!("body of q{q} m{i}").into_bytes();
            let tags = format!("Tag{}", i % 2);
            let keys = format!("key-{q}-{i} shared-{q}");
            let user = format!("value-{q}-{i}");
            let uniq = next_uniq_key();
            let header = send_ok(
                &mut client,
                &OutMessage {
                    tags: Some(&tags),
                    keys: Some(&keys),
                    properties: &[("userProp", &user), ("second", "2")],
                    uniq_key: Some(uniq.clone()),
                    ..out(&topic, q, &body)
                },
            );
            assert_eq!(header.queue_id, q);
            assert_eq!(
                header.queue_offset,
                i64::from(i),
                "queue offsets count from 0"
            );
            let (store_host, physical_offset) = decode_offset_msg_id(&header.msg_id)
                .unwrap_or_else(|e| panic!("msgId {:?}: {e}", header.msg_id));
            assert_eq!(
                store_host,
                c.broker_addr(),
                "clients connect to the msgId's host to view a message"
            );
            assert!(
                physical.insert(physical_offset),
                "two records at {physical_offset}"
            );
            acked.entry(q).or_default().push((
                Acked {
                    queue_id: q,
                    queue_offset: header.queue_offset,
                    body,
                    uniq_key: uniq,
                    store_host,
                    physical_offset,
                },
                tags,
                keys,
                user,
            ));
        }
    }

    for (q, sent) in &acked {
        let (resp, records) = pull(&mut client, &group, &topic, *q, 0, 32);
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        let h = pull_header(&resp);
        assert_eq!(
            (h.next_begin_offset, h.min_offset, h.max_offset),
            (3, 0, 3),
            "{h:?}"
        );
        let only: Vec<&Acked> = sent.iter().map(|(a, ..)| a).collect();
        assert_same(&topic, &only, &records);
        for ((_, tags, keys, user), r) in sent.iter().zip(&records) {
            assert_eq!(r.tags(), Some(tags.as_str()));
            assert_eq!(r.property(property::KEYS), Some(keys.as_str()));
            assert_eq!(r.property("userProp"), Some(user.as_str()));
            assert_eq!(r.property("second"), Some("2"));
            assert_eq!(r.flag, 0);
            assert_eq!(r.reconsume_times, 0);
            assert!(
                (r.store_timestamp - now_ms()).abs() < 3_600_000,
                "store timestamp {} is not now",
                r.store_timestamp
            );
            assert!(r.born_timestamp <= r.store_timestamp + 1_000);
        }
    }

    // A window in the middle: one message from offset 1.
    let (resp, records) = pull(&mut client, &group, &topic, 2, 1, 1);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].queue_offset, 1);
    assert_eq!(&records[0].body[..], b"body of q2 m1");
    assert_eq!(pull_header(&resp).next_begin_offset, 2);
}

#[test]
fn the_newest_records_are_readable_right_after_each_send() {
    // Each record is pulled as soon as it is acknowledged, while it is still in the
    // shard's unflushed tail (async flush): records that straddle a 4 KiB block of the
    // log must read back like any other.
    let mut c = Cluster::start(&[]);
    let topic = unique_name("Tail");
    let group = unique_name("g_tail");
    let mut client = c.connect_broker();
    let mut next = 0;
    for i in 0..150 {
        let body = format!("tail record {i} {}", "p".repeat(60 + i % 7));
        let acked = send_acked(&mut client, &topic, 0, body.as_bytes());
        let (resp, records) = pull(&mut client, &group, &topic, 0, next, 32);
        assert_eq!(
            resp.code,
            response::SUCCESS,
            "pull of record {i} (commit-log offset {:#x}): {resp:?}",
            acked.physical_offset
        );
        assert_same(&topic, &[&acked], &records);
        next = pull_header(&resp).next_begin_offset;
    }
    assert!(c.broker().is_alive());
}

#[test]
fn pull_codes_outside_the_queue_follow_rocketmq() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("PullCodes");
    let group = unique_name("g_pull_codes");
    for i in 0..2 {
        send_acked(&mut client, &topic, 0, format!("m{i}").as_bytes());
    }
    let code_and_next = |client: &mut RemotingClient, queue_id: i32, offset: i64| {
        let (resp, records) = pull(client, &group, &topic, queue_id, offset, 32);
        assert!(records.is_empty(), "{resp:?}");
        let h = pull_header(&resp);
        (resp.code, h.next_begin_offset, h.min_offset, h.max_offset)
    };
    // OFFSET_OVERFLOW_ONE (offset == max) -> PULL_NOT_FOUND, stay.
    assert_eq!(
        code_and_next(&mut client, 0, 2),
        (response::PULL_NOT_FOUND, 2, 0, 2)
    );
    // OFFSET_OVERFLOW_BADLY (offset > max) -> PULL_OFFSET_MOVED, corrected to max.
    assert_eq!(
        code_and_next(&mut client, 0, 7),
        (response::PULL_OFFSET_MOVED, 2, 0, 2)
    );
    // NO_MESSAGE_IN_QUEUE: offset 0 -> PULL_NOT_FOUND; any other -> PULL_OFFSET_MOVED to 0.
    assert_eq!(
        code_and_next(&mut client, 1, 0),
        (response::PULL_NOT_FOUND, 0, 0, 0)
    );
    assert_eq!(
        code_and_next(&mut client, 1, 3),
        (response::PULL_OFFSET_MOVED, 0, 0, 0)
    );

    // A queue id beyond the topic's read queues -> INVALID_PARAMETER.
    let (resp, _) = pull(&mut client, &group, &topic, 100, 0, 32);
    assert_eq!(resp.code, response::INVALID_PARAMETER, "{resp:?}");
    // A topic the broker does not have -> TOPIC_NOT_EXIST.
    let (resp, _) = pull(&mut client, &group, &unique_name("NoSuchTopic"), 0, 0, 32);
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST, "{resp:?}");
}

#[test]
fn long_poll_answers_when_a_message_arrives() {
    let c = Cluster::start(&[]);
    let mut consumer = c.connect_broker();
    let mut producer = c.connect_broker();
    let topic = unique_name("LongPoll");
    let group = unique_name("g_long_poll");
    send_acked(&mut producer, &topic, 0, b"first");

    // Nothing at offset 1 yet: the broker must hold the request, not answer it.
    let suspend_ms = 20_000;
    consumer
        .stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let started = Instant::now();
    let opaque = consumer.send(pull_request(
        &group,
        &topic,
        0,
        1,
        32,
        "*",
        Some(suspend_ms),
    ));
    assert!(
        consumer.try_receive(Duration::from_millis(700)).is_none(),
        "a suspended pull on an empty position was answered at once"
    );
    send_acked(&mut producer, &topic, 0, b"second");
    let resp = consumer.receive().expect("long-poll response");
    let waited = started.elapsed();
    assert_eq!(resp.opaque, opaque);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let records = decode_records(&resp.body);
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"second");
    assert_eq!(records[0].queue_offset, 1);
    assert_eq!(pull_header(&resp).next_begin_offset, 2);
    assert!(
        waited < Duration::from_millis(suspend_ms as u64),
        "answered only after {waited:?}, not on arrival"
    );

    // Nothing arrives: the answer is PULL_NOT_FOUND, after the suspend timeout.
    let started = Instant::now();
    consumer.send(pull_request(&group, &topic, 0, 2, 32, "*", Some(1_500)));
    let resp = consumer.receive().expect("long-poll timeout response");
    let waited = started.elapsed();
    assert_eq!(resp.code, response::PULL_NOT_FOUND, "{resp:?}");
    assert_eq!(pull_header(&resp).next_begin_offset, 2);
    assert!(
        waited >= Duration::from_millis(1_000),
        "a 1.5 s suspension answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(20), "{waited:?}");
}

#[test]
fn long_polls_on_one_connection_are_answered_out_of_order() {
    let c = Cluster::start(&[]);
    let mut consumer = c.connect_broker();
    let mut producer = c.connect_broker();
    let topic = unique_name("LongPollOrder");
    let group = unique_name("g_long_poll_order");
    for q in 0..2 {
        send_acked(&mut producer, &topic, q, b"seed");
    }
    consumer
        .stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let first = consumer.send(pull_request(&group, &topic, 0, 1, 32, "*", Some(20_000)));
    let second = consumer.send(pull_request(&group, &topic, 1, 1, 32, "*", Some(20_000)));
    assert!(consumer.try_receive(Duration::from_millis(700)).is_none());

    // The later request is answered first: its queue got a message.
    send_acked(&mut producer, &topic, 1, b"for queue 1");
    let resp = consumer.receive().expect("response");
    assert_eq!(resp.opaque, second, "{resp:?}");
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(&decode_records(&resp.body)[0].body[..], b"for queue 1");

    send_acked(&mut producer, &topic, 0, b"for queue 0");
    let resp = consumer.receive().expect("response");
    assert_eq!(resp.opaque, first, "{resp:?}");
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(&decode_records(&resp.body)[0].body[..], b"for queue 0");
}

#[test]
fn pull_filters_by_tag_subscription() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Tags");
    let group = unique_name("g_tags");
    let tags = [Some("TagA"), Some("TagB"), Some("TagC"), None];
    for i in 0..12 {
        let body = format!("m{i}");
        send_ok(
            &mut client,
            &OutMessage {
                tags: tags[i % 4],
                ..out(&topic, 0, body.as_bytes())
            },
        );
    }
    let offsets =
        |records: &[RecordView]| records.iter().map(|r| r.queue_offset).collect::<Vec<_>>();

    let (resp, records) = pull_filtered(&mut client, &group, &topic, 0, 0, 32, "TagA || TagB");
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(offsets(&records), vec![0, 1, 4, 5, 8, 9]);
    for r in &records {
        assert!(matches!(r.tags(), Some("TagA" | "TagB")), "{:?}", r.tags());
    }
    assert_eq!(pull_header(&resp).next_begin_offset, 12);

    // maxMsgNums counts matching messages; the next pull starts after the last one.
    let (resp, records) = pull_filtered(&mut client, &group, &topic, 0, 2, 2, "TagA || TagB");
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(offsets(&records), vec![4, 5]);
    assert_eq!(pull_header(&resp).next_begin_offset, 6);

    let (resp, records) = pull_filtered(&mut client, &group, &topic, 0, 0, 32, "TagC");
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(offsets(&records), vec![2, 6, 10]);

    let (resp, records) = pull_filtered(&mut client, &group, &topic, 0, 0, 32, "*");
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(records.len(), 12);

    // Nothing matches: NO_MATCHED_MESSAGE -> PULL_RETRY_IMMEDIATELY, past what was scanned.
    let (resp, records) = pull_filtered(&mut client, &group, &topic, 0, 0, 32, "TagZ");
    assert_eq!(resp.code, response::PULL_RETRY_IMMEDIATELY, "{resp:?}");
    assert!(records.is_empty());
    assert_eq!(pull_header(&resp).next_begin_offset, 12);
}

#[test]
fn consumer_offsets_survive_clean_restart_and_kill_9() {
    let mut c = Cluster::start(&["--set", "consumer_offset_persist_interval_ms=100"]);
    let topic = unique_name("Offsets");
    let group = unique_name("g_offsets");
    let other = unique_name("g_never_committed");
    let mut client = c.connect_broker();
    for q in 0..3 {
        for i in 0..10 {
            send_acked(&mut client, &topic, q, format!("m{i}").as_bytes());
        }
    }
    // A consumer's first pull creates its subscription group (RocketMQ refuses offset
    // commits for unknown groups).
    let (resp, _) = pull(&mut client, &group, &topic, 0, 0, 1);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");

    for (q, offset) in [(0, 3), (1, 7)] {
        let resp = update_offset(&mut client, &group, &topic, q, offset);
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    }
    assert_eq!(query_offset(&mut client, &group, &topic, 0), Some(3));
    assert_eq!(query_offset(&mut client, &group, &topic, 1), Some(7));
    assert_eq!(query_offset(&mut client, &group, &topic, 2), None);
    assert_eq!(query_offset(&mut client, &other, &topic, 0), None);

    c.restart_broker();
    let mut client = c.connect_broker();
    assert_eq!(query_offset(&mut client, &group, &topic, 0), Some(3));
    assert_eq!(query_offset(&mut client, &group, &topic, 1), Some(7));
    assert_eq!(query_offset(&mut client, &group, &topic, 2), None);

    // A commit then a crash: survives once the broker had time to persist offsets
    // (RocketMQ persists them periodically; the interval is 100 ms here).
    let resp = update_offset(&mut client, &group, &topic, 0, 9);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(query_offset(&mut client, &group, &topic, 0), Some(9));
    std::thread::sleep(Duration::from_millis(1_500));
    c.kill_and_restart_broker();
    let mut client = c.connect_broker();
    assert_eq!(query_offset(&mut client, &group, &topic, 0), Some(9));
    assert_eq!(query_offset(&mut client, &group, &topic, 1), Some(7));
    assert_eq!(query_offset(&mut client, &group, &topic, 2), None);
}

#[test]
fn messages_survive_a_clean_restart() {
    let mut c = Cluster::start(&[]);
    let topic = unique_name("CleanRestart");
    let group = unique_name("g_clean_restart");
    let mut client = c.connect_broker();
    let mut acked = Vec::new();
    for i in 0..40 {
        let body = format!("message {i} {}", "x".repeat(i * 37));
        acked.push(send_acked(
            &mut client,
            &topic,
            (i % 4) as i32,
            body.as_bytes(),
        ));
    }
    let port = c.broker_addr().port();
    c.restart_broker();
    assert_eq!(c.broker_addr().port(), port, "restarted on the same port");
    let mut client = c.connect_broker();
    for q in 0..4 {
        let sent: Vec<&Acked> = acked.iter().filter(|a| a.queue_id == q).collect();
        assert_same(&topic, &sent, &pull_all(&mut client, &group, &topic, q, 0));
    }
    // Appends continue after the recovered tail: next queue offset, a new physical offset.
    let after = send_acked(&mut client, &topic, 1, b"after the restart");
    assert_eq!(after.queue_offset, 10);
    assert!(acked
        .iter()
        .all(|a| a.physical_offset != after.physical_offset));
    let (resp, records) = pull(&mut client, &group, &topic, 1, 10, 32);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_same(&topic, &[&after], &records);
    // Old offset msgIds still resolve.
    let resp = view_message(&mut client, acked[5].physical_offset);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_same(&topic, &[&acked[5]], &decode_records(&resp.body));
}

#[test]
fn acknowledged_sync_sends_survive_kill_9() {
    let mut c = Cluster::start(&["--set", "flush=sync"]);
    let topic = unique_name("Kill9");
    let group = unique_name("g_kill9");
    let mut client = c.connect_broker();
    let mut acked = Vec::new();
    for i in 0..30 {
        acked.push(send_acked(
            &mut client,
            &topic,
            i % 4,
            format!("sequential {i}").as_bytes(),
        ));
    }
    // A pipelined burst: every message acknowledged before the crash must survive it.
    let bodies: Vec<String> = (0..100).map(|i| format!("pipelined {i}")).collect();
    let mut pending = BTreeMap::new();
    for (i, body) in bodies.iter().enumerate() {
        let uniq = next_uniq_key();
        let q = (i % 4) as i32;
        let opaque = client.send(send_request(&OutMessage {
            uniq_key: Some(uniq.clone()),
            ..out(&topic, q, body.as_bytes())
        }));
        pending.insert(opaque, (q, body.clone(), uniq));
    }
    while !pending.is_empty() {
        let resp = client.receive().expect("send response");
        let (q, body, uniq) = pending.remove(&resp.opaque).expect("a pending opaque");
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        let h: SendMessageResponseHeader = resp.header().unwrap();
        let (store_host, physical_offset) = decode_offset_msg_id(&h.msg_id).unwrap();
        acked.push(Acked {
            queue_id: q,
            queue_offset: h.queue_offset,
            body: body.into_bytes(),
            uniq_key: uniq,
            store_host,
            physical_offset,
        });
    }
    c.kill_and_restart_broker();
    let mut client = c.connect_broker();
    for q in 0..4 {
        let mut sent: Vec<&Acked> = acked.iter().filter(|a| a.queue_id == q).collect();
        sent.sort_by_key(|a| a.queue_offset);
        let offsets: Vec<i64> = sent.iter().map(|a| a.queue_offset).collect();
        assert_eq!(
            offsets,
            (0..sent.len() as i64).collect::<Vec<_>>(),
            "queue {q} offsets"
        );
        assert_same(&topic, &sent, &pull_all(&mut client, &group, &topic, q, 0));
    }
    // And the broker keeps appending after the recovered tail.
    let next = send_acked(&mut client, &topic, 0, b"after the crash");
    assert_eq!(next.queue_offset, 33);
}

#[test]
fn queue_offsets_times_and_search() {
    let c = Cluster::start(&[]);
    let topic = unique_name("OffsetApi");
    let group = unique_name("g_offset_api");
    let mut client = c.connect_broker();
    for i in 0..6 {
        send_acked(&mut client, &topic, 0, format!("m{i}").as_bytes());
        // Distinct store timestamps make the search target unambiguous.
        std::thread::sleep(Duration::from_millis(15));
    }
    send_acked(&mut client, &topic, 1, b"other queue");
    let records = pull_all(&mut client, &group, &topic, 0, 0);
    assert_eq!(records.len(), 6);
    let ts: Vec<i64> = records.iter().map(|r| r.store_timestamp).collect();

    assert_eq!(
        get_offset(&mut client, request::GET_MAX_OFFSET, &topic, 0),
        6
    );
    assert_eq!(
        get_offset(&mut client, request::GET_MIN_OFFSET, &topic, 0),
        0
    );
    assert_eq!(
        get_offset(&mut client, request::GET_MAX_OFFSET, &topic, 1),
        1
    );
    assert_eq!(
        get_offset(&mut client, request::GET_MAX_OFFSET, &topic, 2),
        0
    );
    assert_eq!(
        get_offset(&mut client, request::GET_MIN_OFFSET, &topic, 2),
        0
    );

    let resp = client.call(
        RemotingCommand::request(request::GET_EARLIEST_MSG_STORETIME).with_header(
            &QueueRequestHeader {
                topic: topic.clone(),
                queue_id: 0,
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(
        resp.header::<TimestampResponseHeader>().unwrap().timestamp,
        ts[0]
    );

    // ConsumeQueue.getOffsetInQueueByTime, LOWER boundary: the first offset stored at or
    // after the time; before everything -> min; after everything -> max.
    assert_eq!(search_offset(&mut client, &topic, 0, 0), 0);
    assert_eq!(search_offset(&mut client, &topic, 0, ts[5] + 1), 6);
    assert_eq!(
        search_offset(&mut client, &topic, 0, now_ms() + 3_600_000),
        6
    );
    let k = (1..6)
        .rev()
        .find(|&k| ts[k - 1] < ts[k])
        .expect("two messages with distinct store timestamps");
    assert_eq!(
        search_offset(&mut client, &topic, 0, ts[k]),
        k as i64,
        "{ts:?}"
    );
    if ts[k] - ts[k - 1] > 1 {
        assert_eq!(
            search_offset(&mut client, &topic, 0, ts[k] - 1),
            k as i64,
            "{ts:?}"
        );
    }
}

#[test]
fn query_by_key_unique_key_and_offset_msg_id() {
    let c = Cluster::start(&[]);
    let topic = unique_name("Query");
    let mut client = c.connect_broker();
    let mut by_body = BTreeMap::new();
    for (i, keys) in ["order-1", "order-2 order-1", "order-3", "order-1"]
        .iter()
        .enumerate()
    {
        let body = format!("query body {i}");
        let uniq = next_uniq_key();
        let h = send_ok(
            &mut client,
            &OutMessage {
                keys: Some(keys),
                uniq_key: Some(uniq.clone()),
                ..out(&topic, (i % 2) as i32, body.as_bytes())
            },
        );
        by_body.insert(body, (uniq, h.msg_id));
    }

    // The key index may trail the append: wait for all three messages with order-1.
    let mut found = Vec::new();
    let complete = eventually(EVENTUALLY, || {
        let resp = query_message(&mut client, &topic, "order-1", false);
        if resp.code != response::SUCCESS {
            assert_eq!(resp.code, response::QUERY_NOT_FOUND, "{resp:?}");
            return false;
        }
        let h: QueryMessageResponseHeader = resp.header().expect("query response header");
        assert!(h.index_last_update_timestamp >= 0, "{h:?}");
        found = decode_records(&resp.body)
            .iter()
            .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
            .collect();
        found.len() >= 3
    });
    assert!(complete, "order-1 found only {found:?}");
    found.sort();
    assert_eq!(found, vec!["query body 0", "query body 1", "query body 3"]);

    // Unique key: exactly that message.
    let (uniq, msg_id) = by_body["query body 2"].clone();
    let resp = query_message(&mut client, &topic, &uniq, true);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let records: Vec<RecordView> = decode_records(&resp.body)
        .into_iter()
        .filter(|r| r.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == Some(uniq.as_str()))
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"query body 2");

    // Nothing under a key that was never sent, nor under another topic.
    let resp = query_message(&mut client, &topic, "order-404", false);
    assert_eq!(resp.code, response::QUERY_NOT_FOUND, "{resp:?}");
    let resp = query_message(&mut client, &unique_name("OtherTopic"), "order-1", false);
    assert_eq!(resp.code, response::QUERY_NOT_FOUND, "{resp:?}");

    // VIEW_MESSAGE_BY_ID with the commit-log offset from the offset msgId.
    let (_, offset) = decode_offset_msg_id(&msg_id).unwrap();
    let resp = view_message(&mut client, offset);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let records = decode_records(&resp.body);
    assert_eq!(records.len(), 1, "one record");
    assert_eq!(&records[0].body[..], b"query body 2");
    assert_eq!(records[0].property(property::KEYS), Some("order-3"));
    assert_eq!(records[0].physical_offset, offset);
    // An offset past the end of the commit log: SYSTEM_ERROR.
    let resp = view_message(&mut client, 1 << 40);
    assert_eq!(resp.code, response::SYSTEM_ERROR, "{resp:?}");
}

#[test]
fn created_and_auto_created_topics_reach_the_nameserver() {
    let c = Cluster::start(&[]);
    let mut broker = c.connect_broker();
    let mut ns = c.connect_ns();
    let addr = c.broker_addr().to_string();

    // The auto-create template is registered, with the broker's reachable address.
    let tbw = route(&mut ns, "TBW102").expect("TBW102 is registered");
    assert_eq!(tbw.broker_datas.len(), 1, "{tbw:?}");
    assert_eq!(tbw.broker_datas[0].broker_name, "broker-a");
    assert_eq!(tbw.broker_datas[0].cluster, "DefaultCluster");
    assert_eq!(tbw.broker_datas[0].broker_addrs.get(&0), Some(&addr));

    let created = unique_name("Created");
    let resp = broker.call(
        RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(
            &CreateTopicRequestHeader {
                topic: created.clone(),
                default_topic: "TBW102".into(),
                read_queue_nums: 3,
                write_queue_nums: 3,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                topic_sys_flag: Some(0),
                order: false,
                attributes: None,
                force: false,
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let config = all_topics(&mut broker);
    let tc = config
        .topic_config_table
        .get(&created)
        .expect("GET_ALL_TOPIC_CONFIG lists the created topic");
    assert_eq!(
        (tc.read_queue_nums, tc.write_queue_nums, tc.perm),
        (3, 3, 6)
    );

    let mut last = None;
    let routed = eventually(EVENTUALLY, || {
        last = route(&mut ns, &created);
        last.is_some()
    });
    assert!(routed, "the created topic never reached the nameserver");
    let r = last.unwrap();
    assert_eq!(r.queue_datas.len(), 1, "{r:?}");
    assert_eq!(r.queue_datas[0].broker_name, "broker-a");
    assert_eq!(
        (
            r.queue_datas[0].read_queue_nums,
            r.queue_datas[0].write_queue_nums,
            r.queue_datas[0].perm
        ),
        (3, 3, 6)
    );
    assert_eq!(r.broker_datas[0].broker_addrs.get(&0), Some(&addr));

    // A send to an unknown topic creates it from TBW102 with
    // min(defaultTopicQueueNums of the request (4), TBW102's queues) queues.
    let auto = unique_name("AutoCreated");
    send_acked(&mut broker, &auto, 3, b"creates the topic");
    let mut last = None;
    let routed = eventually(EVENTUALLY, || {
        last = route(&mut ns, &auto);
        last.is_some()
    });
    assert!(
        routed,
        "the auto-created topic never reached the nameserver"
    );
    let r = last.unwrap();
    assert_eq!(r.queue_datas[0].write_queue_nums, 4, "{r:?}");
    assert_eq!(r.queue_datas[0].read_queue_nums, 4, "{r:?}");
    assert_eq!(r.broker_datas[0].broker_addrs.get(&0), Some(&addr));

    // DELETE_TOPIC_IN_BROKER removes it from the broker.
    let resp = broker.call(
        RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER).with_header(
            &TopicRequestHeader {
                topic: created.clone(),
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert!(!all_topics(&mut broker)
        .topic_config_table
        .contains_key(&created));
    let (resp, _) = pull(&mut broker, "g_deleted", &created, 0, 0, 32);
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST, "{resp:?}");
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let mut c = Cluster::start(&[]);
    let topic = unique_name("Malformed");
    let mut good = c.connect_broker();
    send_acked(&mut good, &topic, 0, b"before");
    for garbage in [
        &b"\xff\xff\xff\xff"[..],                                 // negative length
        &b"\x7f\xff\xff\xff"[..],                                 // 2 GiB frame
        &b"\x00\x00\x00\x08\x00\x00\x10\x00\x00\x00\x00\x00"[..], // header longer than frame
        &b"\x00\x00\x00\x06\x00\x00\x00\x02{x"[..],               // bad JSON header
        &b"\x00\x00\x00\x06\x05\x00\x00\x02{}"[..],               // unknown serialize type
    ] {
        let mut bad = c.connect_broker();
        bad.stream.write_all(garbage).unwrap();
        let mut rest = Vec::new();
        let n = bad.stream.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "closed without answering {garbage:?}");
    }
    assert!(c.broker().is_alive());
    // The old connection and a new one both still work.
    send_acked(&mut good, &topic, 0, b"after");
    let mut fresh = c.connect_broker();
    let group = unique_name("g_malformed");
    let records = pull_all(&mut fresh, &group, &topic, 0, 0);
    let bodies: Vec<&[u8]> = records.iter().map(|r| &r.body[..]).collect();
    assert_eq!(bodies, vec![&b"before"[..], &b"after"[..]]);
}

#[test]
fn unknown_codes_are_not_supported() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let resp = client.call(RemotingCommand::request(9_999));
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED, "{resp:?}");
    let remark = resp.remark.unwrap_or_default();
    assert!(remark.contains("9999"), "remark names the code: {remark:?}");
    // The connection stays usable.
    let topic = unique_name("AfterUnknown");
    send_acked(&mut client, &topic, 0, b"still here");
}

#[test]
fn oversized_messages_are_illegal_and_the_broker_stays_up() {
    let mut c = Cluster::start(&["--set", "max_message_size=1024"]);
    let topic = unique_name("Oversized");
    let mut client = c.connect_broker();
    let resp = send_message(&mut client, &topic, 0, &[b'x'; 2048], None, None);
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    assert!(c.broker().is_alive());
    let ok = send_acked(&mut client, &topic, 0, &[b'y'; 512]);
    assert_eq!(ok.queue_offset, 0, "the refused message took no offset");
    let group = unique_name("g_oversized");
    let records = pull_all(&mut client, &group, &topic, 0, 0);
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], &[b'y'; 512][..]);
}

#[test]
fn default_max_message_size_is_4_mib() {
    let mut c = Cluster::start(&[]);
    let topic = unique_name("Oversized4M");
    let mut client = c.connect_broker();
    let resp = send_message(
        &mut client,
        &topic,
        0,
        &vec![b'x'; (4 << 20) + 1],
        None,
        None,
    );
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    assert!(c.broker().is_alive());
    let ok = send_acked(&mut client, &topic, 0, &vec![b'y'; 1 << 20]);
    assert_eq!(ok.queue_offset, 0);
}

#[test]
fn pipelined_requests_on_one_connection_are_all_answered() {
    let c = Cluster::start(&[]);
    let topic = unique_name("Pipelined");
    let mut client = c.connect_broker();
    send_acked(&mut client, &topic, 0, b"creates the topic");
    #[derive(Debug)]
    enum Sent {
        Send(i32, String),
        MaxOffset,
        Unknown,
    }
    let mut sent = BTreeMap::new();
    for i in 0..300 {
        let (cmd, what) = match i % 10 {
            8 => (
                RemotingCommand::request(request::GET_MAX_OFFSET).with_header(
                    &GetMaxOffsetRequestHeader {
                        topic: topic.clone(),
                        queue_id: 3,
                        committed: true,
                    },
                ),
                Sent::MaxOffset,
            ),
            9 => (RemotingCommand::request(8_888), Sent::Unknown),
            _ => {
                let q = i % 4;
                let body = format!("pipelined {i}");
                (
                    send_request(&out(&topic, q, body.as_bytes())),
                    Sent::Send(q, body),
                )
            }
        };
        sent.insert(client.send(cmd), what);
    }
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut bodies = BTreeMap::new();
    for _ in 0..sent.len() {
        let resp = client.receive().expect("a response for every request");
        let what = sent
            .remove(&resp.opaque)
            .unwrap_or_else(|| panic!("unknown or repeated opaque: {resp:?}"));
        match what {
            Sent::Send(q, body) => {
                assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
                let h: SendMessageResponseHeader = resp.header().unwrap();
                assert_eq!(h.queue_id, q);
                offsets.entry(q).or_default().push(h.queue_offset);
                bodies.insert((q, h.queue_offset), body);
            }
            Sent::MaxOffset => assert_eq!(resp.code, response::SUCCESS, "{resp:?}"),
            Sent::Unknown => assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED),
        }
    }
    assert!(sent.is_empty());
    let group = unique_name("g_pipelined");
    for (q, mut got) in offsets {
        got.sort_unstable();
        let first = i64::from(q == 0); // queue 0 already held one message
        let expected: Vec<i64> = (first..first + got.len() as i64).collect();
        assert_eq!(got, expected, "queue {q}: every send got its own offset");
        for r in pull_all(&mut client, &group, &topic, q, first) {
            assert_eq!(
                std::str::from_utf8(&r.body).unwrap(),
                bodies[&(q, r.queue_offset)],
                "queue {q} offset {}",
                r.queue_offset
            );
        }
    }
}

fn consumer_list(client: &mut RemotingClient, group: &str) -> Option<Vec<String>> {
    let resp = client.call(
        RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP).with_header(
            &ConsumerGroupRequestHeader {
                consumer_group: group.into(),
            },
        ),
    );
    match resp.code {
        response::SUCCESS => {
            let body: ConsumerListByGroupResponseBody =
                json::from_slice(&resp.body).expect("consumer list body");
            let mut ids = body.consumer_id_list;
            ids.sort();
            Some(ids)
        }
        // ConsumerManageProcessor.getConsumerListByGroup: "no consumer for this group".
        response::SYSTEM_ERROR => None,
        other => panic!("GET_CONSUMER_LIST_BY_GROUP answered {other}: {resp:?}"),
    }
}

/// Reads requests the broker pushes until one with `code` arrives or `timeout` passes.
fn wait_for_request(
    client: &mut RemotingClient,
    code: i32,
    timeout: Duration,
) -> Option<RemotingCommand> {
    if let Some(i) = client.server_requests.iter().position(|r| r.code == code) {
        return Some(client.server_requests.remove(i));
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(cmd) = client.try_receive(deadline - Instant::now()) {
            if !cmd.is_response() && cmd.code == code {
                return Some(cmd);
            }
        }
    }
    None
}

#[test]
fn consumer_membership_heartbeat_notify_and_unregister() {
    let c = Cluster::start(&[]);
    let topic = unique_name("Members");
    let group = unique_name("g_members");
    let mut setup = c.connect_broker();
    send_acked(&mut setup, &topic, 0, b"x");
    let mut one = c.connect_broker();
    let mut two = c.connect_broker();
    let (id1, id2) = ("127.0.0.1@one", "127.0.0.1@two");

    let resp = one.call(consumer_heartbeat(id1, &group, &topic));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(consumer_list(&mut one, &group), Some(vec![id1.to_owned()]));
    // Drain notifications about our own arrival.
    while one.try_receive(Duration::from_millis(500)).is_some() {}
    one.server_requests.clear();

    let resp = two.call(consumer_heartbeat(id2, &group, &topic));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(
        consumer_list(&mut two, &group),
        Some(vec![id1.to_owned(), id2.to_owned()])
    );
    // The first member is told that the group changed.
    let notify = wait_for_request(&mut one, request::NOTIFY_CONSUMER_IDS_CHANGED, EVENTUALLY)
        .expect("NOTIFY_CONSUMER_IDS_CHANGED after a new member joined");
    let h: ConsumerGroupRequestHeader = notify.header().unwrap();
    assert_eq!(h.consumer_group, group);

    // A TAG subscription passes CHECK_CLIENT_CONFIG.
    let check = protocol::body::CheckClientRequestBody {
        client_id: id2.into(),
        group: group.clone(),
        subscription_data: SubscriptionData {
            topic: topic.clone(),
            sub_string: "TagA".into(),
            expression_type: Some("TAG".into()),
            ..Default::default()
        },
    };
    let resp = two.call(
        RemotingCommand::request(request::CHECK_CLIENT_CONFIG).with_body(json::to_vec(
            &check,
            JsonStyle::Standard,
            &[],
        )),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");

    // UNREGISTER_CLIENT removes the second member at once.
    let resp = two.call(
        RemotingCommand::request(request::UNREGISTER_CLIENT).with_header(
            &UnregisterClientRequestHeader {
                client_id: id2.into(),
                producer_group: None,
                consumer_group: Some(group.clone()),
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(consumer_list(&mut two, &group), Some(vec![id1.to_owned()]));

    // Closing the first member's connection removes it too.
    drop(one);
    let gone = eventually(EVENTUALLY, || consumer_list(&mut two, &group).is_none());
    assert!(gone, "a closed connection's consumer stayed in the group");
}

#[test]
fn runtime_info_answers_a_kv_table() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let resp = client.call(RemotingCommand::request(request::GET_BROKER_RUNTIME_INFO));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let table: KvTable = json::from_slice(&resp.body).expect("a KVTable body");
    assert!(!table.table.is_empty(), "{table:?}");
}
