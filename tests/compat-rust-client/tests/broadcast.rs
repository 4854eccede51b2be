//! Broadcast consumption with the third-party `rocketmq-client-rust` client against our
//! real broker: push consumers in the BROADCASTING message model read every queue and
//! keep their offsets locally (a file per client and group); the broker only serves
//! pulls and must neither split the queues among them nor store offsets for them.
//!
//! Every test uses its own topics, groups and client instance names, waits with generous
//! deadlines ("eventually"), and checks content: bodies, tags, keys, exactly-once
//! delivery to each consumer.

mod common;

use common::{
    body_text, client_config, push_consumer, record_deliveries, start_cluster, AssignmentRecorder,
    Harness, Settings,
};
use e2e::{query_offset, unique_name, Cluster};
use rocketmq_client_rust::{ClientRuntime, DefaultMQProducer, DefaultMQPushConsumer, SendStatus};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The client runs listeners on its runtime's metadata-I/O blocking lane, which by
/// default queues only 8 tasks per core and fails the rest: a failed consume is
/// RECONSUME_LATER, which a BROADCASTING consumer drops (a clustering one sends it back
/// and gets it again 10 s later). One pull of a backlog submits one consume task per
/// message, so the queue is made deep enough for every message a test sends (Java's
/// consume executor queue is unbounded).
static HARNESS: Harness = Harness::new(Settings {
    consume_queue_depth: Some(4_096),
    ..Settings::new("compat-broadcast", "compat_bc_producer")
});

/// Where broadcast consumers of this test process keep their offsets (instead of
/// `~/.rocketmq_offsets`): the client reads `rocketmq.client.localOffsetStoreDir` once,
/// so every test sets it first, before any client exists.
static OFFSET_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!(
        "rmq-compat-broadcast-offsets-{}",
        std::process::id()
    ));
    std::env::set_var("rocketmq.client.localOffsetStoreDir", &dir);
    dir
});

/// Removes the local offset files of the given client instances (best effort).
fn remove_offset_files(instances: &[&str]) {
    let Ok(entries) = std::fs::read_dir(&*OFFSET_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if instances.iter().any(|i| name.contains(i)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let _ = std::fs::remove_dir(&*OFFSET_DIR);
}

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(40);

/// One message as a consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    body: String,
    tags: Option<String>,
    keys: Option<String>,
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
            queue_id: msg.queue_id(),
            queue_offset: msg.queue_offset(),
        }
    }
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

/// A push consumer of `topic` (all tags) in `model`, recording everything it receives.
async fn start_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    group: &str,
    topic: &str,
    instance: &str,
    model: MessageModel,
) -> Consumer {
    let got = Arc::new(Mutex::new(Vec::new()));
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    if model == MessageModel::Broadcasting {
        // rocketmq-client-rust 1.0.0 writes `<dir>/<client id>/<group>/offsets.json`
        // without creating its directory (LocalFileOffsetStore::atomic_write_to_file;
        // Java's MixAll.string2File creates it), so without this no offset is ever kept.
        let dir = OFFSET_DIR
            .join(client_config(ns, instance).build_mq_client_id())
            .join(group);
        std::fs::create_dir_all(&dir).expect("create the local offset directory");
    }
    let mut inner = push_consumer(rt, ns, instance, group, model)
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

/// Sends `n` messages with bodies `<prefix> <i>`; returns body -> (tags, keys).
async fn send_some(
    producer: &DefaultMQProducer,
    topic: &str,
    prefix: &str,
    n: usize,
) -> BTreeMap<String, (String, String)> {
    let mut sent = BTreeMap::new();
    for i in 0..n {
        let body = format!("{prefix} {i}");
        let tags = if i % 2 == 0 { "TagA" } else { "TagB" };
        let keys = format!("{prefix}-key-{i}");
        let msg = Message::builder()
            .topic(topic)
            .tags(tags)
            .key(keys.clone())
            .body_slice(body.as_bytes())
            .build_unchecked();
        let result = producer
            .send(msg)
            .await
            .unwrap_or_else(|e| panic!("send {body}: {e}"))
            .expect("a sync send has a result");
        assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
        sent.insert(body, (tags.to_owned(), keys));
    }
    sent
}

/// Waits until `consumer` received every message of `expected`, then a little longer for
/// duplicates, and asserts it received each exactly once with its tags and keys, and
/// nothing else.
async fn assert_received_exactly(
    consumer: &Consumer,
    expected: &BTreeMap<String, (String, String)>,
    what: &str,
) {
    let complete = HARNESS
        .wait_until(DEADLINE, || {
            let got: BTreeSet<String> = consumer.received().into_iter().map(|g| g.body).collect();
            expected.keys().all(|b| got.contains(b))
        })
        .await;
    let got = consumer.received();
    if !complete {
        let mut by_queue: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for g in &got {
            by_queue
                .entry(g.queue_id)
                .or_default()
                .push(format!("{}@{}", g.body, g.queue_offset));
        }
        eprintln!("{what}: by queue {by_queue:?}");
    }
    assert!(
        complete,
        "{what}: received {} of {}; missing {:?}",
        got.len(),
        expected.len(),
        expected
            .keys()
            .filter(|b| !got.iter().any(|g| &g.body == *b))
            .collect::<Vec<_>>()
    );
    // A grace period for duplicates to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = consumer.received();
    let mut seen = BTreeMap::new();
    for g in &got {
        *seen.entry(g.body.clone()).or_insert(0) += 1;
        let (tags, keys) = expected
            .get(&g.body)
            .unwrap_or_else(|| panic!("{what}: unexpected message {g:?}"));
        assert_eq!(g.tags.as_deref(), Some(tags.as_str()), "{what}: {g:?}");
        assert_eq!(g.keys.as_deref(), Some(keys.as_str()), "{what}: {g:?}");
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{what}: delivered more than once: {duplicated:?}"
    );
    assert_eq!(seen.len(), expected.len(), "{what}: message count");
}

/// Asserts the broker holds no committed offset of `group` on any queue of `topic`:
/// broadcast consumers pull without the commit-offset flag and never update offsets.
fn assert_no_broker_offsets(c: &Cluster, group: &str, topic: &str) {
    let mut client = c.connect_broker();
    for q in 0..4 {
        assert_eq!(
            query_offset(&mut client, group, topic, q),
            None,
            "the broker stored an offset of broadcast group {group} on queue {q}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_broadcast_consumers_of_one_group_each_receive_every_message() {
    LazyLock::force(&OFFSET_DIR);
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatBroadcast");
    let group = unique_name("compat_broadcast_group");
    let (ia, ib) = (unique_name("bc_a"), unique_name("bc_b"));
    let rt = HARNESS.client_runtime("broadcast-two");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    // Create the topic (4 queues, from TBW102) before anyone subscribes.
    let mut expected = send_some(&producer, &topic, "warmup", 4).await;

    let mut a = start_consumer(&rt, &ns, &group, &topic, &ia, MessageModel::Broadcasting).await;
    let mut b = start_consumer(&rt, &ns, &group, &topic, &ib, MessageModel::Broadcasting).await;
    expected.extend(send_some(&producer, &topic, "broadcast", 40).await);

    assert_received_exactly(&a, &expected, "broadcast consumer a").await;
    assert_received_exactly(&b, &expected, "broadcast consumer b").await;
    let all: BTreeSet<i32> = (0..4).collect();
    assert_eq!(a.assigned(), all, "a reads every queue");
    assert_eq!(b.assigned(), all, "b reads every queue");
    let queues: BTreeSet<i32> = a.received().iter().map(|g| g.queue_id).collect();
    assert_eq!(queues, all, "messages came from every queue");
    tokio::task::block_in_place(|| assert_no_broker_offsets(&c, &group, &topic));

    a.inner.shutdown().await;
    b.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
    remove_offset_files(&[&ia, &ib]);
}

/// A broadcast consumer that stops and starts again (same client id and group) goes on
/// from its local offsets: it gets only what was sent meanwhile, while the other member
/// of its group, running all along, gets everything; a clustering group on the same
/// topic is unaffected by either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broadcast_consumer_resumes_from_its_local_offsets() {
    LazyLock::force(&OFFSET_DIR);
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatBroadcastResume");
    let group = unique_name("compat_broadcast_resume");
    let clustering_group = unique_name("compat_clustering_beside");
    let (ia, ib, ic) = (unique_name("bc_a"), unique_name("bc_b"), unique_name("cl"));
    let rt = HARNESS.client_runtime("broadcast-resume");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    let first = send_some(&producer, &topic, "first", 20).await;

    let mut a = start_consumer(&rt, &ns, &group, &topic, &ia, MessageModel::Broadcasting).await;
    let mut b = start_consumer(&rt, &ns, &group, &topic, &ib, MessageModel::Broadcasting).await;
    let mut clustering = start_consumer(
        &rt,
        &ns,
        &clustering_group,
        &topic,
        &ic,
        MessageModel::Clustering,
    )
    .await;
    assert_received_exactly(&a, &first, "a before its restart").await;
    // Shutting down persists a's offsets to its local file.
    a.inner.shutdown().await;

    let second = send_some(&producer, &topic, "second", 20).await;
    let mut a = start_consumer(&rt, &ns, &group, &topic, &ia, MessageModel::Broadcasting).await;
    assert_received_exactly(&a, &second, "a after its restart").await;

    let mut all = first.clone();
    all.extend(second.clone());
    assert_received_exactly(&b, &all, "b, running all along").await;
    assert_received_exactly(&clustering, &all, "the clustering group").await;
    tokio::task::block_in_place(|| assert_no_broker_offsets(&c, &group, &topic));

    a.inner.shutdown().await;
    b.inner.shutdown().await;
    clustering.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
    remove_offset_files(&[&ia, &ib, &ic]);
}
