//! Messages as RocketMQ lays them out: properties, system flags, the commit-log record and
//! the batch body ([`record`]), offset message ids and client unique ids ([`id`]), and the
//! hashes RocketMQ derives from tags and keys.

pub mod id;
pub mod record;

pub use id::{decode_offset_msg_id, encode_offset_msg_id, MsgIdError, UniqIdGenerator};
pub use record::{
    decode_batch, decode_record, encode_batch_entry, BatchEntry, RecordError, RecordHeader,
    RecordView, RecordWriter,
};

/// `MessageSysFlag`.
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOSTADDRESS_V6: i32 = 0x20;
    pub const NEED_UNWRAP: i32 = 0x40;
    pub const INNER_BATCH: i32 = 0x80;
    /// Bits 8..=10: compression type (LZ4 0x100, ZSTD 0x200, ZLIB 0x300).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;

    /// The transaction bits of a sysFlag.
    pub fn transaction_value(flag: i32) -> i32 {
        flag & TRANSACTION_ROLLBACK
    }
}

/// `PullSysFlag`.
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;
}

/// `PermName`.
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;
    pub const READ_WRITE: i32 = READ | WRITE;

    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }
    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }
}

/// `MessageConst` property keys.
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT_STORE_MSG_OK: &str = "WAIT";
    pub const DELAY_TIME_LEVEL: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QUEUE_ID: &str = "REAL_QID";
    pub const TRANSACTION_PREPARED: &str = "TRAN_MSG";
    pub const PRODUCER_GROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_SWITCH: &str = "TRACE_ON";
    pub const UNIQ_CLIENT_MESSAGE_ID_KEYIDX: &str = "UNIQ_KEY";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIMESTAMP: &str = "CONSUME_START_TIME";
    pub const TRANSACTION_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const MESSAGE_REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    pub const MESSAGE_TTL: &str = "TTL";
    pub const REPLY_MESSAGE_ARRIVE_TIME: &str = "ARRIVE_TIME";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MESSAGE_TYPE: &str = "MSG_TYPE";
    pub const STARTDELIVERTIME: &str = "__STARTDELIVERTIME";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const INNER_NUM: &str = "INNER_NUM";
    pub const INNER_BASE: &str = "INNER_BASE";
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    pub const POP_CK: &str = "POP_CK";
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    pub const DELIVER_TIME_MS: &str = "DELIVER_TIME_MS";
}

/// `MessageDecoder.NAME_VALUE_SEPARATOR` and `PROPERTY_SEPARATOR`.
pub const NAME_VALUE_SEPARATOR: u8 = 1;
pub const PROPERTY_SEPARATOR: u8 = 2;
/// Properties are length-prefixed by an `i16`.
pub const MAX_PROPERTIES_BYTES: usize = i16::MAX as usize;

/// Appends one property as Java's `messageProperties2String` does: `name\x01value\x02`,
/// the separator after every pair including the last.
pub fn append_property(out: &mut Vec<u8>, name: &str, value: &str) {
    out.reserve(name.len() + value.len() + 2);
    out.extend_from_slice(name.as_bytes());
    out.push(NAME_VALUE_SEPARATOR);
    out.extend_from_slice(value.as_bytes());
    out.push(PROPERTY_SEPARATOR);
}

/// Encodes a property list.
pub fn encode_properties<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        append_property(&mut out, name, value);
    }
    out
}

/// Iterates the pairs of a properties string without allocating. Like Java's
/// `string2messageProperties`, a segment needs a non-empty name and a non-empty value;
/// others are skipped. Non-UTF-8 segments are skipped too.
pub fn iter_properties(raw: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    raw.split(|b| *b == PROPERTY_SEPARATOR)
        .filter_map(|segment| {
            let sep = segment.iter().position(|b| *b == NAME_VALUE_SEPARATOR)?;
            let (name, value) = (&segment[..sep], &segment[sep + 1..]);
            if name.is_empty() || value.is_empty() {
                return None;
            }
            Some((
                std::str::from_utf8(name).ok()?,
                std::str::from_utf8(value).ok()?,
            ))
        })
}

/// Looks one property up; the last occurrence wins, as in Java's map.
pub fn get_property<'a>(raw: &'a [u8], name: &str) -> Option<&'a str> {
    iter_properties(raw)
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .last()
}

/// Java's `String.hashCode()`: over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h
}

/// The consume-queue tag code of a message: `tags.hashCode()` widened to a long, 0 for no
/// tags (`MessageExtBrokerInner.tagsString2tagsCode`).
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(tags) if !tags.is_empty() => java_string_hash(tags) as i64,
        _ => 0,
    }
}

/// The key hash RocketMQ's IndexFile uses: `abs(("topic#key").hashCode())`, with
/// `Integer.MIN_VALUE` mapped to 0 as `IndexFile.indexKeyHashMethod` does.
pub fn index_key_hash(topic: &str, key: &str) -> i32 {
    let h = java_string_hash(&format!("{topic}#{key}"));
    if h == i32::MIN {
        0
    } else {
        h.abs()
    }
}

/// `UtilAll.crc32`: IEEE CRC-32 masked to 31 bits, as stored in BODYCRC.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values of "x".hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash("hello"), 99162322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // A supplementary character is two UTF-16 units: 0xD83D, 0xDE00.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(tags_code(Some("TagA")), 2598919);
        assert_eq!(tags_code(Some("")), 0);
        assert_eq!(tags_code(None), 0);
    }

    #[test]
    fn crc_is_masked_ieee() {
        // CRC32("123456789") = 0xCBF43926; masked to 31 bits.
        assert_eq!(body_crc(b"123456789"), 0x4BF4_3926);
    }

    #[test]
    fn properties_skip_what_java_skips() {
        let raw = b"KEYS\x01k1 k2\x02\x01x\x02E\x01\x02TAGS\x01A\x02TAGS\x01B";
        let pairs: Vec<_> = iter_properties(raw).collect();
        assert_eq!(pairs, vec![("KEYS", "k1 k2"), ("TAGS", "A"), ("TAGS", "B")]);
        assert_eq!(get_property(raw, "TAGS"), Some("B"));
        assert_eq!(
            encode_properties([("a", "1"), ("b", "2")]),
            b"a\x011\x02b\x012\x02"
        );
    }

    proptest! {
        #[test]
        fn properties_round_trip(pairs in proptest::collection::vec(("[A-Za-z_]{1,12}", "[^\u{1}\u{2}]{1,20}"), 0..8)) {
            let raw = encode_properties(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let back: Vec<(String, String)> = iter_properties(&raw).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            prop_assert_eq!(back, pairs);
        }
    }
}
