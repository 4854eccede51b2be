//! Client-side rebalance: which of a group's queues this consumer takes. The same
//! answers as the Java client's strategies, so a group can mix Java and Rust consumers.
//! Both inputs must be sorted (queues by topic, broker, id; client ids as strings).

use crate::message::MessageQueue;
use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// `AllocateMessageQueueStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocateStrategy {
    /// `AllocateMessageQueueAveragely`: contiguous ranges, the first
    /// `queues % consumers` consumers one queue more.
    #[default]
    Averagely,
    /// `AllocateMessageQueueAveragelyByCircle`: queue i to consumer i mod n.
    AveragelyByCircle,
    /// `AllocateMessageQueueConsistentHash` with this many virtual nodes per consumer
    /// (Java's default is 10): fewer queues move when consumers come and go.
    ConsistentHash { virtual_nodes: u32 },
}

impl AllocateStrategy {
    /// The queues of `all` that `me` (one of `clients`) consumes.
    pub fn allocate(self, me: &str, all: &[MessageQueue], clients: &[String]) -> Vec<MessageQueue> {
        let Some(index) = clients.iter().position(|c| c == me) else {
            return Vec::new();
        };
        if all.is_empty() {
            return Vec::new();
        }
        let n = clients.len();
        match self {
            AllocateStrategy::Averagely => {
                let q = all.len();
                let rem = q % n;
                let size = if q <= n {
                    1
                } else if rem > 0 && index < rem {
                    q / n + 1
                } else {
                    q / n
                };
                let start = if rem > 0 && index < rem {
                    index * size
                } else {
                    index * size + rem
                };
                let range = size.min(q.saturating_sub(start));
                all[start.min(q)..start.min(q) + range].to_vec()
            }
            AllocateStrategy::AveragelyByCircle => {
                all.iter().skip(index).step_by(n).cloned().collect()
            }
            AllocateStrategy::ConsistentHash { virtual_nodes } => {
                let mut ring: BTreeMap<i64, &str> = BTreeMap::new();
                for client in clients {
                    for i in 0..virtual_nodes {
                        ring.insert(md5_hash(&format!("{client}-{i}")), client);
                    }
                }
                all.iter()
                    .filter(|mq| {
                        let key = format!(
                            "MessageQueue [topic={}, brokerName={}, queueId={}]",
                            mq.topic, mq.broker_name, mq.queue_id
                        );
                        let h = md5_hash(&key);
                        let owner = ring
                            .range(h..)
                            .next()
                            .or_else(|| ring.iter().next())
                            .map(|(_, c)| *c);
                        owner == Some(me)
                    })
                    .cloned()
                    .collect()
            }
        }
    }
}

/// `ConsistentHashRouter.MD5Hash`: the first four digest bytes as an unsigned number.
fn md5_hash(key: &str) -> i64 {
    let digest = Md5::digest(key.as_bytes());
    i64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: i,
            })
            .collect()
    }

    fn clients(n: usize) -> Vec<String> {
        let mut c: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}@{i}")).collect();
        c.sort();
        c
    }

    fn ids(v: &[MessageQueue]) -> Vec<i32> {
        v.iter().map(|q| q.queue_id).collect()
    }

    #[test]
    fn averagely_matches_java() {
        let all = queues(8);
        let c = clients(3);
        // 8 queues over 3: 3, 3, 2 in contiguous ranges.
        let s = AllocateStrategy::Averagely;
        assert_eq!(ids(&s.allocate(&c[0], &all, &c)), vec![0, 1, 2]);
        assert_eq!(ids(&s.allocate(&c[1], &all, &c)), vec![3, 4, 5]);
        assert_eq!(ids(&s.allocate(&c[2], &all, &c)), vec![6, 7]);
        // More consumers than queues: the last ones get nothing.
        let c = clients(5);
        let all = queues(3);
        assert_eq!(ids(&s.allocate(&c[2], &all, &c)), vec![2]);
        assert!(s.allocate(&c[4], &all, &c).is_empty());
        assert!(s.allocate("stranger", &all, &c).is_empty());
    }

    #[test]
    fn by_circle_matches_java() {
        let all = queues(8);
        let c = clients(3);
        let s = AllocateStrategy::AveragelyByCircle;
        assert_eq!(ids(&s.allocate(&c[0], &all, &c)), vec![0, 3, 6]);
        assert_eq!(ids(&s.allocate(&c[2], &all, &c)), vec![2, 5]);
    }

    #[test]
    fn md5_positions_are_javas() {
        // md5("") = d41d8cd9...; Java's MD5Hash takes the first four bytes unsigned.
        assert_eq!(md5_hash(""), 0xd41d_8cd9);
        // md5("abc") = 900150983cd24fb0...
        assert_eq!(md5_hash("abc"), 0x9001_5098);
    }

    #[test]
    fn consistent_hash_moves_few_queues_when_a_consumer_leaves() {
        let all = queues(64);
        let s = AllocateStrategy::ConsistentHash { virtual_nodes: 10 };
        let before = clients(4);
        let after: Vec<String> = before[..3].to_vec();
        for c in &after {
            let was = s.allocate(c, &all, &before);
            let now = s.allocate(c, &all, &after);
            // Nobody loses a queue; only the departed consumer's queues move.
            assert!(was.iter().all(|q| now.contains(q)), "{c} lost a queue");
        }
    }

    proptest! {
        /// Every strategy gives every queue to exactly one consumer.
        #[test]
        fn each_queue_has_exactly_one_owner(q in 0i32..70, n in 1usize..12, which in 0u8..3) {
            let all = queues(q);
            let c = clients(n);
            let s = match which {
                0 => AllocateStrategy::Averagely,
                1 => AllocateStrategy::AveragelyByCircle,
                _ => AllocateStrategy::ConsistentHash { virtual_nodes: 10 },
            };
            let mut owned: Vec<i32> = c.iter().flat_map(|me| ids(&s.allocate(me, &all, &c))).collect();
            owned.sort();
            prop_assert_eq!(owned, (0..q).collect::<Vec<_>>());
        }
    }
}
