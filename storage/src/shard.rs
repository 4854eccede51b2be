//! One shard's store: its commit log, the consume queues of the queues it owns, and the
//! checkpoint that bounds recovery.
//!
//! ```text
//! <dir>/commitlog/<20-digit local offset>          segments
//! <dir>/consumequeue/<topic>/<queue id>/<index>    consume queues
//! <dir>/checkpoint                                  see `checkpoint`
//! ```
//!
//! Appending assigns each record its queue offset and adds its consume-queue entry in
//! the same step that places it in the log. A background task checkpoints: it writes
//! the consume queues and records the commit-log offset below which they are durable.
//! Recovery replays the log only from that offset.

use protocol::message::record::RecordWriter;
use protocol::message::{get_property, property, tags_code};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::checkpoint::CheckpointFile;
use crate::commitlog::{
    global_offset, io_error, split_offset, Appended, CommitLog, CommitLogConfig, StoreError,
};
use crate::consumequeue::{ConsumeQueue, CqEntry};
use crate::index::{IndexConfig, KeyIndex};
use crate::io::{Backend, Payload};

#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The shard's directory.
    pub dir: PathBuf,
    /// Commit-log settings; its `dir` and `shard` are set from this config.
    pub log: CommitLogConfig,
    /// How often consume queues are written and the checkpoint advanced. Shorter makes
    /// recovery replay less; longer writes queue files less often.
    pub checkpoint_interval: Duration,
    pub retention: RetentionConfig,
    pub index: IndexConfig,
}

/// When whole segments are deleted. Checked continuously, one segment at a time, never
/// in a burst at a fixed hour.
#[derive(Debug, Clone, Copy)]
pub struct RetentionConfig {
    /// Segments whose newest record is older than this go (RocketMQ: 72 h).
    pub reserved: Duration,
    /// Above this share of the disk used, the oldest segments go whatever their age
    /// (RocketMQ: 0.75 triggers, 0.85 forces).
    pub high_water_ratio: f64,
    /// Above this, appends fail with DiskFull; reads keep working (RocketMQ: 0.90).
    pub critical_ratio: f64,
    /// How often the check runs.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            reserved: Duration::from_secs(72 * 3600),
            high_water_ratio: 0.75,
            critical_ratio: 0.90,
            interval: Duration::from_secs(1),
        }
    }
}

impl ShardConfig {
    pub fn new(dir: impl Into<PathBuf>, shard: u8) -> Self {
        let dir = dir.into();
        Self {
            log: CommitLogConfig::new(dir.join("commitlog"), shard),
            dir,
            checkpoint_interval: Duration::from_secs(1),
            retention: RetentionConfig::default(),
            index: IndexConfig::default(),
        }
    }
}

impl ShardConfig {
    /// Direct-I/O buffer memory the shard may hold at once (see
    /// [`CommitLogConfig::io_memory_bytes`]), plus consume-queue and index blocks.
    pub fn io_memory_bytes(&self) -> usize {
        self.log.io_memory_bytes() + (16 << 20)
    }
}

/// What recovery did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryStats {
    /// The checkpoint recovery started from (local log offset), if there was one.
    pub from_checkpoint: Option<u64>,
    pub previous_shutdown_clean: bool,
    /// Records replayed into consume queues.
    pub replayed_records: u64,
}

type QueueKey = (String, i32);

struct Inner<B: Backend> {
    backend: B,
    config: ShardConfig,
    log: CommitLog<B>,
    queues: RefCell<HashMap<QueueKey, Rc<ConsumeQueue<B>>>>,
    checkpoint: CheckpointFile<B>,
    recovery: RecoveryStats,
    closed: Cell<bool>,
    /// Set by the retention task when the disk is past the critical ratio.
    disk_full: Cell<Option<StoreError>>,
    index: KeyIndex<B>,
    /// Keys of appended records not yet in the index: (hash, offset, store time, local).
    index_pending: RefCell<std::collections::VecDeque<(i32, i64, i64, u64)>>,
    /// One drain of `index_pending` at a time.
    index_lock: glommio::sync::Semaphore,
}

/// A shard's store. Cheap to clone.
pub struct Shard<B: Backend> {
    inner: Rc<Inner<B>>,
}

impl<B: Backend> Clone for Shard<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Shard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("dir", &self.inner.config.dir)
            .field("log", &self.inner.log)
            .field("queues", &self.inner.queues.borrow().len())
            .field("index", &self.inner.index)
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Calls `f` with each key a record is indexed under: its UNIQ_KEY and each KEYS token.
fn index_keys_raw(properties: &[u8], mut f: impl FnMut(&str)) {
    if let Some(uniq) = get_property(properties, property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX) {
        f(uniq);
    }
    if let Some(keys) = get_property(properties, property::KEYS) {
        keys.split(' ').filter(|k| !k.is_empty()).for_each(&mut f);
    }
}

/// Index hashes of a record; prepared and rolled-back transaction messages are not
/// indexed (as in RocketMQ).
fn index_keys(topic: &str, properties: &[u8], sys_flag: i32, mut f: impl FnMut(i32)) {
    use protocol::message::sys_flag::{
        transaction_value, TRANSACTION_PREPARED, TRANSACTION_ROLLBACK,
    };
    let tx = transaction_value(sys_flag);
    if tx == TRANSACTION_PREPARED || tx == TRANSACTION_ROLLBACK {
        return;
    }
    index_keys_raw(properties, |k| {
        f(protocol::message::index_key_hash(topic, k))
    });
}

/// The tag code stored in the consume queue for a record.
fn record_tags_code(properties: &[u8]) -> i64 {
    tags_code(get_property(properties, property::TAGS))
}

impl<B: Backend + Clone> Shard<B> {
    /// Opens (recovering) or creates the shard's store and starts its checkpoint task.
    pub async fn open(backend: B, mut config: ShardConfig) -> Result<Self, StoreError> {
        let shard = config.log.shard;
        config.log.dir = config.dir.join("commitlog");
        backend
            .create_dir_all(&config.dir)
            .await
            .map_err(|e| io_error("create", &config.dir, e))?;
        let (checkpoint, last) =
            CheckpointFile::open(&backend, config.dir.join("checkpoint")).await?;
        let log = CommitLog::open_from(
            backend.clone(),
            config.log.clone(),
            last.map(|c| c.log_offset),
        )
        .await?;
        let log_end = log.max_offset();

        // Open every queue on disk, dropping entries past the recovered log end.
        let cq_dir = config.dir.join("consumequeue");
        backend
            .create_dir_all(&cq_dir)
            .await
            .map_err(|e| io_error("create", &cq_dir, e))?;
        let mut queues = HashMap::new();
        for topic in backend
            .list_dir(&cq_dir)
            .await
            .map_err(|e| io_error("list", &cq_dir, e))?
        {
            let topic_dir = cq_dir.join(&topic);
            for qid in backend
                .list_dir(&topic_dir)
                .await
                .map_err(|e| io_error("list", &topic_dir, e))?
            {
                let Ok(queue_id) = qid.parse::<i32>() else {
                    continue;
                };
                let q = ConsumeQueue::open(backend.clone(), topic_dir.join(&qid), log_end).await?;
                queues.insert((topic.clone(), queue_id), Rc::new(q));
            }
        }

        // Replay the log past the checkpoint into the queues.
        let from = match last {
            Some(cp) => global_offset(shard, cp.log_offset),
            None => log.min_offset(),
        };
        let (index, index_end) =
            KeyIndex::open(backend.clone(), config.dir.join("index"), config.index).await?;
        let mut index_pending = std::collections::VecDeque::new();
        let mut replay: Vec<(String, i32, i64, CqEntry)> = Vec::new();
        log.scan(from, |view| {
            if view.physical_offset >= index_end {
                index_keys(view.topic_str(), &view.properties, view.sys_flag, |hash| {
                    let local = split_offset(view.physical_offset).1;
                    index_pending.push_back((
                        hash,
                        view.physical_offset,
                        view.store_timestamp,
                        local,
                    ));
                });
            }
            let entry = CqEntry {
                offset: view.physical_offset,
                size: view.total_size as i32,
                tags_code: record_tags_code(&view.properties),
            };
            replay.push((
                view.topic_str().to_owned(),
                view.queue_id,
                view.queue_offset,
                entry,
            ));
        })
        .await?;
        let replayed = replay.len() as u64;
        for (topic, queue_id, queue_offset, entry) in replay {
            let key = (topic, queue_id);
            if !queues.contains_key(&key) {
                let dir = cq_dir.join(&key.0).join(key.1.to_string());
                queues.insert(
                    key.clone(),
                    Rc::new(ConsumeQueue::open(backend.clone(), dir, log_end).await?),
                );
            }
            let q = &queues[&key];
            let next = q.next_index() as i64;
            if queue_offset < next {
                continue; // already in the queue files
            }
            if queue_offset > next {
                return Err(StoreError::Io {
                    op: "recover",
                    path: cq_dir.join(&key.0).join(key.1.to_string()).display().to_string(),
                    message: format!(
                        "consume queue ends at {next} but the log continues at queue offset {queue_offset}; \
                         remove the checkpoint file to rebuild all queues from the log"
                    ),
                });
            }
            q.push(entry);
        }
        let recovery = RecoveryStats {
            from_checkpoint: last.map(|c| c.log_offset),
            previous_shutdown_clean: last.is_some_and(|c| c.clean),
            replayed_records: replayed,
        };
        tracing::info!(
            shard,
            ?recovery,
            log_end,
            queues = queues.len(),
            "shard store recovered"
        );
        let inner = Rc::new(Inner {
            backend,
            config,
            log,
            queues: RefCell::new(queues),
            checkpoint,
            recovery,
            closed: Cell::new(false),
            disk_full: Cell::new(None),
            index,
            index_pending: RefCell::new(index_pending),
            index_lock: glommio::sync::Semaphore::new(1),
        });
        let shard = Shard { inner };
        shard.drain_index().await?;
        // From now on the previous shutdown no longer counts as clean.
        shard.checkpoint().await?;
        let task = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(task.inner.config.checkpoint_interval).await;
                if task.inner.closed.get() {
                    return;
                }
                if let Err(error) = task.checkpoint().await {
                    tracing::error!(%error, "checkpoint failed");
                }
            }
        })
        .detach();
        let task = shard.clone();
        glommio::spawn_local(async move {
            while !task.inner.closed.get() {
                match task.enforce_retention(now_ms()).await {
                    // More to delete: go on at once, one segment per round.
                    Ok(true) => glommio::executor().yield_task_queue_now().await,
                    Ok(false) => glommio::timer::sleep(task.inner.config.retention.interval).await,
                    Err(error) => {
                        tracing::error!(%error, "retention failed");
                        glommio::timer::sleep(task.inner.config.retention.interval).await;
                    }
                }
            }
        })
        .detach();
        Ok(shard)
    }

    /// One retention round at wall-clock `now_ms`: updates the disk-full state and deletes
    /// at most one segment. Returns whether it deleted one.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<bool, StoreError> {
        let r = self.inner.config.retention;
        let dir = &self.inner.config.dir;
        let space = self
            .inner
            .backend
            .space(dir)
            .await
            .map_err(|e| io_error("statvfs", dir, e))?;
        let ratio = space.used_ratio();
        let full = (ratio >= r.critical_ratio).then_some(StoreError::DiskFull {
            used_percent: (ratio * 100.0) as u32,
            limit_percent: (r.critical_ratio * 100.0) as u32,
        });
        if full.is_some() && self.inner.disk_full.take().is_none() {
            tracing::error!(
                used = ratio,
                "disk past the critical ratio: refusing appends"
            );
        }
        self.inner.disk_full.set(full);
        let bases = self.inner.log.segment_bases();
        let [_oldest, next, ..] = bases[..] else {
            return Ok(false);
        };
        // Every record of the oldest segment is older than the next one's first.
        let expired = match self.inner.log.segment_first_timestamp(next).await? {
            Some(ts) => now_ms.saturating_sub(ts) > r.reserved.as_millis() as i64,
            None => false,
        };
        if !(expired || ratio > r.high_water_ratio) {
            return Ok(false);
        }
        // Freeing disk space removes the file (and the spares); deleting by age keeps
        // it as a spare for a later segment.
        let keep_spare = ratio <= r.high_water_ratio;
        let Some(_) = self.inner.log.delete_oldest_segment(keep_spare).await? else {
            return Ok(false);
        };
        let log_min = self.inner.log.min_offset();
        let queues: Vec<Rc<ConsumeQueue<B>>> =
            self.inner.queues.borrow().values().cloned().collect();
        for q in queues {
            q.delete_below(log_min).await?;
            q.correct_min(log_min).await?;
        }
        self.inner.index.delete_below(log_min).await?;
        Ok(true)
    }

    /// Moves queued keys into the index, in log order, one drain at a time.
    async fn drain_index(&self) -> Result<(), StoreError> {
        let _permit = self
            .inner
            .index_lock
            .acquire_permit(1)
            .await
            .map_err(|_| StoreError::Closed)?;
        loop {
            let next = self.inner.index_pending.borrow_mut().pop_front();
            let Some((hash, offset, ts, local)) = next else {
                return Ok(());
            };
            self.inner.index.add(hash, offset, ts, local).await?;
        }
    }

    /// Records of `topic` whose KEYS or UNIQ_KEY is `key`, stored within
    /// `[begin_ts, end_ts]`, newest first, at most `max` (QUERY_MESSAGE).
    pub async fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ts: i64,
        end_ts: i64,
    ) -> Result<Vec<Payload>, StoreError> {
        self.drain_index().await?;
        let hash = protocol::message::index_key_hash(topic, key);
        // Ask for more than `max`: hash collisions are filtered out below.
        let offsets = self
            .inner
            .index
            .lookup(hash, begin_ts, end_ts, max.saturating_mul(2).max(16))
            .await?;
        let mut out = Vec::new();
        for offset in offsets {
            if out.len() >= max {
                break;
            }
            // TOTALSIZE first, then the record.
            let Ok(head) = self.inner.log.read(offset, 4).await else {
                continue;
            };
            let size = i32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
            let Ok(bytes) = self.inner.log.read(offset, size.max(0) as usize).await else {
                continue;
            };
            let copy = bytes::Bytes::copy_from_slice(&bytes);
            let Ok(view) = protocol::message::record::decode_record(&copy, 0, false) else {
                continue;
            };
            let mut matches = false;
            index_keys_raw(&view.properties, |k| matches |= k == key);
            if view.topic_str() == topic && matches {
                out.push(bytes);
            }
        }
        Ok(out)
    }

    /// The smallest logical offset of a queue whose message was stored at or after
    /// `timestamp` (RocketMQ's lower boundary); the max offset if none was.
    pub async fn search_offset_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp: i64,
    ) -> Result<u64, StoreError> {
        let Some(q) = self.existing_queue(topic, queue_id) else {
            return Ok(0);
        };
        let (mut lo, mut hi) = (q.min_index(), q.next_index());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(e) = q.get(mid, 1).await?.first().copied() else {
                break;
            };
            if self
                .inner
                .log
                .store_timestamp(e.offset, e.size as usize)
                .await?
                < timestamp
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Store time of a queue's oldest message (GET_EARLIEST_MSG_STORETIME), if any.
    pub async fn earliest_store_time(
        &self,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<i64>, StoreError> {
        let Some(q) = self.existing_queue(topic, queue_id) else {
            return Ok(None);
        };
        match q.get(q.min_index(), 1).await?.first() {
            Some(e) => Ok(Some(
                self.inner
                    .log
                    .store_timestamp(e.offset, e.size as usize)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    pub fn log(&self) -> &CommitLog<B> {
        &self.inner.log
    }

    pub fn recovery(&self) -> RecoveryStats {
        self.inner.recovery
    }

    async fn queue(&self, topic: &str, queue_id: i32) -> Result<Rc<ConsumeQueue<B>>, StoreError> {
        let key = (topic.to_owned(), queue_id);
        if let Some(q) = self.inner.queues.borrow().get(&key) {
            return Ok(q.clone());
        }
        let dir = self
            .inner
            .config
            .dir
            .join("consumequeue")
            .join(topic)
            .join(queue_id.to_string());
        let q = Rc::new(
            ConsumeQueue::open(self.inner.backend.clone(), dir, self.inner.log.max_offset())
                .await?,
        );
        // Another task may have opened it meanwhile: keep the first.
        Ok(self
            .inner
            .queues
            .borrow_mut()
            .entry(key)
            .or_insert(q)
            .clone())
    }

    fn existing_queue(&self, topic: &str, queue_id: i32) -> Option<Rc<ConsumeQueue<B>>> {
        self.inner
            .queues
            .borrow()
            .get(&(topic.to_owned(), queue_id))
            .cloned()
    }

    /// Appends records (one message each; a batch keeps its order), assigning queue
    /// offsets and adding consume-queue entries. Each record's topic and queue id say
    /// where it goes; its QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP are filled.
    /// Wait on the result with [`Self::wait_acked`] before acknowledging.
    pub async fn put(
        &self,
        records: &mut [RecordWriter<'_>],
        store_timestamp: i64,
    ) -> Result<Appended, StoreError> {
        if let Some(full) = self.inner.disk_full.take() {
            self.inner.disk_full.set(Some(full.clone()));
            return Err(full);
        }
        let mut queues = Vec::with_capacity(records.len());
        for rec in records.iter() {
            queues.push(self.queue(rec.topic, rec.queue_id).await?);
        }
        let mut next = 0;
        let mut done = 0;
        self.inner
            .log
            .append_with(
                records,
                store_timestamp,
                |rec| {
                    rec.queue_offset = queues[next].next_index() as i64;
                    next += 1;
                },
                |rec, size| {
                    let entry = CqEntry {
                        offset: rec.physical_offset,
                        size: size as i32,
                        tags_code: record_tags_code(rec.properties),
                    };
                    let index = queues[done].push(entry);
                    assert_eq!(
                        index as i64, rec.queue_offset,
                        "queue offset changed while the record was placed"
                    );
                    done += 1;
                    let mut pending = self.inner.index_pending.borrow_mut();
                    index_keys(rec.topic, rec.properties, rec.sys_flag, |hash| {
                        let local = split_offset(rec.physical_offset).1;
                        pending.push_back((hash, rec.physical_offset, rec.store_timestamp, local));
                    });
                },
            )
            .await
    }

    pub async fn wait_acked(&self, appended: &Appended) -> Result<(), StoreError> {
        self.inner.log.wait_acked(appended.end).await
    }

    /// Up to `max` consume-queue entries of a queue from logical offset `from`.
    pub async fn entries(
        &self,
        topic: &str,
        queue_id: i32,
        from: u64,
        max: usize,
    ) -> Result<Vec<CqEntry>, StoreError> {
        match self.existing_queue(topic, queue_id) {
            Some(q) => q.get(from, max).await,
            None => Ok(Vec::new()),
        }
    }

    /// The record bytes at a consume-queue entry, exactly as stored.
    pub async fn read(&self, entry: &CqEntry) -> Result<Payload, StoreError> {
        self.inner.log.read(entry.offset, entry.size as usize).await
    }

    /// A queue's max offset (the next logical offset), 0 for an unknown queue.
    pub fn max_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.existing_queue(topic, queue_id)
            .map_or(0, |q| q.next_index())
    }

    pub fn min_queue_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.existing_queue(topic, queue_id)
            .map_or(0, |q| q.min_index())
    }

    /// Writes the consume queues and records how far they are durable.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.write_checkpoint(false).await
    }

    async fn write_checkpoint(&self, clean: bool) -> Result<(), StoreError> {
        // Every record below `durable` has its entry pushed already (same step).
        let durable = self.inner.log.durable_pos();
        let queues: Vec<Rc<ConsumeQueue<B>>> =
            self.inner.queues.borrow().values().cloned().collect();
        for q in queues {
            q.flush().await?;
        }
        self.drain_index().await?;
        self.inner.index.flush().await?;
        self.inner.checkpoint.write(durable, clean).await
    }

    /// Syncs everything and marks the shutdown clean.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.closed.set(true);
        self.inner.log.close().await?;
        let (_, end) = split_offset(self.inner.log.max_offset());
        assert_eq!(
            self.inner.log.durable_pos(),
            end,
            "log not durable after close"
        );
        self.write_checkpoint(true).await
    }
}
