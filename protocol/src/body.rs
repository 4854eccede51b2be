//! JSON bodies (Java `RemotingSerializable` classes), with RocketMQ's field names.
//!
//! Every field has a default so that bodies from older or newer peers, missing fields or
//! carrying extra ones, still parse; fields fastjson leaves out when null are `Option`s
//! skipped when `None`. Parse with [`crate::json::from_slice`] (accepts fastjson's integer
//! keys); write with [`crate::json::to_vec`] (see [`BROKER_ADDRS_FIELDS`]).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Objects keyed by broker id (`Map<Long, String>`): unquoted in fastjson style.
pub const BROKER_ADDRS_FIELDS: &[&str] = &["brokerAddrs"];

/// The master's broker id.
pub const MASTER_ID: i64 = 0;

/// `TopicRouteData`: the answer to GET_ROUTEINFO_BY_TOPIC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// 5.x static topics; carried through opaquely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

/// `QueueData`: one broker's queues of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    /// Spelled `topicSynFlag` up to 4.8.
    #[serde(alias = "topicSynFlag")]
    pub topic_sys_flag: i32,
}

/// `BrokerData`: a broker group (master id 0, slaves) and its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    pub enable_acting_master: bool,
}

/// `ClusterInfo`: the answer to GET_BROKER_CLUSTER_INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// `TopicConfig` as brokers register it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    /// `SINGLE_TAG` or `MULTI_TAG`.
    pub topic_filter_type: String,
    pub topic_sys_flag: i32,
    pub order: bool,
    pub attributes: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    /// Java's defaults: 16 queues each way, read-write.
    fn default() -> Self {
        Self {
            topic_name: String::new(),
            read_queue_nums: 16,
            write_queue_nums: 16,
            perm: crate::message::perm::READ_WRITE,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

/// `DataVersion`: changes whenever a broker's topic configuration does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    pub state_version: i64,
    pub timestamp: i64,
    pub counter: i64,
}

/// `TopicConfigSerializeWrapper` (and 5.x's `TopicConfigAndMappingSerializeWrapper`,
/// whose static-topic mapping fields are carried through opaquely).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    pub data_version: DataVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_info_map: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_detail_map: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_data_version: Option<DataVersion>,
}

/// `RegisterBrokerBody`: the JSON form of REGISTER_BROKER's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
}

/// `TopicList`: topic names, and for some answers the broker address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    pub topic_list: BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// `KVTable`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KvTable {
    pub table: BTreeMap<String, String>,
}

/// `MessageQueue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

/// `HeartbeatData`: HEART_BEAT's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub producer_data_set: Vec<ProducerData>,
    pub consumer_data_set: Vec<ConsumerData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_fingerprint: Option<i32>,
    /// fastjson writes `withoutSub` (from the `isWithoutSub()` getter) and reads either.
    #[serde(
        rename = "withoutSub",
        alias = "isWithoutSub",
        skip_serializing_if = "Option::is_none"
    )]
    pub without_sub: Option<bool>,
}

/// `ProducerData`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    pub group_name: String,
}

/// `ConsumerData`. Enum fields keep Java's enum names (`CONSUME_PASSIVELY`,
/// `CLUSTERING`, `CONSUME_FROM_LAST_OFFSET`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub group_name: String,
    pub consume_type: String,
    pub message_model: String,
    pub consume_from_where: String,
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

/// `SubscriptionData`: one topic subscription with its filter expression.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub topic: String,
    pub sub_string: String,
    pub tags_set: BTreeSet<String>,
    pub code_set: BTreeSet<i32>,
    pub sub_version: i64,
    /// `TAG` or `SQL92`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression_type: Option<String>,
}

/// GET_CONSUMER_LIST_BY_GROUP's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerListByGroupResponseBody {
    pub consumer_id_list: Vec<String>,
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ request bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    pub only_this_broker: bool,
    pub mq_set: BTreeSet<MessageQueue>,
}

/// LOCK_BATCH_MQ's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// CHECK_CLIENT_CONFIG's body: a consumer asks whether the broker accepts its filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckClientRequestBody {
    pub client_id: String,
    pub group: String,
    pub subscription_data: SubscriptionData,
}

/// `BrokerMemberGroup`: GET_BROKER_MEMBER_GROUP's answer, wrapped in
/// `GetBrokerMemberGroupResponseBody`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerMemberGroup {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addrs: BTreeMap<i64, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetBrokerMemberGroupResponseBody {
    pub broker_member_group: BrokerMemberGroup,
}

/// `SubscriptionGroupConfig`: a consumer group's settings on one broker, as RocketMQ 5
/// writes them in `subscriptionGroup.json` and UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
/// bodies. Missing fields take Java's field initializers; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    pub consume_message_orderly: bool,
    /// Queues of the group's `%RETRY%` topic.
    pub retry_queue_nums: i32,
    /// Deliveries before a message goes to the group's `%DLQ%` topic.
    pub retry_max_times: i32,
    /// `GroupRetryPolicy` (`{"type":"CUSTOMIZED"}` by default), carried through
    /// opaquely; `None` when the peer wrote null.
    pub group_retry_policy: Option<serde_json::Value>,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    pub group_sys_flag: i32,
    /// Push consumers only.
    pub consume_timeout_minute: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data_set: Option<Vec<SimpleSubscriptionData>>,
    pub attributes: BTreeMap<String, String>,
}

impl Default for SubscriptionGroupConfig {
    /// Java's field initializers.
    fn default() -> Self {
        Self {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            group_retry_policy: Some(serde_json::json!({ "type": "CUSTOMIZED" })),
            broker_id: MASTER_ID,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            subscription_data_set: None,
            attributes: BTreeMap::new(),
        }
    }
}

impl SubscriptionGroupConfig {
    /// Java's defaults for a named group.
    pub fn named(group_name: impl Into<String>) -> Self {
        Self {
            group_name: group_name.into(),
            ..Self::default()
        }
    }
}

/// `SimpleSubscriptionData`: a subscription recorded in a group's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimpleSubscriptionData {
    pub topic: String,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    pub expression: String,
    pub version: i64,
}

/// `SubscriptionGroupWrapper`: GET_ALL_SUBSCRIPTIONGROUP_CONFIG's answer, and the shape
/// of `subscriptionGroup.json` (whose `SubscriptionGroupManager` has the same fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Per group, per topic: bits of forbidden operations.
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    pub data_version: DataVersion,
}

/// Properties text (`key=value` lines) as Java's `MixAll.properties2String` writes it
/// and `string2Properties` reads it; used by GET/UPDATE_*_CONFIG bodies.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let sep = l.find(['=', ':'])?;
            Some((l[..sep].trim().to_owned(), l[sep + 1..].trim().to_owned()))
        })
        .collect()
}

pub fn format_properties(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{from_slice, to_vec, JsonStyle};

    /// Route JSON as captured from RocketMQ's nameserver for an old client.
    const CAPTURED_ROUTE: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    #[test]
    fn route_data_both_dialects() {
        let route: TopicRouteData = from_slice(CAPTURED_ROUTE.as_bytes()).unwrap();
        assert_eq!(route.broker_datas[0].broker_addrs[&1], "10.0.0.2:10911");
        assert_eq!(route.queue_datas[0].perm, 6);
        let fast =
            String::from_utf8(to_vec(&route, JsonStyle::Fastjson, BROKER_ADDRS_FIELDS)).unwrap();
        assert!(
            fast.contains(r#""brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"}"#),
            "{fast}"
        );
        let std =
            String::from_utf8(to_vec(&route, JsonStyle::Standard, BROKER_ADDRS_FIELDS)).unwrap();
        assert!(
            std.contains(r#""brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"}"#),
            "{std}"
        );
        serde_json::from_str::<serde_json::Value>(&std).expect("standard output is strict JSON");
        assert_eq!(
            from_slice::<TopicRouteData>(fast.as_bytes()).unwrap(),
            route
        );
        // 4.8 spelling.
        let old: QueueData = from_slice(br#"{"brokerName":"b","topicSynFlag":3}"#).unwrap();
        assert_eq!(old.topic_sys_flag, 3);
    }

    #[test]
    fn heartbeat_as_a_java_client_sends_it() {
        let text = r#"{"clientID":"10.0.0.5@1234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T"}],"unitMode":false}],"heartbeatFingerprint":0,"isWithoutSub":false,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let hb: HeartbeatData = from_slice(text.as_bytes()).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@1234");
        assert_eq!(
            hb.consumer_data_set[0].subscription_data_set[0]
                .code_set
                .first(),
            Some(&2598919)
        );
        assert_eq!(hb.without_sub, Some(false));
        let back: HeartbeatData = from_slice(&to_vec(&hb, JsonStyle::Standard, &[])).unwrap();
        assert_eq!(back, hb);
    }

    #[test]
    fn register_body_and_lock_bodies() {
        let text = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":2,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"T":{"order":false,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":8}}}}"#;
        let body: RegisterBrokerBody = from_slice(text.as_bytes()).unwrap();
        let wrapper = &body.topic_config_serialize_wrapper;
        assert_eq!(wrapper.data_version.counter, 2);
        assert_eq!(wrapper.topic_config_table["T"].write_queue_nums, 8);
        let lock: LockBatchRequestBody = from_slice(
            br#"{"clientId":"c","consumerGroup":"G","mqSet":[{"brokerName":"b","queueId":1,"topic":"T"}],"onlyThisBroker":true}"#,
        )
        .unwrap();
        assert_eq!(lock.mq_set.len(), 1);
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: lock.mq_set.clone(),
        };
        let text = String::from_utf8(to_vec(&resp, JsonStyle::Standard, &[])).unwrap();
        assert!(text.starts_with(r#"{"lockOKMQSet":[{"#), "{text}");
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        // Quotes, braces, colons, commas and digits: what could confuse the key rewriting.
        "[a-z0-9\"{}:,\\ .-]{0,12}"
    }

    proptest::proptest! {
        #[test]
        fn route_data_round_trips_in_both_dialects(
            names in proptest::collection::vec(text(), 1..4),
            addrs in proptest::collection::btree_map(-3i64..5, text(), 0..4),
            order in proptest::option::of(text()),
            filters in proptest::collection::btree_map(text(), proptest::collection::vec(text(), 0..3), 0..3),
        ) {
            let route = TopicRouteData {
                order_topic_conf: order,
                queue_datas: names.iter().map(|n| QueueData { broker_name: n.clone(), read_queue_nums: 4, write_queue_nums: 2, perm: 6, topic_sys_flag: 0 }).collect(),
                broker_datas: names.iter().map(|n| BrokerData { cluster: n.clone(), broker_name: n.clone(), broker_addrs: addrs.clone(), zone_name: None, enable_acting_master: false }).collect(),
                filter_server_table: filters,
                topic_queue_mapping_by_broker: None,
            };
            for style in [JsonStyle::Standard, JsonStyle::Fastjson] {
                let bytes = to_vec(&route, style, BROKER_ADDRS_FIELDS);
                proptest::prop_assert_eq!(&from_slice::<TopicRouteData>(&bytes).unwrap(), &route);
            }
        }
    }

    #[test]
    fn subscription_group_config_as_rocketmq_5_writes_it() {
        // As fastjson writes a default group (fields sorted, groupRetryPolicy present).
        let text = r#"{"attributes":{},"brokerId":0,"consumeBroadcastEnable":true,"consumeEnable":true,"consumeFromMinEnable":true,"consumeMessageOrderly":false,"consumeTimeoutMinute":15,"groupName":"G","groupRetryPolicy":{"type":"CUSTOMIZED"},"groupSysFlag":0,"notifyConsumerIdsChangedEnable":true,"retryMaxTimes":16,"retryQueueNums":1,"whichBrokerWhenConsumeSlowly":1}"#;
        let config: SubscriptionGroupConfig = from_slice(text.as_bytes()).unwrap();
        assert_eq!(config, SubscriptionGroupConfig::named("G"));
        let ours: serde_json::Value =
            serde_json::from_slice(&to_vec(&config, JsonStyle::Standard, &[])).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(ours, theirs);
        // Older brokers (4.x) wrote fewer fields; newer ones may write more.
        let old: SubscriptionGroupConfig = from_slice(
            br#"{"groupName":"H","consumeEnable":false,"retryMaxTimes":3,"futureField":{"x":1},"subscriptionDataSet":[{"topic":"T","expressionType":"TAG","expression":"*","version":5}]}"#,
        )
        .unwrap();
        assert!(!old.consume_enable);
        assert_eq!(old.retry_max_times, 3);
        assert_eq!(old.retry_queue_nums, 1);
        assert_eq!(old.consume_timeout_minute, 15);
        assert_eq!(
            old.subscription_data_set.as_ref().unwrap()[0].expression,
            "*"
        );
        let wrapper: SubscriptionGroupWrapper = from_slice(
            br#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1},"forbiddenTable":{"G":{"T":1}},"subscriptionGroupTable":{"G":{"groupName":"G"}}}"#,
        )
        .unwrap();
        assert_eq!(wrapper.data_version.counter, 3);
        assert_eq!(wrapper.forbidden_table["G"]["T"], 1);
        assert_eq!(
            wrapper.subscription_group_table["G"],
            SubscriptionGroupConfig::named("G")
        );
    }

    #[test]
    fn properties_text() {
        let map = parse_properties("a=1\n# c\n b = x=y \nbad\n");
        assert_eq!(map.get("a").map(String::as_str), Some("1"));
        assert_eq!(map.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(parse_properties(&format_properties(&map)), map);
    }
}
