//! The `client` library against real nameserver and broker processes: every producer
//! and consumer pattern once.

#![allow(clippy::unwrap_used)]

use client::consumer::lite::LitePullConsumer;
use client::{
    AllocateStrategy, ClientConfig, ConsumeFrom, ConsumeStatus, LocalTransactionState, Message,
    MessageExt, MessageModel, Producer, PushConsumer, SendStatus,
};
use e2e::{BrokerProcess, Cluster, NameServerProcess, TempDir};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVENTUALLY: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(namesrv: &str) -> ClientConfig {
    ClientConfig {
        route_refresh: Duration::from_secs(1),
        ..ClientConfig::new(namesrv)
    }
}

/// Waits until `f` holds, polling.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Seen = Arc<Mutex<Vec<MessageExt>>>;

fn bodies(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

/// The topic's queues, once the nameserver has them: a topic created by a send reaches
/// the nameserver with the broker's next registration.
async fn wait_route(lite: &LitePullConsumer, topic: &str) -> Vec<client::MessageQueue> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        match lite.fetch_queues(topic).await {
            Ok(q) if !q.is_empty() => return q,
            Ok(_) => {}
            Err(e) if Instant::now() < deadline => eprintln!("no route for {topic} yet: {e}"),
            Err(e) => panic!("no route for {topic}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A listener that records every message and succeeds.
fn collect(
    seen: &Seen,
) -> impl Fn(Vec<MessageExt>) -> std::future::Ready<ConsumeStatus> + Send + Sync + 'static {
    let seen = seen.clone();
    move |msgs| {
        seen.lock().unwrap().extend(msgs);
        std::future::ready(ConsumeStatus::Success)
    }
}

/// Reads a whole topic from the first offset with a lite pull consumer.
async fn read_topic(namesrv: &str, topic: &str, want: usize) -> Vec<MessageExt> {
    let mut lite = LitePullConsumer::start("read_topic_group", config(namesrv))
        .await
        .unwrap();
    let queues = wait_route(&lite, topic).await;
    lite.assign(queues, "*").await.unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + EVENTUALLY;
    while out.len() < want && Instant::now() < deadline {
        out.extend(lite.poll(Duration::from_millis(200)).await.unwrap());
    }
    lite.shutdown().await;
    out
}

#[test]
fn producer_send_modes_reach_the_broker_intact() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let producer = Producer::builder("pg_modes")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        let topic = "ClientModes"; // does not exist: created through TBW102
        let sync = producer
            .send(
                Message::new(topic, "sync")
                    .with_tags("T1")
                    .with_keys(["k1", "k2"])
                    .with_property("color", "red"),
            )
            .await
            .unwrap();
        assert_eq!(sync.status, SendStatus::SendOk);
        assert_eq!(sync.msg_id.len(), 32, "UNIQ_KEY is 16 bytes of hex");
        let handle = producer.send_async(Message::new(topic, "async"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        producer.send_with_callback(Message::new(topic, "callback"), move |r| {
            let _ = tx.send(r);
        });
        assert_eq!(handle.await.unwrap().unwrap().status, SendStatus::SendOk);
        assert_eq!(rx.await.unwrap().unwrap().status, SendStatus::SendOk);
        producer
            .send_oneway(Message::new(topic, "oneway"))
            .await
            .unwrap();
        let batch = producer
            .send_batch(vec![
                Message::new(topic, "batch-0"),
                Message::new(topic, "batch-1"),
                Message::new(topic, "batch-2"),
            ])
            .await
            .unwrap();
        assert_eq!(batch.msg_id.split(',').count(), 3);
        // Over 4 KiB: compressed on the wire, whole again on the consumer side.
        let big: String = "compressible ".repeat(1000);
        producer
            .send(Message::new(topic, big.clone()))
            .await
            .unwrap();

        let got = read_topic(&ns, topic, 8).await;
        let by_body: BTreeMap<String, &MessageExt> = got
            .iter()
            .map(|m| (String::from_utf8_lossy(&m.body).into_owned(), m))
            .collect();
        for want in [
            "sync", "async", "callback", "oneway", "batch-0", "batch-1", "batch-2",
        ] {
            assert!(
                by_body.contains_key(want),
                "{want} missing: {:?}",
                by_body.keys()
            );
        }
        assert!(
            by_body.contains_key(&big),
            "the compressed body came back different"
        );
        let first = by_body["sync"];
        assert_eq!(first.tags(), Some("T1"));
        assert_eq!(first.keys(), vec!["k1", "k2"]);
        assert_eq!(first.property("color"), Some("red"));
        assert_eq!(first.msg_id(), sync.msg_id);
        assert_eq!(first.offset_msg_id(), sync.offset_msg_id);
        assert_eq!(got.len(), 8, "each message exactly once");

        // Bad input is refused before anything is sent.
        assert!(producer.send(Message::new("bad topic", "x")).await.is_err());
        assert!(producer.send(Message::new(topic, "")).await.is_err());
        producer.shutdown().await;
    });
}

#[test]
fn lite_pull_consumer_seeks_by_timestamp_and_commits() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let producer = Producer::builder("pg_lite")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        let topic = "ClientLite";
        let first = producer.send(Message::new(topic, "before")).await.unwrap();
        let mq = first.message_queue.clone();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cut = e2e::now_ms();
        tokio::time::sleep(Duration::from_millis(50)).await;
        producer
            .send_to_queue(Message::new(topic, "after-1"), &mq)
            .await
            .unwrap();
        producer
            .send_to_queue(Message::new(topic, "after-2"), &mq)
            .await
            .unwrap();

        let mut lite = LitePullConsumer::start("cg_lite", config(&ns))
            .await
            .unwrap();
        lite.assign(vec![mq.clone()], "*").await.unwrap();
        let at = lite.seek_to_timestamp(&mq, cut).await.unwrap();
        assert_eq!(at, first.queue_offset + 1);
        let msgs = lite.poll(Duration::from_secs(5)).await.unwrap();
        let got: Vec<String> = msgs
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        assert_eq!(got, vec!["after-1", "after-2"]);
        lite.commit().await.unwrap();
        assert_eq!(
            lite.committed(&mq).await.unwrap(),
            Some(first.queue_offset + 3)
        );
        lite.seek_to_begin(&mq).await.unwrap();
        let again = lite.poll(Duration::from_secs(5)).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&again[0].body), "before");
        lite.shutdown().await;
        producer.shutdown().await;
    });
}

/// Two clustering consumers share the queues and each message is consumed once; a
/// failed message comes back through the retry topic with its original topic.
#[test]
fn push_consumers_share_queues_and_retry_failures() {
    // Retry level 3 = 1 s, so redelivery is quick.
    let cluster = Cluster::start(&["--set", "message_delay_level=1s 1s 1s 1s"]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let topic = "ClientPush";
        let producer = Producer::builder("pg_push")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        // Create the topic before the consumers start (8 queues through TBW102 → 4).
        producer.send(Message::new(topic, "warmup")).await.unwrap();
        let seen: Seen = Arc::default();
        let failed_once: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let start = |name: &'static str| {
            let seen = seen.clone();
            let failed_once = failed_once.clone();
            let ns = ns.clone();
            async move {
                PushConsumer::builder("cg_push")
                    .config(ClientConfig {
                        instance_name: name.into(),
                        ..config(&ns)
                    })
                    .subscribe(topic, "*")
                    .consume_from(ConsumeFrom::FirstOffset)
                    .rebalance_interval(Duration::from_millis(500))
                    .persist_interval(Duration::from_millis(500))
                    .start(move |msgs: Vec<MessageExt>| {
                        let seen = seen.clone();
                        let failed_once = failed_once.clone();
                        async move {
                            for m in &msgs {
                                let body = String::from_utf8_lossy(&m.body).into_owned();
                                if body == "fail-once" && failed_once.lock().unwrap().insert(body) {
                                    return ConsumeStatus::ReconsumeLater;
                                }
                            }
                            seen.lock().unwrap().extend(msgs);
                            ConsumeStatus::Success
                        }
                    })
                    .await
                    .unwrap()
            }
        };
        let a = start("a").await;
        let b = start("b").await;
        until("both consumers to hold queues", || {
            let (qa, qb) = (a.assigned(), b.assigned());
            let qa: Vec<_> = qa.iter().filter(|q| q.topic == topic).collect();
            let qb: Vec<_> = qb.iter().filter(|q| q.topic == topic).collect();
            !qa.is_empty()
                && !qb.is_empty()
                && qa.len() + qb.len() == 4
                && qa.iter().all(|q| !qb.contains(q))
        })
        .await;
        for i in 0..40 {
            producer
                .send(Message::new(topic, format!("m{i}")))
                .await
                .unwrap();
        }
        producer
            .send(Message::new(topic, "fail-once"))
            .await
            .unwrap();
        until("every message consumed", || {
            let b = bodies(&seen);
            (0..40).all(|i| b.contains(&format!("m{i}"))) && b.contains(&"fail-once".to_owned())
        })
        .await;
        let all = seen.lock().unwrap().clone();
        let retried = all.iter().find(|m| &m.body[..] == b"fail-once").unwrap();
        assert_eq!(
            retried.topic, topic,
            "a retried message shows its original topic"
        );
        assert!(retried.reconsume_times >= 1);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for b in bodies(&seen) {
            *counts.entry(b).or_default() += 1;
        }
        let dups: Vec<_> = counts
            .iter()
            .filter(|(k, n)| **n > 1 && k.starts_with('m'))
            .collect();
        assert!(dups.is_empty(), "consumed twice: {dups:?}");
        // A consumer dropped without shutdown stops and closes its connections: the
        // broker drops it from the group and the other one takes every queue.
        drop(b);
        until("the remaining consumer to hold every queue", || {
            a.assigned().iter().filter(|q| q.topic == topic).count() == 4
        })
        .await;
        a.shutdown().await;
        producer.shutdown().await;
    });
}

#[test]
fn orderly_consumer_sees_each_key_in_order() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let topic = "ClientOrdered";
        let producer = Producer::builder("pg_order")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        producer
            .send(Message::new(topic, "warmup:0"))
            .await
            .unwrap();
        let seen: Seen = Arc::default();
        let failures = Arc::new(Mutex::new(0));
        let consumer = {
            let seen = seen.clone();
            let failures = failures.clone();
            PushConsumer::builder("cg_order")
                .config(config(&ns))
                .subscribe(topic, "*")
                .consume_from(ConsumeFrom::FirstOffset)
                .allocate(AllocateStrategy::AveragelyByCircle)
                .start_orderly(move |msgs: Vec<MessageExt>| {
                    let seen = seen.clone();
                    let failures = failures.clone();
                    async move {
                        // The first delivery of order 1:3 fails: the queue must pause and
                        // retry it before anything after it.
                        if &msgs[0].body[..] == b"order1:3" {
                            let mut f = failures.lock().unwrap();
                            if *f == 0 {
                                *f += 1;
                                return ConsumeStatus::ReconsumeLater;
                            }
                        }
                        seen.lock().unwrap().extend(msgs);
                        ConsumeStatus::Success
                    }
                })
                .await
                .unwrap()
        };
        for i in 0..20 {
            for key in ["order0", "order1", "order2"] {
                producer
                    .send_ordered(Message::new(topic, format!("{key}:{i}")), key)
                    .await
                    .unwrap();
            }
        }
        let deadline = Instant::now() + EVENTUALLY;
        while bodies(&seen).len() < 61 {
            assert!(
                Instant::now() < deadline,
                "ordered messages missing: got {:?}, assigned {:?}",
                bodies(&seen),
                consumer.assigned()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for b in bodies(&seen) {
            let (k, i) = b.split_once(':').unwrap();
            per_key
                .entry(k.to_owned())
                .or_default()
                .push(i.parse().unwrap());
        }
        for key in ["order0", "order1", "order2"] {
            assert_eq!(
                per_key[key],
                (0..20).collect::<Vec<_>>(),
                "{key} out of order"
            );
        }
        assert_eq!(*failures.lock().unwrap(), 1);
        consumer.shutdown().await;
        producer.shutdown().await;
    });
}

#[test]
fn broadcast_consumers_each_get_everything_and_keep_local_offsets() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    let offsets = TempDir::new("client-offsets");
    runtime().block_on(async {
        let topic = "ClientBroadcast";
        let producer = Producer::builder("pg_bc")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        producer.send(Message::new(topic, "warmup")).await.unwrap();
        let mut consumers = Vec::new();
        let mut seens = Vec::new();
        for name in ["x", "y"] {
            let seen: Seen = Arc::default();
            let c = PushConsumer::builder("cg_bc")
                .config(ClientConfig {
                    instance_name: name.into(),
                    ..config(&ns)
                })
                .subscribe(topic, "*")
                .message_model(MessageModel::Broadcasting)
                .consume_from(ConsumeFrom::FirstOffset)
                .offset_dir(&offsets.0)
                .start(collect(&seen))
                .await
                .unwrap();
            consumers.push(c);
            seens.push(seen);
        }
        for i in 0..10 {
            producer
                .send(Message::new(topic, format!("b{i}")))
                .await
                .unwrap();
        }
        for seen in &seens {
            until("each consumer sees every message", || {
                let b = bodies(seen);
                (0..10).all(|i| b.contains(&format!("b{i}")))
            })
            .await;
        }
        for c in &consumers {
            let id = c.client_id().to_owned();
            c.shutdown().await;
            let file = offsets.0.join(id).join("cg_bc").join("offsets.json");
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains(topic), "{file:?}: {text}");
        }
        producer.shutdown().await;
    });
}

#[test]
fn transactions_commit_roll_back_and_answer_checks() {
    let cluster = Cluster::start(&[
        "--set",
        "transaction_timeout_ms=300",
        "--set",
        "transaction_check_interval_ms=300",
    ]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let topic = "ClientTx";
        let checked = Arc::new(Mutex::new(Vec::<String>::new()));
        let c = checked.clone();
        let producer = Producer::builder("pg_tx")
            .config(config(&ns))
            .transaction_listener(move |msg: &MessageExt| {
                c.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&msg.body).into_owned());
                LocalTransactionState::Commit
            })
            .start()
            .await
            .unwrap();
        producer.send(Message::new(topic, "warmup")).await.unwrap();
        let (_, s) = producer
            .send_in_transaction(Message::new(topic, "tx-commit"), |_, _| {
                LocalTransactionState::Commit
            })
            .await
            .unwrap();
        assert_eq!(s, LocalTransactionState::Commit);
        producer
            .send_in_transaction(Message::new(topic, "tx-rollback"), |_, _| {
                LocalTransactionState::Rollback
            })
            .await
            .unwrap();
        producer
            .send_in_transaction(Message::new(topic, "tx-unknown"), |_, _| {
                LocalTransactionState::Unknown
            })
            .await
            .unwrap();
        let got = read_topic(&ns, topic, 3).await;
        let b: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        assert!(b.contains(&"tx-commit".to_owned()), "{b:?}");
        assert!(
            b.contains(&"tx-unknown".to_owned()),
            "the check-back committed it: {b:?}"
        );
        assert!(!b.contains(&"tx-rollback".to_owned()), "{b:?}");
        assert!(checked.lock().unwrap().contains(&"tx-unknown".to_owned()));
        producer.shutdown().await;
    });
}

#[test]
fn sql92_subscription_filters_and_a_bad_expression_is_refused() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let topic = "ClientSql";
        let producer = Producer::builder("pg_sql")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        producer.send(Message::new(topic, "warmup")).await.unwrap();
        let lite = LitePullConsumer::start("cg_sql_route", config(&ns))
            .await
            .unwrap();
        wait_route(&lite, topic).await;
        let bad = PushConsumer::builder("cg_sql_bad")
            .config(config(&ns))
            .subscribe_sql92(topic, "a >")
            .start(|_msgs: Vec<MessageExt>| async { ConsumeStatus::Success })
            .await;
        assert!(
            bad.is_err(),
            "a malformed SQL92 expression must fail the start"
        );
        let seen: Seen = Arc::default();
        let consumer = PushConsumer::builder("cg_sql")
            .config(config(&ns))
            .subscribe_sql92(topic, "a > 5")
            .consume_from(ConsumeFrom::FirstOffset)
            .start(collect(&seen))
            .await
            .unwrap();
        for a in 0..10 {
            producer
                .send(Message::new(topic, format!("a={a}")).with_property("a", a.to_string()))
                .await
                .unwrap();
        }
        until("the matching messages", || bodies(&seen).len() >= 4).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut b = bodies(&seen);
        b.sort();
        assert_eq!(b, vec!["a=6", "a=7", "a=8", "a=9"]);
        consumer.shutdown().await;
        producer.shutdown().await;
    });
}

/// With two brokers, sends keep succeeding when one is killed: a failed attempt goes
/// to the other broker.
#[test]
fn sends_fail_over_to_another_broker() {
    let ns = NameServerProcess::start(&[]);
    let ns_addr = ns.addr.to_string();
    let b1 = BrokerProcess::start(&ns_addr, &["--set", "broker_name=broker-one"]);
    let _b2 = BrokerProcess::start(&ns_addr, &["--set", "broker_name=broker-two"]);
    let topic = "ClientFailover";
    let run = e2e::rmqadmin(
        Some(&ns_addr),
        &[
            "updateTopic",
            "-t",
            topic,
            "-c",
            "DefaultCluster",
            "-r",
            "2",
            "-w",
            "2",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut b1 = Some(b1);
    runtime().block_on(async {
        let producer = Producer::builder("pg_failover")
            .config(config(&ns_addr))
            .send_timeout(Duration::from_secs(10))
            .start()
            .await
            .unwrap();
        // Both brokers' registrations of the new topic reach the nameserver first.
        let lite = LitePullConsumer::start("cg_failover_route", config(&ns_addr))
            .await
            .unwrap();
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let queues = wait_route(&lite, topic).await;
            let names: BTreeSet<_> = queues.iter().map(|q| q.broker_name.clone()).collect();
            if names.len() == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the topic is not on both brokers: {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut brokers = BTreeSet::new();
        let deadline = Instant::now() + EVENTUALLY;
        while brokers.len() < 2 && Instant::now() < deadline {
            let r = producer.send(Message::new(topic, "spread")).await.unwrap();
            brokers.insert(r.message_queue.broker_name);
            if brokers.len() < 2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(brokers.len(), 2, "sends go to both brokers");
        let _ = b1.take().unwrap().kill();
        for i in 0..20 {
            let r = producer
                .send(Message::new(topic, format!("after-kill-{i}")))
                .await
                .unwrap_or_else(|e| panic!("send {i} after the kill: {e}"));
            assert_eq!(r.message_queue.broker_name, "broker-two");
        }
        producer.shutdown().await;
    });
}

/// A delay level and a timer property hold messages back until they are due.
#[test]
fn delayed_and_timer_messages_arrive_when_due() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    runtime().block_on(async {
        let topic = "ClientDelay";
        let producer = Producer::builder("pg_delay")
            .config(config(&ns))
            .start()
            .await
            .unwrap();
        producer.send(Message::new(topic, "now")).await.unwrap();
        let sent = Instant::now();
        producer
            .send(Message::new(topic, "level-1").with_delay_level(1))
            .await
            .unwrap();
        producer
            .send(Message::new(topic, "timer-1500").with_delay_ms(1500))
            .await
            .unwrap();
        let got = read_topic(&ns, topic, 3).await;
        let arrived = sent.elapsed();
        let b: BTreeSet<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        assert_eq!(
            b,
            BTreeSet::from(["now".into(), "level-1".into(), "timer-1500".into()])
        );
        assert!(
            arrived >= Duration::from_millis(1400),
            "the timer message came after {arrived:?}"
        );
        producer.shutdown().await;
    });
}

/// A producer and a push consumer ride through a broker crash: connections are
/// reopened, the consumer resumes from its committed offsets, and no message acknowledged
/// under sync flush is lost.
#[test]
fn clients_reconnect_after_a_broker_crash() {
    let mut cluster = Cluster::start(&["--set", "flush=sync"]);
    let ns = cluster.namesrv();
    let rt = runtime();
    let topic = "ClientCrash";
    let seen: Seen = Arc::default();
    let (producer, consumer) = rt.block_on(async {
        let producer = Producer::builder("pg_crash")
            .config(config(&ns))
            .send_timeout(Duration::from_secs(10))
            .start()
            .await
            .unwrap();
        producer
            .send(Message::new(topic, "before-0"))
            .await
            .unwrap();
        let lite = LitePullConsumer::start("cg_crash_route", config(&ns))
            .await
            .unwrap();
        wait_route(&lite, topic).await;
        let consumer = PushConsumer::builder("cg_crash")
            .config(config(&ns))
            .subscribe(topic, "*")
            .consume_from(ConsumeFrom::FirstOffset)
            .persist_interval(Duration::from_millis(200))
            .start(collect(&seen))
            .await
            .unwrap();
        for i in 1..10 {
            producer
                .send(Message::new(topic, format!("before-{i}")))
                .await
                .unwrap();
        }
        until("the messages before the crash", || {
            let b = bodies(&seen);
            (0..10).all(|i| b.contains(&format!("before-{i}")))
        })
        .await;
        (producer, consumer)
    });
    cluster.kill_and_restart_broker();
    rt.block_on(async {
        for i in 0..10 {
            producer
                .send(Message::new(topic, format!("after-{i}")))
                .await
                .unwrap_or_else(|e| panic!("send {i} after the restart: {e}"));
        }
        until("the messages after the crash", || {
            let b = bodies(&seen);
            (0..10).all(|i| b.contains(&format!("after-{i}")))
        })
        .await;
        consumer.shutdown().await;
        producer.shutdown().await;
    });
}
