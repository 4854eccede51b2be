//! Transactional messages with the third-party `rocketmq-client-rust` client against our
//! real broker: the client's `TransactionMQProducer` sends a half message, runs the local
//! transaction, and ends it with END_TRANSACTION; a half message stays invisible until
//! committed, a rolled-back one is never delivered, and one left UNKNOWN is checked back
//! (CHECK_TRANSACTION_STATE to a live producer of the group) once `transaction_timeout_ms`
//! passed, the answer deciding it.
//!
//! Every test uses its own topics, groups and client instance names, waits with generous
//! deadlines ("eventually"), and checks content: bodies, tags, keys, user properties, the
//! transaction flags of what is delivered, and which messages were checked back.

mod common;

use common::{
    body_text, client_config, push_consumer, record_deliveries, start_cluster, Harness, Settings,
};
use e2e::{now_ms, unique_name};
use rocketmq_client_rust::{
    ClientRuntime, DefaultMQPushConsumer, LocalTransactionState, SendStatus, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The client runs listeners on its runtime's metadata-I/O blocking lane, which by
/// default queues only 8 tasks per core and fails the rest (a failed consume comes back
/// through the retry topic 10 s later); made deep enough for every test here. Plain
/// producers join groups `compat_tx_plain*`; waits poll every 50 ms.
static HARNESS: Harness = Harness::new(Settings {
    consume_queue_depth: Some(4_096),
    poll: Duration::from_millis(50),
    ..Settings::new("compat-transaction", "compat_tx_plain")
});

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(40);

/// The broker checks open transactions half a second after they were prepared, and
/// every half second after that.
const BROKER_ARGS: &[&str] = &[
    "--set",
    "transaction_timeout_ms=500",
    "--set",
    "transaction_check_interval_ms=500",
];

/// What the local transaction answers for a body: by its prefix.
fn local_state(body: &str) -> LocalTransactionState {
    if body.starts_with("commit") {
        LocalTransactionState::CommitMessage
    } else if body.starts_with("rollback") {
        LocalTransactionState::RollbackMessage
    } else {
        LocalTransactionState::Unknown
    }
}

/// What a check answers for a body.
fn checked_state(body: &str) -> LocalTransactionState {
    if body.starts_with("unknown-commit") {
        LocalTransactionState::CommitMessage
    } else if body.starts_with("unknown-rollback") {
        LocalTransactionState::RollbackMessage
    } else {
        LocalTransactionState::Unknown
    }
}

/// One CHECK_TRANSACTION_STATE as the producer's listener saw it.
#[derive(Debug, Clone)]
struct Check {
    body: String,
    tags: Option<String>,
    transaction_id: Option<String>,
    at_ms: i64,
}

/// Decides local transactions by body prefix and records every check.
struct Listener {
    checks: Arc<Mutex<Vec<Check>>>,
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = String::from_utf8(msg.get_body().map(|b| b.to_vec()).unwrap_or_default())
            .expect("UTF-8 body");
        local_state(&body)
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = body_text(msg);
        let inner = msg.message_inner();
        self.checks.lock().expect("lock").push(Check {
            body: body.clone(),
            tags: inner.tags().map(str::to_owned),
            transaction_id: inner
                .transaction_id()
                .map(str::to_owned)
                .or_else(|| inner.property("__transactionId__").map(str::to_owned)),
            at_ms: now_ms(),
        });
        checked_state(&body)
    }
}

struct Producer {
    inner: TransactionMQProducer,
    checks: Arc<Mutex<Vec<Check>>>,
}

impl Producer {
    fn checks(&self) -> Vec<Check> {
        self.checks.lock().expect("lock").clone()
    }
}

async fn start_transaction_producer(rt: &Arc<ClientRuntime>, ns: &str, group: &str) -> Producer {
    let checks = Arc::new(Mutex::new(Vec::new()));
    let mut inner = TransactionMQProducer::builder(rt.clone())
        .client_config(client_config(ns, &unique_name("tp")))
        .producer_group(group.to_string())
        .transaction_listener(Listener {
            checks: checks.clone(),
        })
        .build();
    inner.start().await.expect("transaction producer start");
    Producer { inner, checks }
}

/// One message as the consumer saw it.
#[derive(Debug, Clone)]
struct Got {
    body: String,
    tags: Option<String>,
    keys: Option<String>,
    user: Option<String>,
    topic: String,
    sys_flag: i32,
    prepared: Option<String>,
    real_topic: Option<String>,
    real_queue: Option<String>,
    received_ms: i64,
}

impl Got {
    fn from_ext(m: &MessageExt, received_ms: i64) -> Self {
        let inner = m.message_inner();
        let prop = |name: &str| inner.property(name).map(str::to_owned);
        Self {
            body: body_text(m),
            tags: inner.tags().map(str::to_owned),
            keys: prop("KEYS"),
            user: prop("userProp"),
            topic: m.topic().to_string(),
            sys_flag: m.sys_flag(),
            prepared: prop("TRAN_MSG"),
            real_topic: prop("REAL_TOPIC"),
            real_queue: prop("REAL_QID"),
            received_ms,
        }
    }
}

struct Consumer {
    inner: DefaultMQPushConsumer,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Consumer {
    fn received(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    fn bodies(&self) -> BTreeSet<String> {
        self.received().into_iter().map(|g| g.body).collect()
    }
}

/// A clustering push consumer of `topic` reading a new group from the first offset.
async fn start_consumer(rt: &Arc<ClientRuntime>, ns: &str, topic: &str) -> Consumer {
    let got = Arc::new(Mutex::new(Vec::new()));
    let group = unique_name("compat_tx_group");
    let mut inner =
        push_consumer(rt, ns, &unique_name("c"), &group, MessageModel::Clustering).build();
    inner.subscribe(topic, "*").await.expect("subscribe");
    record_deliveries(&mut inner, &got, Got::from_ext);
    inner.start().await.expect("consumer start");
    Consumer { inner, got }
}

fn message(topic: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags("TagTx")
        .key(format!("key-{body}"))
        .body_slice(body.as_bytes())
        .raw_property("userProp", format!("user-{body}"))
        .expect("user property")
        .build_unchecked()
}

/// Sends `body` in a transaction; asserts the half message was stored and the local
/// transaction answered what [`local_state`] says.
async fn send_in_transaction(producer: &Producer, topic: &str, body: &str) {
    let result = producer
        .inner
        .send_message_in_transaction::<(), _>(message(topic, body), None)
        .await
        .unwrap_or_else(|e| panic!("transactional send {body}: {e}"));
    let send = result.send_result.as_ref().expect("a send result");
    assert_eq!(send.send_status, SendStatus::SendOk, "{body}: {result:?}");
    assert!(
        send.transaction_id.is_some(),
        "{body}: no transaction id: {result:?}"
    );
    assert_eq!(
        result.local_transaction_state,
        Some(local_state(body)),
        "{body}"
    );
}

/// Asserts a delivered transactional message looks as RocketMQ's EndTransactionProcessor
/// makes it: on its real topic, content intact, TRAN_MSG / REAL_TOPIC / REAL_QID cleared,
/// sysFlag carrying TRANSACTION_COMMIT_TYPE.
fn assert_committed_form(g: &Got, topic: &str) {
    let body = &g.body;
    assert_eq!(g.topic, topic, "{g:?}");
    assert_eq!(g.tags.as_deref(), Some("TagTx"), "{g:?}");
    assert_eq!(
        g.keys.as_deref(),
        Some(format!("key-{body}").as_str()),
        "{g:?}"
    );
    assert_eq!(
        g.user.as_deref(),
        Some(format!("user-{body}").as_str()),
        "{g:?}"
    );
    assert_eq!(
        g.prepared, None,
        "TRAN_MSG left on a committed message: {g:?}"
    );
    assert_eq!(
        g.real_topic, None,
        "REAL_TOPIC left on a committed message: {g:?}"
    );
    assert_eq!(
        g.real_queue, None,
        "REAL_QID left on a committed message: {g:?}"
    );
    // MessageSysFlag: TRANSACTION_COMMIT_TYPE = 0x8 in the transaction bits 0xC.
    assert_eq!(
        g.sys_flag & 0xC,
        0x8,
        "sysFlag of a committed message: {g:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_rollback_and_checked_back_transactions() {
    let c = start_cluster(BROKER_ARGS);
    let ns = c.namesrv();
    let topic = unique_name("CompatTx");
    let rt = HARNESS.client_runtime("tx-states");
    // Create the topic with a plain message, and start the consumer first: whatever is
    // visible, it sees at once.
    let mut plain = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    let warmup = plain
        .send(message(&topic, "warmup"))
        .await
        .expect("send")
        .expect("result");
    assert_eq!(warmup.send_status, SendStatus::SendOk);
    let mut consumer = start_consumer(&rt, &ns, &topic).await;
    let warm = HARNESS
        .wait_until(DEADLINE, || consumer.bodies().contains("warmup"))
        .await;
    assert!(warm, "the warm-up message was not consumed");

    let producer = start_transaction_producer(&rt, &ns, &unique_name("compat_tx_producer")).await;
    let mut sent_at: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..3 {
        for kind in ["commit", "rollback", "unknown-commit", "unknown-rollback"] {
            let body = format!("{kind}-{i}");
            sent_at.insert(body.clone(), now_ms());
            send_in_transaction(&producer, &topic, &body).await;
        }
    }
    let committed: BTreeSet<String> = sent_at
        .keys()
        .filter(|b| b.starts_with("commit") || b.starts_with("unknown-commit"))
        .cloned()
        .chain(["warmup".to_owned()])
        .collect();
    let unknown: BTreeSet<String> = sent_at
        .keys()
        .filter(|b| b.starts_with("unknown"))
        .cloned()
        .collect();

    let all = HARNESS
        .wait_until(DEADLINE, || consumer.bodies().is_superset(&committed))
        .await;
    assert!(
        all,
        "committed messages missing: {:?}; checks so far {:#?}",
        committed.difference(&consumer.bodies()).collect::<Vec<_>>(),
        producer.checks()
    );
    let checked = HARNESS
        .wait_until(DEADLINE, || {
            let checked: BTreeSet<String> = producer.checks().into_iter().map(|c| c.body).collect();
            checked.is_superset(&unknown)
        })
        .await;
    assert!(
        checked,
        "not every UNKNOWN transaction was checked: {:#?}",
        producer.checks()
    );
    // Several check intervals more: nothing rolled back shows up, nothing is checked
    // again once answered, nothing arrives twice (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let got = consumer.received();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &got {
        *count.entry(g.body.as_str()).or_default() += 1;
    }
    let delivered: BTreeSet<String> = count.keys().map(|b| b.to_string()).collect();
    assert_eq!(
        delivered, committed,
        "exactly the committed messages are delivered (never a rolled-back one)"
    );
    assert!(
        count.values().all(|n| *n == 1),
        "delivered more than once: {count:?}"
    );
    for g in got.iter().filter(|g| g.body != "warmup") {
        assert_committed_form(g, &topic);
    }

    let checks = producer.checks();
    let mut checks_per_body: BTreeMap<&str, usize> = BTreeMap::new();
    for check in &checks {
        assert!(
            unknown.contains(&check.body),
            "a transaction ended by its producer was checked: {check:?}"
        );
        assert_eq!(check.tags.as_deref(), Some("TagTx"), "{check:?}");
        assert!(
            check.transaction_id.is_some(),
            "no transaction id: {check:?}"
        );
        *checks_per_body.entry(check.body.as_str()).or_default() += 1;
        // Not before the broker's transaction timeout.
        assert!(
            check.at_ms >= sent_at[&check.body] + 500 - 20,
            "checked {} ms after the send, before transaction_timeout_ms: {check:?}",
            check.at_ms - sent_at[&check.body]
        );
    }
    assert!(
        checks_per_body.values().all(|n| *n == 1),
        "an answered check was asked again: {checks_per_body:?}"
    );
    // A checked-then-committed message becomes visible only after its check.
    for g in got.iter().filter(|g| g.body.starts_with("unknown-commit")) {
        let check = checks.iter().find(|c| c.body == g.body).expect("checked");
        assert!(
            g.received_ms >= check.at_ms,
            "{} was delivered {} ms before the check that committed it",
            g.body,
            check.at_ms - g.received_ms
        );
    }

    consumer.inner.shutdown().await;
    let mut producer = producer;
    producer.inner.shutdown().await;
    plain.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

/// The producer that sent a transaction is gone; the broker checks it with another live
/// producer of the same group, whose answer commits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_goes_to_another_live_producer_of_the_group() {
    // Checks with no live producer count too (as in RocketMQ): allow enough of them for
    // the second producer to come up.
    let mut args = BROKER_ARGS.to_vec();
    args.extend(["--set", "transaction_check_max=200"]);
    let c = start_cluster(&args);
    let ns = c.namesrv();
    let topic = unique_name("CompatTxHandover");
    let group = unique_name("compat_tx_handover");
    let rt = HARNESS.client_runtime("tx-handover");

    let mut first = start_transaction_producer(&rt, &ns, &group).await;
    send_in_transaction(&first, &topic, "unknown-commit-handover").await;
    send_in_transaction(&first, &topic, "unknown-rollback-handover").await;
    first.inner.shutdown().await;
    let first_checks = first.checks();

    let mut consumer = start_consumer(&rt, &ns, &topic).await;
    let second = start_transaction_producer(&rt, &ns, &group).await;
    // A producer registers with (heartbeats to) the brokers of the topics it publishes
    // to: the second one publishes first, a transaction it commits itself.
    send_in_transaction(&second, &topic, "commit-second").await;
    let delivered = HARNESS
        .wait_until(DEADLINE, || {
            consumer.bodies().contains("unknown-commit-handover")
        })
        .await;
    assert!(
        delivered,
        "the transaction was never committed through the second producer: checks {:#?}",
        second.checks()
    );
    let both: BTreeSet<String> = ["unknown-commit-handover", "unknown-rollback-handover"]
        .map(String::from)
        .into();
    let answered_by_first: BTreeSet<String> = first_checks.into_iter().map(|c| c.body).collect();
    let checked = HARNESS
        .wait_until(DEADLINE, || {
            let mut answered: BTreeSet<String> =
                second.checks().into_iter().map(|c| c.body).collect();
            answered.extend(answered_by_first.iter().cloned());
            answered == both
        })
        .await;
    assert!(checked, "second producer's checks: {:#?}", second.checks());
    assert!(
        !second.checks().is_empty(),
        "the first producer answered every check before it left; the test proves nothing"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let bodies: Vec<String> = consumer.received().into_iter().map(|g| g.body).collect();
    let mut bodies = bodies;
    bodies.sort();
    assert_eq!(
        bodies,
        ["commit-second", "unknown-commit-handover"],
        "only the committed ones, once"
    );
    for g in consumer.received() {
        assert_committed_form(&g, &topic);
    }

    consumer.inner.shutdown().await;
    let mut second = second;
    second.inner.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}
