//! Headers of the codes consumers and producers send to brokers (pull, offsets, client
//! membership, send-back, transactions) and brokers send to clients.

use super::command_header;

command_header! {
    /// PULL_MESSAGE (11). `sys_flag` holds [`crate::message::pull_sys_flag`] bits.
    pub struct PullMessageRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        queue_offset: req i64 = "queueOffset",
        max_msg_nums: req i32 = "maxMsgNums",
        sys_flag: req i32 = "sysFlag",
        commit_offset: req i64 = "commitOffset",
        suspend_timeout_millis: req i64 = "suspendTimeoutMillis",
        subscription: opt String = "subscription",
        sub_version: req i64 = "subVersion",
        expression_type: opt String = "expressionType",
        max_msg_bytes: opt i32 = "maxMsgBytes",
        request_source: opt i32 = "requestSource",
        proxy_forward_client_id: opt String = "proxyFrowardClientId",
        broker_name: opt String = "bname",
    }
}

command_header! {
    /// The answer to PULL_MESSAGE; the body holds the raw commit-log records.
    pub struct PullMessageResponseHeader {
        suggest_which_broker_id: req i64 = "suggestWhichBrokerId",
        next_begin_offset: req i64 = "nextBeginOffset",
        min_offset: req i64 = "minOffset",
        max_offset: req i64 = "maxOffset",
        offset_delta: opt i64 = "offsetDelta",
        topic_sys_flag: opt i32 = "topicSysFlag",
        group_sys_flag: opt i32 = "groupSysFlag",
        forbidden_type: opt i32 = "forbiddenType",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        set_zero_if_not_found: opt bool = "setZeroIfNotFound",
    }
}

command_header! {
    /// The answer to QUERY_CONSUMER_OFFSET, and to GET_MAX_OFFSET, GET_MIN_OFFSET and
    /// SEARCH_OFFSET_BY_TIMESTAMP, which all carry one `offset`.
    pub struct OffsetResponseHeader {
        offset: req i64 = "offset",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15), usually oneway.
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        commit_offset: req i64 = "commitOffset",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35).
    pub struct UnregisterClientRequestHeader {
        client_id: req String = "clientID",
        producer_group: opt String = "producerGroup",
        consumer_group: opt String = "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38), NOTIFY_CONSUMER_IDS_CHANGED (40) and
    /// GET_CONSUMER_CONNECTION_LIST (203): one consumer group.
    pub struct ConsumerGroupRequestHeader {
        consumer_group: req String = "consumerGroup",
    }
}

command_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204).
    pub struct GetProducerConnectionListRequestHeader {
        producer_group: req String = "producerGroup",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36).
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the message being sent back.
        offset: req i64 = "offset",
        group: req String = "group",
        delay_level: req i32 = "delayLevel",
        origin_msg_id: opt String = "originMsgId",
        origin_topic: opt String = "originTopic",
        unit_mode: def bool = "unitMode",
        max_reconsume_times: opt i32 = "maxReconsumeTimes",
    }
}

command_header! {
    /// END_TRANSACTION (37). `commit_or_rollback` is a transaction sysFlag value: 0 (not a
    /// transaction), 8 (commit) or 12 (rollback).
    pub struct EndTransactionRequestHeader {
        topic: opt String = "topic",
        producer_group: req String = "producerGroup",
        tran_state_table_offset: req i64 = "tranStateTableOffset",
        commit_log_offset: req i64 = "commitLogOffset",
        commit_or_rollback: req i32 = "commitOrRollback",
        from_transaction_check: def bool = "fromTransactionCheck",
        msg_id: req String = "msgId",
        transaction_id: opt String = "transactionId",
    }
}

impl EndTransactionRequestHeader {
    /// Java's `checkFields`: only the three transaction values are valid.
    pub fn check(&self) -> Result<(), crate::HeaderError> {
        use crate::message::sys_flag::*;
        match self.commit_or_rollback {
            TRANSACTION_NOT_TYPE | TRANSACTION_COMMIT | TRANSACTION_ROLLBACK => Ok(()),
            other => Err(crate::HeaderError::InvalidField {
                field: "commitOrRollback",
                expected: "0, 8 or 12",
                found: other.to_string(),
            }),
        }
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39), broker to producer; the body is the half message.
    pub struct CheckTransactionStateRequestHeader {
        topic: opt String = "topic",
        tran_state_table_offset: req i64 = "tranStateTableOffset",
        commit_log_offset: req i64 = "commitLogOffset",
        msg_id: opt String = "msgId",
        transaction_id: opt String = "transactionId",
        offset_msg_id: opt String = "offsetMsgId",
        broker_name: opt String = "bname",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn client_headers_round_trip(seed: u64) {
            round_trip::<PullMessageRequestHeader>(seed);
            round_trip::<PullMessageResponseHeader>(seed);
            round_trip::<QueryConsumerOffsetRequestHeader>(seed);
            round_trip::<OffsetResponseHeader>(seed);
            round_trip::<UpdateConsumerOffsetRequestHeader>(seed);
            round_trip::<UnregisterClientRequestHeader>(seed);
            round_trip::<ConsumerGroupRequestHeader>(seed);
            round_trip::<GetProducerConnectionListRequestHeader>(seed);
            round_trip::<ConsumerSendMsgBackRequestHeader>(seed);
            round_trip::<EndTransactionRequestHeader>(seed);
            round_trip::<CheckTransactionStateRequestHeader>(seed);
        }
    }

    #[test]
    fn end_transaction_as_the_rust_and_cpp_clients_send_it() {
        use crate::header::CommandHeader;
        let ext: crate::ExtFields = [
            ("producerGroup", "G"),
            ("tranStateTableOffset", "5"),
            ("commitLogOffset", "100"),
            ("commitOrRollback", "8"),
            ("fromTransactionCheck", "1"),
            ("msgId", "X"),
        ]
        .into_iter()
        .collect();
        let h = EndTransactionRequestHeader::from_ext_fields(&ext).unwrap();
        assert!(h.from_transaction_check);
        assert!(h.check().is_ok());
        let bad = EndTransactionRequestHeader {
            commit_or_rollback: 4,
            ..h
        };
        assert!(bad.check().is_err());
        // A primitive field is always written, as Java does.
        let mut ext = ext;
        ext.remove("fromTransactionCheck");
        let h = EndTransactionRequestHeader::from_ext_fields(&ext).unwrap();
        assert_eq!(h.to_ext_fields().get("fromTransactionCheck"), Some("false"));
    }
}
