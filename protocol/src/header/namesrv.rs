//! Headers of the nameserver's codes.

use super::command_header;

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct GetRouteInfoRequestHeader {
        topic: req String = "topic",
        /// 5.x clients ask for standard JSON explicitly.
        accept_standard_json_only: opt bool = "acceptStandardJsonOnly",
    }
}

command_header! {
    /// REGISTER_BROKER (103). The body is a `RegisterBrokerBody`, possibly compressed.
    pub struct RegisterBrokerRequestHeader {
        broker_name: req String = "brokerName",
        broker_addr: req String = "brokerAddr",
        cluster_name: req String = "clusterName",
        ha_server_addr: req String = "haServerAddr",
        broker_id: req i64 = "brokerId",
        heartbeat_timeout_millis: opt i64 = "heartbeatTimeoutMillis",
        enable_acting_master: opt bool = "enableActingMaster",
        compressed: def bool = "compressed",
        body_crc32: def i32 = "bodyCrc32",
    }
}

command_header! {
    /// The answer to REGISTER_BROKER.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: opt String = "haServerAddr",
        master_addr: opt String = "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104) and QUERY_DATA_VERSION (322): one broker.
    pub struct BrokerIdentityRequestHeader {
        broker_name: req String = "brokerName",
        broker_addr: req String = "brokerAddr",
        cluster_name: req String = "clusterName",
        broker_id: req i64 = "brokerId",
    }
}

command_header! {
    /// The answer to QUERY_DATA_VERSION.
    pub struct QueryDataVersionResponseHeader {
        changed: req bool = "changed",
    }
}

command_header! {
    /// BROKER_HEARTBEAT (904), the 5.x light heartbeat between registrations.
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: req String = "clusterName",
        broker_addr: req String = "brokerAddr",
        broker_name: req String = "brokerName",
        broker_id: opt i64 = "brokerId",
        epoch: opt i32 = "epoch",
        max_offset: opt i64 = "maxOffset",
        confirm_offset: opt i64 = "confirmOffset",
        heartbeat_timeout_mills: opt i64 = "heartbeatTimeoutMills",
        election_priority: opt i32 = "electionPriority",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKvConfigRequestHeader {
        namespace: req String = "namespace",
        key: req String = "key",
        value: req String = "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102).
    pub struct KvConfigKeyRequestHeader {
        namespace: req String = "namespace",
        key: req String = "key",
    }
}

command_header! {
    /// The answer to GET_KV_CONFIG.
    pub struct GetKvConfigResponseHeader {
        value: opt String = "value",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219).
    pub struct GetKvListByNamespaceRequestHeader {
        namespace: req String = "namespace",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327).
    pub struct BrokerNameRequestHeader {
        broker_name: req String = "brokerName",
    }
}

command_header! {
    /// The answer to WIPE_WRITE_PERM_OF_BROKER.
    pub struct WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: req i32 = "wipeTopicCount",
    }
}

command_header! {
    /// The answer to ADD_WRITE_PERM_OF_BROKER.
    pub struct AddWritePermOfBrokerResponseHeader {
        add_topic_count: req i32 = "addTopicCount",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224).
    pub struct GetTopicsByClusterRequestHeader {
        cluster: req String = "cluster",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: req String = "topic",
        cluster_name: opt String = "clusterName",
    }
}

command_header! {
    /// GET_BROKER_MEMBER_GROUP (901).
    pub struct GetBrokerMemberGroupRequestHeader {
        cluster_name: req String = "clusterName",
        broker_name: req String = "brokerName",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn namesrv_headers_round_trip(seed: u64) {
            round_trip::<GetRouteInfoRequestHeader>(seed);
            round_trip::<RegisterBrokerRequestHeader>(seed);
            round_trip::<RegisterBrokerResponseHeader>(seed);
            round_trip::<BrokerIdentityRequestHeader>(seed);
            round_trip::<QueryDataVersionResponseHeader>(seed);
            round_trip::<BrokerHeartbeatRequestHeader>(seed);
            round_trip::<PutKvConfigRequestHeader>(seed);
            round_trip::<KvConfigKeyRequestHeader>(seed);
            round_trip::<GetKvConfigResponseHeader>(seed);
            round_trip::<GetKvListByNamespaceRequestHeader>(seed);
            round_trip::<BrokerNameRequestHeader>(seed);
            round_trip::<WipeWritePermOfBrokerResponseHeader>(seed);
            round_trip::<AddWritePermOfBrokerResponseHeader>(seed);
            round_trip::<GetTopicsByClusterRequestHeader>(seed);
            round_trip::<DeleteTopicFromNamesrvRequestHeader>(seed);
            round_trip::<GetBrokerMemberGroupRequestHeader>(seed);
        }
    }
}
