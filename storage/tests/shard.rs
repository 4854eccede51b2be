//! The shard store: queue offsets, consume queues, checkpoints and recovery.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use bytes::Bytes;
use protocol::message::record::{decode_record, RecordWriter};
use std::net::SocketAddr;
use std::time::Duration;
use storage::index::IndexConfig;
use storage::io::mem::FaultPlan;
use storage::io::mem::{CrashMode, MemBackend};
use storage::shard::RetentionConfig;
use storage::{CommitLogConfig, FlushMode, Shard, ShardConfig, StoreError};

mod common;
use common::run;

fn config(checkpoint_ms: u64) -> ShardConfig {
    ShardConfig {
        log: CommitLogConfig {
            segment_bytes: 64 * 1024,
            chunk_bytes: 8 * 1024,
            cache_bytes: 16 * 1024,
            max_record_bytes: 16 * 1024,
            flush: FlushMode::Sync {
                timeout: Duration::from_secs(5),
            },
            ..CommitLogConfig::new("/s/commitlog", 1)
        },
        dir: "/s".into(),
        checkpoint_interval: Duration::from_millis(checkpoint_ms),
        // Tiny files so that tests seal several and walk long chains.
        index: IndexConfig {
            slots: 16,
            entries: 100,
        },
        // Driven by hand in the tests below.
        retention: RetentionConfig {
            interval: Duration::from_secs(3600),
            reserved: Duration::from_secs(20 * 365 * 86_400),
            ..RetentionConfig::default()
        },
    }
}

fn host() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10911))
}

const TOPICS: [&str; 3] = ["TopicA", "%RETRY%group", "TopicB"];

/// Message `i` goes to topic i%3, queue i%4, body from i.
fn message(i: u64) -> (usize, i32, Vec<u8>, Vec<u8>) {
    let body = format!("message-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes();
    let props = format!("TAGS\x01tag{}\x02KEYS\x01k{i}\x02", i % 2).into_bytes();
    ((i % 3) as usize, (i % 4) as i32, body, props)
}

async fn put_batch(shard: &Shard<MemBackend>, from: u64, count: u64) {
    put_batch_at(shard, from, count, 1_700_000_000_000)
        .await
        .unwrap();
}

async fn put_batch_at(
    shard: &Shard<MemBackend>,
    from: u64,
    count: u64,
    ts: i64,
) -> Result<(), StoreError> {
    let msgs: Vec<_> = (from..from + count).map(message).collect();
    let mut recs: Vec<RecordWriter> = msgs
        .iter()
        .map(|(t, q, body, props)| RecordWriter {
            queue_id: *q,
            flag: 0,
            queue_offset: -1,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: host(),
            store_timestamp: 0,
            store_host: host(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            topic: TOPICS[*t],
            properties: props,
        })
        .collect();
    let appended = shard.put(&mut recs, ts).await?;
    shard.wait_acked(&appended).await
}

/// Every message 0..n is in its queue, in order, and reads back intact.
async fn verify(shard: &Shard<MemBackend>, n: u64) {
    for (t, topic) in TOPICS.iter().enumerate() {
        for q in 0..4 {
            let expected: Vec<u64> = (0..n)
                .filter(|i| message(*i).0 == t && message(*i).1 == q)
                .collect();
            assert_eq!(
                shard.max_queue_offset(topic, q),
                expected.len() as u64,
                "{topic}/{q}"
            );
            let mut got = Vec::new();
            while got.len() < expected.len() {
                let entries = shard.entries(topic, q, got.len() as u64, 7).await.unwrap();
                assert!(!entries.is_empty(), "{topic}/{q} stops at {}", got.len());
                for e in entries {
                    let bytes = shard.read(&e).await.unwrap();
                    let view = decode_record(&Bytes::copy_from_slice(&bytes), 0, true).unwrap();
                    assert_eq!(view.queue_offset, got.len() as i64);
                    assert_eq!(view.topic_str(), *topic);
                    assert_eq!(e.tags_code, protocol::message::tags_code(view.tags()));
                    got.push(view.body.clone());
                }
            }
            for (i, body) in expected.iter().zip(&got) {
                assert_eq!(&body[..], &message(*i).2[..]);
            }
        }
    }
}

#[test]
fn queues_fill_in_order_and_survive_clean_restart() {
    run(|| async {
        let backend = MemBackend::new();
        let shard = Shard::open(backend.clone(), config(20)).await.unwrap();
        for b in 0..40 {
            put_batch(&shard, b * 10, 10).await;
        }
        verify(&shard, 400).await;
        shard.close().await.unwrap();
        let shard = Shard::open(backend.clone(), config(20)).await.unwrap();
        assert!(shard.recovery().previous_shutdown_clean);
        assert_eq!(
            shard.recovery().replayed_records,
            0,
            "a clean shutdown replays nothing"
        );
        verify(&shard, 400).await;
        put_batch(&shard, 400, 10).await;
        verify(&shard, 410).await;
    });
}

#[test]
fn crash_replays_only_past_the_checkpoint() {
    run(|| async {
        let backend = MemBackend::new();
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        for b in 0..30 {
            put_batch(&shard, b * 10, 10).await;
        }
        shard.checkpoint().await.unwrap();
        for b in 30..35 {
            put_batch(&shard, b * 10, 10).await;
        }
        backend.crash(CrashMode::DropUnsynced);
        drop(shard);
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        let r = shard.recovery();
        assert!(!r.previous_shutdown_clean);
        assert!(r.from_checkpoint.is_some());
        assert_eq!(
            r.replayed_records, 50,
            "only the records after the checkpoint"
        );
        verify(&shard, 350).await;
    });
}

#[test]
fn crash_without_any_checkpoint_rebuilds_every_queue() {
    run(|| async {
        let backend = MemBackend::new();
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        for b in 0..20 {
            put_batch(&shard, b * 10, 10).await;
        }
        backend.crash(CrashMode::KeepPrefix {
            writes: 2,
            torn_sectors: 1,
        });
        drop(shard);
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        assert_eq!(shard.recovery().replayed_records, 200);
        verify(&shard, 200).await;
        put_batch(&shard, 200, 10).await;
        verify(&shard, 210).await;
    });
}

#[test]
fn retention_deletes_old_segments_and_queues_follow() {
    run(|| async {
        let backend = MemBackend::new();
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        // Message i stored at t0 + i seconds.
        let t0 = 1_700_000_000_000i64;
        for i in 0..2000u64 {
            put_batch_at(&shard, i, 1, t0 + i as i64 * 1000)
                .await
                .unwrap();
        }
        let segments = shard.log().segment_bases().len();
        assert!(segments > 3, "{segments} segments");
        assert_eq!(
            shard.search_offset_by_time("TopicA", 0, t0).await.unwrap(),
            0
        );
        // Message 300 is topic 0 queue 0 (300 % 3 == 0, 300 % 4 == 0): the 25th there.
        assert_eq!(
            shard
                .search_offset_by_time("TopicA", 0, t0 + 300_000)
                .await
                .unwrap(),
            25
        );
        assert_eq!(
            shard
                .search_offset_by_time("TopicA", 0, t0 + 10_000_000)
                .await
                .unwrap(),
            167
        );
        assert_eq!(
            shard.earliest_store_time("TopicA", 0).await.unwrap(),
            Some(t0)
        );

        // Young segments stay.
        assert!(!shard.enforce_retention(t0 + 2_001_000).await.unwrap());
        // Far in the future everything but the segment in use expires, one per round.
        let mut rounds = 0;
        while shard
            .enforce_retention(t0 + 30 * 365 * 86_400_000)
            .await
            .unwrap()
        {
            rounds += 1;
        }
        // The segment in use stays, and so does the next one, created ahead of need.
        assert_eq!(rounds, segments - 2);
        assert_eq!(shard.log().segment_bases().len(), 2);
        let min = shard.min_queue_offset("TopicA", 0);
        assert!(min > 0, "the queue's minimum follows the log");
        let entries = shard.entries("TopicA", 0, min, 100).await.unwrap();
        assert!(!entries.is_empty());
        for e in &entries {
            shard.read(e).await.unwrap();
        }
        assert!(shard.log().min_offset() > shard.log().segment_bases()[0] as i64 - 1);
        // Appends go on.
        put_batch_at(&shard, 2000, 5, t0 + 2_001_000).await.unwrap();
    });
}

#[test]
fn a_full_disk_refuses_appends_but_serves_reads() {
    run(|| async {
        let backend = MemBackend::new();
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        put_batch(&shard, 0, 50).await;
        let used = backend.used_bytes();
        // Capacity such that usage is past 90% (and past the high-water mark, so the
        // one deletable segment, if any, goes too).
        backend.set_faults(FaultPlan {
            capacity_bytes: Some(used * 100 / 95),
            ..Default::default()
        });
        while shard.enforce_retention(0).await.unwrap() {}
        let refused = put_batch_at(&shard, 50, 1, 0).await;
        assert!(
            matches!(refused, Err(StoreError::DiskFull { .. })),
            "{refused:?}"
        );
        let min = shard.min_queue_offset("TopicA", 0);
        assert!(!shard
            .entries("TopicA", 0, min, 10)
            .await
            .unwrap()
            .is_empty());
        // Space freed: appends resume.
        backend.set_faults(FaultPlan::default());
        shard.enforce_retention(0).await.unwrap();
        put_batch_at(&shard, 50, 1, 0).await.unwrap();
    });
}

/// Message i has KEYS "k{i}" and is in topic TOPICS[i % 3].
async fn find(shard: &Shard<MemBackend>, i: u64) -> Vec<u64> {
    let topic = TOPICS[(i % 3) as usize];
    let found = shard
        .query_by_key(topic, &format!("k{i}"), 32, 0, i64::MAX)
        .await
        .unwrap();
    found
        .iter()
        .map(|b| {
            let v = decode_record(&Bytes::copy_from_slice(b), 0, true).unwrap();
            let body = String::from_utf8(v.body.to_vec()).unwrap();
            body.split('-').nth(1).unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn keys_are_found_across_index_files_restarts_and_crashes() {
    run(|| async {
        let backend = MemBackend::new();
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        for b in 0..45 {
            put_batch(&shard, b * 10, 10).await;
        }
        for i in [0, 1, 57, 99, 100, 101, 333, 449] {
            assert_eq!(find(&shard, i).await, vec![i], "key k{i}");
        }
        // The same key in another topic is not a match.
        assert!(shard
            .query_by_key("TopicB", "k0", 32, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty());
        // Outside the time range.
        assert!(shard
            .query_by_key("TopicA", "k0", 32, 0, 1_000)
            .await
            .unwrap()
            .is_empty());
        shard.close().await.unwrap();
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        assert_eq!(find(&shard, 449).await, vec![449]);
        assert_eq!(find(&shard, 7).await, vec![7]);
        shard.checkpoint().await.unwrap();
        for b in 45..50 {
            put_batch(&shard, b * 10, 10).await;
        }
        backend.crash(CrashMode::DropUnsynced);
        drop(shard);
        let shard = Shard::open(backend.clone(), config(10_000)).await.unwrap();
        for i in [3, 448, 450, 499] {
            assert_eq!(find(&shard, i).await, vec![i], "key k{i} after a crash");
        }
    });
}
