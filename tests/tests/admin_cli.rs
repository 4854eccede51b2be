//! The `rmqadmin` binary against the real nameserver and broker: every sub-command at
//! least once, its output (mostly through `--json`) and its exit code
//! (0 success, 1 the server answered an error, 2 usage, 3 unreachable).

use e2e::*;
use protocol::code::request;
use protocol::RemotingCommand;
use serde_json::Value;
use std::time::Duration;

/// Generous deadline for anything asynchronous (registration, index building).
const EVENTUALLY: Duration = Duration::from_secs(30);

/// Runs a command that must succeed; returns its `--json` output.
fn ok_json(ns: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = rmqadmin(Some(ns), &all);
    assert_eq!(
        run.code,
        Some(0),
        "rmqadmin {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run.json()
}

/// Runs a command that must succeed; returns its text output.
fn ok_text(ns: &str, args: &[&str]) -> String {
    let run = rmqadmin(Some(ns), args);
    assert_eq!(
        run.code,
        Some(0),
        "rmqadmin {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Runs a command that must fail with `code`; returns the run.
fn fails(ns: &str, args: &[&str], code: i32) -> AdminRun {
    let run = rmqadmin(Some(ns), args);
    assert_eq!(
        run.code,
        Some(code),
        "rmqadmin {args:?}: expected exit {code}:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// Retries a `--json` command until `check` accepts its output.
fn eventually_json(ns: &str, args: &[&str], mut check: impl FnMut(&Value) -> bool) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let mut last = None;
    let ok = eventually(EVENTUALLY, || {
        let run = rmqadmin(Some(ns), &all);
        let pass = run.code == Some(0) && check(&run.json());
        last = Some(run);
        pass
    });
    let last = last.expect("ran at least once");
    assert!(
        ok,
        "rmqadmin {args:?} never satisfied the check:\nstdout:\n{}\nstderr:\n{}",
        last.stdout, last.stderr
    );
    last.json()
}

fn queue(queues: &Value, queue_id: i64) -> &Value {
    queues
        .as_array()
        .expect("queues array")
        .iter()
        .find(|q| q["queueId"] == queue_id)
        .unwrap_or_else(|| panic!("queue {queue_id} missing in {queues}"))
}

/// Every sub-command against one nameserver and one broker, in the order an operator
/// would use them: cluster, topic, messages, groups, configs, then clean-up.
#[test]
fn every_command_against_a_real_cluster() {
    let cluster = Cluster::start(&[]);
    let ns = cluster.namesrv();
    let ns = ns.as_str();
    let broker_addr = cluster.broker_addr().to_string();

    // clusterList: the broker, with its runtime figures.
    let clusters = eventually_json(ns, &["clusterList"], |v| {
        v["brokers"].as_array().is_some_and(|b| !b.is_empty())
    });
    let b = &clusters["brokers"][0];
    assert_eq!(b["addr"], broker_addr.as_str());
    assert_eq!(b["brokerId"], 0);
    assert_eq!(b["runtime"]["brokerVersionDesc"], "V5_3_3");
    let cluster_name = b["cluster"].as_str().expect("cluster name").to_owned();
    let broker_name = b["brokerName"].as_str().expect("broker name").to_owned();
    let text = ok_text(ns, &["clusterList"]);
    assert!(text.starts_with("#Cluster Name"), "{text}");
    assert!(text.contains(&broker_addr), "{text}");

    // updateTopic on the cluster, then its route, lists and cluster.
    let topic = unique_name("AdminCliTopic");
    let t = topic.as_str();
    let text = ok_text(
        ns,
        &[
            "updateTopic",
            "-t",
            t,
            "-c",
            &cluster_name,
            "-r",
            "4",
            "-w",
            "4",
        ],
    );
    assert!(
        text.contains(&format!("create topic to {broker_addr} success.")),
        "{text}"
    );
    let route = eventually_json(ns, &["topicRoute", "-t", t], |_| true);
    assert_eq!(route["queueDatas"][0]["readQueueNums"], 4);
    assert_eq!(route["queueDatas"][0]["perm"], 6);
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        broker_addr.as_str()
    );
    let text = ok_text(ns, &["topicRoute", "-t", t, "-l"]);
    assert!(text.contains(&broker_name), "{text}");
    let list = ok_json(ns, &["topicList"]);
    assert!(
        list["topics"].as_array().unwrap().iter().any(|x| x == t),
        "{list}"
    );
    let list = ok_json(ns, &["topicList", "-c", &cluster_name]);
    assert!(
        list["topics"].as_array().unwrap().iter().any(|x| x == t),
        "{list}"
    );
    let clusters = ok_json(ns, &["topicClusterList", "-t", t]);
    assert_eq!(clusters["clusters"], serde_json::json!([cluster_name]));

    // sendMessage: three messages to queue 1.
    let mut sent = Vec::new();
    for i in 0..3 {
        let body = format!("body-{i}");
        let keys = format!("key-{i} shared");
        let r = ok_json(
            ns,
            &[
                "sendMessage",
                "-t",
                t,
                "-p",
                &body,
                "-k",
                &keys,
                "-c",
                "TagA",
                "-b",
                &broker_name,
                "-i",
                "1",
            ],
        );
        assert_eq!(r["sendStatus"], "SEND_OK");
        assert_eq!(r["queueId"], 1);
        assert_eq!(r["queueOffset"], i);
        sent.push(r);
    }
    let text = ok_text(
        ns,
        &[
            "sendMessage",
            "-t",
            t,
            "-p",
            "tagged-b",
            "-c",
            "TagB",
            "-b",
            &broker_name,
            "-i",
            "2",
        ],
    );
    assert!(text.contains("SEND_OK"), "{text}");

    // topicStatus: per-queue offsets.
    let status = ok_json(ns, &["topicStatus", "-t", t]);
    assert_eq!(status["queues"].as_array().unwrap().len(), 4, "{status}");
    assert_eq!(queue(&status["queues"], 1)["maxOffset"], 3);
    assert_eq!(queue(&status["queues"], 2)["maxOffset"], 1);
    assert_eq!(queue(&status["queues"], 0)["maxOffset"], 0);
    assert!(
        queue(&status["queues"], 1)["lastUpdateTimestamp"]
            .as_i64()
            .unwrap()
            > 0
    );

    // queryMsgById (offset msgId), queryMsgByUniqueKey, queryMsgByKey, queryMsgByOffset.
    let offset_id = sent[0]["offsetMsgId"].as_str().unwrap();
    let found = ok_json(ns, &["queryMsgById", "-i", offset_id]);
    assert_eq!(found["messages"][0]["body"], "body-0");
    assert_eq!(found["messages"][0]["topic"], t);
    assert_eq!(found["messages"][0]["tags"], "TagA");
    let text = ok_text(ns, &["queryMsgById", "-i", offset_id]);
    assert!(text.contains("Body:               body-0"), "{text}");
    let uniq = sent[1]["msgId"].as_str().unwrap();
    let found = eventually_json(ns, &["queryMsgByUniqueKey", "-t", t, "-i", uniq], |_| true);
    assert_eq!(found["messages"][0]["body"], "body-1");
    assert_eq!(found["messages"][0]["msgId"], uniq);
    let found = eventually_json(ns, &["queryMsgByKey", "-t", t, "-k", "shared"], |v| {
        v["messages"].as_array().is_some_and(|m| m.len() == 3)
    });
    let mut bodies: Vec<&str> = found["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["body-0", "body-1", "body-2"]);
    let text = ok_text(ns, &["queryMsgByKey", "-t", t, "-k", "key-2"]);
    assert!(text.contains(sent[2]["msgId"].as_str().unwrap()), "{text}");
    let run = fails(ns, &["queryMsgByKey", "-t", t, "-k", "no-such-key"], 1);
    assert!(run.stderr.contains("QUERY_NOT_FOUND"), "{}", run.stderr);
    let at = ok_json(
        ns,
        &[
            "queryMsgByOffset",
            "-t",
            t,
            "-b",
            &broker_name,
            "-i",
            "1",
            "-o",
            "2",
        ],
    );
    assert_eq!(at["messages"][0]["body"], "body-2");
    assert_eq!(at["messages"][0]["queueOffset"], 2);
    fails(
        ns,
        &[
            "queryMsgByOffset",
            "-t",
            t,
            "-b",
            &broker_name,
            "-i",
            "1",
            "-o",
            "50",
        ],
        1,
    );

    // printMsg: everything, then a tag filter; consumeMessage from an offset.
    let printed = ok_json(ns, &["printMsg", "-t", t]);
    assert_eq!(
        printed["messages"].as_array().unwrap().len(),
        4,
        "{printed}"
    );
    let printed = ok_json(ns, &["printMsg", "-t", t, "-s", "TagB"]);
    let msgs = printed["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "{printed}");
    assert_eq!(msgs[0]["body"], "tagged-b");
    let text = ok_text(ns, &["printMsg", "-t", t]);
    assert!(text.contains("BODY: body-0"), "{text}");
    let consumed = ok_json(
        ns,
        &[
            "consumeMessage",
            "-t",
            t,
            "-b",
            &broker_name,
            "-i",
            "1",
            "-o",
            "1",
            "-c",
            "1",
        ],
    );
    assert_eq!(consumed["count"], 1);
    assert_eq!(consumed["messages"][0]["queueOffset"], 1);
    assert_eq!(consumed["messages"][0]["body"], "body-1");
    let consumed = ok_json(ns, &["consumeMessage", "-t", t, "-c", "100"]);
    assert_eq!(consumed["count"], 4);

    // updateSubGroup, consumerProgress, resetOffsetByTime.
    let group = unique_name("AdminCliGroup");
    let g = group.as_str();
    let text = ok_text(
        ns,
        &["updateSubGroup", "-g", g, "-c", &cluster_name, "-r", "5"],
    );
    assert!(text.contains("success"), "{text}");
    let mut broker = cluster.connect_broker();
    let groups = broker.call(RemotingCommand::request(
        request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    ));
    let groups: Value = serde_json::from_slice(&groups.body).expect("groups JSON");
    assert_eq!(groups["subscriptionGroupTable"][g]["retryMaxTimes"], 5);
    let progress = ok_json(ns, &["consumerProgress", "-g", g, "-t", t]);
    assert_eq!(progress["diffTotal"], 4, "{progress}");
    assert_eq!(queue(&progress["queues"], 1)["brokerOffset"], 3);
    let resp = update_offset(&mut broker, g, t, 1, 2);
    assert_eq!(resp.code, 0, "{resp:?}");
    let progress = ok_json(ns, &["consumerProgress", "-g", g, "-t", t]);
    assert_eq!(progress["diffTotal"], 2, "{progress}");
    assert_eq!(queue(&progress["queues"], 1)["consumerOffset"], 2);
    let progress = ok_json(ns, &["consumerProgress", "-g", g]);
    assert_eq!(queue(&progress["queues"], 1)["consumerOffset"], 2);
    let text = ok_text(ns, &["consumerProgress", "-g", g, "-t", t]);
    assert!(text.contains("Consume Diff Total: 2"), "{text}");
    let reset = ok_json(ns, &["resetOffsetByTime", "-g", g, "-t", t, "-s", "0"]);
    assert_eq!(queue(&reset["queues"], 1)["newOffset"], 0, "{reset}");
    let progress = ok_json(ns, &["consumerProgress", "-g", g, "-t", t]);
    assert_eq!(
        queue(&progress["queues"], 1)["consumerOffset"],
        0,
        "{progress}"
    );
    let reset = ok_json(ns, &["resetOffsetByTime", "-g", g, "-t", t, "-s", "now"]);
    assert_eq!(queue(&reset["queues"], 1)["newOffset"], 3, "{reset}");
    fails(
        ns,
        &["resetOffsetByTime", "-g", g, "-t", t, "-s", "yesterday"],
        2,
    );

    // consumerConnection / producerConnection: offline first, then with a live client.
    let run = fails(ns, &["consumerConnection", "-g", g], 1);
    assert!(run.stderr.contains("CONSUMER_NOT_ONLINE"), "{}", run.stderr);
    let producer_group = unique_name("AdminCliProducer");
    let mut live = cluster.connect_broker();
    let resp = live.call(heartbeat(
        "admin-cli-client@1",
        Some(&producer_group),
        Some((g, t, "TagA || TagB")),
    ));
    assert_eq!(resp.code, 0, "{resp:?}");
    let conn = ok_json(ns, &["consumerConnection", "-g", g]);
    assert_eq!(conn["connections"][0]["clientId"], "admin-cli-client@1");
    assert_eq!(conn["subscriptions"][0]["topic"], t);
    assert_eq!(conn["subscriptions"][0]["subString"], "TagA || TagB");
    assert_eq!(conn["messageModel"], "CLUSTERING");
    let text = ok_text(ns, &["consumerConnection", "-g", g]);
    assert!(
        text.contains("admin-cli-client@1") && text.contains("ConsumeType: CONSUME_PASSIVELY"),
        "{text}"
    );
    let conn = ok_json(ns, &["producerConnection", "-g", &producer_group, "-t", t]);
    assert_eq!(conn["connections"][0]["clientId"], "admin-cli-client@1");
    fails(
        ns,
        &[
            "producerConnection",
            "-g",
            "no-such-producer-group",
            "-t",
            t,
        ],
        1,
    );
    // Every group with a retry topic (created by the heartbeat) is summarised.
    let all = eventually_json(ns, &["consumerProgress"], |v| {
        v["groups"]
            .as_array()
            .is_some_and(|gs| gs.iter().any(|x| x["group"] == g))
    });
    let mine = all["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["group"] == g)
        .unwrap();
    assert_eq!(mine["count"], 1, "{all}");

    // statsAll: stored and written counts of the topic.
    let stats = ok_json(ns, &["statsAll", "-t", t]);
    assert_eq!(stats["topics"][0]["written"], 4, "{stats}");
    assert_eq!(stats["topics"][0]["stored"], 4, "{stats}");
    let stats = ok_json(ns, &["statsAll", "-a"]);
    assert!(
        stats["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["topic"] == t),
        "{stats}"
    );

    // brokerStatus, getBrokerConfig, updateBrokerConfig.
    let status = ok_json(ns, &["brokerStatus", "-b", &broker_addr]);
    assert_eq!(status["brokers"][0]["ok"], true);
    assert!(
        status["brokers"][0]["result"]["msgPutTotalTodayNow"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            >= 4
    );
    let text = ok_text(ns, &["brokerStatus", "-c", &cluster_name]);
    assert!(text.contains("brokerVersionDesc"), "{text}");
    let config = ok_json(ns, &["getBrokerConfig", "-b", &broker_addr]);
    assert!(
        config["brokers"][0]["result"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "{config}"
    );
    let text = ok_text(ns, &["getBrokerConfig", "-c", &cluster_name]);
    assert!(
        text.starts_with(&format!("============{broker_addr}============")),
        "{text}"
    );
    fails(ns, &["brokerStatus"], 2);
    // A key the broker refuses at runtime: the server's error, exit 1.
    let run = fails(
        ns,
        &[
            "updateBrokerConfig",
            "-b",
            &broker_addr,
            "-k",
            "noSuchRuntimeKey",
            "-v",
            "1",
        ],
        1,
    );
    assert!(
        run.stderr.contains("UPDATE_BROKER_CONFIG"),
        "{}",
        run.stderr
    );
    let run = rmqadmin(
        Some(ns),
        &[
            "updateBrokerConfig",
            "-b",
            &broker_addr,
            "-k",
            "noSuchRuntimeKey",
            "-v",
            "1",
            "--json",
        ],
    );
    assert_eq!(run.json()["brokers"][0]["ok"], false);
    assert!(run.json()["error"]["code"].as_i64().is_some_and(|c| c != 0));

    // Nameserver: getNamesrvConfig and the KV commands.
    let config = ok_json(ns, &["getNamesrvConfig"]);
    assert_eq!(config["nameservers"][0]["addr"], ns);
    assert!(
        config["nameservers"][0]["result"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "{config}"
    );
    ok_text(
        ns,
        &["updateKvConfig", "-s", "ADMIN_CLI", "-k", "k1", "-v", "v1"],
    );
    let kv = ok_json(ns, &["getKvConfig", "-s", "ADMIN_CLI", "-k", "k1"]);
    assert_eq!(kv["value"], "v1");
    ok_text(ns, &["deleteKvConfig", "-s", "ADMIN_CLI", "-k", "k1"]);
    let run = fails(
        ns,
        &["getKvConfig", "-s", "ADMIN_CLI", "-k", "k1", "--json"],
        1,
    );
    assert_eq!(run.json()["error"]["name"], "QUERY_NOT_FOUND");

    // updateTopicPerm: read-only, then sendMessage has nowhere to write.
    let text = ok_text(
        ns,
        &["updateTopicPerm", "-t", t, "-p", "4", "-c", &cluster_name],
    );
    assert!(text.contains("update topic perm from 6 to 4"), "{text}");
    eventually_json(ns, &["topicRoute", "-t", t], |r| {
        r["queueDatas"][0]["perm"] == 4
    });
    fails(ns, &["sendMessage", "-t", t, "-p", "x"], 1);
    fails(
        ns,
        &["updateTopicPerm", "-t", t, "-p", "5", "-c", &cluster_name],
        2,
    );

    // deleteSubGroup and deleteTopic; the topic is then unknown everywhere.
    let text = ok_text(
        ns,
        &["deleteSubGroup", "-g", g, "-c", &cluster_name, "-r", "true"],
    );
    assert!(text.contains("success"), "{text}");
    let deleted = ok_json(ns, &["deleteTopic", "-t", t, "-c", &cluster_name]);
    assert_eq!(deleted["brokers"][0]["ok"], true);
    assert_eq!(deleted["nameservers"][0]["ok"], true);
    let gone = eventually(EVENTUALLY, || {
        rmqadmin(Some(ns), &["topicRoute", "-t", t]).code == Some(1)
    });
    assert!(gone, "topic {t} still routed after deleteTopic");
    let run = fails(ns, &["topicRoute", "-t", t, "--json"], 1);
    assert_eq!(run.json()["error"]["name"], "TOPIC_NOT_EXIST");
    assert!(run.stderr.contains("TOPIC_NOT_EXIST"), "{}", run.stderr);
    let run = fails(ns, &["topicStatus", "-t", t], 1);
    assert!(run.stderr.contains("TOPIC_NOT_EXIST"), "{}", run.stderr);
    drop(live);
}

/// An address nothing listens on.
fn closed_port_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}

#[test]
fn unreachable_nameserver_exits_3_with_a_clear_message() {
    let addr = closed_port_addr();
    let run = rmqadmin(Some(&addr), &["topicList"]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "cannot reach nameserver {addr}: connection refused"
        )),
        "{}",
        run.stderr
    );
    let run = rmqadmin(Some(&addr), &["clusterList", "--json"]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert_eq!(run.json()["error"]["kind"], "unreachable");
    // The address comes from NAMESRV_ADDR when -n is not given.
    let mut cmd = std::process::Command::new(binary("rmqadmin"));
    cmd.env("NAMESRV_ADDR", &addr);
    let run = rmqadmin_with(cmd, &["topicRoute", "-t", "T"]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains(&addr), "{}", run.stderr);
}

#[test]
fn unreachable_broker_exits_3_and_usage_errors_exit_2() {
    let ns = NameServerProcess::start(&[]);
    let ns = ns.addr.to_string();
    let broker = closed_port_addr();
    let run = rmqadmin(Some(&ns), &["brokerStatus", "-b", &broker]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot reach broker {broker}")),
        "{}",
        run.stderr
    );
    for args in [
        &[][..],
        &["noSuchCommand"],
        &["updateTopic"],
        &["updateTopic", "-t", "T", "-c", "C", "-p", "9"],
        &["updateTopic", "-t", "bad topic", "-c", "C"],
        &["queryMsgById", "-i", "not-an-offset-id"],
        &["consumeMessage", "-t", "T", "-o", "3"],
    ] {
        let run = rmqadmin(Some(&ns), args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
    }
    let run = rmqadmin(Some(&ns), &["--help"]);
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.contains("updateTopic") && run.stdout.contains("consumerProgress"));
    // A nameserver with no brokers: an unknown topic is the server's error.
    let run = rmqadmin(Some(&ns), &["topicRoute", "-t", "Nope"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let run = rmqadmin(
        Some(&ns),
        &["updateTopic", "-t", "T", "-c", "NoSuchCluster"],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("NoSuchCluster"), "{}", run.stderr);
}

/// sendMessage to topics that do not exist yet: each is created from TBW102 with the
/// producer's default 4 queues, and the CLI picks only among those (as the Java
/// producer does), whatever queue count TBW102 has.
#[test]
fn send_message_creates_new_topics() {
    let c = Cluster::start(&[]);
    let ns = c.namesrv();
    for i in 0..12 {
        let topic = unique_name(&format!("CliNew{i}"));
        let run = rmqadmin(Some(&ns), &["sendMessage", "-t", &topic, "-p", "hello"]);
        assert_eq!(run.code, Some(0), "send {i} to a new topic: {run:?}");
    }
}
