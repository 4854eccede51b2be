//! Headers of the broker's topic, offset, query and admin codes.

use super::command_header;

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        topic: req String = "topic",
        default_topic: req String = "defaultTopic",
        read_queue_nums: req i32 = "readQueueNums",
        write_queue_nums: req i32 = "writeQueueNums",
        perm: req i32 = "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        topic_filter_type: req String = "topicFilterType",
        topic_sys_flag: opt i32 = "topicSysFlag",
        order: def bool = "order",
        attributes: opt String = "attributes",
        force: def bool = "force",
    }
}

impl CreateTopicRequestHeader {
    /// Java's `checkFields`: the filter type must be a `TopicFilterType` name.
    pub fn check(&self) -> Result<(), crate::HeaderError> {
        match self.topic_filter_type.as_str() {
            "SINGLE_TAG" | "MULTI_TAG" => Ok(()),
            other => Err(crate::HeaderError::InvalidField {
                field: "topicFilterType",
                expected: "SINGLE_TAG or MULTI_TAG",
                found: other.to_owned(),
            }),
        }
    }
}

command_header! {
    /// DELETE_TOPIC_IN_BROKER (215), GET_TOPIC_STATS_INFO (202), REGISTER_TOPIC_IN_NAMESRV
    /// (217) and GET_ROUTEINFO_BY_TOPIC's topic-only form: one topic.
    pub struct TopicRequestHeader {
        topic: req String = "topic",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        /// 5.x: count only committed (dispatched) messages; Java defaults it to true.
        committed: def bool = "committed" | true,
    }
}

command_header! {
    /// GET_MIN_OFFSET (31) and GET_EARLIEST_MSG_STORETIME (32): one queue.
    pub struct QueueRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        timestamp: req i64 = "timestamp",
        /// 5.x: `LOWER` (default) or `UPPER`.
        boundary_type: opt String = "boundaryType",
    }
}

command_header! {
    /// The answer to GET_EARLIEST_MSG_STORETIME.
    pub struct TimestampResponseHeader {
        timestamp: req i64 = "timestamp",
    }
}

command_header! {
    /// QUERY_MESSAGE (12). A unique-key query also sets ext field `_UNIQUE_KEY_QUERY`.
    pub struct QueryMessageRequestHeader {
        topic: req String = "topic",
        key: req String = "key",
        max_num: req i32 = "maxNum",
        begin_timestamp: req i64 = "beginTimestamp",
        end_timestamp: req i64 = "endTimestamp",
        unique_key_query: opt bool = "_UNIQUE_KEY_QUERY",
    }
}

command_header! {
    /// The answer to QUERY_MESSAGE; the body holds the matching records.
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: req i64 = "indexLastUpdateTimestamp",
        index_last_update_phyoffset: req i64 = "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33): the commit-log offset decoded from an offset msgId.
    pub struct ViewMessageRequestHeader {
        topic: opt String = "topic",
        offset: req i64 = "offset",
    }
}

command_header! {
    /// GET_BROKER_CONFIG (26) answer; the body holds `key=value` lines.
    pub struct GetBrokerConfigResponseHeader {
        version: req String = "version",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208).
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: opt String = "topic",
        topic_list: opt String = "topicList",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: req String = "groupName",
        clean_offset: def bool = "cleanOffset",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222).
    pub struct ResetOffsetRequestHeader {
        group: req String = "group",
        topic: req String = "topic",
        queue_id: def i32 = "queueId" | -1,
        offset: opt i64 = "offset",
        timestamp: req i64 = "timestamp",
        is_force: req bool = "isForce",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn broker_headers_round_trip(seed: u64) {
            round_trip::<CreateTopicRequestHeader>(seed);
            round_trip::<TopicRequestHeader>(seed);
            round_trip::<GetMaxOffsetRequestHeader>(seed);
            round_trip::<QueueRequestHeader>(seed);
            round_trip::<SearchOffsetRequestHeader>(seed);
            round_trip::<TimestampResponseHeader>(seed);
            round_trip::<QueryMessageRequestHeader>(seed);
            round_trip::<QueryMessageResponseHeader>(seed);
            round_trip::<ViewMessageRequestHeader>(seed);
            round_trip::<GetBrokerConfigResponseHeader>(seed);
            round_trip::<GetConsumeStatsRequestHeader>(seed);
            round_trip::<DeleteSubscriptionGroupRequestHeader>(seed);
            round_trip::<ResetOffsetRequestHeader>(seed);
        }
    }

    #[test]
    fn java_defaults_for_missing_primitives() {
        use crate::header::CommandHeader;
        let ext: crate::ExtFields = [("topic", "T"), ("queueId", "0")].into_iter().collect();
        assert!(
            GetMaxOffsetRequestHeader::from_ext_fields(&ext)
                .unwrap()
                .committed
        );
        let ext: crate::ExtFields = [
            ("group", "G"),
            ("topic", "T"),
            ("timestamp", "1"),
            ("isForce", "true"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            ResetOffsetRequestHeader::from_ext_fields(&ext)
                .unwrap()
                .queue_id,
            -1
        );
    }
}
