//! Send headers: v1 with Java field names, v2 with single letters, and the response.

use super::command_header;

command_header! {
    /// SEND_MESSAGE (10), SEND_BATCH_MESSAGE (320) with field names.
    pub struct SendMessageRequestHeader {
        producer_group: req String = "producerGroup",
        topic: req String = "topic",
        default_topic: req String = "defaultTopic",
        default_topic_queue_nums: req i32 = "defaultTopicQueueNums",
        queue_id: req i32 = "queueId",
        sys_flag: req i32 = "sysFlag",
        born_timestamp: req i64 = "bornTimestamp",
        flag: req i32 = "flag",
        properties: opt String = "properties",
        reconsume_times: opt i32 = "reconsumeTimes",
        unit_mode: opt bool = "unitMode",
        batch: opt bool = "batch",
        max_reconsume_times: opt i32 = "maxReconsumeTimes",
        /// 5.x: the logical broker name (`RpcRequestHeader.bname`).
        broker_name: opt String = "bname",
    }
}

command_header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320): the same fields, renamed to
    /// single letters to shorten the header.
    pub struct SendMessageRequestHeaderV2 {
        a: req String = "a",
        b: req String = "b",
        c: req String = "c",
        d: req i32 = "d",
        e: req i32 = "e",
        f: req i32 = "f",
        g: req i64 = "g",
        h: req i32 = "h",
        i: opt String = "i",
        j: opt i32 = "j",
        k: opt bool = "k",
        l: opt i32 = "l",
        m: opt bool = "m",
        n: opt String = "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        Self {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            max_reconsume_times: v2.l,
            batch: v2.m,
            broker_name: v2.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        Self {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name,
        }
    }
}

impl SendMessageRequestHeader {
    /// Reads a send request of any of the three send codes: 310 always carries the V2
    /// letters; 10 and 320 carry field names, though some clients send letters on 320.
    pub fn from_request(code: i32, ext: &crate::ExtFields) -> Result<Self, crate::HeaderError> {
        use super::CommandHeader;
        let v2 = code == crate::code::request::SEND_MESSAGE_V2
            || (code == crate::code::request::SEND_BATCH_MESSAGE
                && ext.get("producerGroup").is_none());
        if v2 {
            SendMessageRequestHeaderV2::from_ext_fields(ext).map(Self::from)
        } else {
            Self::from_ext_fields(ext)
        }
    }

    /// Whether the request is a batch: code 320, or `batch` set on 10/310 (C++ cores).
    pub fn is_batch(&self, code: i32) -> bool {
        code == crate::code::request::SEND_BATCH_MESSAGE || self.batch == Some(true)
    }
}

command_header! {
    /// The answer to every send code.
    pub struct SendMessageResponseHeader {
        msg_id: req String = "msgId",
        queue_id: req i32 = "queueId",
        queue_offset: req i64 = "queueOffset",
        transaction_id: opt String = "transactionId",
        batch_uniq_id: opt String = "batchUniqId",
        recall_handle: opt String = "recallHandle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::{round_trip, Rng, Sample};
    use crate::header::CommandHeader;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn send_headers_round_trip(seed: u64) {
            round_trip::<SendMessageRequestHeader>(seed);
            round_trip::<SendMessageRequestHeaderV2>(seed);
            round_trip::<SendMessageResponseHeader>(seed);
        }

        #[test]
        fn v1_v2_conversion_is_lossless(seed: u64) {
            let v1 = SendMessageRequestHeader::sample(&mut Rng(seed));
            let v2 = SendMessageRequestHeaderV2::from(v1.clone());
            let back = SendMessageRequestHeader::from_request(310, &v2.to_ext_fields()).unwrap();
            prop_assert_eq!(back, v1);
        }
    }

    #[test]
    fn cpp_batch_flag_on_v2() {
        let ext: crate::ExtFields = [
            ("a", "G"),
            ("b", "T"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "1"),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("m", "1"),
            ("k", "false"),
        ]
        .into_iter()
        .collect();
        let h = SendMessageRequestHeader::from_request(310, &ext).unwrap();
        assert!(h.is_batch(310));
        assert_eq!(h.unit_mode, Some(false));
        assert_eq!(h.topic, "T");
    }
}
