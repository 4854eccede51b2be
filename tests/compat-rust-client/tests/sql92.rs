//! SQL92 message filtering with the third-party `rocketmq-client-rust` producer and push
//! consumer against our real broker (registered with our real nameserver).
//!
//! A push consumer subscribed with `MessageSelector::by_sql(..)` sends the expression
//! (expression type `SQL92`) in its heartbeat and in every pull; the broker evaluates it
//! over the message properties (user properties and `TAGS`) and hands out only the
//! matching messages. Before that, at start, the client checks the expression with the
//! broker (CHECK_CLIENT_CONFIG): a broker answering SUBSCRIPTION_PARSE_FAILED (23) makes
//! `start()` fail, as in the Java client.
//!
//! Semantics follow Apache RocketMQ: a comparison with an integer literal is numeric
//! (`price > 10` is false for price `9`), a missing property matches nothing.
//!
//! Every wait has a generous deadline; the absence of extra deliveries is checked after a
//! grace period.

mod common;

use common::{body_text, push_consumer, record_deliveries, start_cluster, Harness, Settings};
use e2e::{unique_name, Cluster};
use rocketmq_client_rust::{
    ClientRuntime, DefaultMQProducer, DefaultMQPushConsumer, MQClientException, MessageSelector,
    SendResult, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

static HARNESS: Harness = Harness::new(Settings::new("compat-sql92", "compat_sql92_producer"));

/// Deadline for deliveries and anything else asynchronous.
const DEADLINE: Duration = Duration::from_secs(60);

/// How long to keep listening for deliveries that should not happen.
const GRACE: Duration = Duration::from_secs(3);

/// RocketMQ's SUBSCRIPTION_PARSE_FAILED response code.
const SUBSCRIPTION_PARSE_FAILED: i32 = 23;

/// Waits until the nameserver routes `topic` (the broker registers an auto-created topic
/// shortly after the first send). A consumer checks its SQL92 expression at start only
/// with a broker it finds in the topic's route; without one the client, like the Java
/// client, silently skips the check.
fn wait_for_route(c: &Cluster, topic: &str) {
    let routed = tokio::task::block_in_place(|| {
        let mut ns_client = c.connect_ns();
        e2e::eventually(DEADLINE, || e2e::route(&mut ns_client, topic).is_some())
    });
    assert!(routed, "the nameserver never routed {topic}");
}

/// One message of the test: its body (unique), tag and optional user properties.
#[derive(Debug, Clone, Copy)]
struct Spec {
    body: &'static str,
    tag: &'static str,
    region: Option<&'static str>,
    price: Option<i64>,
}

const fn spec(
    body: &'static str,
    tag: &'static str,
    region: Option<&'static str>,
    price: Option<i64>,
) -> Spec {
    Spec {
        body,
        tag,
        region,
        price,
    }
}

/// The messages sent. Chosen so that a string comparison would differ from the numeric
/// one (`"9" > "10"`, `"100" > "10"`), with boundaries (`10`, `1`, `3`) and messages
/// missing a property.
const SPECS: &[Spec] = &[
    spec("m00", "TagA", Some("eu"), Some(1)),
    spec("m01", "TagB", Some("us"), Some(12)),
    spec("m02", "TagC", Some("apac"), Some(3)),
    spec("m03", "TagC", Some("us"), Some(5)),
    spec("m04", "TagC", Some("us"), Some(11)),
    spec("m05", "TagB", Some("eu"), Some(20)),
    spec("m06", "TagD", Some("us"), Some(100)),
    spec("m07", "TagD", Some("us"), Some(9)),
    spec("m08", "TagD", Some("apac"), Some(2)),
    spec("m09", "TagA", Some("us"), None),
    spec("m10", "TagD", Some("us"), Some(10)),
    spec("m11", "TagC", None, Some(50)),
    spec("m12", "TagD", Some("eu"), Some(4)),
    spec("m13", "TagC", Some("apac"), Some(0)),
];

/// `region = 'us' AND price > 10`, in Rust.
fn us_and_expensive(s: &Spec) -> bool {
    s.region == Some("us") && s.price.is_some_and(|p| p > 10)
}

/// `TAGS IN ('TagA', 'TagB') OR price BETWEEN 1 AND 3`, in Rust.
fn tagged_or_cheap(s: &Spec) -> bool {
    matches!(s.tag, "TagA" | "TagB") || s.price.is_some_and(|p| (1..=3).contains(&p))
}

fn message(topic: &str, s: &Spec) -> Message {
    let mut builder = Message::builder()
        .topic(topic)
        .tags(s.tag)
        .key(format!("key-{}", s.body))
        .body_slice(s.body.as_bytes());
    if let Some(region) = s.region {
        builder = builder
            .raw_property("region", region)
            .expect("region property");
    }
    if let Some(price) = s.price {
        builder = builder
            .raw_property("price", price.to_string())
            .expect("price property");
    }
    builder.build_unchecked()
}

/// Sends one message (sync) and asserts the broker stored it.
async fn send(producer: &DefaultMQProducer, topic: &str, s: &Spec) {
    let result: SendResult = producer
        .send(message(topic, s))
        .await
        .unwrap_or_else(|e| panic!("send {}: {e}", s.body))
        .expect("a sync send has a result");
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
}

/// One delivery as the listener saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    topic: String,
    tags: Option<String>,
    region: Option<String>,
    price: Option<String>,
}

impl Seen {
    fn from_ext(msg: &MessageExt) -> Self {
        let inner = msg.message_inner();
        let prop = |name: &str| inner.property(name).map(str::to_owned);
        Self {
            body: body_text(msg),
            topic: msg.topic().to_string(),
            tags: inner.tags().map(str::to_owned),
            region: prop("region"),
            price: prop("price"),
        }
    }
}

struct Consumer {
    inner: DefaultMQPushConsumer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Consumer {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn bodies(&self) -> BTreeSet<String> {
        self.seen().into_iter().map(|s| s.body).collect()
    }
}

/// A clustering push consumer (not started) of `topic` in `group`, reading from the first
/// offset, subscribed with the SQL92 expression `sql`; its listener records every
/// delivery and answers success.
async fn sql_consumer(
    rt: &Arc<ClientRuntime>,
    ns: &str,
    group: &str,
    topic: &str,
    sql: &str,
) -> Consumer {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut inner = push_consumer(rt, ns, &unique_name("c"), group, MessageModel::Clustering)
        .consume_message_batch_max_size(1)
        .build();
    inner
        .subscribe_with_selector(topic, Some(MessageSelector::by_sql(sql)))
        .await
        .unwrap_or_else(|e| panic!("subscribe with {sql:?}: {e}"));
    record_deliveries(&mut inner, &seen, |m, _| Seen::from_ext(m));
    Consumer { inner, seen }
}

fn expected_bodies(pred: fn(&Spec) -> bool) -> BTreeSet<String> {
    SPECS
        .iter()
        .filter(|s| pred(s))
        .map(|s| s.body.to_owned())
        .collect()
}

/// Waits for every expected message, then for a grace period, and asserts `consumer` got
/// exactly the expected messages, each once and intact.
async fn assert_receives_exactly(
    consumer: &Consumer,
    sql: &str,
    topic: &str,
    pred: fn(&Spec) -> bool,
) {
    let expected = expected_bodies(pred);
    let complete = HARNESS
        .wait_until(DEADLINE, || consumer.bodies().is_superset(&expected))
        .await;
    assert!(
        complete,
        "{sql:?}: missing {:?} (got {:?})",
        expected.difference(&consumer.bodies()).collect::<Vec<_>>(),
        consumer.bodies()
    );
    // A grace period for extra or duplicate deliveries to show up.
    tokio::time::sleep(GRACE).await;
    let seen = consumer.seen();
    let got: Vec<&str> = seen.iter().map(|s| s.body.as_str()).collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort_unstable();
    want.sort_unstable();
    assert_eq!(got_sorted, want, "{sql:?}: deliveries (in order: {got:?})");
    for s in &seen {
        let spec = SPECS
            .iter()
            .find(|x| x.body == s.body)
            .expect("a sent message");
        assert_eq!(s.topic, topic, "{s:?}");
        assert_eq!(s.tags.as_deref(), Some(spec.tag), "{s:?}");
        assert_eq!(s.region.as_deref(), spec.region, "{s:?}");
        assert_eq!(s.price, spec.price.map(|p| p.to_string()), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_subscriptions_receive_exactly_the_matching_messages() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatSql92");
    let rt = HARNESS.client_runtime("sql92");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    for s in SPECS {
        send(&producer, &topic, s).await;
    }
    // So that the consumers' starts check their expressions with the broker.
    wait_for_route(&c, &topic);
    // The expressions select proper, overlapping subsets (sanity of the test itself).
    let us = expected_bodies(us_and_expensive);
    let tagged = expected_bodies(tagged_or_cheap);
    assert_eq!(
        us,
        ["m01", "m04", "m06"].map(String::from).into(),
        "test data"
    );
    assert_eq!(
        tagged,
        ["m00", "m01", "m02", "m05", "m08", "m09"]
            .map(String::from)
            .into(),
        "test data"
    );

    const US_SQL: &str = "region = 'us' AND price > 10";
    const TAGGED_SQL: &str = "TAGS IN ('TagA', 'TagB') OR price BETWEEN 1 AND 3";
    let mut us_consumer =
        sql_consumer(&rt, &ns, &unique_name("compat_sql92_us"), &topic, US_SQL).await;
    let mut tagged_consumer = sql_consumer(
        &rt,
        &ns,
        &unique_name("compat_sql92_tagged"),
        &topic,
        TAGGED_SQL,
    )
    .await;
    // Each start sends CHECK_CLIENT_CONFIG with its expression; the broker accepts both.
    us_consumer
        .inner
        .start()
        .await
        .unwrap_or_else(|e| panic!("start with {US_SQL:?}: {e}"));
    tagged_consumer
        .inner
        .start()
        .await
        .unwrap_or_else(|e| panic!("start with {TAGGED_SQL:?}: {e}"));

    assert_receives_exactly(&us_consumer, US_SQL, &topic, us_and_expensive).await;
    assert_receives_exactly(&tagged_consumer, TAGGED_SQL, &topic, tagged_or_cheap).await;

    // Messages sent while the consumers run are filtered the same way.
    let late = [
        spec("late-us", "TagC", Some("us"), Some(42)),
        spec("late-tagged", "TagB", Some("eu"), Some(42)),
        spec("late-none", "TagC", Some("us"), Some(7)),
    ];
    for s in &late {
        send(&producer, &topic, s).await;
    }
    let both = HARNESS
        .wait_until(DEADLINE, || {
            us_consumer.bodies().contains("late-us")
                && tagged_consumer.bodies().contains("late-tagged")
        })
        .await;
    assert!(
        both,
        "late messages not delivered: {:?} / {:?}",
        us_consumer.bodies(),
        tagged_consumer.bodies()
    );
    tokio::time::sleep(GRACE).await;
    let us_late: Vec<String> = us_consumer
        .seen()
        .into_iter()
        .map(|s| s.body)
        .filter(|b| b.starts_with("late"))
        .collect();
    let tagged_late: Vec<String> = tagged_consumer
        .seen()
        .into_iter()
        .map(|s| s.body)
        .filter(|b| b.starts_with("late"))
        .collect();
    assert_eq!(us_late, ["late-us"], "{US_SQL:?}");
    assert_eq!(tagged_late, ["late-tagged"], "{TAGGED_SQL:?}");
    assert_eq!(
        us_consumer.seen().len(),
        us.len() + 1,
        "{US_SQL:?}: no duplicates"
    );
    assert_eq!(
        tagged_consumer.seen().len(),
        tagged.len() + 1,
        "{TAGGED_SQL:?}: no duplicates"
    );

    us_consumer.inner.shutdown().await;
    tagged_consumer.inner.shutdown().await;
    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_sql92_expression_fails_the_consumer_start() {
    let c = start_cluster(&[]);
    let ns = c.namesrv();
    let topic = unique_name("CompatSql92Bad");
    let rt = HARNESS.client_runtime("sql92-bad");
    let mut producer = HARNESS.start_producer(&rt, &ns, &unique_name("p")).await;
    // The client checks an expression only with a broker the nameserver routes the topic
    // to: without the route the check is skipped and the start succeeds.
    send(&producer, &topic, &SPECS[0]).await;
    wait_for_route(&c, &topic);

    for sql in ["region = = 'us'", "price >", "region IN ()"] {
        let mut consumer =
            sql_consumer(&rt, &ns, &unique_name("compat_sql92_bad"), &topic, sql).await;
        // Subscribing only records the expression; the broker judges it at start.
        let err = match consumer.inner.start().await {
            Ok(()) => panic!("{sql:?}: the consumer started"),
            Err(e) => e,
        };
        let exception = err
            .source_ref::<MQClientException>()
            .unwrap_or_else(|| panic!("{sql:?}: not a broker answer: {err} ({err:?})"));
        assert_eq!(
            exception.response_code(),
            SUBSCRIPTION_PARSE_FAILED,
            "{sql:?}: {exception}"
        );
        // Nothing was consumed, and shutting the failed consumer down is harmless.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(consumer.seen().is_empty(), "{sql:?}: {:?}", consumer.seen());
        consumer.inner.shutdown().await;
    }

    // A valid expression on the same topic still starts and consumes.
    let sql = "region = 'eu'";
    let mut consumer = sql_consumer(&rt, &ns, &unique_name("compat_sql92_ok"), &topic, sql).await;
    consumer
        .inner
        .start()
        .await
        .unwrap_or_else(|e| panic!("start with {sql:?}: {e}"));
    let got = HARNESS
        .wait_until(DEADLINE, || consumer.bodies().contains(SPECS[0].body))
        .await;
    assert!(got, "{sql:?}: {:?}", consumer.seen());
    consumer.inner.shutdown().await;

    producer.shutdown().await;
    assert!(rt.shutdown().await.is_healthy());
}
