//! Delay levels: messages with a `DELAY` property (and consumer retries) wait in
//! `SCHEDULE_TOPIC_XXXX` and are put to their real topic when due, as RocketMQ's
//! `ScheduleMessageService` does.
//!
//! Every level's messages share one delay, so each level's queue is in due order and a
//! delivery task per level only ever waits for the message at its head. Each shard has
//! its own queue per level (`queue id = (level - 1) * shards + k`, `k` chosen so the
//! shard owns it), so a delayed message stays on the shard that owns its real queue
//! and delivery is a local put.
//!
//! Progress (the next offset of each level's queue) is kept in the consumer-offset
//! store under the group [`PROGRESS_GROUP`] and persisted with it. A crash re-delivers at
//! most what was delivered since the last persist (at-least-once), never loses one.

use bytes::Bytes;
use protocol::message::record::{decode_record, RecordWriter};
use protocol::message::{append_property, iter_properties, java_string_hash, property};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::wall_ms;
use crate::shard::{owner_of, ShardCtx};

pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// The offset-store group holding each level queue's delivery progress.
pub const PROGRESS_GROUP: &str = "%SCHEDULE_PROGRESS%";

/// The schedule queue of `level` (1-based) that `shard` owns.
pub fn schedule_queue(level: usize, shard: usize, shards: usize) -> i32 {
    let h = java_string_hash(SCHEDULE_TOPIC) as u32 as u64 % shards as u64;
    let k = (shard as u64 + shards as u64 - h) % shards as u64;
    let q = ((level - 1) * shards) as i32 + k as i32;
    debug_assert_eq!(owner_of(SCHEDULE_TOPIC, q, shards), shard);
    q
}

/// The level a `DELAY` property asks for, clamped to the configured levels; `None` for
/// no delay.
pub fn delay_level(properties: &[u8], levels: usize) -> Option<usize> {
    let level: i64 = protocol::message::get_property(properties, property::DELAY_TIME_LEVEL)?
        .trim()
        .parse()
        .ok()?;
    (level > 0).then(|| (level as usize).min(levels))
}

/// Properties of a delayed message as stored in the schedule queue: the original ones
/// plus where it is going (`REAL_TOPIC`, `REAL_QID`).
pub fn schedule_properties(properties: &[u8], topic: &str, queue_id: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(properties.len() + topic.len() + 32);
    for (k, v) in iter_properties(properties) {
        if k != property::REAL_TOPIC && k != property::REAL_QUEUE_ID {
            append_property(&mut out, k, v);
        }
    }
    append_property(&mut out, property::REAL_TOPIC, topic);
    append_property(&mut out, property::REAL_QUEUE_ID, &queue_id.to_string());
    out
}

/// Starts one delivery task per level on this shard.
pub fn start(ctx: &Rc<ShardCtx>) {
    let levels = ctx.broker.delay_levels.len();
    for level in 1..=levels {
        glommio::spawn_local(deliver_level(ctx.clone(), level)).detach();
    }
}

async fn deliver_level(ctx: Rc<ShardCtx>, level: usize) {
    let broker = ctx.broker.clone();
    let delay = broker.delay_levels[level - 1];
    let queue = schedule_queue(level, ctx.id, ctx.shards());
    let store = ctx.store.clone();
    let mut next = broker
        .meta
        .offsets
        .query(PROGRESS_GROUP, SCHEDULE_TOPIC, queue)
        .map_or(0, |o| o.max(0) as u64)
        .max(store.min_queue_offset(SCHEDULE_TOPIC, queue));
    loop {
        if broker.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let generation = ctx.arrivals.generation();
        let entries = match store.entries(SCHEDULE_TOPIC, queue, next, 32).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(level, error = %e, "schedule queue read failed");
                glommio::timer::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if entries.is_empty() {
            if ctx.arrivals.generation() == generation {
                futures_lite::future::or(
                    crate::processor::pull::arrival(&ctx, SCHEDULE_TOPIC, queue),
                    glommio::timer::sleep(Duration::from_secs(1)),
                )
                .await;
            }
            continue;
        }
        for entry in entries {
            let record = match store.read(&entry).await {
                Ok(r) => Bytes::copy_from_slice(&r),
                Err(e) => {
                    tracing::error!(level, error = %e, "schedule record read failed");
                    break;
                }
            };
            let view = match decode_record(&record, 0, false) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(level, offset = entry.offset, error = %e, "bad schedule record; skipped");
                    next += 1;
                    continue;
                }
            };
            let due = view.store_timestamp + delay.as_millis() as i64;
            let now = wall_ms();
            if due > now {
                let wait = Duration::from_millis((due - now) as u64);
                glommio::timer::sleep(wait.min(Duration::from_secs(1))).await;
                break; // look again (and notice a shutdown) at least every second
            }
            if let Err(e) = deliver(&ctx, &view).await {
                tracing::warn!(level, error = %e, "due message not delivered yet; retrying");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                break;
            }
            next += 1;
            broker
                .meta
                .offsets
                .commit(PROGRESS_GROUP, SCHEDULE_TOPIC, queue, next as i64);
        }
    }
}

/// Puts a due message to its real topic and queue (on this shard, which owns it).
async fn deliver(
    ctx: &Rc<ShardCtx>,
    view: &protocol::message::record::RecordView,
) -> Result<(), String> {
    let props = &view.properties;
    let topic = protocol::message::get_property(props, property::REAL_TOPIC)
        .ok_or("no REAL_TOPIC")?
        .to_owned();
    let queue_id: i32 = protocol::message::get_property(props, property::REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
        .ok_or("no REAL_QID")?;
    if owner_of(&topic, queue_id, ctx.shards()) != ctx.id {
        return Err(format!("{topic}:{queue_id} is not on shard {}", ctx.id));
    }
    // As RocketMQ: the delay goes, REAL_TOPIC / REAL_QID stay.
    let mut properties = Vec::with_capacity(props.len());
    for (k, v) in iter_properties(props) {
        if k != property::DELAY_TIME_LEVEL {
            append_property(&mut properties, k, v);
        }
    }
    let mut records = [RecordWriter {
        queue_id,
        flag: view.flag,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: view.sys_flag,
        born_timestamp: view.born_timestamp,
        born_host: view.born_host,
        store_timestamp: 0,
        store_host: ctx.broker.store_host,
        reconsume_times: view.reconsume_times,
        prepared_transaction_offset: view.prepared_transaction_offset,
        body: &view.body,
        topic: &topic,
        properties: &properties,
    }];
    let appended = ctx
        .store
        .put(&mut records, wall_ms())
        .await
        .map_err(|e| e.to_string())?;
    crate::processor::send::notify_stored(ctx, &topic, queue_id, appended, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_owns_its_level_queues() {
        for shards in 1..6 {
            let mut seen = std::collections::HashSet::new();
            for shard in 0..shards {
                for level in 1..=18 {
                    let q = schedule_queue(level, shard, shards);
                    assert_eq!(owner_of(SCHEDULE_TOPIC, q, shards), shard);
                    assert!(seen.insert(q), "queue {q} used twice");
                }
            }
        }
    }

    #[test]
    fn delay_property() {
        let mut p = Vec::new();
        append_property(&mut p, "DELAY", "3");
        assert_eq!(delay_level(&p, 18), Some(3));
        let mut p = Vec::new();
        append_property(&mut p, "DELAY", "40");
        assert_eq!(delay_level(&p, 18), Some(18), "clamped to the last level");
        let mut p = Vec::new();
        append_property(&mut p, "DELAY", "0");
        assert_eq!(delay_level(&p, 18), None);
        assert_eq!(delay_level(b"", 18), None);
        let sp = schedule_properties(b"TAGS\x01A\x02", "T", 2);
        assert_eq!(
            protocol::message::get_property(&sp, "REAL_TOPIC"),
            Some("T")
        );
        assert_eq!(protocol::message::get_property(&sp, "REAL_QID"), Some("2"));
        assert_eq!(protocol::message::get_property(&sp, "TAGS"), Some("A"));
    }
}
