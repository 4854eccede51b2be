//! Transactional messages, as RocketMQ's `TransactionalMessageService`.
//!
//! A prepared message (sysFlag TRANSACTION_PREPARED) is stored as a *half* message in
//! `RMQ_SYS_TRANS_HALF_TOPIC`, invisible to consumers, with its real topic and queue in
//! `REAL_TOPIC` / `REAL_QID`. END_TRANSACTION commits it (the message is put to its real
//! queue) or rolls it back; either way an *op* record (body: the half message's queue
//! offset, tag `d`) goes to `RMQ_SYS_TRANS_OP_HALF_TOPIC`. Half messages still open
//! after `transaction_timeout_ms` are checked back with CHECK_TRANSACTION_STATE sent to a
//! live producer of their group, every `transaction_check_interval_ms`, at most
//! `transaction_check_max` times; then they are rolled back.
//!
//! Each shard has its own half and op queue (the shard that owns the real queue keeps
//! the half message, so a commit is a local put). The open transactions of a shard are
//! kept in memory and rebuilt at start from the two queues: past the persisted
//! watermark (the lowest open half offset), every half message without an op record is
//! open. A commit that arrives twice (a client retry, or one before and one after a
//! restart) is applied once.

use bytes::Bytes;
use protocol::code::{request, response};
use protocol::header::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use protocol::message::record::{decode_record, RecordView, RecordWriter};
use protocol::message::{
    append_property, get_property, iter_properties, java_string_hash, property, sys_flag,
};
use protocol::RemotingCommand;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::wall_ms;
use crate::meta::topics::{TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};
use crate::shard::ShardCtx;

/// The offset-store group holding each shard's lowest open half offset.
pub const PROGRESS_GROUP: &str = "%TRANSACTION_PROGRESS%";
/// Tag of op records that close a half message.
const OP_TAG: &str = "d";

/// A queue id of `topic` that `shard` owns (queue `k` with `owner_of == shard`).
pub fn local_queue(topic: &str, shard: usize, shards: usize) -> i32 {
    let h = java_string_hash(topic) as u32 as u64 % shards as u64;
    ((shard as u64 + shards as u64 - h) % shards as u64) as i32
}

/// An open transaction.
#[derive(Debug, Clone)]
struct Open {
    /// Commit-log offset and size of the half message.
    offset: i64,
    size: i32,
    store_ms: i64,
    checks: u32,
    last_check_ms: i64,
}

/// A shard's open transactions, by half-queue offset.
#[derive(Debug, Default)]
pub struct Transactions {
    open: RefCell<BTreeMap<i64, Open>>,
}

impl Transactions {
    pub fn open_count(&self) -> usize {
        self.open.borrow().len()
    }
}

/// Properties of a half message: the producer's plus where it goes.
pub fn half_properties(properties: &[u8], topic: &str, queue_id: i32) -> Vec<u8> {
    let mut out = crate::schedule::schedule_properties(properties, topic, queue_id);
    if get_property(properties, property::TRANSACTION_ID).is_none() {
        if let Some(uniq) = get_property(properties, property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
            append_property(&mut out, property::TRANSACTION_ID, uniq);
        }
    }
    out
}

/// Records a half message just stored on this shard.
pub fn opened(ctx: &ShardCtx, queue_offset: i64, offset: i64, size: usize, store_ms: i64) {
    ctx.transactions.open.borrow_mut().insert(
        queue_offset,
        Open {
            offset,
            size: size as i32,
            store_ms,
            checks: 0,
            last_check_ms: 0,
        },
    );
}

async fn read_record(ctx: &ShardCtx, offset: i64, size: usize) -> Option<RecordView> {
    let bytes = ctx.store.log().read(offset, size).await.ok()?;
    decode_record(&Bytes::copy_from_slice(&bytes), 0, false).ok()
}

/// Rebuilds the open transactions from the shard's half and op queues; starts the
/// check-back task.
pub async fn start(ctx: &Rc<ShardCtx>) {
    let shards = ctx.shards();
    let half_q = local_queue(TRANS_HALF_TOPIC, ctx.id, shards);
    let op_q = local_queue(TRANS_OP_HALF_TOPIC, ctx.id, shards);
    let store = &ctx.store;
    let from = ctx
        .broker
        .meta
        .offsets
        .query(PROGRESS_GROUP, TRANS_HALF_TOPIC, half_q)
        .unwrap_or(0)
        .max(store.min_queue_offset(TRANS_HALF_TOPIC, half_q) as i64);
    let mut closed = HashSet::new();
    let mut at = store.min_queue_offset(TRANS_OP_HALF_TOPIC, op_q);
    loop {
        let Ok(entries) = store.entries(TRANS_OP_HALF_TOPIC, op_q, at, 256).await else {
            break;
        };
        if entries.is_empty() {
            break;
        }
        at += entries.len() as u64;
        for e in entries {
            if let Some(view) = read_record(ctx, e.offset, e.size as usize).await {
                if let Some(q) = std::str::from_utf8(&view.body)
                    .ok()
                    .and_then(|b| b.parse::<i64>().ok())
                {
                    closed.insert(q);
                }
            }
        }
    }
    let mut at = from as u64;
    let mut open = BTreeMap::new();
    loop {
        let Ok(entries) = store.entries(TRANS_HALF_TOPIC, half_q, at, 256).await else {
            break;
        };
        if entries.is_empty() {
            break;
        }
        for (i, e) in entries.iter().enumerate() {
            let q = (at + i as u64) as i64;
            if closed.contains(&q) {
                continue;
            }
            let store_ms = store
                .log()
                .store_timestamp(e.offset, e.size as usize)
                .await
                .unwrap_or(0);
            open.insert(
                q,
                Open {
                    offset: e.offset,
                    size: e.size,
                    store_ms,
                    checks: 0,
                    last_check_ms: 0,
                },
            );
        }
        at += entries.len() as u64;
    }
    if !open.is_empty() {
        tracing::info!(
            shard = ctx.id,
            open = open.len(),
            "open transactions recovered"
        );
    }
    *ctx.transactions.open.borrow_mut() = open;
    glommio::spawn_local(check_loop(ctx.clone())).detach();
}

/// Closes a half message: op record written, no longer open.
async fn close(ctx: &Rc<ShardCtx>, half_queue_offset: i64) -> Result<(), String> {
    let op_q = local_queue(TRANS_OP_HALF_TOPIC, ctx.id, ctx.shards());
    let body = half_queue_offset.to_string();
    let mut props = Vec::new();
    append_property(&mut props, property::TAGS, OP_TAG);
    append_property(&mut props, property::WAIT_STORE_MSG_OK, "false");
    let mut records = [RecordWriter {
        queue_id: op_q,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: wall_ms(),
        born_host: ctx.broker.store_host,
        store_timestamp: 0,
        store_host: ctx.broker.store_host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: body.as_bytes(),
        topic: TRANS_OP_HALF_TOPIC,
        properties: &props,
    }];
    let appended = ctx
        .store
        .put(&mut records, wall_ms())
        .await
        .map_err(|e| e.to_string())?;
    ctx.transactions
        .open
        .borrow_mut()
        .remove(&half_queue_offset);
    // The commit (or rollback) is only as durable as its op record.
    ctx.store
        .wait_acked(&appended)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// END_TRANSACTION (37), on the shard of the half message's commit-log offset.
pub async fn end_transaction(ctx: &Rc<ShardCtx>, req: &RemotingCommand) -> RemotingCommand {
    let h: EndTransactionRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return crate::processor::bad_header(req, e),
    };
    if let Err(e) = h.check() {
        return crate::processor::bad_header(req, e);
    }
    let commit = match sys_flag::transaction_value(h.commit_or_rollback) {
        sys_flag::TRANSACTION_COMMIT => true,
        sys_flag::TRANSACTION_ROLLBACK => false,
        // Unknown: the check-back will ask again.
        _ => return req.response(response::SUCCESS),
    };
    let (shard, _) = storage::commitlog::split_offset(h.commit_log_offset);
    if shard as usize != ctx.id {
        return req.error_response(
            response::SYSTEM_ERROR,
            format!(
                "Find prepared transaction message failed: offset {}",
                h.commit_log_offset
            ),
        );
    }
    let open = ctx
        .transactions
        .open
        .borrow()
        .get(&h.tran_state_table_offset)
        .cloned();
    let Some(open) = open else {
        // Already committed or rolled back (a retry, or a check answered twice).
        return req.response(response::SUCCESS);
    };
    if open.offset != h.commit_log_offset {
        return req.error_response(response::SYSTEM_ERROR, "The commit log offset wrong");
    }
    let Some(half) = read_record(ctx, open.offset, open.size as usize).await else {
        return req.error_response(
            response::SYSTEM_ERROR,
            "Find prepared transaction message failed",
        );
    };
    if get_property(&half.properties, property::PRODUCER_GROUP) != Some(h.producer_group.as_str()) {
        return req.error_response(response::SYSTEM_ERROR, "The producer group wrong");
    }
    if commit {
        if let Err(e) = put_committed(ctx, &half, h.commit_log_offset).await {
            return req.error_response(response::SYSTEM_ERROR, e);
        }
    }
    match close(ctx, h.tran_state_table_offset).await {
        Ok(()) => req.response(response::SUCCESS),
        Err(e) => req.error_response(response::SYSTEM_ERROR, e),
    }
}

/// Puts a committed half message to its real queue (on this shard, which owns it).
async fn put_committed(
    ctx: &Rc<ShardCtx>,
    half: &RecordView,
    half_offset: i64,
) -> Result<(), String> {
    let props = &half.properties;
    let (topic, queue_id) = crate::schedule::real_destination(ctx, props)?;
    let mut properties = Vec::with_capacity(props.len());
    for (k, v) in iter_properties(props) {
        if k != property::REAL_TOPIC
            && k != property::REAL_QUEUE_ID
            && k != property::TRANSACTION_PREPARED
        {
            append_property(&mut properties, k, v);
        }
    }
    let mut record =
        crate::shard::restore(half, &topic, queue_id, &properties, ctx.broker.store_host);
    record.sys_flag =
        (half.sys_flag & !sys_flag::TRANSACTION_ROLLBACK) | sys_flag::TRANSACTION_COMMIT;
    record.prepared_transaction_offset = half_offset;
    let appended = ctx.put_one(record).await.map_err(|e| e.to_string())?;
    ctx.store
        .wait_acked(&appended)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Asks producers about transactions open past the timeout; rolls back those asked too
/// often; advances the persisted watermark.
async fn check_loop(ctx: Rc<ShardCtx>) {
    let config = &ctx.broker.config;
    let interval = Duration::from_millis(config.transaction_check_interval_ms);
    let half_q = local_queue(TRANS_HALF_TOPIC, ctx.id, ctx.shards());
    loop {
        glommio::timer::sleep(interval.min(Duration::from_secs(1))).await;
        if ctx.broker.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let now = wall_ms();
        let due: Vec<(i64, Open)> = ctx
            .transactions
            .open
            .borrow()
            .iter()
            .filter(|(_, o)| {
                now - o.store_ms >= config.transaction_timeout_ms as i64
                    && now - o.last_check_ms >= config.transaction_check_interval_ms as i64
            })
            .map(|(q, o)| (*q, o.clone()))
            .collect();
        for (q, open) in due {
            if open.checks >= config.transaction_check_max {
                tracing::warn!(
                    shard = ctx.id,
                    half_queue_offset = q,
                    checks = open.checks,
                    "transaction never resolved; rolled back"
                );
                if let Err(e) = close(&ctx, q).await {
                    tracing::error!(error = %e, "cannot roll back an expired transaction");
                }
                continue;
            }
            let Some(half) = read_record(&ctx, open.offset, open.size as usize).await else {
                continue;
            };
            if let Some(o) = ctx.transactions.open.borrow_mut().get_mut(&q) {
                o.checks += 1;
                o.last_check_ms = now;
            }
            send_check(&ctx, &half, q);
        }
        // Everything below the oldest open half message is resolved.
        let watermark = ctx
            .transactions
            .open
            .borrow()
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| ctx.store.max_queue_offset(TRANS_HALF_TOPIC, half_q) as i64);
        ctx.broker
            .meta
            .offsets
            .commit(PROGRESS_GROUP, TRANS_HALF_TOPIC, half_q, watermark);
    }
}

/// Sends CHECK_TRANSACTION_STATE (oneway) to one live producer of the message's group.
fn send_check(ctx: &Rc<ShardCtx>, half: &RecordView, queue_offset: i64) {
    let Some(group) = get_property(&half.properties, property::PRODUCER_GROUP) else {
        return;
    };
    let producers = ctx.broker.clients.producer_group(group);
    let Some(producer) = producers.get((queue_offset as usize) % producers.len().max(1)) else {
        tracing::debug!(group, "no live producer to check a transaction with");
        return;
    };
    let topic = get_property(&half.properties, property::REAL_TOPIC).unwrap_or(TRANS_HALF_TOPIC);
    let queue_id = get_property(&half.properties, property::REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0);
    // The body is the message as the producer sent it: real topic and queue.
    let record = RecordWriter {
        queue_id,
        flag: half.flag,
        queue_offset,
        physical_offset: half.physical_offset,
        sys_flag: half.sys_flag,
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        store_timestamp: half.store_timestamp,
        store_host: half.store_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: half.prepared_transaction_offset,
        body: &half.body,
        topic,
        properties: &half.properties,
    };
    let Ok(body) = record.to_vec() else {
        return;
    };
    let uniq =
        get_property(&half.properties, property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX).map(str::to_owned);
    let header = CheckTransactionStateRequestHeader {
        topic: Some(topic.to_owned()),
        tran_state_table_offset: queue_offset,
        commit_log_offset: half.physical_offset,
        msg_id: uniq.clone(),
        transaction_id: uniq,
        offset_msg_id: Some(protocol::message::id::encode_offset_msg_id(
            half.store_host,
            half.physical_offset,
        )),
        broker_name: Some(ctx.broker.config.broker_name.clone()),
    };
    let cmd = RemotingCommand::request(request::CHECK_TRANSACTION_STATE)
        .with_header(&header)
        .with_body(body)
        .with_oneway();
    ctx.deliver(producer.conn, cmd, false);
}
