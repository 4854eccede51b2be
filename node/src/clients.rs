//! Producers and consumers the broker knows from their heartbeats, broker-wide.
//!
//! Clients heartbeat every 30 s (RocketMQ); one that stops for `expiry` is dropped, as is
//! every client of a connection that closes. When the members of a consumer group
//! change, every remaining member is told (NOTIFY_CONSUMER_IDS_CHANGED) so it
//! rebalances at once instead of at its next 20 s rebalance.

use protocol::body::{ConsumerData, SubscriptionData};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::shard::ConnId;

/// One client of a group, as seen on one connection.
#[derive(Debug, Clone)]
pub struct ClientChannel {
    pub client_id: String,
    pub conn: ConnId,
    pub addr: SocketAddr,
    pub language: String,
    pub version: i32,
    pub last_update_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroupInfo {
    pub consume_type: String,
    pub message_model: String,
    pub consume_from_where: String,
    /// Topic -> subscription.
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// Client id -> channel.
    pub channels: BTreeMap<String, ClientChannel>,
    pub last_update_ms: u64,
}

impl ConsumerGroupInfo {
    pub fn client_ids(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }
}

/// A group whose members changed: these connections are to be notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub group: String,
    pub conns: Vec<ConnId>,
}

#[derive(Debug, Default)]
struct Tables {
    consumers: HashMap<String, ConsumerGroupInfo>,
    /// Group -> client id -> channel.
    producers: HashMap<String, BTreeMap<String, ClientChannel>>,
}

#[derive(Debug, Default)]
pub struct ClientRegistry {
    tables: Mutex<Tables>,
}

impl ClientRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a consumer heartbeat. Returns the group's connections to notify when its
    /// membership or subscriptions changed.
    pub fn register_consumer(&self, data: &ConsumerData, channel: ClientChannel) -> Option<Notify> {
        let mut t = self.lock();
        let now = channel.last_update_ms;
        let info = t.consumers.entry(data.group_name.clone()).or_default();
        info.consume_type.clone_from(&data.consume_type);
        info.message_model.clone_from(&data.message_model);
        info.consume_from_where.clone_from(&data.consume_from_where);
        info.last_update_ms = now;
        let added = match info.channels.get_mut(&channel.client_id) {
            Some(existing) if existing.conn == channel.conn => {
                existing.last_update_ms = now;
                false
            }
            _ => {
                info.channels.insert(channel.client_id.clone(), channel);
                true
            }
        };
        let mut changed = false;
        let new_subs: BTreeMap<String, SubscriptionData> = data
            .subscription_data_set
            .iter()
            .map(|s| (s.topic.clone(), s.clone()))
            .collect();
        for (topic, sub) in &new_subs {
            match info.subscriptions.get(topic) {
                Some(old) if old.sub_version >= sub.sub_version => {}
                Some(old)
                    if old.sub_string == sub.sub_string
                        && old.expression_type == sub.expression_type =>
                {
                    info.subscriptions.insert(topic.clone(), sub.clone());
                }
                _ => {
                    info.subscriptions.insert(topic.clone(), sub.clone());
                    changed = true;
                }
            }
        }
        // Topics no longer subscribed (RocketMQ drops them on every heartbeat).
        let before = info.subscriptions.len();
        info.subscriptions.retain(|t, _| new_subs.contains_key(t));
        changed |= info.subscriptions.len() != before;
        (added || changed).then(|| Notify {
            group: data.group_name.clone(),
            conns: info.channels.values().map(|c| c.conn).collect(),
        })
    }

    pub fn register_producer(&self, group: &str, channel: ClientChannel) {
        let mut t = self.lock();
        t.producers
            .entry(group.to_owned())
            .or_default()
            .insert(channel.client_id.clone(), channel);
    }

    /// UNREGISTER_CLIENT.
    pub fn unregister(
        &self,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Option<Notify> {
        let mut t = self.lock();
        if let Some(g) = producer_group {
            if let Some(p) = t.producers.get_mut(g) {
                p.remove(client_id);
                if p.is_empty() {
                    t.producers.remove(g);
                }
            }
        }
        let g = consumer_group?;
        let info = t.consumers.get_mut(g)?;
        info.channels.remove(client_id)?;
        let notify = Notify {
            group: g.to_owned(),
            conns: info.channels.values().map(|c| c.conn).collect(),
        };
        if info.channels.is_empty() {
            t.consumers.remove(g);
        }
        Some(notify)
    }

    /// Drops every client of a closed connection.
    pub fn connection_closed(&self, conn: ConnId) -> Vec<Notify> {
        self.remove_where(|c| c.conn == conn)
    }

    /// Drops clients silent since before `deadline_ms`.
    pub fn expire(&self, deadline_ms: u64) -> Vec<Notify> {
        self.remove_where(|c| c.last_update_ms < deadline_ms)
    }

    fn remove_where(&self, gone: impl Fn(&ClientChannel) -> bool) -> Vec<Notify> {
        let mut t = self.lock();
        for p in t.producers.values_mut() {
            p.retain(|_, c| !gone(c));
        }
        t.producers.retain(|_, p| !p.is_empty());
        let mut notify = Vec::new();
        t.consumers.retain(|group, info| {
            let before = info.channels.len();
            info.channels.retain(|_, c| !gone(c));
            if info.channels.len() != before && !info.channels.is_empty() {
                notify.push(Notify {
                    group: group.clone(),
                    conns: info.channels.values().map(|c| c.conn).collect(),
                });
            }
            !info.channels.is_empty()
        });
        notify
    }

    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.lock().consumers.get(group).cloned()
    }

    /// The subscription of `group` to `topic`, if a member declared it.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.lock()
            .consumers
            .get(group)?
            .subscriptions
            .get(topic)
            .cloned()
    }

    pub fn consumer_groups(&self) -> Vec<String> {
        self.lock().consumers.keys().cloned().collect()
    }

    pub fn producer_group(&self, group: &str) -> Vec<ClientChannel> {
        self.lock()
            .producers
            .get(group)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn counts(&self) -> (usize, usize) {
        let t = self.lock();
        (
            t.producers.values().map(BTreeMap::len).sum(),
            t.consumers.values().map(|c| c.channels.len()).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(id: &str, conn: ConnId, now: u64) -> ClientChannel {
        ClientChannel {
            client_id: id.into(),
            conn,
            addr: "127.0.0.1:1".parse().unwrap(),
            language: "JAVA".into(),
            version: 479,
            last_update_ms: now,
        }
    }

    fn consumer(group: &str, topic: &str, sub: &str, version: i64) -> ConsumerData {
        ConsumerData {
            group_name: group.into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_FIRST_OFFSET".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: topic.into(),
                sub_string: sub.into(),
                sub_version: version,
                ..Default::default()
            }],
            unit_mode: false,
        }
    }

    #[test]
    fn membership_changes_notify_the_whole_group() {
        let r = ClientRegistry::default();
        let n = r
            .register_consumer(&consumer("G", "T", "*", 1), channel("a", 1, 0))
            .unwrap();
        assert_eq!(n.conns, vec![1]);
        // Same client, same subscription: nothing to tell.
        assert_eq!(
            r.register_consumer(&consumer("G", "T", "*", 1), channel("a", 1, 5)),
            None
        );
        let n = r
            .register_consumer(&consumer("G", "T", "*", 1), channel("b", 2, 5))
            .unwrap();
        assert_eq!(n.conns, vec![1, 2]);
        assert_eq!(r.consumer_group("G").unwrap().client_ids(), vec!["a", "b"]);
        // A changed filter is a change too.
        assert!(r
            .register_consumer(&consumer("G", "T", "TagA", 2), channel("b", 2, 6))
            .is_some());
        assert_eq!(r.subscription("G", "T").unwrap().sub_string, "TagA");
        // b's connection closes: a is told.
        let n = r.connection_closed(2);
        assert_eq!(
            n,
            vec![Notify {
                group: "G".into(),
                conns: vec![1]
            }]
        );
        // a goes silent: the group disappears, nobody is left to tell.
        assert!(r.expire(10).is_empty());
        assert!(r.consumer_group("G").is_none());
    }

    #[test]
    fn unregister_removes_the_client() {
        let r = ClientRegistry::default();
        r.register_consumer(&consumer("G", "T", "*", 1), channel("a", 1, 0));
        r.register_consumer(&consumer("G", "T", "*", 1), channel("b", 2, 0));
        r.register_producer("P", channel("a", 1, 0));
        let n = r.unregister("a", Some("P"), Some("G")).unwrap();
        assert_eq!(n.conns, vec![2]);
        assert!(r.producer_group("P").is_empty());
        assert_eq!(r.counts(), (0, 1));
    }
}
