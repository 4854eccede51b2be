//! Timer messages with the third-party `rocketmq-client-rust` client against our real
//! broker: the client's `deliver_time_ms` (TIMER_DELIVER_MS, absolute), `delay_secs`
//! (TIMER_DELAY_SEC), `delay_millis` (TIMER_DELAY_MS) and the older `__STARTDELIVERTIME`
//! property (absolute) hold a message back until its time; a push consumer receives it
//! no earlier than that, and within a few seconds after.
//!
//! Every test uses its own topics, groups and client instance names, waits with generous
//! deadlines ("eventually"), and checks content and times: the consumer's wall clock at
//! receipt and the store timestamp of the delivered message against the due time (the
//! broker runs on the same machine, so on the same clock).

mod common;

use common::{body_text, push_consumer, record_deliveries, start_cluster, Harness, Settings};
use e2e::{now_ms, unique_name};
use rocketmq_client_rust::{ClientRuntime, DefaultMQProducer, DefaultMQPushConsumer, SendStatus};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The client runs listeners on its runtime's metadata-I/O blocking lane, which by
/// default queues only 8 tasks per core and fails the rest (a failed consume comes back
/// through the retry topic 10 s later); made deep enough for every test here. Waits poll
/// every 50 ms.
static HARNESS: Harness = Harness::new(Settings {
    consume_queue_depth: Some(4_096),
    poll: Duration::from_millis(50),
    ..Settings::new("compat-timer", "compat_timer_producer")
});

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(40);
/// How much later than its due time a timer message may arrive (the broker promises at
/// most one 100 ms level; the rest is pull wake-up and a slow debug build).
const LATE_MS: i64 = 5_000;
/// Clock granularity allowed on the early side (the same clock, read by two processes).
const EARLY_MS: i64 = 20;

/// One message as the consumer saw it, with the consumer's wall clock at receipt.
#[derive(Debug, Clone)]
struct Got {
    body: String,
    tags: Option<String>,
    keys: Option<String>,
    user: Option<String>,
    topic: String,
    store_ms: i64,
    received_ms: i64,
}

impl Got {
    fn from_ext(m: &MessageExt, received_ms: i64) -> Self {
        let inner = m.message_inner();
        Self {
            body: body_text(m),
            tags: inner.tags().map(str::to_owned),
            keys: inner.property("KEYS").map(str::to_owned),
            user: inner.property("userProp").map(str::to_owned),
            topic: m.topic().to_string(),
            store_ms: m.store_timestamp(),
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

    fn count(&self, body: &str) -> usize {
        self.received().iter().filter(|g| g.body == body).count()
    }
}

/// A clustering push consumer of `topic` reading a new group from the first offset.
async fn start_consumer(rt: &Arc<ClientRuntime>, ns: &str, topic: &str) -> Consumer {
    let got = Arc::new(Mutex::new(Vec::new()));
    let group = unique_name("compat_timer_group");
    let mut inner =
        push_consumer(rt, ns, &unique_name("c"), &group, MessageModel::Clustering).build();
    inner.subscribe(topic, "*").await.expect("subscribe");
    record_deliveries(&mut inner, &got, Got::from_ext);
    inner.start().await.expect("consumer start");
    Consumer { inner, got }
}

/// Sends a message "warmup" to `topic` (creating it), then starts a consumer of `topic`
/// and waits until it consumed that message.
async fn start_warm_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    producer: &DefaultMQProducer,
    topic: &str,
) -> Consumer {
    send(producer, message(topic, "warmup", |b| b), "warmup").await;
    let consumer = start_consumer(rt, ns, topic).await;
    let warm = HARNESS
        .wait_until(DEADLINE, || consumer.count("warmup") == 1)
        .await;
    assert!(warm, "the warm-up message was not consumed");
    consumer
}

/// A message of `topic` with body `body`, tag `TagTimer`, key and user property derived
/// from the body; `timer` adds its timer property.
fn message(
    topic: &str,
    body: &str,
    timer: impl FnOnce(
        rocketmq_model::common::message::message_builder::MessageBuilder,
    ) -> rocketmq_model::common::message::message_builder::MessageBuilder,
) -> Message {
    let builder = Message::builder()
        .topic(topic)
        .tags("TagTimer")
        .key(format!("key-{body}"))
        .body_slice(body.as_bytes())
        .raw_property("userProp", format!("user-{body}"))
        .expect("user property");
    timer(builder).build_unchecked()
}

async fn send(producer: &DefaultMQProducer, msg: Message, what: &str) {
    let result = producer
        .send(msg)
        .await
        .unwrap_or_else(|e| panic!("send {what}: {e}"))
        .expect("a sync send has a result");
    assert_eq!(result.send_status, SendStatus::SendOk, "{what}: {result:?}");
}

/// Asserts `got` arrived on `topic` with its content intact, no earlier than `due_ms`
/// and at most [`LATE_MS`] after it, and was stored again when delivered.
fn assert_on_time(got: &Got, topic: &str, due_ms: i64) {
    let body = &got.body;
    assert_eq!(got.topic, topic, "{got:?}");
    assert_eq!(got.tags.as_deref(), Some("TagTimer"), "{got:?}");
    assert_eq!(
        got.keys.as_deref(),
        Some(format!("key-{body}").as_str()),
        "{got:?}"
    );
    assert_eq!(
        got.user.as_deref(),
        Some(format!("user-{body}").as_str()),
        "{got:?}"
    );
    assert!(
        got.received_ms >= due_ms - EARLY_MS,
        "{body} received {} ms before its due time: {got:?}",
        due_ms - got.received_ms
    );
    assert!(
        got.store_ms >= due_ms - EARLY_MS,
        "{body} stored for delivery {} ms before its due time: {got:?}",
        due_ms - got.store_ms
    );
    assert!(
        got.received_ms <= due_ms + LATE_MS,
        "{body} received {} ms after its due time: {got:?}",
        got.received_ms - due_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_timer_property_holds_a_message_until_its_time() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatTimer");
    let rt = HARNESS.client_runtime("timer-kinds");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    // Create the topic, then start the consumer before the timers are sent.
    let mut consumer = start_warm_consumer(&rt, &ns, &producer, &topic).await;

    // Due times as the test sees them: absolute ones exactly, relative ones from just
    // before the send (the broker counts from its receipt, a little later: the check
    // against this earlier time is still a valid lower bound).
    let mut due: BTreeMap<&str, i64> = BTreeMap::new();
    let at = now_ms() + 4_000;
    send(
        &producer,
        message(&topic, "deliver-ms", |b| b.deliver_time_ms(at as u64)),
        "TIMER_DELIVER_MS",
    )
    .await;
    due.insert("deliver-ms", at);

    let before = now_ms();
    send(
        &producer,
        message(&topic, "delay-sec", |b| b.delay_secs(3)),
        "TIMER_DELAY_SEC",
    )
    .await;
    due.insert("delay-sec", before + 3_000);

    let before = now_ms();
    send(
        &producer,
        message(&topic, "delay-ms", |b| b.delay_millis(2_500)),
        "TIMER_DELAY_MS",
    )
    .await;
    due.insert("delay-ms", before + 2_500);

    let at = now_ms() + 3_500;
    send(
        &producer,
        message(&topic, "start-deliver-time", |b| {
            b.raw_property("__STARTDELIVERTIME", at.to_string())
                .expect("__STARTDELIVERTIME is a user-settable property")
        }),
        "__STARTDELIVERTIME",
    )
    .await;
    due.insert("start-deliver-time", at);

    // Sent last, delivered first.
    send(&producer, message(&topic, "immediate", |b| b), "immediate").await;

    let all = HARNESS
        .wait_until(DEADLINE, || {
            due.keys().all(|b| consumer.count(b) >= 1) && consumer.count("immediate") >= 1
        })
        .await;
    let got = consumer.received();
    assert!(all, "not every timer message arrived: {got:#?}");
    // A grace period for duplicates to show up (not a timing assertion).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = consumer.received();
    for (body, due_ms) in &due {
        let copies: Vec<&Got> = got.iter().filter(|g| g.body == *body).collect();
        assert_eq!(copies.len(), 1, "{body} delivered once: {copies:#?}");
        assert_on_time(copies[0], &topic, *due_ms);
    }
    let immediate = got
        .iter()
        .find(|g| g.body == "immediate")
        .expect("immediate");
    let first_timer = got
        .iter()
        .filter(|g| due.contains_key(g.body.as_str()))
        .map(|g| g.received_ms)
        .min()
        .expect("timers");
    assert!(
        immediate.received_ms <= first_timer,
        "the message sent after the timers arrived after one of them: {got:#?}"
    );
    assert_eq!(got.len(), due.len() + 2, "nothing else arrived: {got:#?}");

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

/// A due time already past is delivered at once; one further away than
/// `timer_max_delay_sec` is refused (RocketMQ: WHEEL_TIMER_MSG_ILLEGAL, answered as
/// MESSAGE_ILLEGAL), and nothing of it is ever delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_due_is_immediate_and_beyond_the_maximum_is_refused() {
    let c = start_cluster(&["--set", "timer_max_delay_sec=60"]);
    let ns = c.namesrv();
    let topic = unique_name("CompatTimerEdge");
    let rt = HARNESS.client_runtime("timer-edges");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    let mut consumer = start_warm_consumer(&rt, &ns, &producer, &topic).await;

    let refused = producer
        .send(message(&topic, "too-far", |b| b.delay_secs(3_600)))
        .await;
    assert!(
        refused.is_err(),
        "a timer an hour away with timer_max_delay_sec=60 was accepted: {refused:?}"
    );
    let refused = producer
        .send(message(&topic, "too-far-abs", |b| {
            b.deliver_time_ms((now_ms() + 120_000) as u64)
        }))
        .await;
    assert!(
        refused.is_err(),
        "a TIMER_DELIVER_MS two minutes away with timer_max_delay_sec=60 was accepted: \
         {refused:?}"
    );

    let sent_at = now_ms();
    send(
        &producer,
        message(&topic, "past-due", |b| {
            b.deliver_time_ms((sent_at - 10_000) as u64)
        }),
        "past due",
    )
    .await;
    let arrived = HARNESS
        .wait_until(DEADLINE, || consumer.count("past-due") == 1)
        .await;
    assert!(arrived, "the past-due message never arrived");
    let got = consumer.received();
    let past = got.iter().find(|g| g.body == "past-due").expect("past-due");
    assert!(
        past.received_ms - sent_at <= LATE_MS,
        "a past-due message waited {} ms",
        past.received_ms - sent_at
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bodies: Vec<String> = consumer.received().into_iter().map(|g| g.body).collect();
    assert_eq!(
        bodies,
        ["warmup", "past-due"],
        "nothing refused was delivered"
    );

    consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

/// A timer still pending when the broker restarts is delivered after the restart, at
/// its time, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_timer_survives_a_broker_restart() {
    let mut c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatTimerRestart");
    let rt = HARNESS.client_runtime("timer-restart");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    send(&producer, message(&topic, "warmup", |b| b), "warmup").await;
    let at = now_ms() + 12_000;
    send(
        &producer,
        message(&topic, "across-restart", |b| b.deliver_time_ms(at as u64)),
        "timer",
    )
    .await;
    producer.shutdown().await;

    tokio::task::block_in_place(|| c.restart_broker());
    assert!(
        now_ms() < at,
        "the restart took longer than the timer's delay; the test proves nothing"
    );

    let mut consumer = start_consumer(&rt, &ns, &topic).await;
    let arrived = HARNESS
        .wait_until(DEADLINE, || consumer.count("across-restart") >= 1)
        .await;
    assert!(arrived, "the timer message never arrived after the restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = consumer.received();
    let copies: Vec<&Got> = got.iter().filter(|g| g.body == "across-restart").collect();
    assert_eq!(copies.len(), 1, "delivered once: {copies:#?}");
    assert_on_time(copies[0], &topic, at);

    consumer.inner.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}
