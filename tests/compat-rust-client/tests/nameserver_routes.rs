//! The third-party `rocketmq-client-rust` client against our real nameserver process.

use e2e::{register_broker_request, NameServerProcess};
use rocketmq_client_rust::{
    ClientConfig, ClientInstanceHandle, ClientRuntime, ClientRuntimeConfig, DefaultMQProducer, TelemetryHandle,
};
use rocketmq_protocol::code::request_code::RequestCode;
use rocketmq_protocol::protocol::header::client_request_header::GetRouteInfoRequestHeader;
use rocketmq_protocol::protocol::remoting_command::RemotingCommand;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

static OWNER: LazyLock<RuntimeOwner> = LazyLock::new(|| {
    RuntimeOwner::plan(RuntimeConfig { thread_name: "compat".into(), worker_threads: 2, ..Default::default() })
        .expect("runtime plan")
        .build()
        .expect("runtime")
});

fn client_runtime(scope: &'static str) -> Arc<ClientRuntime> {
    ClientRuntime::try_new(OWNER.root_context().component(scope), ClientRuntimeConfig::default(), TelemetryHandle::noop())
        .expect("client runtime")
}

/// A nameserver with one registered broker (kept registered by its open connection).
fn cluster() -> (NameServerProcess, e2e::RemotingClient) {
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
    assert_eq!(reg.code, 0, "{reg:?}");
    (ns, broker)
}

/// Sends GET_ROUTEINFO_BY_TOPIC through the client's own transport, at a given client
/// version, and returns the response code and body.
async fn raw_route(rt: &Arc<ClientRuntime>, ns: &str, topic: &str, version: i32) -> (i32, Vec<u8>, String) {
    let config = ClientConfig::builder()
        .namesrv_addr(ns.to_string())
        .instance_name(format!("raw-{version}"))
        .build()
        .expect("client config");
    let handle = ClientInstanceHandle::get_or_create(rt, 2, config, None).expect("client instance");
    handle.start().await.expect("start");
    let request = RemotingCommand::create_request_command(
        RequestCode::GetRouteinfoByTopic,
        GetRouteInfoRequestHeader::new(topic, None),
    )
    .set_version(version);
    let response = handle.invoke_remoting(&ns.into(), request, 3_000).await.expect("invoke");
    handle.shutdown_owned().await;
    let body = response.get_body().map(|b| b.to_vec()).unwrap_or_default();
    (response.code(), body, response.remark().map(|r| r.to_string()).unwrap_or_default())
}

#[tokio::test]
async fn third_party_client_reads_routes_and_topic_not_exist() {
    let (ns, _broker) = cluster();
    let ns_addr = ns.addr.to_string();
    let rt = client_runtime("routes");
    tokio::time::timeout(Duration::from_secs(60), async {
        let config = ClientConfig::builder().namesrv_addr(ns_addr.clone()).build().expect("config");
        let handle = ClientInstanceHandle::get_or_create(&rt, 1, config, None).expect("instance");
        handle.start().await.expect("start");

        // Unknown topic: the client maps TOPIC_NOT_EXIST to "no route".
        let missing = handle.topic_route("NoSuchTopic", 3_000).await.expect("lookup of an unknown topic");
        assert!(missing.is_none(), "{missing:?}");

        let route = handle.topic_route("TopicTest", 3_000).await.expect("lookup").expect("a route");
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(route.queue_datas[0].perm, 6);
        assert_eq!(route.broker_datas[0].broker_name().as_str(), "broker-a");
        assert_eq!(route.broker_datas[0].broker_addrs().get(&0).map(|a| a.as_str()), Some("127.0.0.1:10911"));
        handle.shutdown_owned().await;

        // The raw response code for the unknown topic is 17.
        let (code, _, remark) = raw_route(&rt, &ns_addr, "NoSuchTopic", 479).await;
        assert_eq!(code, 17, "{remark}");
        assert!(remark.contains("NoSuchTopic"), "{remark}");
    })
    .await
    .expect("timed out");
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test]
async fn third_party_client_parses_standard_and_fastjson_bodies() {
    let (ns, _broker) = cluster();
    let ns_addr = ns.addr.to_string();
    let rt = client_runtime("dialects");
    tokio::time::timeout(Duration::from_secs(60), async {
        for (version, expect_fastjson) in [(479, false), (300, true)] {
            let (code, body, remark) = raw_route(&rt, &ns_addr, "TopicTest", version).await;
            assert_eq!(code, 0, "{remark}");
            let text = String::from_utf8(body.clone()).expect("UTF-8 body");
            assert_eq!(text.contains(r#""brokerAddrs":{0:"#), expect_fastjson, "version {version}: {text}");
            assert_eq!(text.contains(r#""brokerAddrs":{"0":"#), !expect_fastjson, "version {version}: {text}");
            let route = TopicRouteData::decode(&body).expect("the third-party client parses our body");
            assert_eq!(route.broker_datas[0].broker_addrs().get(&0).map(|a| a.as_str()), Some("127.0.0.1:10911"));
            assert_eq!(route.queue_datas[0].read_queue_nums, 4);
        }
    })
    .await
    .expect("timed out");
    assert!(rt.shutdown().await.is_healthy());
}

#[tokio::test]
async fn third_party_producer_sees_the_registered_queues() {
    let (ns, _broker) = cluster();
    let rt = client_runtime("producer");
    let mut producer =
        DefaultMQProducer::builder(rt.clone()).producer_group("compat_group").name_server_addr(ns.addr.to_string()).build();
    tokio::time::timeout(Duration::from_secs(60), async {
        producer.start().await.expect("producer start");
        let queues = producer.fetch_publish_message_queues("TopicTest").await.expect("queues");
        assert_eq!(queues.len(), 4);
        assert!(queues.iter().all(|q| q.broker_name().as_str() == "broker-a"));
        producer.shutdown().await;
    })
    .await
    .expect("timed out");
    assert!(rt.shutdown().await.is_healthy());
}
