//! Arbitrary-time timer messages (RocketMQ 5's TIMER_DELIVER_MS / TIMER_DELAY_SEC /
//! TIMER_DELAY_MS and the older __STARTDELIVERTIME) against the real broker.

use e2e::*;
use protocol::code::response;
use protocol::message::record::RecordView;
use std::time::Duration;

fn send_timer(
    client: &mut RemotingClient,
    topic: &str,
    queue_id: i32,
    body: &str,
    prop: (&str, &str),
) -> i32 {
    let props = [prop];
    client
        .call(send_request(&OutMessage {
            topic,
            queue_id,
            body: body.as_bytes(),
            tags: Some("TagT"),
            properties: &props,
            ..Default::default()
        }))
        .code
}

/// Waits until `n` records are in the queue; returns them.
fn wait_records(
    client: &mut RemotingClient,
    topic: &str,
    queue_id: i32,
    n: usize,
    within: Duration,
) -> Vec<RecordView> {
    let group = unique_name("g_timer");
    let mut got = Vec::new();
    assert!(
        eventually(within, || {
            got = pull_all(client, &group, topic, queue_id, 0);
            got.len() >= n
        }),
        "only {} of {n} records in {topic}/{queue_id}",
        got.len()
    );
    got
}

#[test]
fn timers_of_every_kind_are_delivered_at_their_time() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Timer");
    send_ok(
        &mut client,
        &OutMessage {
            topic: &topic,
            queue_id: 0,
            body: b"now",
            ..Default::default()
        },
    );
    let now = now_ms();
    let due_abs = now + 1_200;
    assert_eq!(
        send_timer(
            &mut client,
            &topic,
            0,
            "deliver-ms",
            ("TIMER_DELIVER_MS", &due_abs.to_string())
        ),
        response::SUCCESS
    );
    assert_eq!(
        send_timer(
            &mut client,
            &topic,
            1,
            "delay-sec",
            ("TIMER_DELAY_SEC", "2")
        ),
        response::SUCCESS
    );
    assert_eq!(
        send_timer(
            &mut client,
            &topic,
            2,
            "delay-ms",
            ("TIMER_DELAY_MS", "700")
        ),
        response::SUCCESS
    );
    let start = now + 1_500;
    assert_eq!(
        send_timer(
            &mut client,
            &topic,
            3,
            "start-deliver",
            ("__STARTDELIVERTIME", &start.to_string())
        ),
        response::SUCCESS
    );
    // A time in the past is delivered at once.
    assert_eq!(
        send_timer(
            &mut client,
            &topic,
            0,
            "past",
            ("TIMER_DELIVER_MS", &(now - 10_000).to_string())
        ),
        response::SUCCESS
    );

    // Right away only the immediate ones are visible.
    let group = unique_name("g_early");
    let early: Vec<String> = pull_all(&mut client, &group, &topic, 0, 0)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(early, vec!["now", "past"]);
    for q in 1..4 {
        assert!(
            pull_all(&mut client, &group, &topic, q, 0).is_empty(),
            "queue {q} before its time"
        );
    }

    let expect = [
        (0, "deliver-ms", due_abs),
        (1, "delay-sec", now + 2_000),
        (2, "delay-ms", now + 700),
        (3, "start-deliver", start),
    ];
    for (q, body, due) in expect {
        let n = if q == 0 { 3 } else { 1 };
        let records = wait_records(&mut client, &topic, q, n, Duration::from_secs(15));
        let r = records.last().expect("a record");
        assert_eq!(String::from_utf8_lossy(&r.body), body);
        assert_eq!(r.tags(), Some("TagT"));
        assert_eq!(r.property("REAL_TOPIC"), Some(topic.as_str()));
        for p in [
            "TIMER_DELIVER_MS",
            "TIMER_DELAY_SEC",
            "TIMER_DELAY_MS",
            "__STARTDELIVERTIME",
        ] {
            assert_eq!(r.property(p), None, "{p} left on the delivered message");
        }
        // Stored to its real queue no earlier than due and within a second after (the
        // due time was computed before sending, so allow for the send itself).
        let late = r.store_timestamp - due;
        assert!(late >= -200, "{body}: delivered {} ms early", -late);
        assert!(late <= 1_000, "{body}: delivered {late} ms late");
    }
}

#[test]
fn a_timer_beyond_the_maximum_is_refused_and_pending_timers_survive_a_restart() {
    let mut c = Cluster::start(&[
        "--set",
        "timer_max_delay_sec=60",
        "--set",
        "consumer_offset_persist_interval_ms=100",
    ]);
    let mut client = c.connect_broker();
    let topic = unique_name("TimerRestart");
    send_ok(
        &mut client,
        &OutMessage {
            topic: &topic,
            queue_id: 0,
            body: b"now",
            ..Default::default()
        },
    );
    assert_eq!(
        send_timer(&mut client, &topic, 0, "too-far", ("TIMER_DELAY_SEC", "61")),
        response::MESSAGE_ILLEGAL
    );
    assert_eq!(
        send_timer(&mut client, &topic, 0, "junk", ("TIMER_DELAY_MS", "soon")),
        response::MESSAGE_ILLEGAL
    );
    assert_eq!(
        send_timer(
            &mut client,
            &topic,
            0,
            "after-restart",
            ("TIMER_DELAY_MS", "3000")
        ),
        response::SUCCESS
    );
    c.restart_broker();
    let mut client = c.connect_broker();
    let records = wait_records(&mut client, &topic, 0, 2, Duration::from_secs(20));
    let bodies: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, vec!["now", "after-restart"]);
}
