//! Delay levels and consumer retries with the third-party `rocketmq-client-rust` producer
//! and push consumer against our real broker (registered with our real nameserver).
//!
//! The broker runs with short delay levels (1 s, 2 s, 3 s). A push consumer whose
//! listener answers `ReconsumeLater` has its client send the message back
//! (CONSUMER_SEND_MSG_BACK); the broker stores it in `%RETRY%<group>` with delay level
//! `3 + reconsumeTimes` and the client, subscribed to that topic too, gets it again.
//!
//! Time is asserted from below only (a message arrives no earlier than its delay); every
//! wait has a generous deadline.

mod common;

use common::{body_text, push_consumer, start_cluster, Harness, Settings};
use e2e::{now_ms, query_offset, unique_name, RemotingClient};
use rocketmq_client_rust::{
    ClientError, ClientRuntime, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, SendResult, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static HARNESS: Harness = Harness::new(Settings::new("compat-retry", "compat_retry_producer"));

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(60);

/// Delay levels of the test broker: level 1 = 1 s, 2 = 2 s, 3 = 3 s (the first retry of
/// a message uses level 3 + 0).
const BROKER_ARGS: &[&str] = &["--set", "message_delay_level=1s 2s 3s"];

fn tags_of(body: &str) -> String {
    format!("Tag{}", body.len() % 3)
}

fn keys_of(body: &str) -> String {
    format!("key-{}", body.replace(' ', "-"))
}

fn user_of(body: &str) -> String {
    format!("user-{body}")
}

/// A message with tags, keys and a user property derived from its body, delayed by
/// `delay_level` when it is above 0.
fn message(topic: &str, body: &str, delay_level: i32) -> Message {
    let builder = Message::builder()
        .topic(topic)
        .tags(tags_of(body))
        .key(keys_of(body))
        .body_slice(body.as_bytes())
        .raw_property("userProp", user_of(body))
        .expect("user property");
    let builder = if delay_level > 0 {
        builder.delay_level(delay_level)
    } else {
        builder
    };
    builder.build_unchecked()
}

/// Sends one message (sync) and asserts the broker stored it; returns the wall-clock
/// milliseconds taken just before the send.
async fn send(producer: &DefaultMQProducer, topic: &str, body: &str, delay_level: i32) -> i64 {
    let sent_ms = now_ms();
    let result: SendResult = producer
        .send(message(topic, body, delay_level))
        .await
        .unwrap_or_else(|e| panic!("send {body}: {e}"))
        .expect("a sync send has a result");
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
    assert!(result.offset_msg_id.is_some(), "{result:?}");
    sent_ms
}

/// One delivery as the listener saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    topic: String,
    queue_id: i32,
    reconsume_times: i32,
    tags: Option<String>,
    keys: Option<String>,
    user: Option<String>,
    uniq: Option<String>,
    delay: Option<String>,
    real_topic: Option<String>,
    retry_topic: Option<String>,
    /// Set by a client that sends a retry as a plain message when send-back fails.
    reconsume_time_property: Option<String>,
    store_ms: i64,
    received_ms: i64,
}

impl Seen {
    fn from_ext(msg: &MessageExt) -> Self {
        let inner = msg.message_inner();
        let prop = |name: &str| inner.property(name).map(str::to_owned);
        Self {
            body: body_text(msg),
            topic: msg.topic().to_string(),
            queue_id: msg.queue_id(),
            reconsume_times: msg.reconsume_times(),
            tags: inner.tags().map(str::to_owned),
            keys: prop("KEYS"),
            user: prop("userProp"),
            uniq: prop("UNIQ_KEY"),
            delay: prop("DELAY"),
            real_topic: prop("REAL_TOPIC"),
            retry_topic: prop("RETRY_TOPIC"),
            reconsume_time_property: prop("RECONSUME_TIME"),
            store_ms: msg.store_timestamp(),
            received_ms: now_ms(),
        }
    }

    /// Asserts the content the producer gave `body` arrived intact.
    fn assert_content(&self, what: &str) {
        assert_eq!(
            self.tags.as_deref(),
            Some(tags_of(&self.body).as_str()),
            "{what}: {self:?}"
        );
        assert_eq!(
            self.keys.as_deref(),
            Some(keys_of(&self.body).as_str()),
            "{what}: {self:?}"
        );
        assert_eq!(
            self.user.as_deref(),
            Some(user_of(&self.body).as_str()),
            "{what}: {self:?}"
        );
        assert!(self.uniq.is_some(), "{what}: no UNIQ_KEY: {self:?}");
    }
}

/// What the listener answers for a delivery.
type Policy = Arc<dyn Fn(&Seen) -> ConsumeConcurrentlyStatus + Send + Sync>;

struct Consumer {
    inner: DefaultMQPushConsumer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Consumer {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Deliveries of `body`, in the order the listener saw them.
    fn seen_of(&self, body: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.body == body).collect()
    }
}

/// A clustering push consumer of `topic` (all tags) in a new group reading from the first
/// offset, one message per listener call, answering by `policy`.
async fn start_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    group: &str,
    topic: &str,
    max_reconsume_times: Option<i32>,
    policy: Policy,
) -> Consumer {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut builder = push_consumer(rt, ns, &unique_name("c"), group, MessageModel::Clustering)
        .consume_message_batch_max_size(1);
    if let Some(max) = max_reconsume_times {
        builder = builder.max_reconsume_times(max);
    }
    let mut inner = builder.build();
    inner.subscribe(topic, "*").await.expect("subscribe");
    let sink = seen.clone();
    inner.register_message_listener_concurrently(
        move |msgs: &[&MessageExt],
              _: &ConsumeConcurrentlyContext|
              -> Result<ConsumeConcurrentlyStatus, ClientError> {
            assert_eq!(msgs.len(), 1, "batches of one message");
            let seen = Seen::from_ext(msgs[0]);
            let status = policy(&seen);
            sink.lock().expect("lock").push(seen);
            Ok(status)
        },
    );
    inner.start().await.expect("consumer start");
    Consumer { inner, seen }
}

/// Everything in a queue, read with our own client (empty while it does not exist).
fn read_queue(
    client: &mut RemotingClient,
    topic: &str,
    queue_id: i32,
) -> Vec<protocol::message::record::RecordView> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let (resp, records) = e2e::pull(client, "compat_retry_reader", topic, queue_id, offset, 32);
        if resp.code != protocol::code::response::SUCCESS {
            return all;
        }
        offset = e2e::pull_header(&resp).next_begin_offset;
        all.extend(records);
    }
}

fn bodies(records: &[protocol::message::record::RecordView]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_reach_a_push_consumer_only_after_their_delay() {
    let c = start_cluster(BROKER_ARGS);
    let ns = c.namesrv();
    let topic = unique_name("CompatDelay");
    let group = unique_name("compat_delay_group");
    let rt = HARNESS.client_runtime("delay");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;

    // The consumer is running (it got a plain message) before the delayed ones are sent.
    send(&producer, &topic, "warm-up", 0).await;
    let mut consumer = start_consumer(
        &rt,
        &ns,
        &group,
        &topic,
        None,
        Arc::new(|_: &Seen| ConsumeConcurrentlyStatus::ConsumeSuccess),
    )
    .await;
    let warm = HARNESS
        .wait_until(DEADLINE, || !consumer.seen_of("warm-up").is_empty())
        .await;
    assert!(warm, "the warm-up message was never consumed");

    // body -> (level, sent at)
    let mut expected = BTreeMap::new();
    for i in 0..9 {
        let level = 1 + (i % 3);
        let body = format!("delayed {i} by level {level}");
        let sent_ms = send(&producer, &topic, &body, level).await;
        expected.insert(body, (level, sent_ms));
    }
    let complete = HARNESS
        .wait_until(DEADLINE, || {
            let got: BTreeSet<String> = consumer.seen().into_iter().map(|s| s.body).collect();
            expected.keys().all(|b| got.contains(b))
        })
        .await;
    let got: BTreeSet<String> = consumer.seen().into_iter().map(|s| s.body).collect();
    assert!(
        complete,
        "delayed messages never consumed: {:?}",
        expected
            .keys()
            .filter(|b| !got.contains(*b))
            .collect::<Vec<_>>()
    );
    // A grace period for duplicates to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(2)).await;

    for (body, (level, sent_ms)) in &expected {
        let seen = consumer.seen_of(body);
        assert_eq!(seen.len(), 1, "{body:?} delivered {} times", seen.len());
        let s = &seen[0];
        s.assert_content(body);
        let delay_ms = i64::from(*level) * 1000;
        assert!(
            s.received_ms - sent_ms >= delay_ms,
            "{body:?} consumed {} ms after the send, before its {delay_ms} ms delay",
            s.received_ms - sent_ms
        );
        assert!(
            s.store_ms - sent_ms >= delay_ms,
            "{body:?} stored in its topic {} ms after the send",
            s.store_ms - sent_ms
        );
        assert_eq!(s.topic, topic, "{s:?}");
        assert_eq!(s.reconsume_times, 0, "{s:?}");
        assert_eq!(s.delay, None, "DELAY is cleared on delivery: {s:?}");
        assert_eq!(s.real_topic.as_deref(), Some(topic.as_str()), "{s:?}");
    }
    assert_eq!(consumer.seen_of("warm-up").len(), 1);

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconsume_later_redelivers_through_the_retry_topic_once() {
    let c = start_cluster(BROKER_ARGS);
    let ns = c.namesrv();
    let topic = unique_name("CompatRetry");
    let group = unique_name("compat_retry_group");
    let retry = format!("%RETRY%{group}");
    let rt = HARNESS.client_runtime("retry");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;

    let sent: Vec<String> = (0..5).map(|i| format!("retried {i}")).collect();
    for body in &sent {
        send(&producer, &topic, body, 0).await;
    }
    // The first delivery of each message fails; the retry succeeds.
    let mut consumer = start_consumer(
        &rt,
        &ns,
        &group,
        &topic,
        None,
        Arc::new(|s: &Seen| {
            if s.reconsume_times == 0 {
                ConsumeConcurrentlyStatus::ReconsumeLater
            } else {
                ConsumeConcurrentlyStatus::ConsumeSuccess
            }
        }),
    )
    .await;
    let retried = HARNESS
        .wait_until(DEADLINE, || {
            let seen = consumer.seen();
            sent.iter()
                .all(|b| seen.iter().any(|s| &s.body == b && s.reconsume_times > 0))
        })
        .await;
    assert!(
        retried,
        "not every message was redelivered: {:?}",
        consumer.seen()
    );
    // A grace period for further deliveries to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(4)).await;

    for body in &sent {
        let seen = consumer.seen_of(body);
        let times: Vec<i32> = seen.iter().map(|s| s.reconsume_times).collect();
        assert_eq!(times, vec![0, 1], "{body:?}: deliveries {seen:?}");
        let (first, second) = (&seen[0], &seen[1]);
        first.assert_content("first delivery");
        second.assert_content("redelivery");
        assert_eq!(first.topic, topic);
        assert_eq!(first.retry_topic, None, "{first:?}");
        // The client shows a retry under its original topic (from RETRY_TOPIC).
        assert_eq!(
            second.retry_topic.as_deref(),
            Some(topic.as_str()),
            "{second:?}"
        );
        assert_eq!(second.topic, topic, "{second:?}");
        assert_eq!(second.queue_id, 0, "the group's only retry queue");
        assert_eq!(second.uniq, first.uniq, "same message id");
        assert_eq!(
            second.reconsume_time_property, None,
            "the broker's send-back made the retry (the client's fallback, a plain send to \
             the retry topic, sets RECONSUME_TIME): {second:?}"
        );
        assert_eq!(second.delay, None, "{second:?}");
        // Level 3 + 0 = 3 s after the send-back, which follows the first delivery.
        assert!(
            second.received_ms - first.received_ms >= 3000,
            "redelivered {} ms after the first delivery, before the 3 s retry delay",
            second.received_ms - first.received_ms
        );
    }

    // What the broker holds: the retries in %RETRY%<group> queue 0, and the group's
    // offsets finally past every message (all consumed).
    let (retry_records, committed) = tokio::task::block_in_place(|| {
        let mut client = c.connect_broker();
        let records = read_queue(&mut client, &retry, 0);
        let mut committed = (0, 0);
        e2e::eventually(DEADLINE, || {
            let original: i64 = (0..4)
                .map(|q| query_offset(&mut client, &group, &topic, q).unwrap_or(0))
                .sum();
            let retried = query_offset(&mut client, &group, &retry, 0).unwrap_or(0);
            committed = (original, retried);
            committed == (5, 5)
        });
        (records, committed)
    });
    assert_eq!(
        bodies(&retry_records),
        sent.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(retry_records.len(), 5);
    for r in &retry_records {
        assert_eq!(r.reconsume_times, 1, "{r:?}");
        assert_eq!(r.property("RETRY_TOPIC"), Some(topic.as_str()));
        assert!(r.property("ORIGIN_MESSAGE_ID").is_some(), "{r:?}");
    }
    assert_eq!(
        committed,
        (5, 5),
        "committed offsets (original topic, retry topic)"
    );

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_past_max_reconsume_times_goes_to_the_dlq() {
    let c = start_cluster(BROKER_ARGS);
    let ns = c.namesrv();
    let topic = unique_name("CompatDlq");
    let group = unique_name("compat_dlq_group");
    let dlq = format!("%DLQ%{group}");
    let rt = HARNESS.client_runtime("dlq");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;

    let sent: Vec<String> = (0..3).map(|i| format!("always failing {i}")).collect();
    for body in &sent {
        send(&producer, &topic, body, 0).await;
    }
    // Every delivery fails; with maxReconsumeTimes 1 the first retry is the last.
    let mut consumer = start_consumer(
        &rt,
        &ns,
        &group,
        &topic,
        Some(1),
        Arc::new(|_: &Seen| ConsumeConcurrentlyStatus::ReconsumeLater),
    )
    .await;
    let dead = tokio::task::block_in_place(|| {
        let mut client = c.connect_broker();
        let mut dead = Vec::new();
        e2e::eventually(DEADLINE, || {
            dead = read_queue(&mut client, &dlq, 0);
            dead.len() >= sent.len()
        });
        dead
    });
    assert_eq!(
        bodies(&dead),
        sent.iter().cloned().collect::<BTreeSet<_>>(),
        "DLQ content"
    );
    assert_eq!(dead.len(), sent.len(), "each message once in the DLQ");
    for r in &dead {
        assert_eq!(r.reconsume_times, 2, "{r:?}");
        assert_eq!(r.property("RETRY_TOPIC"), Some(topic.as_str()));
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.property("KEYS"), Some(keys_of(&body).as_str()));
        assert_eq!(r.property("userProp"), Some(user_of(&body).as_str()));
    }
    // A grace period for further deliveries to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(4)).await;
    for body in &sent {
        let times: Vec<i32> = consumer
            .seen_of(body)
            .iter()
            .map(|s| s.reconsume_times)
            .collect();
        assert_eq!(times, vec![0, 1], "{body:?}: one delivery and one retry");
    }

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}
