//! The real nameserver binary, driven over TCP.

use e2e::{eventually, register_broker_request, NameServerProcess, RemotingClient};
use protocol::body::{ClusterInfo, KvTable, TopicList, TopicRouteData};
use protocol::code::{request, response};
use protocol::header::*;
use protocol::{RemotingCommand, SerializeType};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn route_request(topic: &str, version: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: None,
        },
    );
    cmd.version = version;
    cmd
}

#[test]
fn registered_topics_route_and_unknown_topics_do_not() {
    let ns = NameServerProcess::start(&[]);
    let mut broker = ns.connect();
    let reg = broker.invoke(register_broker_request(
        "DefaultCluster",
        "broker-a",
        "127.0.0.1:10911",
        0,
        &[("TopicTest", 4), ("TBW102", 8)],
        1,
    ));
    assert_eq!(reg.code, response::SUCCESS, "{reg:?}");

    let mut client = ns.connect();
    let missing = client.invoke(route_request("NoSuchTopic", 479));
    assert_eq!(missing.code, response::TOPIC_NOT_EXIST);
    assert!(missing.remark.unwrap().contains("NoSuchTopic"));

    let found = client.invoke(route_request("TopicTest", 479));
    assert_eq!(found.code, response::SUCCESS);
    let text = std::str::from_utf8(&found.body).unwrap();
    serde_json::from_str::<serde_json::Value>(text).expect("new clients get strict JSON");
    let route: TopicRouteData = protocol::json::from_slice(&found.body).unwrap();
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(route.broker_datas[0].broker_addrs[&0], "127.0.0.1:10911");
    assert_eq!(route.broker_datas[0].cluster, "DefaultCluster");

    // A client older than 4.9.4 gets fastjson's dialect unless it asks otherwise.
    let old = client.invoke(route_request("TopicTest", 300));
    assert!(std::str::from_utf8(&old.body)
        .unwrap()
        .contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#));
    let mut asks = route_request("TopicTest", 300);
    asks.ext_fields.insert("acceptStandardJsonOnly", "true");
    let std_old = client.invoke(asks);
    assert!(std::str::from_utf8(&std_old.body)
        .unwrap()
        .contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#));
}

#[test]
fn brokers_expire_after_the_configured_timeout() {
    let dir = e2e::TempDir::new("expiry");
    let config = dir.0.join("ns.toml");
    std::fs::write(
        &config,
        "broker_expiry_ms = 1500\nscan_not_active_broker_interval_ms = 100\n",
    )
    .unwrap();
    let ns = NameServerProcess::start(&["--config", config.to_str().unwrap()]);
    // Keep the broker's connection open: closing it would unregister at once.
    let mut broker = ns.connect();
    let registered = Instant::now();
    assert_eq!(
        broker
            .invoke(register_broker_request(
                "C",
                "b",
                "127.0.0.1:20911",
                0,
                &[("T1", 2), ("T2", 2)],
                1
            ))
            .code,
        0
    );
    let mut client = ns.connect();
    assert_eq!(
        client.invoke(route_request("T1", 479)).code,
        response::SUCCESS
    );
    let expired = eventually(Duration::from_secs(10), || {
        client.invoke(route_request("T1", 479)).code == response::TOPIC_NOT_EXIST
    });
    assert!(expired, "broker never expired");
    assert!(
        registered.elapsed() >= Duration::from_millis(1500),
        "expired early, after {:?}",
        registered.elapsed()
    );
    let cluster: ClusterInfo = protocol::json::from_slice(
        &client
            .invoke(RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO))
            .body,
    )
    .unwrap();
    assert!(cluster.broker_addr_table.is_empty());

    // A broker that keeps registering stays.
    let mut broker = ns.connect();
    for i in 0..6 {
        assert_eq!(
            broker
                .invoke(register_broker_request(
                    "C",
                    "b",
                    "127.0.0.1:20911",
                    0,
                    &[("T1", 2), ("T2", 2)],
                    2 + i
                ))
                .code,
            0
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        client.invoke(route_request("T1", 479)).code,
        response::SUCCESS
    );
}

#[test]
fn closing_the_broker_connection_unregisters_it() {
    let ns = NameServerProcess::start(&[]);
    let mut broker = ns.connect();
    assert_eq!(
        broker
            .invoke(register_broker_request(
                "C",
                "b",
                "127.0.0.1:30911",
                0,
                &[("T", 4), ("U", 4)],
                1
            ))
            .code,
        0
    );
    let mut client = ns.connect();
    assert_eq!(
        client.invoke(route_request("T", 479)).code,
        response::SUCCESS
    );
    drop(broker);
    assert!(eventually(Duration::from_secs(5), || client
        .invoke(route_request("T", 479))
        .code
        == response::TOPIC_NOT_EXIST));
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let mut ns = NameServerProcess::start(&[]);
    let mut good = ns.connect();
    for garbage in [
        &b"\xff\xff\xff\xff"[..],                                 // negative length
        &b"\x7f\xff\xff\xff"[..],                                 // 2 GiB frame
        &b"\x00\x00\x00\x08\x00\x00\x10\x00\x00\x00\x00\x00"[..], // header longer than frame
        &b"\x00\x00\x00\x06\x00\x00\x00\x02{x"[..],               // bad JSON header
        &b"\x00\x00\x00\x06\x05\x00\x00\x02{}"[..],               // unknown serialize type
    ] {
        let mut bad = ns.connect();
        bad.stream.write_all(garbage).unwrap();
        let mut rest = Vec::new();
        let n = bad.stream.read_to_end(&mut rest).unwrap_or(0);
        assert_eq!(
            n, 0,
            "the server closed the bad connection without answering"
        );
    }
    assert!(ns.is_alive());
    assert_eq!(
        good.invoke(route_request("T", 479)).code,
        response::TOPIC_NOT_EXIST
    );
}

#[test]
fn pipelined_requests_are_all_answered() {
    let ns = NameServerProcess::start(&[]);
    let mut c = ns.connect();
    c.invoke(register_broker_request(
        "C",
        "b",
        "127.0.0.1:40911",
        0,
        &[("T", 4), ("U", 4)],
        1,
    ));
    let sent: Vec<i32> = (0..200)
        .map(|i| c.send(route_request(if i % 2 == 0 { "T" } else { "X" }, 479)))
        .collect();
    let mut got = Vec::new();
    for _ in &sent {
        let r = c.receive().expect("response");
        let expected = if (r.opaque - sent[0]) % 2 == 0 {
            response::SUCCESS
        } else {
            response::TOPIC_NOT_EXIST
        };
        assert_eq!(r.code, expected, "opaque {}", r.opaque);
        got.push(r.opaque);
    }
    got.sort_unstable();
    assert_eq!(got, sent);
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let dir = e2e::TempDir::new("hog");
    let config = dir.0.join("ns.toml");
    std::fs::write(&config, "idle_timeout_ms = 1500\n").unwrap();
    let ns = NameServerProcess::start(&["--config", config.to_str().unwrap()]);
    let mut c = ns.connect();
    c.invoke(register_broker_request(
        "C",
        "b",
        "127.0.0.1:50911",
        0,
        &[("T", 4), ("U", 4)],
        1,
    ));
    // Flood requests without reading a single answer until the socket pushes back.
    let mut hog = ns.connect();
    hog.stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let frame = route_request("T", 479).encode().unwrap();
    let mut flood = Vec::new();
    for _ in 0..2000 {
        flood.extend_from_slice(&frame);
    }
    let mut blocked = false;
    for _ in 0..200 {
        if hog.stream.write_all(&flood).is_err() {
            blocked = true;
            break;
        }
    }
    assert!(
        blocked,
        "the server kept reading a client that never reads its answers"
    );
    let mut other = ns.connect();
    // The first broker connection may have idled out meanwhile: register again.
    other.invoke(register_broker_request(
        "C",
        "b",
        "127.0.0.1:50911",
        0,
        &[("T", 4), ("U", 4)],
        2,
    ));
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            other.invoke(route_request("T", 479)).code,
            response::SUCCESS
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "other clients stalled: {:?}",
        start.elapsed()
    );
}

#[test]
fn binary_headers_get_binary_answers() {
    let ns = NameServerProcess::start(&[]);
    let mut c = ns.connect();
    c.invoke(register_broker_request(
        "C",
        "b",
        "127.0.0.1:60911",
        0,
        &[("T", 4), ("U", 4)],
        1,
    ));
    let r = c.invoke(route_request("T", 479).with_serialize_type(SerializeType::RocketMq));
    assert_eq!(r.serialize_type, SerializeType::RocketMq);
    assert_eq!(r.code, response::SUCCESS);
    let route: TopicRouteData = protocol::json::from_slice(&r.body).unwrap();
    assert_eq!(route.queue_datas[0].read_queue_nums, 4);
    let missing = c.invoke(route_request("Nope", 479).with_serialize_type(SerializeType::RocketMq));
    assert_eq!(missing.code, response::TOPIC_NOT_EXIST);
    assert!(missing.remark.is_some());
}

#[test]
fn unknown_codes_are_not_supported() {
    let ns = NameServerProcess::start(&[]);
    let mut c = ns.connect();
    let r = c.invoke(RemotingCommand::request(request::SEND_MESSAGE));
    assert_eq!(r.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(r.remark.as_deref(), Some(" request type 10 not supported"));
}

#[test]
fn kv_config_survives_a_restart() {
    let ns = NameServerProcess::start(&[]);
    let mut c = ns.connect();
    let put =
        RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&PutKvConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
            value: "broker-a:4".into(),
        });
    assert_eq!(c.invoke(put).code, response::SUCCESS);
    let dir = ns.stop();
    let ns = NameServerProcess::start_in(dir, &[]);
    let mut c = ns.connect();
    let get =
        RemotingCommand::request(request::GET_KV_CONFIG).with_header(&KvConfigKeyRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
        });
    let r = c.invoke(get);
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(
        r.header::<GetKvConfigResponseHeader>()
            .unwrap()
            .value
            .as_deref(),
        Some("broker-a:4")
    );
    let list = c.invoke(
        RemotingCommand::request(request::GET_KVLIST_BY_NAMESPACE).with_header(
            &GetKvListByNamespaceRequestHeader {
                namespace: "ORDER_TOPIC_CONFIG".into(),
            },
        ),
    );
    let table: KvTable = protocol::json::from_slice(&list.body).unwrap();
    assert_eq!(table.table["T"], "broker-a:4");
    // Registering brokers get the order config back.
    let reg = c.invoke(register_broker_request(
        "C",
        "broker-a",
        "127.0.0.1:10911",
        0,
        &[("T", 4), ("U", 4)],
        1,
    ));
    let table: KvTable = protocol::json::from_slice(&reg.body).unwrap();
    assert_eq!(table.table["T"], "broker-a:4");
    let del = RemotingCommand::request(request::DELETE_KV_CONFIG).with_header(
        &KvConfigKeyRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
        },
    );
    assert_eq!(c.invoke(del).code, response::SUCCESS);
    let get =
        RemotingCommand::request(request::GET_KV_CONFIG).with_header(&KvConfigKeyRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
        });
    assert_eq!(c.invoke(get).code, response::QUERY_NOT_FOUND);
}

#[test]
fn admin_codes_mqadmin_uses() {
    let ns = NameServerProcess::start(&[]);
    let mut c = ns.connect();
    c.invoke(register_broker_request(
        "DefaultCluster",
        "broker-a",
        "127.0.0.1:10911",
        0,
        &[("T", 4), ("U", 4)],
        1,
    ));
    c.invoke(register_broker_request(
        "DefaultCluster",
        "broker-a",
        "127.0.0.1:10921",
        1,
        &[("T", 4), ("U", 4)],
        1,
    ));
    c.invoke(register_broker_request(
        "Other",
        "broker-b",
        "127.0.0.1:10931",
        0,
        &[("U", 2), ("V", 2)],
        1,
    ));

    let cluster: ClusterInfo = protocol::json::from_slice(
        &c.invoke(RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO))
            .body,
    )
    .unwrap();
    assert_eq!(cluster.broker_addr_table["broker-a"].broker_addrs.len(), 2);
    assert_eq!(
        cluster.cluster_addr_table["Other"]
            .iter()
            .collect::<Vec<_>>(),
        vec!["broker-b"]
    );

    let all: TopicList = protocol::json::from_slice(
        &c.invoke(RemotingCommand::request(
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        ))
        .body,
    )
    .unwrap();
    assert_eq!(
        all.topic_list
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        vec!["T", "U", "V"]
    );

    let by_cluster = c.invoke(
        RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER).with_header(
            &GetTopicsByClusterRequestHeader {
                cluster: "Other".into(),
            },
        ),
    );
    let by_cluster: TopicList = protocol::json::from_slice(&by_cluster.body).unwrap();
    assert_eq!(
        by_cluster
            .topic_list
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        vec!["U", "V"]
    );

    let wipe = c.invoke(
        RemotingCommand::request(request::WIPE_WRITE_PERM_OF_BROKER).with_header(
            &BrokerNameRequestHeader {
                broker_name: "broker-a".into(),
            },
        ),
    );
    assert_eq!(
        wipe.header::<WipeWritePermOfBrokerResponseHeader>()
            .unwrap()
            .wipe_topic_count,
        2
    );
    let route: TopicRouteData =
        protocol::json::from_slice(&c.invoke(route_request("T", 479)).body).unwrap();
    assert_eq!(route.queue_datas[0].perm, 4);
    let add = c.invoke(
        RemotingCommand::request(request::ADD_WRITE_PERM_OF_BROKER).with_header(
            &BrokerNameRequestHeader {
                broker_name: "broker-a".into(),
            },
        ),
    );
    assert_eq!(
        add.header::<AddWritePermOfBrokerResponseHeader>()
            .unwrap()
            .add_topic_count,
        2
    );

    let config = c.invoke(RemotingCommand::request(request::GET_NAMESRV_CONFIG));
    let props = protocol::body::parse_properties(std::str::from_utf8(&config.body).unwrap());
    assert_eq!(props["scanNotActiveBrokerInterval"], "5000");
    let update = c.invoke(
        RemotingCommand::request(request::UPDATE_NAMESRV_CONFIG)
            .with_body(&b"kvConfigPath=/etc/x\n"[..]),
    );
    assert_eq!(update.code, response::NO_PERMISSION);
    let update = c.invoke(
        RemotingCommand::request(request::UPDATE_NAMESRV_CONFIG)
            .with_body(&b"enableTopicList=false\n"[..]),
    );
    assert_eq!(update.code, response::SUCCESS);
    let disabled = c.invoke(
        RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER).with_header(
            &GetTopicsByClusterRequestHeader {
                cluster: "Other".into(),
            },
        ),
    );
    assert_eq!(
        (disabled.code, disabled.remark.as_deref()),
        (response::SYSTEM_ERROR, Some("disable"))
    );

    let del = c.invoke(
        RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_header(
            &DeleteTopicFromNamesrvRequestHeader {
                topic: "U".into(),
                cluster_name: Some("Other".into()),
            },
        ),
    );
    assert_eq!(del.code, response::SUCCESS);
    let route: TopicRouteData =
        protocol::json::from_slice(&c.invoke(route_request("U", 479)).body).unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, "broker-a");
}

#[test]
fn http_endpoint_serves_the_address_list() {
    let ns = NameServerProcess::start(&["--http-listen", "127.0.0.1:0"]);
    let http = ns.http.expect("http address in the status line");
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.write_all(b"GET /rocketmq/nsaddr HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.ends_with(&format!("\r\n\r\n{}", ns.addr)),
        "{answer}"
    );
    // The advertised address really is a nameserver.
    let addr: std::net::SocketAddr = answer.rsplit("\r\n\r\n").next().unwrap().parse().unwrap();
    let mut c = RemotingClient::connect(addr);
    assert_eq!(
        c.invoke(route_request("T", 479)).code,
        response::TOPIC_NOT_EXIST
    );
}
