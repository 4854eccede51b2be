//! Committed consumer offsets: `config/consumerOffset.json`, RocketMQ's
//! `ConsumerOffsetManager`.
//!
//! The file is `{"dataVersion":{...},"offsetTable":{"topic@group":{0:12,1:3}}}`, queue
//! ids unquoted as fastjson writes `Map<Integer, Long>` (it is not strict JSON; RocketMQ
//! reads and writes it so). Both the bare and the quoted form are read.
//!
//! Commits only change memory and mark the store dirty; the broker calls
//! [`OffsetStore::persist`] every `consumer_offset_persist_interval_ms` and at shutdown,
//! so a crash loses at most that much progress (consumers see duplicates, never gaps).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use protocol::body::DataVersion;

use super::{lock, MetaError};

pub const FILE_NAME: &str = "consumerOffset.json";

/// `ConsumerOffsetManager.TOPIC_GROUP_SEPARATOR`.
pub const TOPIC_GROUP_SEPARATOR: char = '@';

/// `BrokerConfig.consumerOffsetUpdateVersionStep`: the data version moves every this
/// many commits.
const VERSION_STEP: u64 = 500;

/// queue id -> offset.
type Queues = BTreeMap<i32, i64>;

#[derive(Debug, Default)]
struct State {
    /// topic -> group -> queue id -> offset (the file's `topic@group` keys, split so
    /// that a topic's groups are one range and lookups need no allocation).
    table: BTreeMap<String, BTreeMap<String, Queues>>,
    /// Offsets set by an admin reset, not yet handed to the group's next pull
    /// (`resetOffsetTable`; not persisted, as in RocketMQ).
    resets: BTreeMap<String, BTreeMap<String, Queues>>,
    data_version: DataVersion,
    commits: u64,
    dirty: bool,
}

/// Consumer offsets of every group. `Send + Sync`.
#[derive(Debug)]
pub struct OffsetStore {
    path: PathBuf,
    state: Mutex<State>,
    /// Serialises file writes, so that an older snapshot never replaces a newer one.
    writer: Mutex<()>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(Default)]
struct FileFormat {
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    data_version: Option<DataVersion>,
}

impl OffsetStore {
    /// Loads `<config_dir>/consumerOffset.json` (missing: no offsets yet).
    pub fn open(config_dir: &Path) -> Result<Self, MetaError> {
        let path = config_dir.join(FILE_NAME);
        let mut state = State {
            data_version: super::new_data_version(),
            ..State::default()
        };
        if let Some(bytes) = super::read_file(&path)? {
            super::check_not_blank(&path, &bytes)?;
            let file: FileFormat =
                protocol::json::from_slice(&bytes).map_err(|e| MetaError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            for (key, queues) in file.offset_table {
                match key.split_once(TOPIC_GROUP_SEPARATOR) {
                    Some((topic, group)) if !topic.is_empty() && !group.is_empty() => {
                        state
                            .table
                            .entry(topic.to_owned())
                            .or_default()
                            .insert(group.to_owned(), queues);
                    }
                    // RocketMQ itself skips such keys (`arrays.length == 2` checks).
                    _ => tracing::warn!(
                        path = %path.display(),
                        key,
                        "consumer offset key is not topic@group; dropped"
                    ),
                }
            }
            if let Some(v) = file.data_version {
                state.data_version = v;
            }
        }
        Ok(OffsetStore {
            path,
            state: Mutex::new(state),
            writer: Mutex::new(()),
        })
    }

    /// `commitOffset`: records the group's position in a queue (even if lower than the
    /// last one: a consumer may rewind).
    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let mut st = lock(&self.state);
        set(&mut st.table, group, topic, queue_id, offset);
        st.dirty = true;
        st.commits += 1;
        if st.commits.is_multiple_of(VERSION_STEP) {
            super::next_version(&mut st.data_version);
        }
    }

    /// The group's committed offset in a queue; `None` if it never committed one
    /// (RocketMQ answers -1 / QUERY_NOT_FOUND).
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        lock(&self.state)
            .table
            .get(topic)?
            .get(group)?
            .get(&queue_id)
            .copied()
    }

    /// Groups with offsets in `topic`, sorted (`whichGroupByTopic`).
    pub fn groups_for_topic(&self, topic: &str) -> Vec<String> {
        lock(&self.state)
            .table
            .get(topic)
            .map(|groups| groups.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Topics the group has offsets in, sorted (`whichTopicByConsumer`).
    pub fn topics_for_group(&self, group: &str) -> Vec<String> {
        lock(&self.state)
            .table
            .iter()
            .filter(|(_, groups)| groups.contains_key(group))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// `(queue id, offset)` of every queue the group committed in `topic`, by queue id.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        lock(&self.state)
            .table
            .get(topic)
            .and_then(|groups| groups.get(group))
            .map(|queues| queues.iter().map(|(&q, &o)| (q, o)).collect())
            .unwrap_or_default()
    }

    /// Forgets every offset of a group (`removeOffset`, on DELETE_SUBSCRIPTIONGROUP with
    /// cleanOffset). `true` if there were any.
    pub fn remove_group(&self, group: &str) -> bool {
        let mut st = lock(&self.state);
        let removed = remove_group_from(&mut st.table, group);
        remove_group_from(&mut st.resets, group);
        st.dirty |= removed;
        removed
    }

    /// Forgets every group's offsets in a topic (`cleanOffsetByTopic`, on topic
    /// deletion). `true` if there were any.
    pub fn remove_topic(&self, topic: &str) -> bool {
        let mut st = lock(&self.state);
        let removed = st.table.remove(topic).is_some();
        st.resets.remove(topic);
        st.dirty |= removed;
        removed
    }

    /// `assignResetOffset` (admin reset): sets the committed offset and remembers it
    /// until the group's next pull takes it with [`take_reset`](Self::take_reset), so
    /// that a commit racing the reset from a consumer still running does not undo it.
    /// Negative queue ids or offsets are ignored, as in RocketMQ.
    pub fn reset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        if queue_id < 0 || offset < 0 || group.is_empty() || topic.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        set(&mut st.resets, group, topic, queue_id, offset);
        set(&mut st.table, group, topic, queue_id, offset);
        st.dirty = true;
    }

    /// Whether a reset is waiting for the group's next pull of this queue.
    pub fn has_reset(&self, group: &str, topic: &str, queue_id: i32) -> bool {
        lock(&self.state)
            .resets
            .get(topic)
            .and_then(|g| g.get(group))
            .is_some_and(|q| q.contains_key(&queue_id))
    }

    /// `queryThenEraseResetOffset`: the pending reset of this queue, removed.
    pub fn take_reset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let mut st = lock(&self.state);
        let groups = st.resets.get_mut(topic)?;
        let queues = groups.get_mut(group)?;
        let offset = queues.remove(&queue_id);
        if queues.is_empty() {
            groups.remove(group);
            if groups.is_empty() {
                st.resets.remove(topic);
            }
        }
        offset
    }

    pub fn data_version(&self) -> DataVersion {
        lock(&self.state).data_version
    }

    pub fn is_dirty(&self) -> bool {
        lock(&self.state).dirty
    }

    /// The table in the file's format (`ConsumerOffsetSerializeWrapper`), for
    /// GET_ALL_CONSUMER_OFFSET. fastjson dialect: queue ids unquoted.
    pub fn to_json(&self) -> Vec<u8> {
        encode(&lock(&self.state))
    }

    /// Writes the file if anything changed since the last write.
    pub fn persist(&self) -> Result<(), MetaError> {
        let _writer = lock(&self.writer);
        let bytes = {
            let mut st = lock(&self.state);
            if !st.dirty {
                return Ok(());
            }
            // Cleared before the write so that commits during it mark it dirty again.
            st.dirty = false;
            encode(&st)
        };
        if let Err(e) = super::write_atomic(&self.path, &bytes) {
            lock(&self.state).dirty = true;
            return Err(e);
        }
        Ok(())
    }
}

fn set(
    table: &mut BTreeMap<String, BTreeMap<String, Queues>>,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) {
    // Lookups first: a commit to a known queue allocates nothing.
    if let Some(queues) = table.get_mut(topic).and_then(|g| g.get_mut(group)) {
        queues.insert(queue_id, offset);
        return;
    }
    table
        .entry(topic.to_owned())
        .or_default()
        .entry(group.to_owned())
        .or_default()
        .insert(queue_id, offset);
}

fn remove_group_from(table: &mut BTreeMap<String, BTreeMap<String, Queues>>, group: &str) -> bool {
    let mut removed = false;
    table.retain(|_, groups| {
        removed |= groups.remove(group).is_some();
        !groups.is_empty()
    });
    removed
}

/// `{"dataVersion":{...},"offsetTable":{"topic@group":{0:12,1:3},...}}`, one
/// `topic@group` per line.
fn encode(st: &State) -> Vec<u8> {
    let mut out = String::with_capacity(64 + st.table.len() * 64);
    out.push_str("{\n\t\"dataVersion\":");
    out.push_str(&serde_json::to_string(&st.data_version).expect("DataVersion serializes"));
    out.push_str(",\n\t\"offsetTable\":{");
    let mut first = true;
    for (topic, groups) in &st.table {
        for (group, queues) in groups {
            out.push_str(if first { "\n\t\t" } else { ",\n\t\t" });
            first = false;
            let key = format!("{topic}{TOPIC_GROUP_SEPARATOR}{group}");
            out.push_str(&serde_json::to_string(&key).expect("a string serializes"));
            out.push_str(":{");
            for (i, (queue, offset)) in queues.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{queue}:{offset}");
            }
            out.push('}');
        }
    }
    out.push_str(if first { "}\n}\n" } else { "\n\t}\n}\n" });
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TempDir;

    #[test]
    fn commit_query_and_listings() {
        let dir = TempDir::new("offsets-api");
        let store = OffsetStore::open(&dir.0).unwrap();
        assert!(!store.is_dirty());
        assert_eq!(store.query("G1", "T1", 0), None);
        store.commit("G1", "T1", 0, 12);
        store.commit("G1", "T1", 1, 3);
        store.commit("G1", "T2", 0, 7);
        store.commit("G2", "T1", 0, 1);
        store.commit("G1", "T1", 0, 10); // a rewind is recorded
        assert!(store.is_dirty());
        assert_eq!(store.query("G1", "T1", 0), Some(10));
        assert_eq!(store.query("G1", "T1", 2), None);
        assert_eq!(store.groups_for_topic("T1"), vec!["G1", "G2"]);
        assert_eq!(store.groups_for_topic("T3"), Vec::<String>::new());
        assert_eq!(store.topics_for_group("G1"), vec!["T1", "T2"]);
        assert_eq!(store.queue_offsets("G1", "T1"), vec![(0, 10), (1, 3)]);
        assert!(store.remove_group("G1"));
        assert!(!store.remove_group("G1"));
        assert_eq!(store.topics_for_group("G1"), Vec::<String>::new());
        assert_eq!(store.groups_for_topic("T1"), vec!["G2"]);
        assert!(store.remove_topic("T1"));
        assert!(!store.remove_topic("T1"));
        assert_eq!(store.query("G2", "T1", 0), None);
    }

    #[test]
    fn resets_wait_for_the_next_pull() {
        let dir = TempDir::new("offsets-reset");
        let store = OffsetStore::open(&dir.0).unwrap();
        store.commit("G", "T", 0, 100);
        store.reset("G", "T", 0, 5);
        store.reset("G", "T", -1, 5); // ignored
        assert_eq!(store.query("G", "T", 0), Some(5));
        assert!(store.has_reset("G", "T", 0));
        assert!(!store.has_reset("G", "T", 1));
        assert_eq!(store.take_reset("G", "T", 0), Some(5));
        assert_eq!(store.take_reset("G", "T", 0), None);
        assert!(!store.has_reset("G", "T", 0));
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = TempDir::new("offsets-roundtrip");
        let store = OffsetStore::open(&dir.0).unwrap();
        store.persist().unwrap();
        assert!(!dir.0.join(FILE_NAME).exists(), "nothing to write yet");
        store.commit("G1", "T1", 0, 12);
        store.commit("G1", "T1", 1, 3);
        store.commit("%RETRY%G1", "G1", 0, 0);
        store.commit("G\"q", "T", 0, i64::MAX);
        store.persist().unwrap();
        assert!(!store.is_dirty());
        let version = store.data_version();
        let text = std::fs::read_to_string(dir.0.join(FILE_NAME)).unwrap();
        assert!(text.contains("\"offsetTable\""), "{text}");
        assert!(text.contains("\"T1@G1\":{0:12,1:3}"), "{text}");
        assert!(text.contains("\"dataVersion\""), "{text}");
        drop(store);

        let store = OffsetStore::open(&dir.0).unwrap();
        assert_eq!(store.queue_offsets("G1", "T1"), vec![(0, 12), (1, 3)]);
        assert_eq!(store.query("%RETRY%G1", "G1", 0), Some(0));
        assert_eq!(store.query("G\"q", "T", 0), Some(i64::MAX));
        assert_eq!(store.data_version(), version);
        assert!(!store.is_dirty());
        // Rewritten only when changed; the previous version is kept as .bak.
        store.commit("G1", "T1", 0, 13);
        store.persist().unwrap();
        assert!(dir.0.join("consumerOffset.json.bak").exists());
        let empty = OffsetStore::open(&TempDir::new("offsets-empty").0).unwrap();
        let text = String::from_utf8(empty.to_json()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["offsetTable"], serde_json::json!({}));
    }

    #[test]
    fn reads_rocketmq_files_in_both_dialects() {
        let dir = TempDir::new("offsets-java");
        // fastjson's own pretty output.
        let fastjson = "{\n\t\"offsetTable\":{\n\t\t\"%RETRY%please_rename_unique_group_name_4@please_rename_unique_group_name_4\":{0:0\n\t\t},\n\t\t\"TopicTest@please_rename_unique_group_name_4\":{1:250,0:251,3:250,2:250\n\t\t}\n\t}\n}";
        std::fs::write(dir.0.join(FILE_NAME), fastjson).unwrap();
        let store = OffsetStore::open(&dir.0).unwrap();
        assert_eq!(
            store.queue_offsets("please_rename_unique_group_name_4", "TopicTest"),
            vec![(0, 251), (1, 250), (2, 250), (3, 250)]
        );
        assert_eq!(
            store.groups_for_topic("%RETRY%please_rename_unique_group_name_4"),
            vec!["please_rename_unique_group_name_4"]
        );
        // Standard JSON (quoted keys) with a data version, and a malformed key dropped.
        let standard = r#"{"dataVersion":{"counter":9,"stateVersion":0,"timestamp":5},"offsetTable":{"T@G":{"0":4},"nokey":{"0":1}}}"#;
        std::fs::write(dir.0.join(FILE_NAME), standard).unwrap();
        let store = OffsetStore::open(&dir.0).unwrap();
        assert_eq!(store.query("G", "T", 0), Some(4));
        assert_eq!(store.data_version().counter, 9);
        assert_eq!(store.topics_for_group("G"), vec!["T"]);
    }

    #[test]
    fn corrupt_file_is_an_error() {
        for content in [
            "{\"offsetTable\":{\"T@G\":{0:",
            "",
            "{\"offsetTable\":{\"T@G\":{\"x\":1}}}",
        ] {
            let dir = TempDir::new("offsets-corrupt");
            std::fs::write(dir.0.join(FILE_NAME), content).unwrap();
            let err = OffsetStore::open(&dir.0).unwrap_err();
            assert!(
                matches!(err, MetaError::Corrupt { .. }),
                "{content:?}: {err}"
            );
            assert!(err.to_string().contains(FILE_NAME), "{err}");
        }
    }

    #[test]
    fn data_version_moves_every_500_commits() {
        let dir = TempDir::new("offsets-version");
        let store = OffsetStore::open(&dir.0).unwrap();
        let v0 = store.data_version();
        for i in 0..499 {
            store.commit("G", "T", 0, i);
        }
        assert_eq!(store.data_version().counter, v0.counter);
        store.commit("G", "T", 0, 500);
        assert_eq!(store.data_version().counter, v0.counter + 1);
    }

    #[test]
    fn shared_between_threads() {
        let dir = TempDir::new("offsets-threads");
        let store = std::sync::Arc::new(OffsetStore::open(&dir.0).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        store.commit("G", "T", t, i);
                        if i % 250 == 0 {
                            store.persist().unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        store.persist().unwrap();
        let reopened = OffsetStore::open(&dir.0).unwrap();
        assert_eq!(
            reopened.queue_offsets("G", "T"),
            vec![(0, 999), (1, 999), (2, 999), (3, 999)]
        );
    }
}
