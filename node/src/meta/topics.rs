//! Topic configurations: `config/topics.json`, RocketMQ's `TopicConfigManager`.
//!
//! The file is a `TopicConfigSerializeWrapper`:
//! `{"topicConfigTable":{"T":{"topicName":"T","readQueueNums":8,...}},"dataVersion":{...}}`.
//! At open, the system topics RocketMQ 5's `TopicConfigManager.init()` creates are added
//! under whatever the file holds (the file's version of a topic wins, as in RocketMQ).
//! Every change bumps the `DataVersion` (nameservers use it to skip unchanged
//! registrations) and rewrites the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use protocol::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use protocol::message::perm;

use super::MetaError;
use crate::config::BrokerConfig;

pub const FILE_NAME: &str = "topics.json";

/// The auto-create template (`TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const ROCKSDB_OFFSET_TOPIC: &str = "CHECKPOINT_TOPIC";
/// Topics starting with this are system topics.
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// `TimerMessageStore.TIMER_TOPIC`.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";

/// `TopicValidator.SYSTEM_TOPIC_SET` as initialised statically.
const STATIC_SYSTEM_TOPICS: &[&str] = &[
    AUTO_CREATE_TOPIC_KEY_TOPIC,
    SCHEDULE_TOPIC,
    BENCHMARK_TOPIC,
    TRANS_HALF_TOPIC,
    TRACE_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
    ROCKSDB_OFFSET_TOPIC,
];

/// `TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`.
const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    SCHEDULE_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];

const TOPIC_MAX_LENGTH: usize = 127;
const RETRY_OR_DLQ_TOPIC_MAX_LENGTH: usize = 255;
const GROUP_MAX_LENGTH: usize = 120;
/// `TopicConfigManager.SCHEDULE_TOPIC_QUEUE_NUM`.
const SCHEDULE_TOPIC_QUEUE_NUM: i32 = 18;
/// `BrokerConfig.reviveQueueNum`.
const REVIVE_QUEUE_NUM: i32 = 8;

/// Whether every character is in `^[%|a-zA-Z0-9_-]+$` (`isTopicOrGroupIllegal`, negated).
fn legal_chars(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// `TopicValidator.validateTopic`: not blank, `^[%|a-zA-Z0-9_-]+$`, at most 127
/// characters (255 for `%RETRY%` and `%DLQ%` topics). The error is RocketMQ's remark.
/// Whether a client may *create* or *send to* the topic is separate:
/// [`TopicStore::check_create`], [`is_not_allowed_send_topic`].
pub fn validate_topic_name(topic: &str) -> Result<(), String> {
    if topic.trim().is_empty() {
        return Err("The specified topic is blank.".into());
    }
    if !legal_chars(topic) {
        return Err(format!(
            "The specified topic: {topic}, contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX) {
        if topic.len() > RETRY_OR_DLQ_TOPIC_MAX_LENGTH {
            return Err(format!(
                "The specified topic is DLQ or Retry topic: {topic}, and it's longer than topic max length: {RETRY_OR_DLQ_TOPIC_MAX_LENGTH}"
            ));
        }
    } else if topic.len() > TOPIC_MAX_LENGTH {
        return Err(format!(
            "The specified topic: {topic}, is longer than topic max length: {TOPIC_MAX_LENGTH}"
        ));
    }
    Ok(())
}

/// `TopicValidator.validateGroup`: not blank, `^[%|a-zA-Z0-9_-]+$`, at most 120
/// characters (a group name becomes part of `%RETRY%` and `%DLQ%` topic names).
pub fn validate_group_name(group: &str) -> Result<(), String> {
    if group.trim().is_empty() {
        return Err("The specified group is blank.".into());
    }
    if !legal_chars(group) {
        return Err(format!(
            "The specified group: {group}, contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if group.len() > GROUP_MAX_LENGTH {
        return Err(format!(
            "The specified group: {group}, is longer than group max length: {GROUP_MAX_LENGTH}"
        ));
    }
    Ok(())
}

/// `TopicValidator.isSystemTopic` for the names every broker shares: the static set and
/// the `rmq_sys_` prefix. [`TopicStore::is_system_topic`] adds this broker's own (its
/// cluster, broker and reply topics).
pub fn is_system_topic(topic: &str) -> bool {
    STATIC_SYSTEM_TOPICS.contains(&topic) || topic.starts_with(SYSTEM_TOPIC_PREFIX)
}

/// `TopicValidator.isNotAllowedSendTopic`: topics only the broker itself writes.
pub fn is_not_allowed_send_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// `%RETRY%<group>`.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

/// `%DLQ%<group>`.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

fn topic(name: &str, queues: i32, perm: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.to_owned(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm,
        ..TopicConfig::default()
    }
}

/// The topics `TopicConfigManager.init()` creates with RocketMQ 5's defaults
/// (`clusterTopicEnable`, `brokerTopicEnable` and `timerWheelEnable` on,
/// `traceTopicEnable` off).
fn system_topics(broker: &BrokerConfig) -> Vec<TopicConfig> {
    let rw = perm::READ_WRITE;
    let default_queues = TopicConfig::default().read_queue_nums;
    let cluster = &broker.broker_cluster_name;
    let mut topics = vec![topic(SELF_TEST_TOPIC, 1, rw)];
    if broker.auto_create_topic_enable {
        topics.push(topic(
            AUTO_CREATE_TOPIC_KEY_TOPIC,
            broker.default_topic_queue_nums as i32,
            perm::INHERIT | rw,
        ));
    }
    topics.extend([
        topic(BENCHMARK_TOPIC, 1024, rw),
        topic(cluster, default_queues, perm::INHERIT | rw),
        topic(&broker.broker_name, 1, perm::INHERIT | rw),
        topic(OFFSET_MOVED_EVENT, 1, rw),
        topic(SCHEDULE_TOPIC, SCHEDULE_TOPIC_QUEUE_NUM, rw),
        topic(&format!("{cluster}_REPLY_TOPIC"), 1, rw),
        topic(
            &format!("{SYSTEM_TOPIC_PREFIX}REVIVE_LOG_{cluster}"),
            REVIVE_QUEUE_NUM,
            rw,
        ),
        topic(
            &format!(
                "{SYSTEM_TOPIC_PREFIX}SYNC_BROKER_MEMBER_{}",
                broker.broker_name
            ),
            1,
            perm::INHERIT,
        ),
        topic(TRANS_HALF_TOPIC, 1, rw),
        topic(TRANS_OP_HALF_TOPIC, 1, rw),
        topic(TIMER_TOPIC, 1, rw),
    ]);
    topics
}

#[derive(Debug)]
struct State {
    table: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
    /// Changed since the file was last written (a write failed).
    dirty: bool,
}

/// The broker's topics. `Send + Sync`; reads take a shared lock, changes are written to
/// disk before they return.
#[derive(Debug)]
pub struct TopicStore {
    auto_create_topic_enable: bool,
    /// This broker's names `TopicValidator.addSystemTopic` adds at start.
    own_system_topics: BTreeSet<String>,
    file: super::Persisted<State>,
}

impl TopicStore {
    /// Loads `<config_dir>/topics.json` (missing: none yet) and adds the system topics
    /// missing from it, writing the file if any was.
    pub fn open(config_dir: &Path, broker: &BrokerConfig) -> Result<Self, MetaError> {
        let path = config_dir.join(FILE_NAME);
        let loaded = match super::read_file(&path)? {
            Some(bytes) => {
                super::check_not_blank(&path, &bytes)?;
                let wrapper: TopicConfigSerializeWrapper = protocol::json::from_slice(&bytes)
                    .map_err(|e| MetaError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Some(wrapper)
            }
            None => None,
        };
        let system = system_topics(broker);
        let own_system_topics = system
            .iter()
            .map(|t| t.topic_name.clone())
            .filter(|t| !is_system_topic(t))
            .collect();
        let mut table: BTreeMap<String, TopicConfig> = system
            .into_iter()
            .map(|t| (t.topic_name.clone(), t))
            .collect();
        let (data_version, missing_system) = match loaded {
            Some(wrapper) => {
                let missing = table
                    .keys()
                    .any(|k| !wrapper.topic_config_table.contains_key(k));
                for (name, mut config) in wrapper.topic_config_table {
                    // The key is authoritative, as in Java's map.
                    config.topic_name.clone_from(&name);
                    table.insert(name, config);
                }
                (wrapper.data_version, missing)
            }
            None => (super::new_data_version(), true),
        };
        let store = TopicStore {
            auto_create_topic_enable: broker.auto_create_topic_enable,
            own_system_topics,
            file: super::Persisted::new(
                path,
                State {
                    table,
                    data_version,
                    dirty: missing_system,
                },
            ),
        };
        store.persist()?;
        Ok(store)
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.file.read().table.get(topic).cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.file.read().table.contains_key(topic)
    }

    /// Inserts or replaces a topic (UPDATE_AND_CREATE_TOPIC), bumps the data version and
    /// writes the file. The name must pass [`validate_topic_name`].
    pub fn put(&self, config: TopicConfig) -> Result<(), MetaError> {
        check_name(&config.topic_name)?;
        self.change(|table| {
            table.insert(config.topic_name.clone(), config);
            ((), true)
        })
    }

    /// Removes a topic; `false` if there was none (nothing written).
    pub fn delete(&self, topic: &str) -> Result<bool, MetaError> {
        self.change(|table| {
            let removed = table.remove(topic).is_some();
            (removed, removed)
        })
    }

    /// Every topic, sorted by name.
    pub fn all(&self) -> Vec<TopicConfig> {
        self.file.read().table.values().cloned().collect()
    }

    pub fn data_version(&self) -> DataVersion {
        self.file.read().data_version
    }

    /// The table and data version as REGISTER_BROKER and GET_ALL_TOPIC_CONFIG send them.
    pub fn serialize_wrapper(&self) -> TopicConfigSerializeWrapper {
        let st = self.file.read();
        TopicConfigSerializeWrapper {
            topic_config_table: st.table.clone(),
            data_version: st.data_version,
            ..Default::default()
        }
    }

    /// `createTopicInSendMessageMethod`: a producer sends to an unknown `topic` naming
    /// `template` (normally `TBW102`) as its default topic. Returns the topic if it
    /// exists; otherwise creates it if the template exists and has the INHERIT
    /// permission (for `TBW102`, only while `auto_create_topic_enable` is on), with
    /// `min(queue_nums, template's write queues)` queues each way (the template's when
    /// `None`), the template's permission without INHERIT and its filter type. `None`:
    /// not created. An invalid `topic` name is an error (validate it first).
    pub fn create_from_template(
        &self,
        topic: &str,
        template: &str,
        queue_nums: Option<i32>,
    ) -> Result<Option<TopicConfig>, MetaError> {
        check_name(topic)?;
        self.change(|table| {
            if let Some(existing) = table.get(topic) {
                return (Some(existing.clone()), false);
            }
            let Some(default) = table.get(template) else {
                return (None, false);
            };
            let mut template_perm = default.perm;
            if template == AUTO_CREATE_TOPIC_KEY_TOPIC && !self.auto_create_topic_enable {
                template_perm = perm::READ_WRITE;
            }
            if template_perm & perm::INHERIT == 0 {
                return (None, false);
            }
            let queues = queue_nums
                .unwrap_or(default.write_queue_nums)
                .min(default.write_queue_nums)
                .max(0);
            let config = TopicConfig {
                topic_name: topic.to_owned(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: template_perm & !perm::INHERIT,
                topic_filter_type: default.topic_filter_type.clone(),
                ..TopicConfig::default()
            };
            table.insert(topic.to_owned(), config.clone());
            (Some(config), true)
        })
    }

    /// `createTopicIfAbsent` / `createTopicInSendMessageBackMethod`: the existing topic,
    /// or `config` inserted (retry and DLQ topics on send-back and pull).
    pub fn create_if_absent(&self, config: TopicConfig) -> Result<TopicConfig, MetaError> {
        check_name(&config.topic_name)?;
        self.change(|table| match table.get(&config.topic_name) {
            Some(existing) => (existing.clone(), false),
            None => {
                table.insert(config.topic_name.clone(), config.clone());
                (config, true)
            }
        })
    }

    /// [`is_system_topic`], plus this broker's cluster-name, broker-name and reply topics
    /// (what `TopicValidator.addSystemTopic` adds at start).
    pub fn is_system_topic(&self, topic: &str) -> bool {
        is_system_topic(topic) || self.own_system_topics.contains(topic)
    }

    /// What UPDATE_AND_CREATE_TOPIC checks (`validateSystemTopicWhenUpdateTopic` on): a
    /// valid name that is not a system topic. The error is RocketMQ's remark.
    pub fn check_create(&self, topic: &str) -> Result<(), String> {
        validate_topic_name(topic)?;
        if self.is_system_topic(topic) {
            return Err(format!("The topic[{topic}] is conflict with system topic."));
        }
        Ok(())
    }

    /// Writes the file if a previous write failed. Changes are otherwise written as they
    /// happen.
    pub fn persist(&self) -> Result<(), MetaError> {
        self.file.persist()
    }

    pub fn is_dirty(&self) -> bool {
        self.file.is_dirty()
    }

    /// Applies `f` (returning its result and whether it changed the table); on a change,
    /// bumps the version and writes the file. If the write fails the change stays in
    /// memory, marked dirty, and the error is returned.
    fn change<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, TopicConfig>) -> (R, bool),
    ) -> Result<R, MetaError> {
        self.file.change(|st| f(&mut st.table))
    }
}

fn check_name(topic: &str) -> Result<(), MetaError> {
    validate_topic_name(topic).map_err(|reason| MetaError::InvalidName {
        name: topic.to_owned(),
        reason,
    })
}

impl super::FileState for State {
    fn data_version_mut(&mut self) -> &mut DataVersion {
        &mut self.data_version
    }
    fn dirty_mut(&mut self) -> &mut bool {
        &mut self.dirty
    }
    fn is_dirty(&self) -> bool {
        self.dirty
    }
    fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// The file as RocketMQ writes it (pretty, like `persist()`'s `encode(true)`).
fn encode(st: &State) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct File<'a> {
        data_version: &'a DataVersion,
        topic_config_table: &'a BTreeMap<String, TopicConfig>,
    }
    serde_json::to_vec_pretty(&File {
        data_version: &st.data_version,
        topic_config_table: &st.table,
    })
    .expect("topic configs serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TempDir;

    fn broker() -> BrokerConfig {
        BrokerConfig {
            broker_cluster_name: "C1".into(),
            broker_name: "b1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn system_topics_as_rocketmq_creates_them() {
        let dir = TempDir::new("topics-system");
        let store = TopicStore::open(&dir.0, &broker()).unwrap();
        let t = |name: &str| store.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let tbw = t("TBW102");
        assert_eq!(
            (tbw.read_queue_nums, tbw.write_queue_nums, tbw.perm),
            (8, 8, 7)
        );
        assert_eq!(t("SELF_TEST_TOPIC").write_queue_nums, 1);
        assert_eq!(t("BenchmarkTest").write_queue_nums, 1024);
        assert_eq!((t("C1").write_queue_nums, t("C1").perm), (16, 7));
        assert_eq!((t("b1").write_queue_nums, t("b1").perm), (1, 7));
        assert_eq!(t("OFFSET_MOVED_EVENT").perm, 6);
        assert_eq!(t("SCHEDULE_TOPIC_XXXX").write_queue_nums, 18);
        assert_eq!(t("C1_REPLY_TOPIC").write_queue_nums, 1);
        assert_eq!(t("rmq_sys_REVIVE_LOG_C1").write_queue_nums, 8);
        assert_eq!(t("rmq_sys_SYNC_BROKER_MEMBER_b1").perm, 1);
        assert_eq!(t("RMQ_SYS_TRANS_HALF_TOPIC").write_queue_nums, 1);
        assert_eq!(t("RMQ_SYS_TRANS_OP_HALF_TOPIC").write_queue_nums, 1);
        assert_eq!(t("rmq_sys_wheel_timer").write_queue_nums, 1);
        assert!(
            store.get("RMQ_SYS_TRACE_TOPIC").is_none(),
            "traceTopicEnable is off"
        );
        assert_eq!(store.all().len(), 13);
        assert!(store.is_system_topic("C1") && store.is_system_topic("b1"));
        assert!(store.is_system_topic("C1_REPLY_TOPIC"));
        assert!(store.is_system_topic("rmq_sys_anything") && store.is_system_topic("TBW102"));
        assert!(!store.is_system_topic("Orders"));
        // Written at once, so operators see them.
        assert!(dir.0.join(FILE_NAME).exists());
        assert!(!store.is_dirty());

        let dir = TempDir::new("topics-no-auto");
        let no_auto = BrokerConfig {
            auto_create_topic_enable: false,
            ..broker()
        };
        let store = TopicStore::open(&dir.0, &no_auto).unwrap();
        assert!(store.get("TBW102").is_none());
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = TempDir::new("topics-roundtrip");
        let store = TopicStore::open(&dir.0, &broker()).unwrap();
        let v0 = store.data_version();
        let mut orders = topic("Orders", 4, 6);
        orders.order = true;
        orders
            .attributes
            .insert("+message.type".into(), "FIFO".into());
        store.put(orders.clone()).unwrap();
        let v1 = store.data_version();
        assert_eq!(v1.counter, v0.counter + 1);
        assert!(v1.timestamp >= v0.timestamp);
        assert!(store.delete("SELF_TEST_TOPIC").unwrap());
        assert!(!store.delete("SELF_TEST_TOPIC").unwrap());
        assert_eq!(store.data_version().counter, v0.counter + 2);
        let before = store.serialize_wrapper();
        drop(store);

        let reopened = TopicStore::open(&dir.0, &broker()).unwrap();
        assert_eq!(reopened.get("Orders"), Some(orders));
        // A deleted system topic comes back at start, as in RocketMQ; the version is
        // the file's.
        assert!(reopened.get("SELF_TEST_TOPIC").is_some());
        assert_eq!(reopened.data_version(), before.data_version);
        assert_eq!(reopened.all().len(), before.topic_config_table.len() + 1);
    }

    #[test]
    fn file_has_rocketmq_shape() {
        let dir = TempDir::new("topics-shape");
        let store = TopicStore::open(&dir.0, &broker()).unwrap();
        store.put(topic("Orders", 4, 6)).unwrap();
        let text = std::fs::read_to_string(dir.0.join(FILE_NAME)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let orders = &v["topicConfigTable"]["Orders"];
        assert_eq!(orders["topicName"], "Orders");
        assert_eq!(orders["readQueueNums"], 4);
        assert_eq!(orders["writeQueueNums"], 4);
        assert_eq!(orders["perm"], 6);
        assert_eq!(orders["topicFilterType"], "SINGLE_TAG");
        assert_eq!(orders["topicSysFlag"], 0);
        assert_eq!(orders["order"], false);
        assert!(v["dataVersion"]["counter"].is_i64());
        assert!(v["dataVersion"]["timestamp"].is_i64());
        // The previous version is kept.
        assert!(dir.0.join("topics.json.bak").exists());
    }

    #[test]
    fn reads_a_file_written_by_rocketmq() {
        let dir = TempDir::new("topics-java");
        // As RocketMQ 5 writes it (fastjson, pretty, tabs), with a field we do not know.
        let text = "{\n\t\"dataVersion\":{\n\t\t\"counter\":7,\n\t\t\"stateVersion\":0,\n\t\t\"timestamp\":1700000000000\n\t},\n\t\"topicConfigTable\":{\n\t\t\"TopicTest\":{\n\t\t\t\"attributes\":{},\n\t\t\t\"order\":false,\n\t\t\t\"perm\":6,\n\t\t\t\"readQueueNums\":4,\n\t\t\t\"topicFilterType\":\"SINGLE_TAG\",\n\t\t\t\"topicName\":\"TopicTest\",\n\t\t\t\"topicSysFlag\":0,\n\t\t\t\"writeQueueNums\":4,\n\t\t\t\"future\":1\n\t\t}\n\t}\n}";
        std::fs::write(dir.0.join(FILE_NAME), text).unwrap();
        let store = TopicStore::open(&dir.0, &broker()).unwrap();
        assert_eq!(store.get("TopicTest").unwrap().write_queue_nums, 4);
        assert_eq!(store.data_version().counter, 7);
        assert_eq!(store.data_version().timestamp, 1_700_000_000_000);
    }

    #[test]
    fn corrupt_file_is_an_error() {
        for content in ["{\"topicConfigTable\":{\"T\":", "", "   \n", "[1,2]"] {
            let dir = TempDir::new("topics-corrupt");
            std::fs::write(dir.0.join(FILE_NAME), content).unwrap();
            let err = TopicStore::open(&dir.0, &broker()).unwrap_err();
            assert!(
                matches!(err, MetaError::Corrupt { .. }),
                "{content:?}: {err}"
            );
            assert!(err.to_string().contains("topics.json"), "{err}");
            // And the file is left alone.
            assert_eq!(
                std::fs::read_to_string(dir.0.join(FILE_NAME)).unwrap(),
                content
            );
        }
    }

    #[test]
    fn template_creation_rules() {
        let dir = TempDir::new("topics-template");
        let store = TopicStore::open(&dir.0, &broker()).unwrap();
        // Fewer queues than the template: the producer's count.
        let t = store
            .create_from_template("New1", "TBW102", Some(4))
            .unwrap()
            .unwrap();
        assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (4, 4, 6));
        assert_eq!(store.get("New1"), Some(t.clone()));
        // More than the template: capped. None: the template's.
        let t2 = store
            .create_from_template("New2", "TBW102", Some(100))
            .unwrap()
            .unwrap();
        assert_eq!(t2.write_queue_nums, 8);
        let t3 = store
            .create_from_template("New3", "TBW102", None)
            .unwrap()
            .unwrap();
        assert_eq!(t3.write_queue_nums, 8);
        // Existing: returned unchanged, no version bump.
        let v = store.data_version();
        assert_eq!(
            store
                .create_from_template("New1", "TBW102", Some(2))
                .unwrap(),
            Some(t)
        );
        assert_eq!(store.data_version(), v);
        // Template without INHERIT, or missing: not created.
        assert_eq!(
            store
                .create_from_template("New4", "OFFSET_MOVED_EVENT", None)
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .create_from_template("New4", "NoSuchTemplate", None)
                .unwrap(),
            None
        );
        assert!(store.get("New4").is_none());
        // The cluster topic is a template too (perm 7), and its queue count applies.
        let t5 = store
            .create_from_template("New5", "C1", Some(32))
            .unwrap()
            .unwrap();
        assert_eq!((t5.write_queue_nums, t5.perm), (16, 6));
        // Invalid names are refused.
        assert!(matches!(
            store.create_from_template("bad name", "TBW102", None),
            Err(MetaError::InvalidName { .. })
        ));
        // A read-only template gives read-only topics.
        store
            .put(topic("RO_TEMPLATE", 2, perm::READ | perm::INHERIT))
            .unwrap();
        let ro = store
            .create_from_template("New6", "RO_TEMPLATE", None)
            .unwrap()
            .unwrap();
        assert_eq!(ro.perm, perm::READ);
        // create_if_absent keeps what exists.
        let retry = topic("%RETRY%G", 1, 6);
        assert_eq!(store.create_if_absent(retry.clone()).unwrap(), retry);
        let other = topic("%RETRY%G", 3, 6);
        assert_eq!(store.create_if_absent(other).unwrap(), retry);
    }

    #[test]
    fn tbw102_from_the_file_does_not_inherit_when_auto_create_is_off() {
        let dir = TempDir::new("topics-tbw-off");
        drop(TopicStore::open(&dir.0, &broker()).unwrap());
        let no_auto = BrokerConfig {
            auto_create_topic_enable: false,
            ..broker()
        };
        let store = TopicStore::open(&dir.0, &no_auto).unwrap();
        assert!(store.get("TBW102").is_some(), "still in the file");
        assert_eq!(
            store.create_from_template("X", "TBW102", None).unwrap(),
            None
        );
    }

    #[test]
    fn name_validation() {
        assert!(validate_topic_name("TopicTest").is_ok());
        assert!(validate_topic_name("a%b|c_d-e9").is_ok());
        assert!(validate_topic_name("").unwrap_err().contains("blank"));
        assert!(validate_topic_name("a b")
            .unwrap_err()
            .contains("illegal characters"));
        assert!(validate_topic_name("a.b").is_err());
        assert!(validate_topic_name("t@g").is_err());
        assert!(validate_topic_name("é").is_err());
        assert!(validate_topic_name(&"a".repeat(127)).is_ok());
        assert!(validate_topic_name(&"a".repeat(128))
            .unwrap_err()
            .contains("127"));
        let long_retry = format!("%RETRY%{}", "g".repeat(200));
        assert!(validate_topic_name(&long_retry).is_ok());
        assert!(validate_topic_name(&format!("%DLQ%{}", "g".repeat(251))).is_err());
        assert!(validate_group_name(&"g".repeat(120)).is_ok());
        assert!(validate_group_name(&"g".repeat(121)).is_err());
        assert!(validate_group_name("g/1").is_err());
        assert!(is_system_topic("SCHEDULE_TOPIC_XXXX"));
        assert!(is_system_topic("RMQ_SYS_TRACE_TOPIC"));
        assert!(!is_system_topic("%RETRY%G"));
        assert!(is_not_allowed_send_topic("SCHEDULE_TOPIC_XXXX"));
        assert!(!is_not_allowed_send_topic("TBW102"));
        assert_eq!(retry_topic("G"), "%RETRY%G");
        assert_eq!(dlq_topic("G"), "%DLQ%G");

        let dir = TempDir::new("topics-create-check");
        let store = TopicStore::open(&dir.0, &broker()).unwrap();
        assert!(store.check_create("Orders").is_ok());
        assert!(store
            .check_create("b1")
            .unwrap_err()
            .contains("conflict with system topic"));
        assert!(store.check_create("TBW102").is_err());
        assert!(store.check_create("bad name").is_err());
        assert!(matches!(
            store.put(topic("bad name", 1, 6)),
            Err(MetaError::InvalidName { .. })
        ));
    }
}
