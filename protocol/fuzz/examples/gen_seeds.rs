//! Writes the seed corpora in `seeds/frame` and `seeds/record` from the crate's own
//! encoders, so the seeds are valid by construction and easy to regenerate:
//!
//! ```sh
//! cd protocol/fuzz && cargo run --example gen_seeds -- seeds
//! ```

use std::net::SocketAddr;
use std::path::Path;

use protocol::code::request;
use protocol::message::record::{encode_batch_entry, RecordWriter, BLANK_MAGIC};
use protocol::message::{encode_offset_msg_id, encode_properties, property, sys_flag};
use protocol::{LanguageCode, RemotingCommand, SerializeType};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "seeds".to_owned());
    let frame = Path::new(&root).join("frame");
    let record = Path::new(&root).join("record");
    std::fs::create_dir_all(&frame).expect("mkdir");
    std::fs::create_dir_all(&record).expect("mkdir");

    // --- frame ---------------------------------------------------------------------
    // SEND_MESSAGE_V2 with a JSON header and the V2 single-letter fields.
    let props = encode_properties([(property::TAGS, "TagA"), (property::KEYS, "k1 k2")]);
    let mut send = RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_opaque(7)
        .with_body(&b"hello"[..]);
    for (k, v) in [
        ("a", "PG"),
        ("b", "TopicTest"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "1"),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", std::str::from_utf8(&props).expect("utf8")),
        ("k", "false"),
        ("m", "false"),
    ] {
        send.ext_fields.insert(k, v);
    }
    write(&frame, "json_send_v2", &send.encode().expect("encode"));

    // PULL_MESSAGE with a ROCKETMQ binary header and a remark.
    let mut pull = RemotingCommand::request(request::PULL_MESSAGE)
        .with_opaque(8)
        .with_serialize_type(SerializeType::RocketMq)
        .with_remark("r");
    pull.language = LanguageCode::CPP;
    for (k, v) in [
        ("consumerGroup", "CG"),
        ("topic", "TopicTest"),
        ("queueId", "0"),
        ("queueOffset", "0"),
        ("maxMsgNums", "32"),
        ("sysFlag", "2"),
        ("commitOffset", "0"),
        ("suspendTimeoutMillis", "15000"),
        ("subscription", "*"),
        ("subVersion", "0"),
    ] {
        pull.ext_fields.insert(k, v);
    }
    write(&frame, "binary_pull", &pull.encode().expect("encode"));

    // Two frames back to back: a JSON error response, then a binary oneway request.
    let mut two = send
        .error_response(1, "no route")
        .encode()
        .expect("encode")
        .to_vec();
    let oneway = RemotingCommand::request(request::HEART_BEAT)
        .with_serialize_type(SerializeType::RocketMq)
        .with_oneway();
    two.extend_from_slice(&oneway.encode().expect("encode"));
    write(&frame, "two_frames", &two);

    // A JSON header the way the C++ core writes it: loose types, unknown keys.
    let loose = br#"{"code":"105","extFields":{"topic":"T","n":3,"b":true,"z":null},"flag":0,"language":"CPP","opaque":1,"remark":null,"version":333,"x":[1]}"#;
    let mut wire = Vec::new();
    wire.extend_from_slice(&(4 + loose.len() as i32).to_be_bytes());
    wire.extend_from_slice(&(loose.len() as u32).to_be_bytes());
    wire.extend_from_slice(loose);
    write(&frame, "json_loose", &wire);

    // JSON bodies, fed raw to the body parsers: fastjson's integer keys, and a heartbeat.
    write(
        &frame,
        "body_route_fastjson",
        br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.2:10911"},"brokerName":"b","cluster":"c","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#,
    );
    write(
        &frame,
        "body_heartbeat",
        br#"{"clientID":"127.0.0.1@1","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"CG","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"subString":"TagA","subVersion":1,"tagsSet":["TagA"],"topic":"T"}],"unitMode":false}],"producerDataSet":[{"groupName":"PG"}],"withoutSub":false}"#,
    );

    // --- record --------------------------------------------------------------------
    let v4 = |s: &str| s.parse::<SocketAddr>().expect("addr");
    let rec1 = RecordWriter {
        queue_id: 3,
        flag: 0,
        queue_offset: 7,
        physical_offset: 256,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: v4("127.0.0.1:5000"),
        store_timestamp: 1_700_000_000_001,
        store_host: v4("127.0.0.2:10911"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: b"hi",
        topic: "TopicTest",
        properties: &props,
    }
    .to_vec()
    .expect("record");
    write(&record, "v1_ipv4", &rec1);

    // V2 (topic over 127 bytes), IPv6 hosts, transaction bits.
    let long_topic = "T".repeat(130);
    let rec2 = RecordWriter {
        queue_id: 0,
        flag: 1,
        queue_offset: 0,
        physical_offset: rec1.len() as i64,
        sys_flag: sys_flag::TRANSACTION_PREPARED,
        born_timestamp: 1,
        born_host: v4("[::1]:5000"),
        store_timestamp: 2,
        store_host: v4("[fe80::1]:10911"),
        reconsume_times: 2,
        prepared_transaction_offset: 9,
        body: b"",
        topic: &long_topic,
        properties: b"",
    }
    .to_vec()
    .expect("record");
    write(&record, "v2_ipv6", &rec2);

    // A segment tail: two records then an end-of-file blank.
    let mut segment = rec1.clone();
    segment.extend_from_slice(&rec2);
    segment.extend_from_slice(&16i32.to_be_bytes());
    segment.extend_from_slice(&BLANK_MAGIC.to_be_bytes());
    segment.extend_from_slice(&[0; 8]);
    write(&record, "segment", &segment);

    // A batch body of two messages.
    let mut batch = Vec::new();
    encode_batch_entry(&mut batch, 0, b"m1", &props).expect("batch");
    encode_batch_entry(&mut batch, 4, b"", b"").expect("batch");
    write(&record, "batch", &batch);

    // An offset msgId and a bare properties string.
    let id = encode_offset_msg_id(v4("127.0.0.2:10911"), 256);
    write(&record, "msg_id", id.as_bytes());
    write(&record, "properties", &props);
}
