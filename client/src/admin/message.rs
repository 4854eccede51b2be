//! Messages as the query commands print them.

use bytes::Bytes;
use protocol::message::record::RecordView;
use protocol::message::{encode_offset_msg_id, iter_properties, property, sys_flag};
use serde_json::{json, Map, Value};
use std::fmt::Write;

use super::format::format_ms;

/// Decodes back-to-back commit-log records (pull and query answers).
pub fn decode_records(body: &Bytes) -> Result<Vec<RecordView>, String> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let record = protocol::message::decode_record(body, pos, false)
            .map_err(|e| format!("record at byte {pos}: {e}"))?;
        assert!(
            record.total_size > 0,
            "decode_record returned an empty record"
        );
        pos += record.total_size;
        records.push(record);
    }
    Ok(records)
}

/// The client id (`UNIQ_KEY`) when set, else the offset msgId.
pub fn msg_id(r: &RecordView) -> String {
    r.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        .map_or_else(|| offset_msg_id(r), str::to_owned)
}

pub fn offset_msg_id(r: &RecordView) -> String {
    encode_offset_msg_id(r.store_host, r.physical_offset)
}

fn body_text(r: &RecordView) -> String {
    if r.sys_flag & sys_flag::COMPRESSED != 0 {
        format!("<{} compressed bytes>", r.body.len())
    } else {
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// A stable JSON object for `--json`.
pub fn message_json(r: &RecordView) -> Value {
    let properties: Map<String, Value> = iter_properties(&r.properties)
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    json!({
        "msgId": msg_id(r),
        "offsetMsgId": offset_msg_id(r),
        "topic": r.topic_str(),
        "tags": r.tags(),
        "keys": r.property(property::KEYS),
        "queueId": r.queue_id,
        "queueOffset": r.queue_offset,
        "commitLogOffset": r.physical_offset,
        "reconsumeTimes": r.reconsume_times,
        "bornTimestamp": r.born_timestamp,
        "storeTimestamp": r.store_timestamp,
        "bornHost": r.born_host.to_string(),
        "storeHost": r.store_host.to_string(),
        "sysFlag": r.sys_flag,
        "flag": r.flag,
        "bodyCRC": r.body_crc,
        "properties": properties,
        "bodyLength": r.body.len(),
        "compressed": r.sys_flag & sys_flag::COMPRESSED != 0,
        "body": body_text(r),
    })
}

/// The detailed form queryMsgById prints: one `Field: value` per line.
pub fn message_text(r: &RecordView) -> String {
    let props: Vec<String> = iter_properties(&r.properties)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let fields: [(&str, String); 17] = [
        ("OffsetID", offset_msg_id(r)),
        ("MsgId", msg_id(r)),
        ("Topic", r.topic_str().to_owned()),
        ("Tags", format!("[{}]", r.tags().unwrap_or(""))),
        (
            "Keys",
            format!("[{}]", r.property(property::KEYS).unwrap_or("")),
        ),
        ("Queue ID", r.queue_id.to_string()),
        ("Queue Offset", r.queue_offset.to_string()),
        ("CommitLog Offset", r.physical_offset.to_string()),
        ("Reconsume Times", r.reconsume_times.to_string()),
        ("Born Timestamp", format_ms(r.born_timestamp)),
        ("Store Timestamp", format_ms(r.store_timestamp)),
        ("Born Host", r.born_host.to_string()),
        ("Store Host", r.store_host.to_string()),
        ("System Flag", r.sys_flag.to_string()),
        ("Properties", format!("{{{}}}", props.join(", "))),
        ("Body Length", r.body.len().to_string()),
        ("Body", body_text(r)),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{:<20}{v}", format!("{k}:"));
    }
    out
}

/// The one-line form printMsg and consumeMessage print.
pub fn message_line(r: &RecordView, print_body: bool) -> String {
    let mut line = format!(
        "MSGID: {} QUEUE: {} OFFSET: {} TAGS: {} KEYS: {} STORED: {}",
        msg_id(r),
        r.queue_id,
        r.queue_offset,
        r.tags().unwrap_or("-"),
        r.property(property::KEYS).unwrap_or("-"),
        format_ms(r.store_timestamp),
    );
    if print_body {
        let _ = write!(line, " BODY: {}", body_text(r));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::message::encode_properties;
    use protocol::message::record::RecordWriter;

    #[test]
    fn records_decode_and_render() {
        let props = encode_properties([("TAGS", "TagA"), ("KEYS", "k1 k2"), ("UNIQ_KEY", "U1")]);
        let writer = RecordWriter {
            queue_id: 3,
            flag: 0,
            queue_offset: 7,
            physical_offset: 1234,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.1:5555".parse().unwrap(),
            store_timestamp: 1_700_000_000_001,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"hello",
            topic: "T",
            properties: &props,
        };
        let one = writer.to_vec().unwrap();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let records = decode_records(&Bytes::from(two)).unwrap();
        assert_eq!(records.len(), 2);
        let j = message_json(&records[0]);
        assert_eq!(j["msgId"], "U1");
        assert_eq!(j["tags"], "TagA");
        assert_eq!(j["keys"], "k1 k2");
        assert_eq!(j["queueOffset"], 7);
        assert_eq!(j["body"], "hello");
        assert_eq!(
            j["offsetMsgId"],
            encode_offset_msg_id("127.0.0.1:10911".parse().unwrap(), 1234)
        );
        let text = message_text(&records[0]);
        assert!(text.contains("Topic:              T\n"), "{text}");
        assert!(text.contains("Body:               hello"), "{text}");
        assert!(message_line(&records[1], true).ends_with("BODY: hello"));
        assert!(decode_records(&Bytes::from(vec![0u8; 10])).is_err());
    }
}
