//! Queue locks for orderly consumers (LOCK_BATCH_MQ 41 / UNLOCK_BATCH_MQ 42), as
//! RocketMQ's `RebalanceLockManager`: a queue is held by one client of a group; a lock
//! lives 60 s unless its holder renews it (clients renew every 20 s), after which another
//! client may take it.

use protocol::body::MessageQueue;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// RocketMQ `rocketmq.broker.rebalance.lockMaxLiveTime`.
pub const LOCK_MAX_LIVE_MS: u64 = 60_000;

#[derive(Debug, Clone)]
struct Holder {
    client_id: String,
    last_update_ms: u64,
}

#[derive(Debug, Default)]
pub struct QueueLocks {
    /// Group -> queue -> holder.
    table: Mutex<HashMap<String, HashMap<MessageQueue, Holder>>>,
}

impl QueueLocks {
    /// Locks (or renews) what it can of `queues` for `client_id`; returns those it holds.
    pub fn try_lock(
        &self,
        group: &str,
        queues: &BTreeSet<MessageQueue>,
        client_id: &str,
        now_ms: u64,
    ) -> BTreeSet<MessageQueue> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let locks = table.entry(group.to_owned()).or_default();
        let mut ok = BTreeSet::new();
        for mq in queues {
            let holder = locks.entry(mq.clone()).or_insert_with(|| Holder {
                client_id: client_id.to_owned(),
                last_update_ms: now_ms,
            });
            let expired = now_ms.saturating_sub(holder.last_update_ms) > LOCK_MAX_LIVE_MS;
            if holder.client_id == client_id || expired {
                if holder.client_id != client_id {
                    tracing::info!(group, ?mq, from = %holder.client_id, to = client_id, "expired queue lock taken over");
                }
                holder.client_id = client_id.to_owned();
                holder.last_update_ms = now_ms;
                ok.insert(mq.clone());
            }
        }
        ok
    }

    /// Releases the queues `client_id` holds among `queues`.
    pub fn unlock(&self, group: &str, queues: &BTreeSet<MessageQueue>, client_id: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(locks) = table.get_mut(group) {
            for mq in queues {
                if locks.get(mq).is_some_and(|h| h.client_id == client_id) {
                    locks.remove(mq);
                }
            }
            if locks.is_empty() {
                table.remove(group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqs(ids: &[i32]) -> BTreeSet<MessageQueue> {
        ids.iter()
            .map(|&q| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: q,
            })
            .collect()
    }

    #[test]
    fn one_holder_per_queue_until_expiry_or_unlock() {
        let l = QueueLocks::default();
        assert_eq!(l.try_lock("G", &mqs(&[0, 1]), "a", 0), mqs(&[0, 1]));
        // b gets only the free queue.
        assert_eq!(l.try_lock("G", &mqs(&[1, 2]), "b", 1_000), mqs(&[2]));
        // a renews; another group is independent.
        assert_eq!(l.try_lock("G", &mqs(&[0, 1]), "a", 50_000), mqs(&[0, 1]));
        assert_eq!(l.try_lock("H", &mqs(&[0]), "b", 50_000), mqs(&[0]));
        // a's locks expire 60 s after its last renewal.
        assert!(l.try_lock("G", &mqs(&[0]), "b", 100_000).is_empty());
        assert_eq!(l.try_lock("G", &mqs(&[0]), "b", 110_001), mqs(&[0]));
        // Unlock frees only one's own.
        l.unlock("G", &mqs(&[1, 2]), "b");
        assert_eq!(l.try_lock("G", &mqs(&[2]), "c", 105_000), mqs(&[2]));
        assert!(
            l.try_lock("G", &mqs(&[1]), "c", 105_000).is_empty(),
            "a renewed queue 1 at 50 s"
        );
    }
}
