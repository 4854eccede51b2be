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
