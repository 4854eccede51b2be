//! SQL92 property filters evaluated on the broker, and CHECK_CLIENT_CONFIG's answers.

use e2e::*;
use protocol::body::{CheckClientRequestBody, SubscriptionData};
use protocol::code::{request, response};
use protocol::json::{self, JsonStyle};
use protocol::RemotingCommand;

fn pull_sql(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    expression: &str,
) -> (RemotingCommand, Vec<String>) {
    let mut req = pull_request(group, topic, 0, 0, 32, expression, None);
    req.ext_fields.insert("expressionType", "SQL92");
    let resp = client.call(req);
    let bodies = if resp.code == response::SUCCESS {
        decode_records(&resp.body)
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    } else {
        Vec::new()
    };
    (resp, bodies)
}

fn check_config(client: &mut RemotingClient, kind: &str, expression: &str) -> RemotingCommand {
    let body = CheckClientRequestBody {
        client_id: "c1".into(),
        group: "g".into(),
        subscription_data: SubscriptionData {
            topic: "T".into(),
            sub_string: expression.into(),
            expression_type: Some(kind.into()),
            ..Default::default()
        },
    };
    client.call(
        RemotingCommand::request(request::CHECK_CLIENT_CONFIG).with_body(json::to_vec(
            &body,
            JsonStyle::Standard,
            &[],
        )),
    )
}

#[test]
fn sql92_subscriptions_select_by_properties() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    let topic = unique_name("Sql");
    let messages = [
        ("m1", "TagA", [("region", "eu"), ("price", "10")]),
        ("m2", "TagB", [("region", "us"), ("price", "25")]),
        ("m3", "TagA", [("region", "us"), ("price", "5")]),
        ("m4", "TagC", [("region", "apac"), ("price", "100")]),
    ];
    for (body, tag, props) in &messages {
        send_ok(
            &mut client,
            &OutMessage {
                topic: &topic,
                queue_id: 0,
                body: body.as_bytes(),
                tags: Some(tag),
                properties: props,
                ..Default::default()
            },
        );
    }
    let group = unique_name("g_sql");
    let cases: [(&str, &[&str]); 6] = [
        ("region = 'us'", &["m2", "m3"]),
        ("price > 8 AND price <= 25", &["m1", "m2"]),
        (
            "region IN ('eu', 'apac') OR TAGS = 'TagB'",
            &["m1", "m2", "m4"],
        ),
        ("price BETWEEN 5 AND 10", &["m1", "m3"]),
        (
            "missing IS NULL AND NOT (region = 'eu')",
            &["m2", "m3", "m4"],
        ),
        ("TRUE", &["m1", "m2", "m3", "m4"]),
    ];
    for (expression, expected) in cases {
        let (resp, got) = pull_sql(&mut client, &group, &topic, expression);
        assert_eq!(resp.code, response::SUCCESS, "{expression}: {resp:?}");
        assert_eq!(got, expected, "{expression}");
        assert_eq!(
            pull_header(&resp).next_begin_offset,
            4,
            "{expression}: the scan covers the queue"
        );
    }
    // Nothing matches: the pull moves on (PULL_RETRY_IMMEDIATELY past what it scanned).
    let (resp, _) = pull_sql(&mut client, &group, &topic, "region = 'mars'");
    assert_eq!(resp.code, response::PULL_RETRY_IMMEDIATELY, "{resp:?}");
    assert_eq!(pull_header(&resp).next_begin_offset, 4);
    // A broken expression is refused with RocketMQ's code.
    let (resp, _) = pull_sql(&mut client, &group, &topic, "region = ");
    assert_eq!(resp.code, response::SUBSCRIPTION_PARSE_FAILED, "{resp:?}");
}

#[test]
fn check_client_config_accepts_valid_filters_only() {
    let c = Cluster::start(&[]);
    let mut client = c.connect_broker();
    assert_eq!(
        check_config(&mut client, "TAG", "a || b").code,
        response::SUCCESS
    );
    assert_eq!(
        check_config(&mut client, "SQL92", "a > 1 AND b IS NOT NULL").code,
        response::SUCCESS
    );
    let bad = check_config(&mut client, "SQL92", "a > > 1");
    assert_eq!(bad.code, response::SUBSCRIPTION_PARSE_FAILED, "{bad:?}");
    assert!(bad.remark.unwrap_or_default().contains("a > > 1"));
    assert_eq!(
        check_config(&mut client, "XPATH", "/a").code,
        response::SYSTEM_ERROR
    );
}
