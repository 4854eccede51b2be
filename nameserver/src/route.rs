//! The route tables: which brokers are alive, which broker holds which queues of which
//! topic. Pure state: times are passed in, so expiry is tested without waiting.
//!
//! Semantics follow RocketMQ's `RouteInfoManager`: only a master (broker id 0) writes
//! queue data; queue data for a broker name goes away only when that name has no
//! address left; a topic with no queue data left is deleted; an empty cluster too.

use protocol::body::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfigSerializeWrapper, TopicList,
    TopicRouteData, MASTER_ID,
};
use protocol::message::perm;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Identifies the connection a broker registered over, so that closing it unregisters
/// the broker at once (RocketMQ's `BrokerHousekeepingService`).
pub type ConnId = u64;

/// topicSysFlag bits used by the unit-topic lists.
const FLAG_UNIT: i32 = 1;
const FLAG_UNIT_SUB: i32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LiveKey {
    cluster: String,
    addr: String,
}

#[derive(Debug, Clone)]
struct BrokerLive {
    last_update_ms: u64,
    heartbeat_timeout_ms: u64,
    data_version: DataVersion,
    conn: Option<ConnId>,
    ha_server_addr: String,
}

/// A REGISTER_BROKER request, decoded.
#[derive(Debug, Clone)]
pub struct Registration {
    pub cluster: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    pub zone_name: Option<String>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub enable_acting_master: Option<bool>,
    pub topics: TopicConfigSerializeWrapper,
    pub filter_server_list: Option<Vec<String>>,
}

/// What a registering slave learns about its master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterResult {
    pub ha_server_addr: Option<String>,
    pub master_addr: Option<String>,
}

/// A registration that RocketMQ refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A single-topic registration arrived before the broker's first full one.
    #[error("register broker failed")]
    SingleTopicBeforeFull,
}

/// A broker to unregister.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerIdentity {
    pub cluster: String,
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// topic → broker name → queues.
    topic_queues: HashMap<String, BTreeMap<String, QueueData>>,
    broker_addrs: BTreeMap<String, BrokerData>,
    clusters: BTreeMap<String, BTreeSet<String>>,
    live: BTreeMap<LiveKey, BrokerLive>,
    filter_servers: BTreeMap<LiveKey, Vec<String>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(
        &mut self,
        reg: Registration,
        conn: Option<ConnId>,
        default_timeout_ms: u64,
        now_ms: u64,
    ) -> Result<RegisterResult, RegisterError> {
        let key = LiveKey {
            cluster: reg.cluster.clone(),
            addr: reg.broker_addr.clone(),
        };
        self.clusters
            .entry(reg.cluster.clone())
            .or_default()
            .insert(reg.broker_name.clone());

        let mut register_first = false;
        let data = self
            .broker_addrs
            .entry(reg.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    cluster: reg.cluster.clone(),
                    broker_name: reg.broker_name.clone(),
                    broker_addrs: BTreeMap::new(),
                    zone_name: None,
                    enable_acting_master: reg.enable_acting_master.unwrap_or(false),
                }
            });
        data.enable_acting_master = reg.enable_acting_master.unwrap_or(false);
        data.zone_name = reg.zone_name.clone();

        // The same address under another id: a slave became master (or the reverse).
        data.broker_addrs
            .retain(|id, addr| !(*addr == reg.broker_addr && *id != reg.broker_id));

        // An older incarnation with a newer state version keeps its slot.
        if let Some(old_addr) = data.broker_addrs.get(&reg.broker_id) {
            if *old_addr != reg.broker_addr {
                let old_key = LiveKey {
                    cluster: reg.cluster.clone(),
                    addr: old_addr.clone(),
                };
                if let Some(old) = self.live.get(&old_key) {
                    if old.data_version.state_version > reg.topics.data_version.state_version {
                        self.live.remove(&key);
                        return Ok(RegisterResult::default());
                    }
                }
            }
        }

        if !data.broker_addrs.contains_key(&reg.broker_id)
            && reg.topics.topic_config_table.len() == 1
        {
            return Err(RegisterError::SingleTopicBeforeFull);
        }
        let previous = data
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.clone());
        register_first |= previous.is_none_or(|p| p.is_empty());

        let min_id = data.broker_addrs.keys().next().copied();
        let is_master = reg.broker_id == MASTER_ID;
        let is_prime_slave =
            reg.enable_acting_master.is_some() && !is_master && min_id == Some(reg.broker_id);
        if is_master || is_prime_slave {
            let previous_version = self.live.get(&key).map(|l| l.data_version);
            let version_changed = previous_version != Some(reg.topics.data_version);
            for config in reg.topics.topic_config_table.values() {
                let queues = self.topic_queues.get(&config.topic_name);
                let topic_changed = version_changed
                    || queues.is_none_or(|q| q.is_empty() || !q.contains_key(&reg.broker_name));
                if !(register_first || topic_changed) {
                    continue;
                }
                let mut perm_bits = config.perm;
                if is_prime_slave && reg.enable_acting_master == Some(true) {
                    perm_bits &= !perm::WRITE;
                }
                let queue_data = QueueData {
                    broker_name: reg.broker_name.clone(),
                    read_queue_nums: config.read_queue_nums,
                    write_queue_nums: config.write_queue_nums,
                    perm: perm_bits,
                    topic_sys_flag: config.topic_sys_flag,
                };
                self.topic_queues
                    .entry(config.topic_name.clone())
                    .or_default()
                    .insert(reg.broker_name.clone(), queue_data);
            }
        }

        self.live.insert(
            key.clone(),
            BrokerLive {
                last_update_ms: now_ms,
                heartbeat_timeout_ms: reg.heartbeat_timeout_ms.unwrap_or(default_timeout_ms),
                data_version: reg.topics.data_version,
                conn,
                ha_server_addr: reg.ha_server_addr.clone(),
            },
        );
        match reg.filter_server_list {
            Some(list) if list.is_empty() => {
                self.filter_servers.remove(&key);
            }
            Some(list) => {
                self.filter_servers.insert(key, list);
            }
            None => {}
        }

        let mut result = RegisterResult::default();
        if !is_master {
            let master = self
                .broker_addrs
                .get(&reg.broker_name)
                .and_then(|d| d.broker_addrs.get(&MASTER_ID));
            if let Some(master_addr) = master {
                let master_key = LiveKey {
                    cluster: reg.cluster.clone(),
                    addr: master_addr.clone(),
                };
                if let Some(master_live) = self.live.get(&master_key) {
                    result.ha_server_addr = Some(master_live.ha_server_addr.clone());
                    result.master_addr = Some(master_addr.clone());
                }
            }
        }
        Ok(result)
    }

    /// Removes brokers, then the queue data of broker names left without an address, then
    /// topics left without queue data.
    pub fn unregister(&mut self, brokers: &[BrokerIdentity]) {
        let mut removed_names = BTreeSet::new();
        let mut reduced_names = BTreeSet::new();
        for b in brokers {
            let key = LiveKey {
                cluster: b.cluster.clone(),
                addr: b.broker_addr.clone(),
            };
            self.live.remove(&key);
            self.filter_servers.remove(&key);
            let Some(data) = self.broker_addrs.get_mut(&b.broker_name) else {
                continue;
            };
            data.broker_addrs.retain(|_, addr| *addr != b.broker_addr);
            if data.broker_addrs.is_empty() {
                self.broker_addrs.remove(&b.broker_name);
                if let Some(names) = self.clusters.get_mut(&b.cluster) {
                    names.remove(&b.broker_name);
                    if names.is_empty() {
                        self.clusters.remove(&b.cluster);
                    }
                }
                removed_names.insert(b.broker_name.clone());
            } else {
                reduced_names.insert(b.broker_name.clone());
            }
        }
        // Acting-master groups that lost their master stop taking writes.
        let masterless: BTreeSet<&String> = reduced_names
            .iter()
            .filter(|name| {
                self.broker_addrs.get(*name).is_some_and(|d| {
                    d.enable_acting_master && !d.broker_addrs.contains_key(&MASTER_ID)
                })
            })
            .collect();
        self.topic_queues.retain(|_, queues| {
            for name in &removed_names {
                queues.remove(name);
            }
            for name in &masterless {
                if let Some(q) = queues.get_mut(*name) {
                    q.perm &= !perm::WRITE;
                }
            }
            !queues.is_empty()
        });
    }

    /// The brokers whose last registration is older than their heartbeat timeout.
    pub fn expired(&self, now_ms: u64) -> Vec<BrokerIdentity> {
        let keys: Vec<&LiveKey> = self
            .live
            .iter()
            .filter(|(_, l)| l.last_update_ms.saturating_add(l.heartbeat_timeout_ms) < now_ms)
            .map(|(k, _)| k)
            .collect();
        self.identities(keys)
    }

    /// The brokers that registered over `conn`.
    pub fn registered_over(&self, conn: ConnId) -> Vec<BrokerIdentity> {
        let keys: Vec<&LiveKey> = self
            .live
            .iter()
            .filter(|(_, l)| l.conn == Some(conn))
            .map(|(k, _)| k)
            .collect();
        self.identities(keys)
    }

    /// Resolves live entries to broker names and ids (RocketMQ's `onChannelDestroy`: the
    /// broker group of the same cluster holding that address). A live entry whose group
    /// is gone is still returned, so that the entry itself is cleaned up.
    fn identities(&self, keys: Vec<&LiveKey>) -> Vec<BrokerIdentity> {
        keys.into_iter()
            .map(|key| {
                let found = self
                    .broker_addrs
                    .values()
                    .filter(|d| d.cluster == key.cluster)
                    .find_map(|d| {
                        d.broker_addrs
                            .iter()
                            .find(|(_, addr)| **addr == key.addr)
                            .map(|(id, _)| (d.broker_name.clone(), *id))
                    });
                let (broker_name, broker_id) = found.unwrap_or_default();
                BrokerIdentity {
                    cluster: key.cluster.clone(),
                    broker_addr: key.addr.clone(),
                    broker_name,
                    broker_id,
                }
            })
            .collect()
    }

    /// BROKER_HEARTBEAT and QUERY_DATA_VERSION refresh liveness without re-registering.
    pub fn touch(&mut self, cluster: &str, addr: &str, now_ms: u64) -> bool {
        let key = LiveKey {
            cluster: cluster.to_owned(),
            addr: addr.to_owned(),
        };
        match self.live.get_mut(&key) {
            Some(live) => {
                live.last_update_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// QUERY_DATA_VERSION: whether the broker's registered data version differs from
    /// `version` (or it is not registered), and the stored version.
    pub fn data_version_changed(
        &self,
        cluster: &str,
        addr: &str,
        version: &DataVersion,
    ) -> (bool, Option<DataVersion>) {
        let key = LiveKey {
            cluster: cluster.to_owned(),
            addr: addr.to_owned(),
        };
        match self.live.get(&key) {
            Some(live) => (live.data_version != *version, Some(live.data_version)),
            None => (true, None),
        }
    }

    /// The route of a topic, or `None` if no live broker group holds it.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queues.get(topic)?;
        let broker_datas: Vec<BrokerData> = queues
            .keys()
            .filter_map(|name| self.broker_addrs.get(name))
            .cloned()
            .collect();
        if queues.is_empty() || broker_datas.is_empty() {
            return None;
        }
        let mut filter_server_table = BTreeMap::new();
        for data in &broker_datas {
            for addr in data.broker_addrs.values() {
                let key = LiveKey {
                    cluster: data.cluster.clone(),
                    addr: addr.clone(),
                };
                if let Some(list) = self.filter_servers.get(&key) {
                    filter_server_table.insert(addr.clone(), list.clone());
                }
            }
        }
        Some(TopicRouteData {
            order_topic_conf: None,
            queue_datas: queues.values().cloned().collect(),
            broker_datas,
            filter_server_table,
            topic_queue_mapping_by_broker: None,
        })
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addrs.clone(),
            cluster_addr_table: self.clusters.clone(),
        }
    }

    pub fn all_topics(&self) -> TopicList {
        TopicList {
            topic_list: self.topic_queues.keys().cloned().collect(),
            broker_addr: None,
        }
    }

    pub fn topics_of_cluster(&self, cluster: &str) -> TopicList {
        let names = self.clusters.get(cluster);
        let topic_list = self
            .topic_queues
            .iter()
            .filter(|(_, queues)| {
                names.is_some_and(|names| queues.keys().any(|b| names.contains(b)))
            })
            .map(|(t, _)| t.clone())
            .collect();
        TopicList {
            topic_list,
            broker_addr: None,
        }
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: cluster and broker names (each is a system topic),
    /// and one broker address to ask for the rest.
    pub fn system_topics(&self) -> TopicList {
        let mut topic_list = BTreeSet::new();
        for (cluster, names) in &self.clusters {
            topic_list.insert(cluster.clone());
            topic_list.extend(names.iter().cloned());
        }
        let broker_addr = self
            .broker_addrs
            .values()
            .find_map(|d| d.broker_addrs.values().next().cloned());
        TopicList {
            topic_list,
            broker_addr,
        }
    }

    /// Topics whose first queue data matches `pred` on its topicSysFlag.
    fn topics_by_flag(&self, pred: impl Fn(i32) -> bool) -> TopicList {
        let topic_list = self
            .topic_queues
            .iter()
            .filter(|(_, q)| q.values().next().is_some_and(|qd| pred(qd.topic_sys_flag)))
            .map(|(t, _)| t.clone())
            .collect();
        TopicList {
            topic_list,
            broker_addr: None,
        }
    }

    pub fn unit_topics(&self) -> TopicList {
        self.topics_by_flag(|f| f & FLAG_UNIT != 0)
    }

    pub fn unit_sub_topics(&self) -> TopicList {
        self.topics_by_flag(|f| f & FLAG_UNIT_SUB != 0)
    }

    pub fn unit_sub_ununit_topics(&self) -> TopicList {
        self.topics_by_flag(|f| f & FLAG_UNIT == 0 && f & FLAG_UNIT_SUB != 0)
    }

    /// WIPE_WRITE_PERM_OF_BROKER: clears the write bit of every topic on `broker_name`.
    pub fn wipe_write_perm(&mut self, broker_name: &str) -> i32 {
        self.update_perm(broker_name, |p| p & !perm::WRITE)
    }

    /// ADD_WRITE_PERM_OF_BROKER: sets read-write (RocketMQ sets, rather than ORs, 6).
    pub fn add_write_perm(&mut self, broker_name: &str) -> i32 {
        self.update_perm(broker_name, |_| perm::READ_WRITE)
    }

    fn update_perm(&mut self, broker_name: &str, f: impl Fn(i32) -> i32) -> i32 {
        let mut count = 0;
        for queues in self.topic_queues.values_mut() {
            if let Some(qd) = queues.get_mut(broker_name) {
                qd.perm = f(qd.perm);
                count += 1;
            }
        }
        count
    }

    /// DELETE_TOPIC_IN_NAMESRV: from one cluster's brokers, or everywhere.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster.filter(|c| !c.is_empty()) {
            Some(cluster) => {
                let Some(names) = self.clusters.get(cluster) else {
                    return;
                };
                if let Some(queues) = self.topic_queues.get_mut(topic) {
                    queues.retain(|name, _| !names.contains(name));
                    if queues.is_empty() {
                        self.topic_queues.remove(topic);
                    }
                }
            }
            None => {
                self.topic_queues.remove(topic);
            }
        }
    }

    /// REGISTER_TOPIC_IN_NAMESRV: adds queue data for known brokers; stops at the first
    /// unknown broker name, as RocketMQ does.
    pub fn register_topic(&mut self, topic: &str, queue_datas: Vec<QueueData>) {
        for qd in queue_datas {
            if !self.broker_addrs.contains_key(&qd.broker_name) {
                return;
            }
            self.topic_queues
                .entry(topic.to_owned())
                .or_default()
                .insert(qd.broker_name.clone(), qd);
        }
    }

    /// GET_BROKER_MEMBER_GROUP: the addresses of one broker group.
    pub fn member_addrs(&self, broker_name: &str) -> BTreeMap<i64, String> {
        self.broker_addrs
            .get(broker_name)
            .map(|d| d.broker_addrs.clone())
            .unwrap_or_default()
    }

    pub fn live_broker_count(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::body::TopicConfig;

    fn registration(
        name: &str,
        addr: &str,
        id: i64,
        topics: &[&str],
        counter: i64,
    ) -> Registration {
        let mut wrapper = TopicConfigSerializeWrapper::default();
        for t in topics {
            wrapper.topic_config_table.insert(
                (*t).to_owned(),
                TopicConfig {
                    topic_name: (*t).to_owned(),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    ..Default::default()
                },
            );
        }
        wrapper.data_version = DataVersion {
            state_version: 0,
            timestamp: 1,
            counter,
        };
        Registration {
            cluster: "C".into(),
            broker_addr: addr.into(),
            broker_name: name.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            zone_name: None,
            heartbeat_timeout_ms: None,
            enable_acting_master: None,
            topics: wrapper,
            filter_server_list: Some(vec![]),
        }
    }

    #[test]
    fn master_registers_routes_and_slave_learns_master() {
        let mut t = RouteTable::new();
        t.register(
            registration("a", "m:1", 0, &["T", "U"], 1),
            Some(1),
            120_000,
            0,
        )
        .unwrap();
        let r = t
            .register(
                registration("a", "s:1", 1, &["T", "U", "SLAVE_ONLY"], 1),
                Some(2),
                120_000,
                0,
            )
            .unwrap();
        assert_eq!(
            r,
            RegisterResult {
                ha_server_addr: Some("m:1-ha".into()),
                master_addr: Some("m:1".into())
            }
        );
        let route = t.route("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
        assert!(
            t.route("SLAVE_ONLY").is_none(),
            "slaves do not write queue data"
        );
        assert!(t.route("nope").is_none());
        assert_eq!(t.cluster_info().cluster_addr_table["C"].len(), 1);
    }

    #[test]
    fn single_topic_before_full_registration_is_refused() {
        let mut t = RouteTable::new();
        let err = t.register(registration("a", "m:1", 0, &["T"], 1), None, 120_000, 0);
        assert_eq!(err, Err(RegisterError::SingleTopicBeforeFull));
    }

    #[test]
    fn expiry_removes_queues_only_when_no_address_is_left() {
        let mut t = RouteTable::new();
        t.register(
            registration("a", "m:1", 0, &["T", "U"], 1),
            Some(1),
            1_000,
            0,
        )
        .unwrap();
        t.register(
            registration("a", "s:1", 1, &["T", "U"], 1),
            Some(2),
            1_000,
            500,
        )
        .unwrap();
        t.register(
            registration("b", "m:2", 0, &["U", "V"], 1),
            Some(3),
            1_000,
            900,
        )
        .unwrap();
        assert!(t.expired(1_000).is_empty());
        let gone = t.expired(1_200);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].broker_name, "a");
        assert_eq!(gone[0].broker_id, 0);
        t.unregister(&gone);
        // The slave still holds the name: queue data stays.
        assert_eq!(t.route("T").unwrap().broker_datas[0].broker_addrs.len(), 1);
        t.unregister(&t.expired(1_600));
        assert!(t.route("T").is_none(), "a's last address expired");
        assert_eq!(
            t.route("U").unwrap().queue_datas.len(),
            1,
            "b still holds U"
        );
        t.unregister(&t.registered_over(3));
        assert!(t.route("U").is_none());
        assert!(t.cluster_info().cluster_addr_table.is_empty());
        assert_eq!(t.live_broker_count(), 0);
    }

    #[test]
    fn unchanged_data_version_only_fills_gaps() {
        let mut t = RouteTable::new();
        t.register(
            registration("a", "m:1", 0, &["T", "U"], 1),
            None,
            120_000,
            0,
        )
        .unwrap();
        t.wipe_write_perm("a");
        // Same data version: existing queue data is left alone.
        t.register(
            registration("a", "m:1", 0, &["T", "U"], 1),
            None,
            120_000,
            1,
        )
        .unwrap();
        assert_eq!(t.route("T").unwrap().queue_datas[0].perm, perm::READ);
        // New data version: rewritten from the body.
        t.register(
            registration("a", "m:1", 0, &["T", "U"], 2),
            None,
            120_000,
            2,
        )
        .unwrap();
        assert_eq!(t.route("T").unwrap().queue_datas[0].perm, perm::READ_WRITE);
        assert_eq!(t.add_write_perm("a"), 2);
    }

    #[test]
    fn delete_and_register_topic() {
        let mut t = RouteTable::new();
        t.register(
            registration("a", "m:1", 0, &["T", "U"], 1),
            None,
            120_000,
            0,
        )
        .unwrap();
        t.delete_topic("T", Some("other"));
        assert!(t.route("T").is_some());
        t.delete_topic("T", Some("C"));
        assert!(t.route("T").is_none());
        t.register_topic(
            "X",
            vec![QueueData {
                broker_name: "a".into(),
                read_queue_nums: 1,
                write_queue_nums: 1,
                perm: 6,
                topic_sys_flag: 0,
            }],
        );
        assert!(t.route("X").is_some());
        t.register_topic(
            "Y",
            vec![QueueData {
                broker_name: "zz".into(),
                ..Default::default()
            }],
        );
        assert!(t.route("Y").is_none());
        assert!(t.topics_of_cluster("C").topic_list.contains("X"));
        assert!(t.topics_of_cluster("nope").topic_list.is_empty());
    }
}
