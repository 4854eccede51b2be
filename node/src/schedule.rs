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
//! Arbitrary-time timers (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`,
//! `__STARTDELIVERTIME`) use the same machinery with a cascade of power-of-two levels in
//! `rmq_sys_wheel_timer`: 100 ms, 200 ms, 400 ms, ... A timer waits in the largest level
//! not longer than its remaining time; at that level's head it moves down to the level
//! for what remains, or is delivered once due. Each timer is stored O(log delay) times,
//! nothing about it is held in memory, and it is delivered at most one 100 ms level
//! late. Millions of pending timers cost disk, not memory.
//!
//! Progress (the next offset of each level's queue) is kept in the consumer-offset
//! store under the group [`PROGRESS_GROUP`] and persisted with it. A crash re-delivers at
//! most what was delivered since the last persist (at-least-once), never loses one.

use bytes::Bytes;
use protocol::message::record::decode_record;
use protocol::message::{append_property, iter_properties, java_string_hash, property};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::wall_ms;
use crate::shard::{owner_of, ShardCtx};

pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// The offset-store group holding each level queue's delivery progress.
pub const PROGRESS_GROUP: &str = "%SCHEDULE_PROGRESS%";

pub const TIMER_TOPIC: &str = crate::meta::topics::TIMER_TOPIC;
/// The shortest timer level; level `k` waits `TIMER_BASE * 2^k`.
pub const TIMER_BASE: Duration = Duration::from_millis(100);

/// The queue of `topic` for `level` (1-based) that `shard` owns.
fn level_queue(topic: &str, level: usize, shard: usize, shards: usize) -> i32 {
    let h = java_string_hash(topic) as u32 as u64 % shards as u64;
    let k = (shard as u64 + shards as u64 - h) % shards as u64;
    let q = ((level - 1) * shards) as i32 + k as i32;
    debug_assert_eq!(owner_of(topic, q, shards), shard);
    q
}

/// The schedule queue of delay `level` (1-based) that `shard` owns.
pub fn schedule_queue(level: usize, shard: usize, shards: usize) -> i32 {
    level_queue(SCHEDULE_TOPIC, level, shard, shards)
}

/// Timer levels needed to cover `max_delay`.
pub fn timer_levels(max_delay: Duration) -> Vec<Duration> {
    let mut out = vec![TIMER_BASE];
    while *out.last().expect("one level") * 2 <= max_delay.max(TIMER_BASE) * 2 && out.len() < 40 {
        let next = *out.last().expect("one level") * 2;
        out.push(next);
    }
    out
}

/// The timer level (1-based) for a remaining wait: the longest not exceeding it.
pub fn timer_level(remaining_ms: i64, levels: &[Duration]) -> usize {
    let mut level = 1;
    for (i, d) in levels.iter().enumerate() {
        if d.as_millis() as i64 <= remaining_ms {
            level = i + 1;
        }
    }
    level
}

/// The timer queue of `level` that `shard` owns.
pub fn timer_queue(level: usize, shard: usize, shards: usize) -> i32 {
    level_queue(TIMER_TOPIC, level, shard, shards)
}

/// When a message's timer properties say it is due (epoch ms), if it has any:
/// `TIMER_DELIVER_MS` and `__STARTDELIVERTIME` are absolute, `TIMER_DELAY_SEC` and
/// `TIMER_DELAY_MS` relative to `now_ms`. `Err` for a value that is not a number.
pub fn timer_due(properties: &[u8], now_ms: i64) -> Result<Option<i64>, String> {
    let get = |name: &str| -> Result<Option<i64>, String> {
        match protocol::message::get_property(properties, name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("property {name}={v:?} is not a number")),
        }
    };
    if let Some(at) = get(property::TIMER_DELIVER_MS)? {
        return Ok(Some(at));
    }
    if let Some(s) = get(property::TIMER_DELAY_SEC)? {
        return Ok(Some(now_ms.saturating_add(s.saturating_mul(1000))));
    }
    if let Some(ms) = get(property::TIMER_DELAY_MS)? {
        return Ok(Some(now_ms.saturating_add(ms)));
    }
    get(property::STARTDELIVERTIME)
}

/// Properties of a timer message while it waits: the original ones with its due time
/// made absolute in `TIMER_DELIVER_MS`, plus `REAL_TOPIC` / `REAL_QID`.
pub fn timer_properties(properties: &[u8], topic: &str, queue_id: i32, due_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(properties.len() + 64);
    for (k, v) in iter_properties(properties) {
        if !is_timer_property(k) {
            append_property(&mut out, k, v);
        }
    }
    append_property(&mut out, property::TIMER_DELIVER_MS, &due_ms.to_string());
    schedule_properties(&out, topic, queue_id)
}

fn is_timer_property(name: &str) -> bool {
    matches!(
        name,
        property::TIMER_DELIVER_MS
            | property::TIMER_DELAY_SEC
            | property::TIMER_DELAY_MS
            | property::STARTDELIVERTIME
    )
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

/// Where a message set aside (delayed, timer, transaction half) really goes: the
/// `REAL_TOPIC` / `REAL_QID` that [`schedule_properties`] wrote, a queue this shard owns.
pub fn real_destination(ctx: &ShardCtx, properties: &[u8]) -> Result<(String, i32), String> {
    let topic = protocol::message::get_property(properties, property::REAL_TOPIC)
        .ok_or("no REAL_TOPIC")?
        .to_owned();
    let queue_id: i32 = protocol::message::get_property(properties, property::REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
        .ok_or("no REAL_QID")?;
    if owner_of(&topic, queue_id, ctx.shards()) != ctx.id {
        return Err(format!("{topic}:{queue_id} is not on shard {}", ctx.id));
    }
    Ok((topic, queue_id))
}

/// Starts one delivery task per delay level and per timer level on this shard.
pub fn start(ctx: &Rc<ShardCtx>) {
    for level in 1..=ctx.broker.delay_levels.len() {
        let delay = ctx.broker.delay_levels[level - 1];
        let queue = schedule_queue(level, ctx.id, ctx.shards());
        glommio::spawn_local(deliver_level(ctx.clone(), SCHEDULE_TOPIC, queue, delay)).detach();
    }
    for level in 1..=ctx.broker.timer_levels.len() {
        let delay = ctx.broker.timer_levels[level - 1];
        let queue = timer_queue(level, ctx.id, ctx.shards());
        glommio::spawn_local(deliver_level(ctx.clone(), TIMER_TOPIC, queue, delay)).detach();
    }
}

async fn deliver_level(ctx: Rc<ShardCtx>, topic: &'static str, queue: i32, delay: Duration) {
    let broker = ctx.broker.clone();
    let store = ctx.store.clone();
    let mut next = broker
        .meta
        .offsets
        .query(PROGRESS_GROUP, topic, queue)
        .map_or(0, |o| o.max(0) as u64)
        .max(store.min_queue_offset(topic, queue));
    loop {
        if broker.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let generation = ctx.arrivals.generation();
        let entries = match store.entries(topic, queue, next, 32).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(topic, queue, error = %e, "schedule queue read failed");
                glommio::timer::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if entries.is_empty() {
            if ctx.arrivals.generation() == generation {
                futures_lite::future::or(
                    crate::processor::pull::arrival(&ctx, topic, queue),
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
                    tracing::error!(topic, queue, error = %e, "schedule record read failed");
                    break;
                }
            };
            let view = match decode_record(&record, 0, false) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(topic, queue, offset = entry.offset, error = %e, "bad schedule record; skipped");
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
            let result = match timer_due(&view.properties, now) {
                // Not due yet: down to the level for what remains.
                Ok(Some(at)) if topic == TIMER_TOPIC && at > now => {
                    requeue_timer(&ctx, &view, at - now).await
                }
                _ => deliver(&ctx, &view).await,
            };
            if let Err(e) = result {
                tracing::warn!(topic, queue, error = %e, "due message not delivered yet; retrying");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                break;
            }
            next += 1;
            broker
                .meta
                .offsets
                .commit(PROGRESS_GROUP, topic, queue, next as i64);
        }
    }
}

/// Puts a due message to its real topic and queue (on this shard, which owns it).
async fn deliver(
    ctx: &Rc<ShardCtx>,
    view: &protocol::message::record::RecordView,
) -> Result<(), String> {
    let props = &view.properties;
    let (topic, queue_id) = real_destination(ctx, props)?;
    // As RocketMQ: the delay (or timer) goes, REAL_TOPIC / REAL_QID stay.
    let mut properties = Vec::with_capacity(props.len());
    for (k, v) in iter_properties(props) {
        if k != property::DELAY_TIME_LEVEL && !is_timer_property(k) {
            append_property(&mut properties, k, v);
        }
    }
    let record = crate::shard::restore(view, &topic, queue_id, &properties, ctx.broker.store_host);
    ctx.put_one(record).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Stores a timer message again, in the level for its remaining wait.
async fn requeue_timer(
    ctx: &Rc<ShardCtx>,
    view: &protocol::message::record::RecordView,
    remaining_ms: i64,
) -> Result<(), String> {
    let level = timer_level(remaining_ms, &ctx.broker.timer_levels);
    let queue = timer_queue(level, ctx.id, ctx.shards());
    let record = crate::shard::restore(
        view,
        TIMER_TOPIC,
        queue,
        &view.properties,
        ctx.broker.store_host,
    );
    ctx.put_one(record).await.map_err(|e| e.to_string())?;
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
    fn timer_levels_cover_the_max_delay_and_pick_the_longest_fitting() {
        let levels = timer_levels(Duration::from_secs(3 * 86_400));
        assert_eq!(levels[0], TIMER_BASE);
        assert!(*levels.last().unwrap() >= Duration::from_secs(3 * 86_400) / 2);
        assert_eq!(
            timer_level(50, &levels),
            1,
            "below the base: the base level"
        );
        assert_eq!(timer_level(100, &levels), 1);
        assert_eq!(timer_level(399, &levels), 2);
        assert_eq!(timer_level(400, &levels), 3);
        assert_eq!(timer_level(i64::MAX, &levels), levels.len());
        for q in 1..=levels.len() {
            for shards in 1..4 {
                for shard in 0..shards {
                    assert_eq!(
                        owner_of(TIMER_TOPIC, timer_queue(q, shard, shards), shards),
                        shard
                    );
                }
            }
        }
    }

    #[test]
    fn timer_properties_are_made_absolute() {
        let mut p = Vec::new();
        append_property(&mut p, "TIMER_DELAY_SEC", "5");
        assert_eq!(timer_due(&p, 1_000), Ok(Some(6_000)));
        let mut p = Vec::new();
        append_property(&mut p, "TIMER_DELAY_MS", "250");
        assert_eq!(timer_due(&p, 1_000), Ok(Some(1_250)));
        let mut p = Vec::new();
        append_property(&mut p, "__STARTDELIVERTIME", "9000");
        assert_eq!(timer_due(&p, 1_000), Ok(Some(9_000)));
        let tp = timer_properties(&p, "T", 1, 9_000);
        assert_eq!(
            protocol::message::get_property(&tp, "TIMER_DELIVER_MS"),
            Some("9000")
        );
        assert_eq!(
            protocol::message::get_property(&tp, "__STARTDELIVERTIME"),
            None
        );
        assert_eq!(
            protocol::message::get_property(&tp, "REAL_TOPIC"),
            Some("T")
        );
        let mut p = Vec::new();
        append_property(&mut p, "TIMER_DELIVER_MS", "soon");
        assert!(timer_due(&p, 0).is_err());
        assert_eq!(timer_due(b"", 0), Ok(None));
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
