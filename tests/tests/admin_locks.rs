//! Queue locks for orderly consumers and the statistics `mqadmin` asks for, against the
//! real broker process.

use e2e::*;
use protocol::body::{LockBatchRequestBody, LockBatchResponseBody, MessageQueue};
use protocol::code::{request, response};
use protocol::header::{GetConsumeStatsRequestHeader, TopicRequestHeader};
use protocol::json::{self, JsonStyle};
use protocol::RemotingCommand;
use std::collections::BTreeSet;

fn queues(topic: &str, ids: &[i32]) -> BTreeSet<MessageQueue> {
    ids.iter()
        .map(|&q| MessageQueue {
            topic: topic.into(),
            broker_name: "broker-a".into(),
            queue_id: q,
        })
        .collect()
}

fn lock(
    client: &mut RemotingClient,
    group: &str,
    who: &str,
    mqs: &BTreeSet<MessageQueue>,
) -> BTreeSet<i32> {
    let body = LockBatchRequestBody {
        consumer_group: group.into(),
        client_id: who.into(),
        only_this_broker: true,
        mq_set: mqs.clone(),
    };
    let resp = client.call(
        RemotingCommand::request(request::LOCK_BATCH_MQ).with_body(json::to_vec(
            &body,
            JsonStyle::Standard,
            &[],
        )),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let locked: LockBatchResponseBody = json::from_slice(&resp.body).expect("lock answer");
    locked.lock_ok_mq_set.iter().map(|m| m.queue_id).collect()
}

#[test]
fn a_queue_is_locked_by_one_client_of_a_group_until_unlocked() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Ordered");
    let group = unique_name("g_ordered");
    assert_eq!(
        lock(&mut client, &group, "client-a", &queues(&topic, &[0, 1])),
        [0, 1].into()
    );
    // Another client gets only what is free; a's locks renew.
    assert_eq!(
        lock(&mut client, &group, "client-b", &queues(&topic, &[1, 2])),
        [2].into()
    );
    assert_eq!(
        lock(&mut client, &group, "client-a", &queues(&topic, &[0, 1])),
        [0, 1].into()
    );
    // Another group is independent.
    assert_eq!(
        lock(
            &mut client,
            &unique_name("g_other"),
            "client-b",
            &queues(&topic, &[0])
        ),
        [0].into()
    );
    // a unlocks queue 1; b can take it.
    let body = LockBatchRequestBody {
        consumer_group: group.clone(),
        client_id: "client-a".into(),
        only_this_broker: true,
        mq_set: queues(&topic, &[1]),
    };
    let resp = client.call(
        RemotingCommand::request(request::UNLOCK_BATCH_MQ).with_body(json::to_vec(
            &body,
            JsonStyle::Standard,
            &[],
        )),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(
        lock(&mut client, &group, "client-b", &queues(&topic, &[1])),
        [1].into()
    );
    assert!(lock(&mut client, &group, "client-a", &queues(&topic, &[1])).is_empty());
}

/// The `{MessageQueue-object: value}` maps fastjson writes, as (queue id, value) pairs.
fn queue_table(body: &[u8], table: &str) -> Vec<(i32, serde_json::Value)> {
    let text = std::str::from_utf8(body).expect("UTF-8 body");
    let start = text
        .find(&format!("\"{table}\":{{"))
        .expect("table present")
        + table.len()
        + 4;
    let mut out = Vec::new();
    let mut rest = &text[start..];
    while let Some(key_start) = rest.find('{') {
        if rest[..key_start].contains('}') && rest.trim_start().starts_with('}') {
            break;
        }
        let key_end = key_start + rest[key_start..].find('}').expect("key end") + 1;
        let key: serde_json::Value =
            serde_json::from_str(&rest[key_start..key_end]).expect("key json");
        let value_start = key_end + rest[key_end..].find('{').expect("value");
        let value_end = value_start + rest[value_start..].find('}').expect("value end") + 1;
        let value: serde_json::Value =
            serde_json::from_str(&rest[value_start..value_end]).expect("value json");
        out.push((key["queueId"].as_i64().expect("queueId") as i32, value));
        rest = &rest[value_end..];
        if rest.starts_with('}') {
            break;
        }
    }
    out.sort_by_key(|(q, _)| *q);
    out
}

#[test]
fn topic_and_consume_stats_count_every_queue() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Stats");
    let group = unique_name("g_stats");
    // 4 queues (TBW102 template with 4 requested): 1, 2, 3 and 0 messages.
    for q in 0..3 {
        for i in 0..=q {
            send_ok(
                &mut client,
                &OutMessage {
                    topic: &topic,
                    queue_id: q,
                    body: format!("m{q}-{i}").as_bytes(),
                    ..Default::default()
                },
            );
        }
    }
    let before = now_ms();
    let resp = client.call(
        RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_header(&TopicRequestHeader {
            topic: topic.clone(),
        }),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let table = queue_table(&resp.body, "offsetTable");
    let max: Vec<i64> = table
        .iter()
        .map(|(_, v)| v["maxOffset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        max,
        vec![1, 2, 3, 0],
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    for (q, v) in &table {
        assert_eq!(v["minOffset"], 0);
        let last = v["lastUpdateTimestamp"].as_i64().unwrap();
        if *q < 3 {
            assert!(
                last > before - 60_000 && last <= now_ms(),
                "queue {q}: {last}"
            );
        } else {
            assert_eq!(last, 0, "empty queue");
        }
    }

    // The group committed 1 on queue 1 and 3 on queue 2.
    pull(&mut client, &group, &topic, 1, 0, 32);
    assert_eq!(
        update_offset(&mut client, &group, &topic, 1, 1).code,
        response::SUCCESS
    );
    assert_eq!(
        update_offset(&mut client, &group, &topic, 2, 3).code,
        response::SUCCESS
    );
    let resp = client.call(
        RemotingCommand::request(request::GET_CONSUME_STATS).with_header(
            &GetConsumeStatsRequestHeader {
                consumer_group: group.clone(),
                topic: Some(topic.clone()),
                topic_list: None,
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let table = queue_table(&resp.body, "offsetTable");
    let figures: Vec<(i64, i64)> = table
        .iter()
        .map(|(_, v)| {
            (
                v["brokerOffset"].as_i64().unwrap(),
                v["consumerOffset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![(1, 0), (2, 1), (3, 3), (0, 0)],
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
}

/// A broker configured with an HTTP address server finds its nameserver there (the
/// configured address is unreachable) and registers with it.
#[test]
fn nameservers_come_from_the_http_address_server() {
    let ns = NameServerProcess::start(&["--http-listen", "127.0.0.1:0"]);
    let http = ns.http.expect("http address in the status line");
    let url = format!("namesrv_address_url=\"http://{http}/rocketmq/nsaddr\"");
    let broker = BrokerProcess::start("127.0.0.1:1", &["--set", &url]);
    let mut nsc = ns.connect();
    assert!(
        eventually(std::time::Duration::from_secs(10), || route(
            &mut nsc, "TBW102"
        )
        .is_some_and(|r| r.broker_datas.iter().any(|b| b
            .broker_addrs
            .values()
            .any(|a| *a == broker.addr().to_string())))),
        "the broker did not register with the nameserver named by the address server"
    );
}

#[test]
fn offsets_reset_by_time_and_who_consumes_a_topic() {
    use protocol::header::ResetOffsetRequestHeader;
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Reset");
    let group = unique_name("g_reset");
    for i in 0..3 {
        send_ok(
            &mut client,
            &OutMessage {
                topic: &topic,
                queue_id: 0,
                body: format!("m{i}").as_bytes(),
                ..Default::default()
            },
        );
    }
    pull(&mut client, &group, &topic, 0, 0, 32);
    assert_eq!(
        update_offset(&mut client, &group, &topic, 0, 3).code,
        response::SUCCESS
    );

    // Who consumes it, and the whole offset table.
    let resp = client.call(
        RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_header(
            &TopicRequestHeader {
                topic: topic.clone(),
            },
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let groups: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(groups["groupList"], serde_json::json!([group]));
    let resp = client.call(RemotingCommand::request(request::GET_ALL_CONSUMER_OFFSET));
    assert_eq!(resp.code, response::SUCCESS);
    assert!(String::from_utf8_lossy(&resp.body).contains(&format!("{topic}@{group}")));

    // A consumer of the group is online on another connection: it is told.
    let mut consumer = c.connect_broker();
    let resp = consumer.call(consumer_heartbeat("reset-client", &group, &topic));
    assert_eq!(resp.code, response::SUCCESS);

    // Back to the first message stored at or after a time before all of them.
    let reset = |client: &mut RemotingClient, timestamp: i64, force: bool| {
        client.call(
            RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET).with_header(
                &ResetOffsetRequestHeader {
                    group: group.clone(),
                    topic: topic.clone(),
                    queue_id: -1,
                    offset: None,
                    timestamp,
                    is_force: force,
                },
            ),
        )
    };
    let resp = reset(&mut client, now_ms() - 3_600_000, true);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert!(
        String::from_utf8_lossy(&resp.body).contains(":0"),
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(query_offset(&mut client, &group, &topic, 0), Some(0));
    let told = (0..50).find_map(|_| {
        consumer
            .try_receive(std::time::Duration::from_millis(100))
            .filter(|r| r.code == request::RESET_CONSUMER_CLIENT_OFFSET)
    });
    let told = told.expect("the online consumer is told of the reset");
    assert!(String::from_utf8_lossy(&told.body).contains("\"queueId\":0"));
    // To the end (-1): 3; not forced, a later offset than the group's stays.
    assert_eq!(reset(&mut client, -1, true).code, response::SUCCESS);
    assert_eq!(query_offset(&mut client, &group, &topic, 0), Some(3));
    assert_eq!(
        update_offset(&mut client, &group, &topic, 0, 1).code,
        response::SUCCESS
    );
    assert_eq!(reset(&mut client, -1, false).code, response::SUCCESS);
    assert_eq!(
        query_offset(&mut client, &group, &topic, 0),
        Some(1),
        "not forced: the earlier offset stays"
    );
}

#[test]
fn broker_permission_changes_at_runtime() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Perm");
    send_ok(
        &mut client,
        &OutMessage {
            topic: &topic,
            queue_id: 0,
            body: b"before",
            ..Default::default()
        },
    );
    let update = |client: &mut RemotingClient, text: &str| {
        client.call(
            RemotingCommand::request(request::UPDATE_BROKER_CONFIG)
                .with_body(text.as_bytes().to_vec()),
        )
    };
    // Read-only: sends refused, pulls served, routes say so.
    assert_eq!(
        update(&mut client, "brokerPermission=4\n").code,
        response::SUCCESS
    );
    let resp = send_message(&mut client, &topic, 0, b"refused", None, None);
    assert_eq!(resp.code, response::NO_PERMISSION, "{resp:?}");
    assert_eq!(pull(&mut client, "g_perm", &topic, 0, 0, 32).1.len(), 1);
    let mut ns = c.connect_ns();
    assert!(
        eventually(std::time::Duration::from_secs(10), || route(
            &mut ns, &topic
        )
        .is_some_and(|r| r.queue_datas.iter().all(|q| q.perm == 4))),
        "the nameserver never saw the read-only permission"
    );
    let resp = client.call(RemotingCommand::request(request::GET_BROKER_CONFIG));
    assert!(String::from_utf8_lossy(&resp.body).contains("brokerPermission=4"));
    // Keys that cannot change at runtime are refused, nothing applied.
    let resp = update(&mut client, "brokerPermission=6\nlistenPort=1\n");
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp.remark.unwrap_or_default().contains("listenPort"));
    assert_eq!(
        send_message(&mut client, &topic, 0, b"still refused", None, None).code,
        response::NO_PERMISSION
    );
    assert_eq!(
        update(&mut client, "brokerPermission=6").code,
        response::SUCCESS
    );
    assert_eq!(
        send_message(&mut client, &topic, 0, b"after", None, None).code,
        response::SUCCESS
    );
}
