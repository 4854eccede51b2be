//! Ordered messages with the third-party `rocketmq-client-rust` client against our real
//! broker: a producer sends each key's messages to one queue (a queue selector), orderly
//! push consumers (`MessageListenerOrderly`, which lock their queues on the broker with
//! LOCK_BATCH_MQ / UNLOCK_BATCH_MQ) receive each key's messages in order.
//!
//! Every test uses its own topics, groups and client instance names, waits with generous
//! deadlines ("eventually"), and checks content: which key, which number, which queue,
//! and which consumer was inside the listener for a queue at any moment.

mod common;

use common::{
    body_text, client_config, push_consumer, start_cluster, AssignmentRecorder, Harness, Settings,
};
use e2e::unique_name;
use rocketmq_client_rust::{
    ClientError, ClientInstanceHandle, ClientRuntime, ConsumeOrderlyContext, ConsumeOrderlyStatus,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::body::request::lock_batch_request_body::LockBatchRequestBody;
use rocketmq_protocol::protocol::body::unlock_batch_request_body::UnlockBatchRequestBody;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static HARNESS: Harness = Harness::new(Settings::new("compat-ordered", "compat_ordered_producer"));

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(40);

/// The body of message `seq` of `key`; parsed back by [`parse_body`].
fn body(key: usize, seq: usize) -> String {
    format!("key {key} seq {seq}")
}

fn parse_body(body: &str) -> (usize, usize) {
    let mut words = body.split(' ');
    let (Some("key"), Some(k), Some("seq"), Some(s), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        panic!("unexpected body {body:?}");
    };
    (
        k.parse().expect("key number"),
        s.parse().expect("seq number"),
    )
}

/// Sends messages `seqs` of every key in `0..keys`, interleaving the keys (seq 0 of every
/// key, then seq 1, ...), each key to the queue `key % queues` (RocketMQ's usual
/// "select by order id" selector). Returns the queue each key went to.
async fn send_ordered(
    producer: &DefaultMQProducer,
    topic: &str,
    keys: usize,
    seqs: std::ops::Range<usize>,
) -> BTreeMap<usize, i32> {
    let mut queue_of = BTreeMap::new();
    for seq in seqs {
        for key in 0..keys {
            let msg = Message::builder()
                .topic(topic)
                .tags("TagOrdered")
                .key(format!("order-{key}"))
                .body_slice(body(key, seq).as_bytes())
                .build_unchecked();
            let result = producer
                .send_with_selector(
                    msg,
                    |mqs: &[MessageQueue], _: &Message, key: &usize| {
                        let mut sorted = mqs.to_vec();
                        sorted.sort_by_key(|q| q.queue_id());
                        Some(sorted[*key % sorted.len()].clone())
                    },
                    key,
                )
                .await
                .unwrap_or_else(|e| panic!("send {}: {e}", body(key, seq)))
                .expect("a sync send has a result");
            assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
            let queue = result.message_queue.as_ref().expect("queue").queue_id();
            let previous = *queue_of.entry(key).or_insert(queue);
            assert_eq!(previous, queue, "key {key} went to two queues");
        }
    }
    queue_of
}

/// One message as an orderly listener saw it.
#[derive(Debug, Clone)]
struct Consumed {
    consumer: usize,
    key: usize,
    seq: usize,
    queue_id: i32,
    queue_offset: i64,
}

/// What all the orderly consumers of a test saw, in the order their listeners ran.
#[derive(Default)]
struct Journal {
    log: Mutex<Vec<Consumed>>,
    /// Queue id -> the consumer inside the listener for it right now.
    busy: Mutex<HashMap<i32, usize>>,
    /// Broken guarantees seen inside listeners (two consumers on one queue at once, a
    /// batch from another queue than the context's).
    violations: Mutex<Vec<String>>,
    calls: AtomicU64,
}

impl Journal {
    fn log(&self) -> Vec<Consumed> {
        self.log.lock().expect("lock").clone()
    }

    fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("lock").clone()
    }

    /// Whether messages `0..to` of every key in `0..keys` were all consumed at least once.
    fn complete(&self, keys: usize, to: usize) -> bool {
        let seen: HashSet<(usize, usize)> = self.log().iter().map(|c| (c.key, c.seq)).collect();
        (0..keys).all(|k| (0..to).all(|s| seen.contains(&(k, s))))
    }

    fn consume(&self, consumer: usize, msgs: &[&MessageExt], ctx: &ConsumeOrderlyContext) {
        let queue_id = ctx.get_message_queue().queue_id();
        {
            let mut busy = self.busy.lock().expect("lock");
            if let Some(other) = busy.insert(queue_id, consumer) {
                self.violations.lock().expect("lock").push(format!(
                    "consumer {consumer} entered queue {queue_id} while consumer {other} was in it"
                ));
            }
        }
        for m in msgs {
            if m.queue_id() != queue_id {
                self.violations.lock().expect("lock").push(format!(
                    "consumer {consumer}: a message of queue {} in a batch of queue {queue_id}",
                    m.queue_id()
                ));
            }
            let text = body_text(m);
            let (key, seq) = parse_body(&text);
            assert_eq!(
                m.message_inner().property("KEYS"),
                Some(format!("order-{key}").as_str()),
                "keys of {text}"
            );
            assert_eq!(
                m.message_inner().tags(),
                Some("TagOrdered"),
                "tags of {text}"
            );
            self.log.lock().expect("lock").push(Consumed {
                consumer,
                key,
                seq,
                queue_id,
                queue_offset: m.queue_offset(),
            });
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Stay inside a little, so that a second consumer entering the same queue at the
        // same time would be seen.
        std::thread::sleep(Duration::from_millis(2));
        self.busy.lock().expect("lock").remove(&queue_id);
    }
}

struct OrderlyConsumer {
    inner: DefaultMQPushConsumer,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
}

impl OrderlyConsumer {
    fn assigned(&self) -> BTreeSet<i32> {
        self.assigned.lock().expect("lock").clone()
    }
}

/// A clustering orderly push consumer of `topic` reading a new group from the first
/// offset, journaling everything as consumer number `id`.
async fn start_orderly(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    group: &str,
    topic: &str,
    id: usize,
    journal: &Arc<Journal>,
) -> OrderlyConsumer {
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    let instance = unique_name(&format!("orderly{id}"));
    let mut inner = push_consumer(rt, ns, &instance, group, MessageModel::Clustering)
        .message_queue_listener(Some(Arc::new(AssignmentRecorder {
            topic: topic.to_owned(),
            assigned: assigned.clone(),
        })))
        .build();
    inner.subscribe(topic, "*").await.expect("subscribe");
    let journal = journal.clone();
    inner.register_message_listener_orderly(
        move |msgs: &[&MessageExt],
              ctx: &mut ConsumeOrderlyContext|
              -> Result<ConsumeOrderlyStatus, ClientError> {
            journal.consume(id, msgs, ctx);
            Ok(ConsumeOrderlyStatus::Success)
        },
    );
    inner.start().await.expect("consumer start");
    OrderlyConsumer { inner, assigned }
}

/// How each key's messages were consumed, in listener order.
#[derive(Debug, Default)]
struct OrderReport {
    /// Times a key's sequence went back to an earlier message (a redelivery from the
    /// last committed offset, which RocketMQ allows when a queue changes hands).
    rewinds: usize,
    /// Messages consumed more than once.
    duplicates: usize,
}

/// Checks every key's messages `0..n` were consumed in order: each next message is the
/// one after the previous or (a redelivery) an earlier one, never a later one (which
/// would be out of order or a lost message), and all were consumed.
fn check_order(log: &[Consumed], keys: usize, n: usize) -> OrderReport {
    let mut report = OrderReport::default();
    for key in 0..keys {
        let seqs: Vec<(usize, usize)> = log
            .iter()
            .filter(|c| c.key == key)
            .map(|c| (c.seq, c.consumer))
            .collect();
        assert!(!seqs.is_empty(), "key {key}: nothing consumed");
        assert_eq!(seqs[0].0, 0, "key {key}: first consumed {:?}", seqs[0]);
        let mut highest = 0;
        for pair in seqs.windows(2) {
            let ((prev, _), (next, consumer)) = (pair[0], pair[1]);
            assert!(
                next <= highest + 1,
                "key {key}: message {next} consumed (by consumer {consumer}) right after \
                 {prev} while {} was never consumed: {:?}",
                highest + 1,
                seqs
            );
            if next != prev + 1 {
                report.rewinds += 1;
            }
            highest = highest.max(next);
        }
        assert_eq!(highest, n - 1, "key {key}: consumed up to {highest}");
        report.duplicates += seqs.len() - n;
    }
    report
}

/// Queue offsets of one consumer's run on a queue are consecutive.
fn check_offsets(log: &[Consumed]) {
    let mut last: HashMap<(usize, i32), i64> = HashMap::new();
    for c in log {
        if let Some(prev) = last.insert((c.consumer, c.queue_id), c.queue_offset) {
            assert!(
                c.queue_offset == prev + 1 || c.queue_offset <= prev,
                "consumer {} skipped from offset {prev} to {} on queue {}",
                c.consumer,
                c.queue_offset,
                c.queue_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_consumer_receives_each_keys_messages_in_order() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatOrdered");
    let group = unique_name("compat_ordered_group");
    let rt = HARNESS.client_runtime("ordered-one");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    const KEYS: usize = 8;
    const N: usize = 30;

    // Half before the consumer starts (a backlog), half while it consumes.
    let queue_of = send_ordered(&producer, &topic, KEYS, 0..N / 2).await;
    let queues: BTreeSet<i32> = queue_of.values().copied().collect();
    assert!(
        queues.len() > 1,
        "the keys spread over queues: {queue_of:?}"
    );
    let journal = Arc::new(Journal::default());
    let mut consumer = start_orderly(&rt, &ns, &group, &topic, 0, &journal).await;
    send_ordered(&producer, &topic, KEYS, N / 2..N).await;

    let complete = HARNESS
        .wait_until(DEADLINE, || journal.complete(KEYS, N))
        .await;
    assert!(
        complete,
        "not every message was consumed: {} of {}",
        journal.log().len(),
        KEYS * N
    );
    // A grace period for duplicates to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = journal.log();
    assert_eq!(journal.violations(), Vec::<String>::new());
    let report = check_order(&log, KEYS, N);
    assert_eq!(report.rewinds, 0, "a single consumer never goes back");
    assert_eq!(
        report.duplicates, 0,
        "a single consumer never consumes twice"
    );
    check_offsets(&log);
    for c in &log {
        assert_eq!(
            c.queue_id, queue_of[&c.key],
            "{c:?} came from another queue"
        );
    }

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orderly_consumers_share_the_queues_one_at_a_time_in_order() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatOrderedPair");
    let group = unique_name("compat_ordered_pair");
    let rt = HARNESS.client_runtime("ordered-two");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    const KEYS: usize = 8;
    const N: usize = 40;

    send_ordered(&producer, &topic, KEYS, 0..10).await;
    let journal = Arc::new(Journal::default());
    let mut one = start_orderly(&rt, &ns, &group, &topic, 1, &journal).await;
    // The first consumer takes every queue and starts; then a second one joins, and
    // messages keep coming while the queues change hands.
    let first_started = HARNESS
        .wait_until(DEADLINE, || !journal.log().is_empty())
        .await;
    assert!(first_started, "the first consumer consumed nothing");
    let mut two = start_orderly(&rt, &ns, &group, &topic, 2, &journal).await;
    send_ordered(&producer, &topic, KEYS, 10..25).await;
    let all: BTreeSet<i32> = (0..4).collect();
    let split = HARNESS
        .wait_until(DEADLINE, || {
            let (a, b) = (one.assigned(), two.assigned());
            !a.is_empty()
                && !b.is_empty()
                && a.is_disjoint(&b)
                && a.union(&b).copied().collect::<BTreeSet<_>>() == all
        })
        .await;
    assert!(
        split,
        "queues never split: one {:?}, two {:?}",
        one.assigned(),
        two.assigned()
    );
    send_ordered(&producer, &topic, KEYS, 25..N).await;

    let complete = HARNESS
        .wait_until(DEADLINE, || journal.complete(KEYS, N))
        .await;
    assert!(
        complete,
        "not every message was consumed: {} consumed for {} sent",
        journal.log().len(),
        KEYS * N
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = journal.log();
    assert_eq!(
        journal.violations(),
        Vec::<String>::new(),
        "a queue is consumed by one consumer at a time"
    );
    let report = check_order(&log, KEYS, N);
    eprintln!("two orderly consumers: {report:?}");
    check_offsets(&log);
    // Both took part, each on its own queues at the end: the last message of each key
    // was consumed by the consumer the queue is assigned to now.
    let consumers: BTreeSet<usize> = log.iter().map(|c| c.consumer).collect();
    assert_eq!(consumers, BTreeSet::from([1, 2]), "both consumers consumed");
    let (a, b) = (one.assigned(), two.assigned());
    for key in 0..KEYS {
        let last = log.iter().rev().find(|c| c.key == key).expect("consumed");
        let owner = if a.contains(&last.queue_id) { 1 } else { 2 };
        assert!(
            a.contains(&last.queue_id) || b.contains(&last.queue_id),
            "{last:?}"
        );
        assert_eq!(
            last.consumer, owner,
            "key {key}'s last message was consumed by the queue's owner"
        );
    }

    one.inner.shutdown().await;
    two.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_across_a_broker_restart() {
    let mut c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatOrderedRestart");
    let group = unique_name("compat_ordered_restart");
    let rt = HARNESS.client_runtime("ordered-restart");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    const KEYS: usize = 6;
    const N: usize = 30;

    send_ordered(&producer, &topic, KEYS, 0..10).await;
    let journal = Arc::new(Journal::default());
    let mut consumer = start_orderly(&rt, &ns, &group, &topic, 0, &journal).await;
    let before = HARNESS
        .wait_until(DEADLINE, || journal.complete(KEYS, 10))
        .await;
    assert!(before, "the first 10 of each key were not consumed");

    tokio::task::block_in_place(|| c.restart_broker());
    // The broker lost its queue locks; the consumer re-locks and goes on. Messages sent
    // after the restart arrive in order after the ones before.
    send_ordered(&producer, &topic, KEYS, 10..N).await;
    let complete = HARNESS
        .wait_until(DEADLINE, || journal.complete(KEYS, N))
        .await;
    assert!(
        complete,
        "not every message was consumed after the restart: {} for {}",
        journal.log().len(),
        KEYS * N
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = journal.log();
    assert_eq!(journal.violations(), Vec::<String>::new());
    let report = check_order(&log, KEYS, N);
    eprintln!("across a restart: {report:?}");
    check_offsets(&log);

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ of some of `queues` (of one topic, on `broker`), sent
/// through a client instance on behalf of any client of any group.
struct QueueLocks<'a> {
    handle: &'a ClientInstanceHandle,
    broker: &'a str,
    queues: &'a [MessageQueue],
}

impl QueueLocks<'_> {
    fn pick(&self, wanted: &[i32]) -> HashSet<MessageQueue> {
        self.queues
            .iter()
            .filter(|q| wanted.contains(&q.queue_id()))
            .cloned()
            .collect()
    }

    /// Asks to lock the `wanted` queues for `client` of `group`; returns the ids of the
    /// queues the broker granted.
    async fn lock(&self, group: &str, client: &str, wanted: &[i32]) -> BTreeSet<i32> {
        let body = LockBatchRequestBody {
            consumer_group: Some(group.into()),
            client_id: Some(client.into()),
            only_this_broker: true,
            mq_set: self.pick(wanted),
        };
        let granted = self
            .handle
            .lock_batch_mq(self.broker, body, 5_000)
            .await
            .unwrap_or_else(|e| panic!("lock {wanted:?} for {client} of {group}: {e}"));
        granted.iter().map(|q| q.queue_id()).collect()
    }

    /// Unlocks the `wanted` queues for `client` of `group`.
    async fn unlock(&self, group: &str, client: &str, wanted: &[i32]) {
        let body = UnlockBatchRequestBody {
            consumer_group: Some(group.into()),
            client_id: Some(client.into()),
            only_this_broker: true,
            mq_set: self.pick(wanted),
        };
        self.handle
            .unlock_batch_mq(&self.broker.into(), body, 5_000)
            .await
            .unwrap_or_else(|e| panic!("unlock {wanted:?} for {client} of {group}: {e}"));
    }
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ through the client's own request API: a queue is
/// granted to one client of a group at a time, renewable by its holder, free again after
/// its holder unlocks it; other groups are independent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_batch_grants_each_queue_to_one_client() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let broker = c.broker_addr().to_string();
    let topic = unique_name("CompatLock");
    let group = unique_name("compat_lock_group");
    let rt = HARNESS.client_runtime("ordered-lock");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    // Create the topic (4 queues, from TBW102) and learn the broker name of its queues.
    let sent = producer
        .send(
            Message::builder()
                .topic(topic.as_str())
                .body_slice(b"create")
                .build_unchecked(),
        )
        .await
        .expect("send")
        .expect("result");
    let broker_name = sent
        .message_queue
        .as_ref()
        .expect("queue")
        .broker_name()
        .to_string();
    let queues: Vec<MessageQueue> = (0..4)
        .map(|q| MessageQueue::from_parts(topic.as_str(), broker_name.as_str(), q))
        .collect();

    let handle =
        ClientInstanceHandle::get_or_create(&rt, 11, client_config(&ns, &unique_name("raw")), None)
            .expect("client instance");
    handle.start().await.expect("start");
    let locks = QueueLocks {
        handle: &handle,
        broker: &broker,
        queues: &queues,
    };

    let got = locks.lock(&group, "client-a", &[0, 1]).await;
    assert_eq!(got, BTreeSet::from([0, 1]), "a locks free queues");
    let got = locks.lock(&group, "client-b", &[1, 2]).await;
    assert_eq!(got, BTreeSet::from([2]), "b gets only the free queue");
    let got = locks.lock(&group, "client-a", &[0, 1]).await;
    assert_eq!(got, BTreeSet::from([0, 1]), "a renews its own");
    let other_group = unique_name("compat_lock_other");
    let got = locks.lock(&other_group, "client-b", &[0, 1]).await;
    assert_eq!(got, BTreeSet::from([0, 1]), "groups are independent");

    // b unlocking a's queue changes nothing; a unlocking it frees it for b.
    locks.unlock(&group, "client-b", &[1]).await;
    let got = locks.lock(&group, "client-b", &[1]).await;
    assert!(got.is_empty(), "a still holds queue 1: {got:?}");
    locks.unlock(&group, "client-a", &[1]).await;
    // The client sends UNLOCK_BATCH_MQ as a request (not oneway): the next lock sees it.
    let got = locks.lock(&group, "client-b", &[1, 3]).await;
    assert_eq!(got, BTreeSet::from([1, 3]), "queue 1 is free again");

    handle.shutdown_owned().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}
