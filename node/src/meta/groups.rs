//! Consumer group settings: `config/subscriptionGroup.json`, RocketMQ's
//! `SubscriptionGroupManager`.
//!
//! The file is `{"subscriptionGroupTable":{"G":{...}},"forbiddenTable":{},"dataVersion":{...}}`
//! ([`SubscriptionGroupWrapper`]). At open, the groups RocketMQ 5's
//! `SubscriptionGroupManager.init()` creates are added under whatever the file holds.
//! Every change bumps the `DataVersion` and rewrites the file.

use std::collections::BTreeMap;
use std::path::Path;

use protocol::body::{DataVersion, SubscriptionGroupConfig, SubscriptionGroupWrapper};

use super::topics::validate_group_name;
use super::MetaError;

pub const FILE_NAME: &str = "subscriptionGroup.json";

pub const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
pub const FILTERSRV_CONSUMER_GROUP: &str = "FILTERSRV_CONSUMER";
pub const SELF_TEST_CONSUMER_GROUP: &str = "SELF_TEST_C_GROUP";
pub const ONS_HTTP_PROXY_GROUP: &str = "CID_ONS-HTTP-PROXY";
pub const CID_ONSAPI_PULL_GROUP: &str = "CID_ONSAPI_PULL";
pub const CID_ONSAPI_PERMISSION_GROUP: &str = "CID_ONSAPI_PERMISSION";
pub const CID_ONSAPI_OWNER_GROUP: &str = "CID_ONSAPI_OWNER";
pub const CID_SYS_RMQ_TRANS: &str = "CID_RMQ_SYS_TRANS";
/// Groups starting with this are system groups, created on use even when
/// `auto_create_subscription_group` is off (RocketMQ `enableCreateSysGroup` = true).
pub const CID_RMQ_SYS_PREFIX: &str = "CID_RMQ_SYS_";

/// The groups `SubscriptionGroupManager.init()` creates, all with Java's defaults
/// (`consumeBroadcastEnable` is already true by default; RocketMQ sets it again for the
/// last five).
const SYSTEM_GROUPS: &[&str] = &[
    TOOLS_CONSUMER_GROUP,
    FILTERSRV_CONSUMER_GROUP,
    SELF_TEST_CONSUMER_GROUP,
    ONS_HTTP_PROXY_GROUP,
    CID_ONSAPI_PULL_GROUP,
    CID_ONSAPI_PERMISSION_GROUP,
    CID_ONSAPI_OWNER_GROUP,
    CID_SYS_RMQ_TRANS,
];

/// `MixAll.isSysConsumerGroup`.
pub fn is_sys_consumer_group(group: &str) -> bool {
    group.starts_with(CID_RMQ_SYS_PREFIX)
}

#[derive(Debug)]
struct State {
    table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Per group, per topic forbidden-operation bits; kept as read, written back.
    forbidden: BTreeMap<String, BTreeMap<String, i32>>,
    data_version: DataVersion,
    dirty: bool,
}

/// The broker's consumer groups. `Send + Sync`; changes are written to disk before they
/// return.
#[derive(Debug)]
pub struct SubscriptionGroupStore {
    file: super::Persisted<State>,
}

impl SubscriptionGroupStore {
    /// Loads `<config_dir>/subscriptionGroup.json` (missing: none yet) and adds the
    /// system groups missing from it, writing the file if any was.
    pub fn open(config_dir: &Path) -> Result<Self, MetaError> {
        let path = config_dir.join(FILE_NAME);
        let loaded = match super::read_file(&path)? {
            Some(bytes) => {
                super::check_not_blank(&path, &bytes)?;
                let wrapper: SubscriptionGroupWrapper = protocol::json::from_slice(&bytes)
                    .map_err(|e| MetaError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Some(wrapper)
            }
            None => None,
        };
        let mut table: BTreeMap<String, SubscriptionGroupConfig> = SYSTEM_GROUPS
            .iter()
            .map(|&g| (g.to_owned(), SubscriptionGroupConfig::named(g)))
            .collect();
        let (forbidden, data_version, missing_system) = match loaded {
            Some(wrapper) => {
                let missing = table
                    .keys()
                    .any(|g| !wrapper.subscription_group_table.contains_key(g));
                for (name, mut config) in wrapper.subscription_group_table {
                    config.group_name.clone_from(&name);
                    table.insert(name, config);
                }
                (wrapper.forbidden_table, wrapper.data_version, missing)
            }
            None => (BTreeMap::new(), super::new_data_version(), true),
        };
        let store = SubscriptionGroupStore {
            file: super::Persisted::new(
                path,
                State {
                    table,
                    forbidden,
                    data_version,
                    dirty: missing_system,
                },
            ),
        };
        store.persist()?;
        Ok(store)
    }

    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        self.file.read().table.get(group).cloned()
    }

    pub fn contains(&self, group: &str) -> bool {
        self.file.read().table.contains_key(group)
    }

    /// Inserts or replaces a group (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP), bumps the data
    /// version and writes the file. The name must pass
    /// [`validate_group_name`](super::topics::validate_group_name).
    pub fn put(&self, config: SubscriptionGroupConfig) -> Result<(), MetaError> {
        check_name(&config.group_name)?;
        self.change(|st| {
            st.table.insert(config.group_name.clone(), config);
            ((), true)
        })
    }

    /// Removes a group and its forbidden entries (DELETE_SUBSCRIPTIONGROUP); `false` if
    /// there was none (nothing written).
    pub fn delete(&self, group: &str) -> Result<bool, MetaError> {
        self.change(|st| {
            let removed = st.table.remove(group).is_some();
            st.forbidden.remove(group);
            (removed, removed)
        })
    }

    /// Every group, sorted by name.
    pub fn all(&self) -> Vec<SubscriptionGroupConfig> {
        self.file.read().table.values().cloned().collect()
    }

    pub fn data_version(&self) -> DataVersion {
        self.file.read().data_version
    }

    /// The whole table as GET_ALL_SUBSCRIPTIONGROUP_CONFIG answers it.
    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        let st = self.file.read();
        SubscriptionGroupWrapper {
            subscription_group_table: st.table.clone(),
            forbidden_table: st.forbidden.clone(),
            data_version: st.data_version,
        }
    }

    /// `findSubscriptionGroupConfig`: the group's config; if it has none, creates one
    /// with the defaults when `auto_create` (the broker's
    /// `auto_create_subscription_group`) is on or the group is a `CID_RMQ_SYS_` system
    /// group, and its name is valid. `None`: unknown and not created (RocketMQ answers
    /// SUBSCRIPTION_GROUP_NOT_EXIST).
    pub fn find_or_create(
        &self,
        group: &str,
        auto_create: bool,
    ) -> Result<Option<SubscriptionGroupConfig>, MetaError> {
        if let Some(config) = self.get(group) {
            return Ok(Some(config));
        }
        if !(auto_create || is_sys_consumer_group(group)) || validate_group_name(group).is_err() {
            return Ok(None);
        }
        self.change(|st| match st.table.get(group) {
            // Created by another thread meanwhile.
            Some(existing) => (Some(existing.clone()), false),
            None => {
                let config = SubscriptionGroupConfig::named(group);
                st.table.insert(group.to_owned(), config.clone());
                (Some(config), true)
            }
        })
    }

    /// Writes the file if a previous write failed. Changes are otherwise written as they
    /// happen.
    pub fn persist(&self) -> Result<(), MetaError> {
        self.file.persist()
    }

    pub fn is_dirty(&self) -> bool {
        self.file.is_dirty()
    }

    /// Applies `f` (returning its result and whether it changed anything); on a change,
    /// bumps the version and writes the file. If the write fails the change stays in
    /// memory, marked dirty, and the error is returned.
    fn change<R>(&self, f: impl FnOnce(&mut State) -> (R, bool)) -> Result<R, MetaError> {
        self.file.change(f)
    }
}

fn check_name(group: &str) -> Result<(), MetaError> {
    validate_group_name(group).map_err(|reason| MetaError::InvalidName {
        name: group.to_owned(),
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

/// The file as RocketMQ writes it (`SubscriptionGroupManager` serialized, pretty).
fn encode(st: &State) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct File<'a> {
        data_version: &'a DataVersion,
        forbidden_table: &'a BTreeMap<String, BTreeMap<String, i32>>,
        subscription_group_table: &'a BTreeMap<String, SubscriptionGroupConfig>,
    }
    serde_json::to_vec_pretty(&File {
        data_version: &st.data_version,
        forbidden_table: &st.forbidden,
        subscription_group_table: &st.table,
    })
    .expect("group configs serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TempDir;

    #[test]
    fn system_groups_as_rocketmq_creates_them() {
        let dir = TempDir::new("groups-system");
        let store = SubscriptionGroupStore::open(&dir.0).unwrap();
        for g in SYSTEM_GROUPS {
            let config = store.get(g).unwrap_or_else(|| panic!("{g} missing"));
            assert_eq!(config, SubscriptionGroupConfig::named(*g));
        }
        assert_eq!(store.all().len(), SYSTEM_GROUPS.len());
        assert!(dir.0.join(FILE_NAME).exists());
        assert!(!store.is_dirty());
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = TempDir::new("groups-roundtrip");
        let store = SubscriptionGroupStore::open(&dir.0).unwrap();
        let v0 = store.data_version();
        let mut g = SubscriptionGroupConfig::named("G1");
        g.consume_message_orderly = true;
        g.retry_max_times = 3;
        g.attributes.insert("k".into(), "v".into());
        store.put(g.clone()).unwrap();
        assert_eq!(store.data_version().counter, v0.counter + 1);
        assert!(store.delete("TOOLS_CONSUMER").unwrap());
        assert!(!store.delete("TOOLS_CONSUMER").unwrap());
        let version = store.data_version();
        drop(store);

        let store = SubscriptionGroupStore::open(&dir.0).unwrap();
        assert_eq!(store.get("G1"), Some(g));
        assert_eq!(store.data_version(), version);
        // A deleted system group comes back at start, as in RocketMQ.
        assert!(store.get("TOOLS_CONSUMER").is_some());
    }

    #[test]
    fn file_has_rocketmq_shape_and_keeps_the_forbidden_table() {
        let dir = TempDir::new("groups-shape");
        let java = r#"{"dataVersion":{"counter":4,"stateVersion":0,"timestamp":1700000000000},"forbiddenTable":{"G":{"T":2}},"subscriptionGroupTable":{"G":{"brokerId":0,"consumeBroadcastEnable":true,"consumeEnable":false,"consumeFromMinEnable":true,"consumeMessageOrderly":false,"consumeTimeoutMinute":15,"groupName":"G","groupRetryPolicy":{"type":"CUSTOMIZED"},"groupSysFlag":0,"notifyConsumerIdsChangedEnable":true,"retryMaxTimes":16,"retryQueueNums":1,"whichBrokerWhenConsumeSlowly":1,"attributes":{}}}}"#;
        std::fs::write(dir.0.join(FILE_NAME), java).unwrap();
        let store = SubscriptionGroupStore::open(&dir.0).unwrap();
        assert!(!store.get("G").unwrap().consume_enable);
        assert_eq!(store.data_version().counter, 4);
        assert_eq!(store.wrapper().forbidden_table["G"]["T"], 2);
        // System groups were missing: the file was rewritten, forbiddenTable kept.
        let text = std::fs::read_to_string(dir.0.join(FILE_NAME)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["forbiddenTable"]["G"]["T"], 2);
        assert_eq!(v["dataVersion"]["counter"], 4);
        let tools = &v["subscriptionGroupTable"]["TOOLS_CONSUMER"];
        for key in [
            "groupName",
            "consumeEnable",
            "consumeFromMinEnable",
            "consumeBroadcastEnable",
            "consumeMessageOrderly",
            "retryQueueNums",
            "retryMaxTimes",
            "groupRetryPolicy",
            "brokerId",
            "whichBrokerWhenConsumeSlowly",
            "notifyConsumerIdsChangedEnable",
            "groupSysFlag",
            "consumeTimeoutMinute",
            "attributes",
        ] {
            assert!(tools.get(key).is_some(), "{key} missing: {tools}");
        }
        assert!(dir.0.join("subscriptionGroup.json.bak").exists());
        // Deleting drops the group's forbidden entries too.
        assert!(store.delete("G").unwrap());
        assert!(store.wrapper().forbidden_table.is_empty());
    }

    #[test]
    fn corrupt_file_is_an_error() {
        for content in [
            "{\"subscriptionGroupTable\":",
            "",
            "{\"subscriptionGroupTable\":[]}",
        ] {
            let dir = TempDir::new("groups-corrupt");
            std::fs::write(dir.0.join(FILE_NAME), content).unwrap();
            let err = SubscriptionGroupStore::open(&dir.0).unwrap_err();
            assert!(
                matches!(err, MetaError::Corrupt { .. }),
                "{content:?}: {err}"
            );
            assert!(err.to_string().contains(FILE_NAME), "{err}");
        }
    }

    #[test]
    fn find_or_create_rules() {
        let dir = TempDir::new("groups-create");
        let store = SubscriptionGroupStore::open(&dir.0).unwrap();
        assert_eq!(store.find_or_create("G1", false).unwrap(), None);
        assert!(store.get("G1").is_none());
        let v = store.data_version();
        let g1 = store.find_or_create("G1", true).unwrap().unwrap();
        assert_eq!(g1, SubscriptionGroupConfig::named("G1"));
        assert_eq!(store.data_version().counter, v.counter + 1);
        // Existing: returned whatever the flag, nothing written.
        assert_eq!(store.find_or_create("G1", false).unwrap(), Some(g1));
        assert_eq!(store.data_version().counter, v.counter + 1);
        // System groups are created even without auto-create.
        assert!(store
            .find_or_create("CID_RMQ_SYS_X", false)
            .unwrap()
            .is_some());
        // Invalid names never.
        assert_eq!(store.find_or_create("bad group", true).unwrap(), None);
        assert_eq!(store.find_or_create(&"g".repeat(121), true).unwrap(), None);
        assert!(matches!(
            store.put(SubscriptionGroupConfig::named("a/b")),
            Err(MetaError::InvalidName { .. })
        ));
        drop(store);
        let store = SubscriptionGroupStore::open(&dir.0).unwrap();
        assert!(store.get("G1").is_some() && store.get("CID_RMQ_SYS_X").is_some());
    }
}
