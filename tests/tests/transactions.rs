//! Transactional messages against the real broker: half messages are invisible until
//! committed, rollbacks never appear, open transactions are checked back with a live
//! producer (also after a restart), and a commit applies once.

use e2e::*;
use protocol::body::{HeartbeatData, ProducerData};
use protocol::code::{request, response};
use protocol::header::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, SendMessageResponseHeader,
};
use protocol::json::{self, JsonStyle};
use protocol::message::sys_flag;
use protocol::RemotingCommand;
use std::time::Duration;

const FAST_CHECKS: &[&str] = &[
    "--set",
    "transaction_timeout_ms=300",
    "--set",
    "transaction_check_interval_ms=300",
];

fn send_prepared(
    client: &mut RemotingClient,
    topic: &str,
    group: &str,
    body: &str,
) -> SendMessageResponseHeader {
    let props = [("TRAN_MSG", "true"), ("PGROUP", group)];
    let mut req = send_request(&OutMessage {
        topic,
        queue_id: 0,
        body: body.as_bytes(),
        tags: Some("TagTx"),
        properties: &props,
        ..Default::default()
    });
    req.ext_fields
        .insert("f", sys_flag::TRANSACTION_PREPARED.to_string());
    let resp = client.call(req);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    resp.header().expect("send response header")
}

fn end(
    client: &mut RemotingClient,
    group: &str,
    sent: &SendMessageResponseHeader,
    state: i32,
) -> i32 {
    let (_, offset) = protocol::message::decode_offset_msg_id(&sent.msg_id).expect("offset msgId");
    let header = EndTransactionRequestHeader {
        topic: None,
        producer_group: group.into(),
        tran_state_table_offset: sent.queue_offset,
        commit_log_offset: offset,
        commit_or_rollback: state,
        from_transaction_check: false,
        msg_id: sent.transaction_id.clone().unwrap_or_default(),
        transaction_id: sent.transaction_id.clone(),
    };
    client
        .call(RemotingCommand::request(request::END_TRANSACTION).with_header(&header))
        .code
}

fn bodies(client: &mut RemotingClient, topic: &str) -> Vec<String> {
    pull_all(client, &unique_name("g_tx_reader"), topic, 0, 0)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn committed_messages_appear_once_and_rolled_back_never() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("TxTopic");
    let group = unique_name("pg_tx");
    // The topic exists (a plain message), and half messages do not show in it.
    send_ok(
        &mut client,
        &OutMessage {
            topic: &topic,
            queue_id: 0,
            body: b"plain",
            ..Default::default()
        },
    );
    let commit = send_prepared(&mut client, &topic, &group, "to-commit");
    let rollback = send_prepared(&mut client, &topic, &group, "to-roll-back");
    assert_eq!(bodies(&mut client, &topic), vec!["plain"]);

    assert_eq!(
        end(&mut client, &group, &commit, sys_flag::TRANSACTION_COMMIT),
        response::SUCCESS
    );
    assert_eq!(
        end(
            &mut client,
            &group,
            &rollback,
            sys_flag::TRANSACTION_ROLLBACK
        ),
        response::SUCCESS
    );
    // A retried commit is applied once; a wrong producer group is refused.
    assert_eq!(
        end(&mut client, &group, &commit, sys_flag::TRANSACTION_COMMIT),
        response::SUCCESS
    );
    let other = send_prepared(&mut client, &topic, &group, "other");
    assert_eq!(
        end(
            &mut client,
            "someone-else",
            &other,
            sys_flag::TRANSACTION_COMMIT
        ),
        response::SYSTEM_ERROR
    );

    let records = pull_all(&mut client, &unique_name("g_tx"), &topic, 0, 0);
    let got: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(got, vec!["plain", "to-commit"]);
    let committed = &records[1];
    assert_eq!(
        sys_flag::transaction_value(committed.sys_flag),
        sys_flag::TRANSACTION_COMMIT
    );
    assert_eq!(committed.tags(), Some("TagTx"));
    assert_eq!(committed.property("REAL_TOPIC"), None);

    // Committed and rolled-back transactions stay resolved across a restart.
    let mut c = c;
    c.restart_broker();
    let mut client = c.connect_broker();
    assert_eq!(
        end(&mut client, &group, &commit, sys_flag::TRANSACTION_COMMIT),
        response::SUCCESS
    );
    assert_eq!(bodies(&mut client, &topic), vec!["plain", "to-commit"]);
}

fn register_producer(client: &mut RemotingClient, group: &str) {
    let hb = HeartbeatData {
        client_id: unique_name("producer-client"),
        producer_data_set: vec![ProducerData {
            group_name: group.into(),
        }],
        ..Default::default()
    };
    let resp = client.call(
        RemotingCommand::request(request::HEART_BEAT).with_body(json::to_vec(
            &hb,
            JsonStyle::Standard,
            &[],
        )),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
}

/// Waits for the broker to ask about a transaction; returns the check header and body.
fn wait_check(client: &mut RemotingClient) -> (CheckTransactionStateRequestHeader, bytes::Bytes) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = client
            .server_requests
            .iter()
            .position(|r| r.code == request::CHECK_TRANSACTION_STATE)
        {
            let cmd = client.server_requests.remove(i);
            return (cmd.header().expect("check header"), cmd.body);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no CHECK_TRANSACTION_STATE within 20 s"
        );
        if let Some(cmd) = client.try_receive(Duration::from_millis(200)) {
            client.server_requests.push(cmd);
        }
    }
}

#[test]
fn open_transactions_are_checked_back_with_a_live_producer_also_after_restart() {
    let mut c = Cluster::start(FAST_CHECKS);
    let topic = unique_name("TxCheck");
    let group = unique_name("pg_check");
    let mut producer = c.connect_broker();
    send_ok(
        &mut producer,
        &OutMessage {
            topic: &topic,
            queue_id: 0,
            body: b"plain",
            ..Default::default()
        },
    );
    register_producer(&mut producer, &group);
    let sent = send_prepared(&mut producer, &topic, &group, "checked");

    let (check, body) = wait_check(&mut producer);
    assert_eq!(check.tran_state_table_offset, sent.queue_offset);
    assert_eq!(check.msg_id, sent.transaction_id);
    let record =
        protocol::message::record::decode_record(&body, 0, true).expect("check body is a record");
    assert_eq!(
        record.topic_str(),
        topic,
        "the check carries the real topic"
    );
    assert_eq!(&record.body[..], b"checked");

    // The producer does not answer; the broker restarts; the transaction is still open
    // and asked about again, now answered with a commit.
    c.restart_broker();
    let mut producer = c.connect_broker();
    register_producer(&mut producer, &group);
    let (check, _) = wait_check(&mut producer);
    let (_, offset) = protocol::message::decode_offset_msg_id(
        check.offset_msg_id.as_deref().expect("offsetMsgId"),
    )
    .expect("offset msgId");
    assert_eq!(offset, check.commit_log_offset);
    let header = EndTransactionRequestHeader {
        topic: None,
        producer_group: group.clone(),
        tran_state_table_offset: check.tran_state_table_offset,
        commit_log_offset: check.commit_log_offset,
        commit_or_rollback: sys_flag::TRANSACTION_COMMIT,
        from_transaction_check: true,
        msg_id: check.msg_id.clone().unwrap_or_default(),
        transaction_id: check.transaction_id.clone(),
    };
    // Oneway, as the Rust client sends it.
    producer.send(
        RemotingCommand::request(request::END_TRANSACTION)
            .with_header(&header)
            .with_oneway(),
    );
    assert!(
        eventually(Duration::from_secs(10), || bodies(&mut producer, &topic)
            == vec!["plain", "checked"]),
        "committed message never appeared"
    );
}

#[test]
fn unanswered_transactions_are_rolled_back_after_the_max_checks() {
    let c = Cluster::start(&[
        "--set",
        "transaction_timeout_ms=100",
        "--set",
        "transaction_check_interval_ms=100",
        "--set",
        "transaction_check_max=2",
    ]);
    let topic = unique_name("TxGiveUp");
    let group = unique_name("pg_giveup");
    let mut producer = c.connect_broker();
    send_ok(
        &mut producer,
        &OutMessage {
            topic: &topic,
            queue_id: 0,
            body: b"plain",
            ..Default::default()
        },
    );
    register_producer(&mut producer, &group);
    let sent = send_prepared(&mut producer, &topic, &group, "never");
    wait_check(&mut producer);
    wait_check(&mut producer);
    // After two unanswered checks it is rolled back: a late commit changes nothing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        end(&mut producer, &group, &sent, sys_flag::TRANSACTION_COMMIT),
        response::SUCCESS
    );
    assert_eq!(bodies(&mut producer, &topic), vec!["plain"]);
}
