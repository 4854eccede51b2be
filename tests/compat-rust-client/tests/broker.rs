//! The third-party `rocketmq-client-rust` producer and push consumer against our real
//! broker (registered with our real nameserver).
//!
//! Every test uses its own topics, groups and client instance names, waits with generous
//! deadlines ("eventually"), and checks content: bodies, tags, keys, user properties,
//! exactly-once delivery.

mod common;

use common::{
    body_text, client_config, push_consumer, record_deliveries, start_cluster, AssignmentRecorder,
    Harness, Settings,
};
use e2e::{decode_records, now_ms, query_offset, unique_name};
use rocketmq_client_rust::{
    ClientError, ClientInstanceHandle, ClientRuntime, DefaultMQProducer, DefaultMQPushConsumer,
    SendResult, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::code::request_code::RequestCode;
use rocketmq_protocol::protocol::header::query_message_request_header::QueryMessageRequestHeader;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rocketmq_protocol::protocol::remoting_command::RemotingCommand;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static HARNESS: Harness = Harness::new(Settings::new("compat-broker", "compat_producer"));

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(40);

/// One message as a consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    body: String,
    tags: Option<String>,
    keys: Option<String>,
    user: Option<String>,
    uniq: Option<String>,
    queue_id: i32,
    queue_offset: i64,
}

impl Got {
    fn from_ext(msg: &MessageExt) -> Self {
        let inner = msg.message_inner();
        Self {
            body: body_text(msg),
            tags: inner.tags().map(str::to_owned),
            keys: inner.property("KEYS").map(str::to_owned),
            user: inner.property("userProp").map(str::to_owned),
            uniq: inner.property("UNIQ_KEY").map(str::to_owned),
            queue_id: msg.queue_id(),
            queue_offset: msg.queue_offset(),
        }
    }
}

/// What a test expects a consumer to receive for one sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    tags: String,
    keys: String,
    user: String,
}

fn message(topic: &str, body: &str, exp: &Expected) -> Message {
    Message::builder()
        .topic(topic)
        .tags(exp.tags.clone())
        .key(exp.keys.clone())
        .body_slice(body.as_bytes())
        .raw_property("userProp", exp.user.clone())
        .expect("user property")
        .build_unchecked()
}

struct Consumer {
    inner: DefaultMQPushConsumer,
    got: Arc<Mutex<Vec<Got>>>,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
}

impl Consumer {
    fn received(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assigned.lock().expect("lock").clone()
    }
}

/// A clustering push consumer of `topic` (all tags), reading a new group from the first
/// offset, recording everything it receives.
async fn start_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    group: &str,
    topic: &str,
    instance: &str,
) -> Consumer {
    let got = Arc::new(Mutex::new(Vec::new()));
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    let mut inner = push_consumer(rt, ns, instance, group, MessageModel::Clustering)
        .message_queue_listener(Some(Arc::new(AssignmentRecorder {
            topic: topic.to_owned(),
            assigned: assigned.clone(),
        })))
        .build();
    inner.subscribe(topic, "*").await.expect("subscribe");
    record_deliveries(&mut inner, &got, |m, _| Got::from_ext(m));
    inner.start().await.expect("consumer start");
    Consumer {
        inner,
        got,
        assigned,
    }
}

/// Whether every message of `expected` reached one of `consumers` (at least once).
fn received_by_any(consumers: &[&Consumer], expected: &BTreeMap<String, Expected>) -> bool {
    let got: BTreeSet<String> = consumers
        .iter()
        .flat_map(|c| c.received())
        .map(|g| g.body)
        .collect();
    expected.keys().all(|b| got.contains(b))
}

/// Waits until `consumer` received every body of `expected`, then a little longer to
/// catch duplicates, and asserts each arrived exactly once with its tags, keys and user
/// property, and nothing else arrived.
async fn assert_received_exactly(
    consumer: &Consumer,
    expected: &BTreeMap<String, Expected>,
    what: &str,
) {
    let complete = HARNESS
        .wait_until(DEADLINE, || received_by_any(&[consumer], expected))
        .await;
    let got = consumer.received();
    assert!(
        complete,
        "{what}: received {} of {} messages; missing {:?}",
        got.len(),
        expected.len(),
        expected
            .keys()
            .filter(|b| !got.iter().any(|g| &g.body == *b))
            .collect::<Vec<_>>()
    );
    // A grace period for duplicates to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly(&consumer.received(), expected, what);
}

fn assert_exactly(got: &[Got], expected: &BTreeMap<String, Expected>, what: &str) {
    let mut seen = BTreeMap::new();
    for g in got {
        *seen.entry(g.body.clone()).or_insert(0) += 1;
        let exp = expected
            .get(&g.body)
            .unwrap_or_else(|| panic!("{what}: unexpected message {g:?}"));
        assert_eq!(
            g.tags.as_deref(),
            Some(exp.tags.as_str()),
            "{what}: tags of {g:?}"
        );
        assert_eq!(
            g.keys.as_deref(),
            Some(exp.keys.as_str()),
            "{what}: keys of {g:?}"
        );
        assert_eq!(
            g.user.as_deref(),
            Some(exp.user.as_str()),
            "{what}: user property of {g:?}"
        );
        assert!(g.uniq.is_some(), "{what}: no UNIQ_KEY on {g:?}");
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{what}: delivered more than once: {duplicated:?}"
    );
    assert_eq!(seen.len(), expected.len(), "{what}: message count");
}

fn assert_send_ok(result: &SendResult, broker: &str) {
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
    assert!(result.msg_id.is_some(), "{result:?}");
    let offset_ids = result
        .offset_msg_id
        .as_deref()
        .unwrap_or_else(|| panic!("no offsetMsgId: {result:?}"));
    // A batch answers one offset msgId per message, comma-separated (as Java brokers do).
    for offset_id in offset_ids.split(',') {
        let (host, _) = protocol::message::decode_offset_msg_id(offset_id)
            .unwrap_or_else(|e| panic!("offsetMsgId {offset_id:?}: {e}"));
        assert_eq!(host.to_string(), broker, "the offsetMsgId names the broker");
    }
}

/// Sends `n` single messages (sync), returning what a consumer should see.
async fn send_singles(
    producer: &DefaultMQProducer,
    topic: &str,
    prefix: &str,
    n: usize,
    broker: &str,
) -> BTreeMap<String, Expected> {
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let body = format!("{prefix} single {i}");
        let exp = Expected {
            tags: if i % 2 == 0 {
                "TagA".into()
            } else {
                "TagB".into()
            },
            keys: format!("{prefix}-key-{i}"),
            user: format!("{prefix}-user-{i}"),
        };
        let result = producer
            .send(message(topic, &body, &exp))
            .await
            .unwrap_or_else(|e| panic!("send {body}: {e}"))
            .expect("a sync send has a result");
        assert_send_ok(&result, broker);
        expected.insert(body, exp);
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_batch_and_async_sends_are_consumed_exactly_once() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let broker = c.broker_addr().to_string();
    let topic = unique_name("CompatTopic");
    let group = unique_name("compat_group");
    let rt = HARNESS.client_runtime("exactly-once");
    let producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;

    let mut expected = send_singles(&producer, &topic, "first", 10, &broker).await;

    // One batch.
    let mut batch = Vec::new();
    for i in 0..10 {
        let body = format!("batch {i}");
        let exp = Expected {
            tags: "TagBatch".into(),
            keys: format!("batch-key-{i}"),
            user: format!("batch-user-{i}"),
        };
        batch.push(message(&topic, &body, &exp));
        expected.insert(body, exp);
    }
    let result = producer.send_batch(batch).await.expect("batch send");
    assert_send_ok(&result, &broker);

    // Asynchronous sends, acknowledged through callbacks.
    let acks: Arc<Mutex<Vec<Result<SendResult, String>>>> = Arc::default();
    for i in 0..10 {
        let body = format!("async {i}");
        let exp = Expected {
            tags: "TagAsync".into(),
            keys: format!("async-key-{i}"),
            user: format!("async-user-{i}"),
        };
        let sink = acks.clone();
        producer
            .send_with_callback(
                message(&topic, &body, &exp),
                move |ok: Option<&SendResult>, err: Option<&ClientError>| {
                    let outcome = match (ok, err) {
                        (Some(ok), _) => Ok(ok.clone()),
                        (None, Some(err)) => Err(err.to_string()),
                        (None, None) => Err("neither result nor error".into()),
                    };
                    sink.lock().expect("lock").push(outcome);
                },
            )
            .await
            .expect("async send accepted");
        expected.insert(body, exp);
    }
    let all_acked = HARNESS
        .wait_until(DEADLINE, || acks.lock().expect("lock").len() == 10)
        .await;
    assert!(
        all_acked,
        "async callbacks: {:?}",
        acks.lock().expect("lock")
    );
    for ack in acks.lock().expect("lock").iter() {
        assert_send_ok(ack.as_ref().expect("async send succeeded"), &broker);
    }

    let mut consumer = start_consumer(&rt, &ns, &group, &topic, &unique_name("c")).await;
    assert_received_exactly(&consumer, &expected, "push consumer").await;
    // Queue offsets are consistent: per queue, distinct and dense from 0.
    let mut by_queue: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for g in consumer.received() {
        by_queue.entry(g.queue_id).or_default().push(g.queue_offset);
    }
    for (q, mut offsets) in by_queue {
        offsets.sort_unstable();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "queue {q}"
        );
    }

    consumer.inner.shutdown().await;
    let mut producer = producer;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_committed_offsets_survive_a_broker_restart() {
    let mut c = start_cluster(&[]);
    let ns = c.namesrv();
    let broker = c.broker_addr().to_string();
    let topic = unique_name("CompatRestart");
    let group = unique_name("compat_restart_group");
    let fresh_group = unique_name("compat_fresh_group");
    let rt = HARNESS.client_runtime("restart");

    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p1")).await;
    let before = send_singles(&producer, &topic, "before", 20, &broker).await;
    producer.shutdown().await;

    let mut consumer = start_consumer(&rt, &ns, &group, &topic, &unique_name("c1")).await;
    assert_received_exactly(&consumer, &before, "before the restart").await;
    // The consumer commits its offsets to the broker; wait until all 20 are committed.
    let queues: BTreeSet<i32> = consumer.received().iter().map(|g| g.queue_id).collect();
    let committed = tokio::task::block_in_place(|| {
        let mut client = c.connect_broker();
        e2e::eventually(DEADLINE, || {
            queues
                .iter()
                .map(|q| query_offset(&mut client, &group, &topic, *q).unwrap_or(0))
                .sum::<i64>()
                == 20
        })
    });
    assert!(
        committed,
        "the consumer never committed all 20 offsets to the broker"
    );
    consumer.inner.shutdown().await;

    tokio::task::block_in_place(|| c.restart_broker());
    assert_eq!(
        c.broker_addr().to_string(),
        broker,
        "restarted on the same address"
    );

    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p2")).await;
    let after = send_singles(&producer, &topic, "after", 10, &broker).await;
    producer.shutdown().await;

    // The same group resumes from its committed offsets: only the new messages.
    let mut resumed = start_consumer(&rt, &ns, &group, &topic, &unique_name("c2")).await;
    assert_received_exactly(&resumed, &after, "same group after the restart").await;
    resumed.inner.shutdown().await;

    // A new group reading from the first offset gets everything, old and new.
    let mut all = before.clone();
    all.extend(after.clone());
    let mut fresh = start_consumer(&rt, &ns, &fresh_group, &topic, &unique_name("c3")).await;
    assert_received_exactly(&fresh, &all, "new group after the restart").await;
    fresh.inner.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_by_key_unique_key_and_msg_id() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let broker = c.broker_addr().to_string();
    let topic = unique_name("CompatQuery");
    let rt = HARNESS.client_runtime("query");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;

    let mut sent = Vec::new();
    for (i, key) in ["order-77", "order-78", "order-77", "order-79", "order-77"]
        .iter()
        .enumerate()
    {
        let body = format!("query {i}");
        let exp = Expected {
            tags: "TagQ".into(),
            keys: (*key).into(),
            user: format!("u{i}"),
        };
        let result = producer
            .send(message(&topic, &body, &exp))
            .await
            .expect("send")
            .expect("result");
        assert_send_ok(&result, &broker);
        sent.push((body, exp, result));
    }

    // By key, through the client's query API (the index may trail the append a little).
    let want: BTreeSet<String> = sent
        .iter()
        .filter(|(_, e, _)| e.keys == "order-77")
        .map(|(b, _, _)| b.clone())
        .collect();
    let deadline = Instant::now() + DEADLINE;
    let found = loop {
        let end = (now_ms() + 3_600_000) as u64;
        let found: BTreeSet<String> =
            match producer.query_message(&topic, "order-77", 32, 0, end).await {
                Ok(result) => result.message_list().iter().map(body_text).collect(),
                Err(_) => BTreeSet::new(),
            };
        if found == want || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(found, want, "query by key order-77");

    // By offset msgId, through the client's view API.
    let (body, exp, result) = &sent[3];
    let offset_id = result.offset_msg_id.clone().expect("offsetMsgId");
    let viewed = producer
        .view_message(&topic, &offset_id)
        .await
        .expect("view by offset msgId");
    let got = Got::from_ext(&viewed);
    assert_eq!(&got.body, body);
    assert_eq!(got.tags.as_deref(), Some(exp.tags.as_str()));
    assert_eq!(got.keys.as_deref(), Some(exp.keys.as_str()));
    assert_eq!(got.user.as_deref(), Some(exp.user.as_str()));

    // By unique key (the client's msgId), with the raw QUERY_MESSAGE request RocketMQ's
    // tools send: code 12 with _UNIQUE_KEY_QUERY=true.
    let uniq = result.msg_id.clone().expect("msgId").to_string();
    let handle =
        ClientInstanceHandle::get_or_create(&rt, 7, client_config(&ns, &unique_name("raw")), None)
            .expect("client instance");
    handle.start().await.expect("start");
    let end_ms = now_ms() + 3_600_000;
    let mut request = RemotingCommand::create_request_command(
        RequestCode::QueryMessage,
        QueryMessageRequestHeader {
            topic: topic.as_str().into(),
            key: uniq.as_str().into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: end_ms,
            index_type: None,
            last_key: None,
            topic_request_header: None,
        },
    );
    request.add_ext_field("_UNIQUE_KEY_QUERY", "true");
    let response = handle
        .invoke_remoting(&broker.as_str().into(), request, 5_000)
        .await
        .expect("invoke QUERY_MESSAGE");
    assert_eq!(response.code(), 0, "{:?}", response.remark());
    let records = decode_records(&response.get_body().cloned().unwrap_or_default());
    let matching: Vec<_> = records
        .iter()
        .filter(|r| r.property("UNIQ_KEY") == Some(uniq.as_str()))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "records for unique key {uniq}: {records:?}"
    );
    assert_eq!(&matching[0].body[..], body.as_bytes());
    handle.shutdown_owned().await;

    // The queue offset API agrees with what was sent.
    let mq = result.message_queue.clone().expect("message queue");
    let in_queue = sent
        .iter()
        .filter(|(_, _, r)| r.message_queue.as_ref().map(|q| q.queue_id()) == Some(mq.queue_id()))
        .count();
    assert_eq!(
        producer.max_offset(&mq).await.expect("max offset"),
        in_queue as i64
    );
    assert_eq!(producer.min_offset(&mq).await.expect("min offset"), 0);
    assert_eq!(
        producer.search_offset(&mq, 0).await.expect("search offset"),
        0
    );

    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_of_one_group_split_the_queues() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let broker = c.broker_addr().to_string();
    let topic = unique_name("CompatRebalance");
    let group = unique_name("compat_rebalance_group");
    let rt = HARNESS.client_runtime("rebalance");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    // Create the topic (4 queues, auto-created from TBW102) before anyone subscribes.
    let warmup = send_singles(&producer, &topic, "warmup", 4, &broker).await;

    let mut one = start_consumer(&rt, &ns, &group, &topic, &unique_name("c1")).await;
    let mut two = start_consumer(&rt, &ns, &group, &topic, &unique_name("c2")).await;
    let all_queues: BTreeSet<i32> = (0..4).collect();
    let started = Instant::now();
    let split = HARNESS
        .wait_until(DEADLINE, || {
            let (a, b) = (one.assigned(), two.assigned());
            !a.is_empty()
                && !b.is_empty()
                && a.is_disjoint(&b)
                && a.union(&b).copied().collect::<BTreeSet<_>>() == all_queues
        })
        .await;
    eprintln!("queues split after {:?}", started.elapsed());
    assert!(
        split,
        "queues never split: one {:?}, two {:?}",
        one.assigned(),
        two.assigned()
    );
    // Warm-up messages may have been read by either side during the rebalance; they all
    // arrive at least once.
    let warm_ok = HARNESS
        .wait_until(DEADLINE, || received_by_any(&[&one, &two], &warmup))
        .await;
    assert!(warm_ok, "warm-up messages not all consumed");

    let expected = send_singles(&producer, &topic, "split", 40, &broker).await;
    let complete = HARNESS
        .wait_until(DEADLINE, || received_by_any(&[&one, &two], &expected))
        .await;
    assert!(complete, "not every message reached the group");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let only_split = |c: &Consumer| -> Vec<Got> {
        c.received()
            .into_iter()
            .filter(|g| g.body.starts_with("split"))
            .collect()
    };
    let (got_one, got_two) = (only_split(&one), only_split(&two));
    assert!(
        !got_one.is_empty() && !got_two.is_empty(),
        "one consumer got everything"
    );
    let queues_one: BTreeSet<i32> = got_one.iter().map(|g| g.queue_id).collect();
    let queues_two: BTreeSet<i32> = got_two.iter().map(|g| g.queue_id).collect();
    assert!(
        queues_one.is_disjoint(&queues_two),
        "a queue was consumed by both: {queues_one:?} / {queues_two:?}"
    );
    let mut both = got_one;
    both.extend(got_two);
    assert_exactly(&both, &expected, "group of two");

    one.inner.shutdown().await;
    two.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}
