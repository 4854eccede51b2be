//! One shard's commit log: RocketMQ records appended into preallocated segments with
//! direct I/O, group commit, a tail cache, and recovery that truncates a torn tail.
//!
//! # Offsets
//! A record's PHYSICALOFFSET (and so its offset msgId) is a *global* offset:
//! `shard << 56 | local`, where `local` is the byte position in this shard's log. The
//! shard of any offset is its top byte, so a msgId leads back to one record whichever
//! shard stored it; each shard still has up to 64 PiB of its own offset space. Segment
//! files are named by their 20-digit *local* start offset.
//!
//! # Write path
//! Records are encoded straight into the *active chunk*, an aligned buffer that mirrors
//! a block-aligned range of the segment. A full chunk is sealed by the append that
//! fills it; the *writer* task writes sealed chunks with one direct write each, up to
//! `write_depth` at once, and when no write is in flight it also seals the partly
//! filled active chunk, so data never waits for a chunk to fill while the device is
//! idle. Appends that arrive meanwhile go into a new active chunk, which starts with a
//! copy of the (at most 4 KiB) partial last block, so the next write rewrites that
//! block whole; a chunk that rewrites a block is not submitted while the write it
//! rewrites is in flight, so a block is never being written twice at once. Writes may
//! complete in any order; `written` advances over the completed prefix.
//!
//! The *syncer* task `fdatasync`s what is written, overlapping the writes that follow
//! (a two-stage pipeline): every append waiting for durability shares the next sync
//! (group commit), which covers exactly what was written when it started.
//!
//! Written chunks stay in memory as the tail cache (up to `cache_bytes`); readers get
//! zero-copy slices of them. Older data is read with direct reads.
//!
//! # Failure
//! A failed or short write or sync poisons the log: every waiting and future append gets
//! [`StoreError::Poisoned`] until the process restarts and recovers. Nothing is
//! acknowledged that was not durable (sync mode) or written (async mode).

use protocol::message::record::{
    self, RecordError, RecordWriter, BLANK_MAGIC, END_FILE_MIN_BLANK_LENGTH,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::io::{align_down, align_up, Backend, BackendFile, Payload, BLOCK};
use crate::turnstile::{Slot, Turnstile};
use crate::watermark::Watermark;

/// Bits of a global offset below the shard id.
pub const SHARD_SHIFT: u32 = 56;
const LOCAL_MASK: u64 = (1 << SHARD_SHIFT) - 1;

/// The global offset of a shard's local position.
pub fn global_offset(shard: u8, local: u64) -> i64 {
    assert!(
        local <= LOCAL_MASK,
        "local offset {local} overflows the shard's space"
    );
    ((shard as u64) << SHARD_SHIFT | local) as i64
}

/// The shard and local position of a global offset.
pub fn split_offset(offset: i64) -> (u8, u64) {
    let o = offset as u64;
    ((o >> SHARD_SHIFT) as u8, o & LOCAL_MASK)
}

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// After `fdatasync` covered it; FLUSH_DISK_TIMEOUT past `timeout`.
    Sync { timeout: Duration },
    /// Once in memory; writes follow at once, syncs every `sync_interval`, and appends
    /// wait when more than `max_unwritten_bytes` are not yet written.
    Async {
        max_unwritten_bytes: u64,
        sync_interval: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct CommitLogConfig {
    /// This shard's commit-log directory.
    pub dir: PathBuf,
    pub shard: u8,
    /// Segment size; a multiple of the chunk size. RocketMQ: 1 GiB.
    pub segment_bytes: u64,
    /// Write chunk size: the largest single write. Bigger writes fewer, larger I/Os.
    pub chunk_bytes: usize,
    pub flush: FlushMode,
    /// Tail cache budget: written data kept in memory for readers that keep up.
    pub cache_bytes: usize,
    /// Largest record accepted.
    pub max_record_bytes: usize,
    /// Reserve each segment's blocks when it is created.
    pub preallocate: bool,
    /// Most chunk writes in flight at once. More keeps a fast device busy; each is a
    /// chunk of memory.
    pub write_depth: usize,
    /// Most direct reads in flight while appended data waits to be written: a reader
    /// catching up on a backlog takes what the appends leave of the device, not half
    /// of it. With nothing waiting to be written, reads are not limited.
    pub cold_reads_while_writing: usize,
    /// Segments that retention deletes by age are kept, renamed, up to this many, and
    /// become the next segments. Their blocks are already written, so appends into them
    /// are overwrites: on ext4 a write into fallocated (unwritten) blocks must convert
    /// them, and a write plus fdatasync per MiB took 2.4x as long there as on written
    /// blocks (fio, this project's VM). Stale records in a reused file are never taken
    /// for new ones: recovery accepts a record only at its own PHYSICALOFFSET.
    pub spare_segments: usize,
}

impl CommitLogConfig {
    pub fn new(dir: impl Into<PathBuf>, shard: u8) -> Self {
        Self {
            dir: dir.into(),
            shard,
            segment_bytes: 1 << 30,
            chunk_bytes: 4 << 20,
            flush: FlushMode::Sync {
                timeout: Duration::from_secs(5),
            },
            cache_bytes: 256 << 20,
            max_record_bytes: 4 << 20,
            preallocate: true,
            write_depth: 4,
            cold_reads_while_writing: 1,
            spare_segments: 2,
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        let bad = |reason: String| Err(StoreError::Config { reason });
        if self.write_depth == 0 {
            return bad("write_depth must be at least 1".to_owned());
        }
        if self.cold_reads_while_writing == 0 {
            return bad("cold_reads_while_writing must be at least 1".to_owned());
        }
        if self.chunk_bytes == 0 || !self.chunk_bytes.is_multiple_of(BLOCK) {
            return bad(format!(
                "chunk_bytes {} is not a positive multiple of {BLOCK}",
                self.chunk_bytes
            ));
        }
        if self.segment_bytes < 2 * self.chunk_bytes as u64
            || !self.segment_bytes.is_multiple_of(BLOCK as u64)
        {
            return bad(format!(
                "segment_bytes {} must be a multiple of {BLOCK} and at least two chunks",
                self.segment_bytes
            ));
        }
        let largest = self.max_record_bytes as u64 + END_FILE_MIN_BLANK_LENGTH as u64;
        if largest > self.segment_bytes / 2 {
            return bad(format!(
                "max_record_bytes {} does not fit half a segment",
                self.max_record_bytes
            ));
        }
        Ok(())
    }

    /// Direct-I/O buffer memory this log may hold at once: the tail cache, what may be
    /// appended but unwritten, the chunks being written, and cold reads in flight. A
    /// shard's executor reserves this as its I/O memory (glommio `io_memory`): chunk
    /// buffers then come from one arena whose pages are touched once and reused,
    /// instead of the allocator mapping (and the kernel zeroing) fresh pages for each
    /// chunk, which cost a quarter of the shard's CPU at 1.5 GB/s of appends.
    pub fn io_memory_bytes(&self) -> usize {
        let unwritten = match self.flush {
            FlushMode::Async {
                max_unwritten_bytes,
                ..
            } => max_unwritten_bytes as usize,
            // Bounded by what appenders have in flight; the broker caps sends per shard.
            FlushMode::Sync { .. } => 64 << 20,
        };
        const READS: usize = 32 << 20;
        self.cache_bytes + unwritten + (self.write_depth + 2) * self.chunk_bytes + READS
    }

    /// Scan window for recovery: holds the largest record plus alignment.
    fn scan_window(&self) -> usize {
        (align_up(self.max_record_bytes as u64 + BLOCK as u64) as usize).max(4 << 20)
    }
}

/// What can go wrong in the store. Clone, so that one failure can be handed to every
/// waiting append.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the shard is poisoned: {op} failed ({message}); appends are refused until restart")]
    Poisoned { op: &'static str, message: String },
    #[error("record of {size} bytes exceeds the maximum of {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("flush did not complete within {timeout_ms} ms")]
    FlushTimeout { timeout_ms: u64 },
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("offset {offset} length {len} is outside the log [{min}, {max})")]
    OutOfRange {
        offset: i64,
        len: usize,
        min: i64,
        max: i64,
    },
    #[error("invalid configuration: {reason}")]
    Config { reason: String },
    #[error("the commit log is closed")]
    Closed,
    #[error(
        "disk full: {used_percent}% used, appends refused above {limit_percent}%; reads continue"
    )]
    DiskFull {
        used_percent: u32,
        limit_percent: u32,
    },
}

pub(crate) fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Files named by a 20-digit number (segment base, first queue index, first offset).
pub(crate) fn numbered_name(n: u64) -> String {
    format!("{n:020}")
}

fn segment_name(base: u64) -> String {
    numbered_name(base)
}

const SPARE_SUFFIX: &str = ".spare";

/// A deleted segment kept for reuse, named after the segment it was.
pub fn spare_name(base: u64) -> String {
    format!("{}{SPARE_SUFFIX}", numbered_name(base))
}

/// Creates `dir` if needed and returns the numbers of its 20-digit-named files, sorted.
pub(crate) async fn numbered_files<B: Backend>(
    backend: &B,
    dir: &Path,
) -> Result<Vec<u64>, StoreError> {
    backend
        .create_dir_all(dir)
        .await
        .map_err(|e| io_error("create", dir, e))?;
    let mut numbers: Vec<u64> = backend
        .list_dir(dir)
        .await
        .map_err(|e| io_error("list", dir, e))?
        .iter()
        .filter(|n| n.len() == 20)
        .filter_map(|n| n.parse().ok())
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

/// Writes the whole buffer at `pos`; a short write is an error.
pub(crate) async fn write_whole<F: BackendFile>(
    file: &F,
    buf: F::Buf,
    pos: u64,
    path: &Path,
) -> Result<(), StoreError> {
    let len = buf.as_ref().len();
    let n = file
        .write_at(Rc::new(buf), pos)
        .await
        .map_err(|e| io_error("write", path, e))?;
    if n != len {
        return Err(StoreError::Io {
            op: "write",
            path: path.display().to_string(),
            message: format!("short write: {n} of {len} bytes at {pos}"),
        });
    }
    Ok(())
}

struct Active<F: BackendFile> {
    buf: F::Buf,
    /// Local offset of `buf[0]`; block-aligned.
    base: u64,
    /// Valid bytes from `base`.
    filled: usize,
    /// Base of the segment this chunk belongs to.
    segment: u64,
}

struct Sealed<F: BackendFile> {
    buf: Rc<F::Buf>,
    base: u64,
    /// Valid bytes from `base` (the buffer is that, rounded up to a block).
    valid: usize,
    segment: u64,
    /// Memory the buffer holds (its allocation, which trimming does not shrink).
    mem: usize,
    write: WriteState,
}

/// Where a sealed chunk's write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    Waiting,
    InFlight,
    Done,
}

impl<F: BackendFile> Sealed<F> {
    fn end(&self) -> u64 {
        self.base + self.valid as u64
    }

    fn payload(&self, pos: u64, len: usize) -> Payload {
        let owner: Rc<dyn AsRef<[u8]>> = self.buf.clone();
        Payload::new(owner).slice((pos - self.base) as usize, len)
    }
}

struct State<B: Backend> {
    segments: BTreeMap<u64, Rc<B::File>>,
    /// End of appended data (local).
    write_pos: u64,
    /// Lowest readable local offset.
    min_pos: u64,
    active: Active<B::File>,
    /// Sealed, not yet written (waiting, in flight, or done but behind one that is
    /// not), in offset order.
    sealed: VecDeque<Sealed<B::File>>,
    /// Written, kept for readers, in offset order.
    cache: VecDeque<Sealed<B::File>>,
    cache_bytes: usize,
}

struct Inner<B: Backend> {
    backend: B,
    config: CommitLogConfig,
    state: RefCell<State<B>>,
    /// Everything below is in memory (appended).
    appended: Watermark<StoreError>,
    /// Everything below is written to the files.
    written: Watermark<StoreError>,
    /// Everything below is durable.
    durable: Watermark<StoreError>,
    /// Segments written since their last sync.
    unsynced: RefCell<BTreeSet<u64>>,
    closed: Cell<bool>,
    /// Reaches 1 when the log is closed: wakes the writer and syncer so they can exit.
    shutdown: Watermark<StoreError>,
    /// Counts completed chunk writes: wakes the writer when a write slot frees up.
    writes_done: Watermark<StoreError>,
    /// A sync of everything below this is wanted now (async mode syncs on a timer).
    sync_wanted: Watermark<StoreError>,
    /// Slots for direct reads while appended data waits to be written; readers queue
    /// for them in arrival order.
    cold_reads: Turnstile,
    rolling: glommio::sync::Semaphore,
    /// A background task is creating the next segment.
    creating_ahead: Cell<bool>,
    /// Deleted segments kept to become new ones (paths), oldest first.
    spares: RefCell<VecDeque<PathBuf>>,
}

/// A shard's commit log. Cheap to clone (shared on the shard's thread).
pub struct CommitLog<B: Backend> {
    inner: Rc<Inner<B>>,
}

impl<B: Backend> std::fmt::Debug for CommitLog<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct("CommitLog")
            .field("shard", &self.inner.config.shard)
            .field("min_pos", &st.min_pos)
            .field("write_pos", &st.write_pos)
            .field("written", &self.inner.written.get())
            .field("durable", &self.inner.durable.get())
            .finish()
    }
}

impl<B: Backend> Clone for CommitLog<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// Where a batch of appended records ends; wait on it with [`CommitLog::wait_acked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Global offset of the first record.
    pub first_offset: i64,
    /// Local end of the last record.
    pub end: u64,
}

impl<B: Backend> CommitLog<B> {
    /// Opens (recovering) or creates the log in `config.dir`, and starts its flusher.
    pub async fn open(backend: B, config: CommitLogConfig) -> Result<Self, StoreError> {
        Self::open_from(backend, config, None).await
    }

    /// Like [`Self::open`], but recovery scans only from `checkpoint`, a local offset at
    /// a record boundary known to be durable: recovery time follows the unflushed tail,
    /// not the store size.
    pub async fn open_from(
        backend: B,
        config: CommitLogConfig,
        checkpoint: Option<u64>,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let dir = config.dir.clone();
        let bases = numbered_files(&backend, &dir).await?;
        let mut segments = BTreeMap::new();
        for base in &bases {
            assert!(
                base.is_multiple_of(config.segment_bytes),
                "segment {base} is not at a segment boundary"
            );
            let path = dir.join(segment_name(*base));
            let file = backend
                .open(&path)
                .await
                .map_err(|e| io_error("open", &path, e))?;
            segments.insert(*base, Rc::new(file));
        }
        let mut spare_names: Vec<String> = backend
            .list_dir(&dir)
            .await
            .map_err(|e| io_error("list", &dir, e))?
            .into_iter()
            .filter(|n| n.ends_with(SPARE_SUFFIX))
            .collect();
        spare_names.sort_unstable();
        let mut spares: VecDeque<PathBuf> = VecDeque::new();
        for name in spare_names {
            let path = dir.join(name);
            if spares.len() < config.spare_segments {
                spares.push_back(path);
            } else {
                backend
                    .remove(&path)
                    .await
                    .map_err(|e| io_error("remove", &path, e))?;
            }
        }
        if segments.is_empty() {
            let file = create_segment(&backend, &config, 0, spares.pop_front()).await?;
            segments.insert(0, Rc::new(file));
        }
        let end = recover(&backend, &config, &mut segments, checkpoint).await?;
        let min_pos = *segments.keys().next().expect("at least one segment");

        // The active chunk starts at the block holding `end`, with its valid prefix.
        let segment = segment_base(&config, end);
        let file = segments
            .get(&segment)
            .expect("the segment holding the end exists")
            .clone();
        let base = align_down(end);
        let mut buf = file.alloc(config.chunk_bytes);
        let filled = (end - base) as usize;
        if filled > 0 {
            let block = file
                .read_at(base - segment, BLOCK)
                .await
                .map_err(|e| io_error("read", &dir, e))?;
            assert!(block.len() >= filled, "recovered end {end} beyond the file");
            buf.as_mut()[..filled].copy_from_slice(&block[..filled]);
        }
        let state = State {
            segments,
            write_pos: end,
            min_pos,
            active: Active {
                buf,
                base,
                filled,
                segment,
            },
            sealed: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
        };
        let cold_reads = Turnstile::new(config.cold_reads_while_writing);
        let inner = Rc::new(Inner {
            backend,
            config,
            state: RefCell::new(state),
            appended: Watermark::new(end),
            written: Watermark::new(end),
            durable: Watermark::new(end),
            unsynced: RefCell::new(BTreeSet::new()),
            closed: Cell::new(false),
            shutdown: Watermark::new(0),
            writes_done: Watermark::new(0),
            sync_wanted: Watermark::new(end),
            cold_reads,
            rolling: glommio::sync::Semaphore::new(1),
            creating_ahead: Cell::new(false),
            spares: RefCell::new(spares),
        });
        glommio::spawn_local(writer(inner.clone())).detach();
        glommio::spawn_local(syncer(inner.clone())).detach();
        Ok(Self { inner })
    }

    pub fn shard(&self) -> u8 {
        self.inner.config.shard
    }

    /// Global offset just past the last appended record.
    pub fn max_offset(&self) -> i64 {
        global_offset(self.inner.config.shard, self.inner.state.borrow().write_pos)
    }

    /// Global offset of the oldest readable byte.
    pub fn min_offset(&self) -> i64 {
        global_offset(self.inner.config.shard, self.inner.state.borrow().min_pos)
    }

    /// Local offset below which everything is durable.
    pub fn durable_pos(&self) -> u64 {
        self.inner.durable.get()
    }

    /// Appends records in order, contiguously (a batch may cross into a new segment).
    /// Fills each record's PHYSICALOFFSET and STORETIMESTAMP. The records are readable
    /// at once; [`Self::wait_acked`] says when they may be acknowledged.
    pub async fn append(
        &self,
        records: &mut [RecordWriter<'_>],
        store_timestamp: i64,
    ) -> Result<Appended, StoreError> {
        self.append_with(records, store_timestamp, |_| {}, |_, _| {})
            .await
    }

    /// [`Self::append`] with hooks run in the same uninterrupted step as each record's
    /// encoding: `before` may set fields (the queue offset) just before the record is
    /// placed, `after` sees it placed (offset and size final). Nothing else appends in
    /// between, so log order and whatever the hooks assign agree.
    pub async fn append_with(
        &self,
        records: &mut [RecordWriter<'_>],
        store_timestamp: i64,
        mut before: impl FnMut(&mut RecordWriter<'_>),
        mut after: impl FnMut(&RecordWriter<'_>, usize),
    ) -> Result<Appended, StoreError> {
        let inner = &self.inner;
        let mut first_offset = None;
        for rec in records.iter_mut() {
            if let Some(e) = inner.durable.failed() {
                return Err(e);
            }
            if inner.closed.get() {
                return Err(StoreError::Closed);
            }
            let size = rec.encoded_len()?;
            if size > inner.config.max_record_bytes {
                return Err(StoreError::RecordTooLarge {
                    size,
                    max: inner.config.max_record_bytes,
                });
            }
            loop {
                let needs_segment = {
                    let st = inner.state.borrow();
                    let seg_end =
                        segment_base(&inner.config, st.write_pos) + inner.config.segment_bytes;
                    let next = seg_end;
                    (size + END_FILE_MIN_BLANK_LENGTH) as u64 > seg_end - st.write_pos
                        && !st.segments.contains_key(&next)
                };
                if !needs_segment {
                    break;
                }
                self.create_next_segment().await?;
            }
            let mut st = inner.state.borrow_mut();
            let st = &mut *st;
            let seg_base = segment_base(&inner.config, st.write_pos);
            let seg_end = seg_base + inner.config.segment_bytes;
            if (size + END_FILE_MIN_BLANK_LENGTH) as u64 > seg_end - st.write_pos {
                roll(&inner.config, st, seg_end);
            }
            if st.active.filled + size > st.active.buf.as_ref().len() {
                seal_and_restart(&inner.config, st, SealKind::Full, size);
            }
            before(rec);
            rec.physical_offset = global_offset(inner.config.shard, st.write_pos);
            rec.store_timestamp = store_timestamp;
            let at = st.active.filled;
            rec.write(&mut st.active.buf.as_mut()[at..at + size])?;
            st.active.filled += size;
            st.write_pos += size as u64;
            after(rec, size);
            first_offset.get_or_insert(rec.physical_offset);
        }
        let end = inner.state.borrow().write_pos;
        inner.appended.advance(end);
        self.create_next_ahead();
        Ok(Appended {
            first_offset: first_offset.unwrap_or_else(|| self.max_offset()),
            end,
        })
    }

    /// Resolves when records ending at `end` may be acknowledged under the flush mode.
    pub async fn wait_acked(&self, end: u64) -> Result<(), StoreError> {
        match self.inner.config.flush {
            FlushMode::Sync { timeout } => {
                let wait = self.inner.durable.wait_for(end);
                let timed_out = async {
                    glommio::timer::sleep(timeout).await;
                    Err(StoreError::FlushTimeout {
                        timeout_ms: timeout.as_millis() as u64,
                    })
                };
                futures_lite::future::or(wait, timed_out).await
            }
            FlushMode::Async {
                max_unwritten_bytes,
                ..
            } => {
                self.inner
                    .written
                    .wait_for(end.saturating_sub(max_unwritten_bytes))
                    .await
            }
        }
    }

    /// Waits until everything appended so far is durable.
    pub async fn sync_all(&self) -> Result<(), StoreError> {
        let end = self.inner.state.borrow().write_pos;
        if end > self.inner.sync_wanted.get() {
            self.inner.sync_wanted.advance(end);
        }
        self.inner.durable.wait_for(end).await
    }

    /// Once appends are in the newest segment, creates (and preallocates) the next one
    /// in the background, so that an append crossing the boundary finds it ready.
    fn create_next_ahead(&self) {
        let inner = &self.inner;
        let missing = {
            let st = inner.state.borrow();
            let next = segment_base(&inner.config, st.write_pos) + inner.config.segment_bytes;
            !st.segments.contains_key(&next)
        };
        if !missing || inner.creating_ahead.get() || inner.closed.get() {
            return;
        }
        inner.creating_ahead.set(true);
        let log = self.clone();
        glommio::spawn_local(async move {
            if let Err(e) = log.create_next_segment().await {
                // The append that needs it will try again and report the error.
                tracing::warn!(error = %e, "creating the next segment ahead of need failed");
            }
            log.inner.creating_ahead.set(false);
        })
        .detach();
    }

    async fn create_next_segment(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let _permit = inner
            .rolling
            .acquire_permit(1)
            .await
            .map_err(|_| StoreError::Closed)?;
        let next = {
            let st = inner.state.borrow();
            segment_base(&inner.config, st.write_pos) + inner.config.segment_bytes
        };
        if inner.state.borrow().segments.contains_key(&next) {
            return Ok(());
        }
        let spare = inner.spares.borrow_mut().pop_front();
        let file = create_segment(&inner.backend, &inner.config, next, spare).await?;
        inner
            .state
            .borrow_mut()
            .segments
            .insert(next, Rc::new(file));
        Ok(())
    }

    /// Reads `len` bytes of the log at global `offset`: a zero-copy slice of the tail
    /// cache when the range lies in one written chunk, otherwise a direct read (or a
    /// copy assembled from chunks still in memory, or from both: a span may start in
    /// data that left the cache and end in data not yet written).
    pub async fn read(&self, offset: i64, len: usize) -> Result<Payload, StoreError> {
        let (shard, pos) = split_offset(offset);
        let end = pos + len as u64;
        let (file, seg, tail) = {
            let st = self.inner.state.borrow();
            let out_of_range = || out_of_range(&self.inner.config, &st, offset, len);
            if shard != self.inner.config.shard || pos < st.min_pos || end > st.write_pos {
                return Err(out_of_range());
            }
            if let Some(payload) = read_memory(&self.inner.config, &st, pos, len) {
                return Ok(payload);
            }
            // Everything below the oldest chunk in memory is written; what is not
            // written is in memory. Take the memory part now: it may leave the cache
            // while the disk part is read.
            let written = self.inner.written.get();
            let tail = if end > written {
                let boundary = oldest_in_memory(&st);
                assert!(
                    pos < boundary && boundary <= written,
                    "memory ({boundary}..) and disk (..{written}) leave a gap"
                );
                let tail =
                    read_memory(&self.inner.config, &st, boundary, (end - boundary) as usize)
                        .expect("memory holds everything from its oldest chunk");
                Some(tail)
            } else {
                None
            };
            let seg = segment_base(&self.inner.config, pos);
            let file = st.segments.get(&seg).ok_or_else(out_of_range)?.clone();
            (file, seg, tail)
        };
        let Some(tail) = tail else {
            return self.read_disk(&file, seg, pos, len).await;
        };
        let head_len = len - tail.len();
        let head = self.read_disk(&file, seg, pos, head_len).await?;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&head);
        out.extend_from_slice(&tail);
        Ok(Payload::from_vec(out))
    }

    /// A direct read of written data in the segment at `seg`.
    async fn read_disk(
        &self,
        file: &B::File,
        seg: u64,
        pos: u64,
        len: usize,
    ) -> Result<Payload, StoreError> {
        assert!(
            pos + len as u64 <= self.inner.written.get(),
            "read of unwritten data went to disk"
        );
        let from = align_down(pos - seg);
        let to = align_up(pos - seg + len as u64);
        let block = {
            let _slot = self.read_slot().await;
            file.read_at(from, (to - from) as usize)
                .await
                .map_err(|e| io_error("read", &self.inner.config.dir, e))?
        };
        {
            // Deleted while the read waited: its file may be a spare by now, or reused
            // for a new segment, and hold other data.
            let st = self.inner.state.borrow();
            if !st
                .segments
                .get(&seg)
                .is_some_and(|f| std::ptr::eq(&**f, file))
            {
                let offset = global_offset(self.inner.config.shard, pos);
                return Err(out_of_range(&self.inner.config, &st, offset, len));
            }
        }
        let skip = (pos - seg - from) as usize;
        let closed = seg + self.inner.config.segment_bytes <= self.inner.written.get();
        if block.len() < skip + len
            && closed
            && pos + len as u64 <= seg + self.inner.config.segment_bytes
        {
            // A closed segment's tail past its blank header was never written: it reads
            // as zeros, like the rest of the blank.
            let mut out = vec![0u8; len];
            let have = block.len().saturating_sub(skip).min(len);
            out[..have].copy_from_slice(&block[skip..skip + have]);
            return Ok(Payload::from_vec(out));
        }
        if block.len() < skip + len {
            return Err(StoreError::Io {
                op: "read",
                path: self
                    .inner
                    .config
                    .dir
                    .join(segment_name(seg))
                    .display()
                    .to_string(),
                message: format!(
                    "short read: {} of {} bytes at {from}",
                    block.len(),
                    to - from
                ),
            });
        }
        Ok(block.slice(skip, len))
    }

    /// Waits until a direct read may start: at once when nothing waits to be written,
    /// otherwise for one of `cold_reads_while_writing` slots, in arrival order. The
    /// writer keeps the device's queue full of appends; readers take turns at the
    /// slots left over, so appends keep their rate while a backlog is read.
    async fn read_slot(&self) -> Option<Slot> {
        let inner = &self.inner;
        if inner.appended.get() <= inner.written.get() {
            return None;
        }
        Some(inner.cold_reads.acquire().await)
    }

    /// Local bases of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.inner.state.borrow().segments.keys().copied().collect()
    }

    /// STORETIMESTAMP of the first record of the segment at `base`, if it has one.
    pub async fn segment_first_timestamp(&self, base: u64) -> Result<Option<i64>, StoreError> {
        let write_pos = self.inner.state.borrow().write_pos;
        if base >= write_pos {
            return Ok(None);
        }
        let header = (record::POS_BORN_HOST + 20 + 8) as u64;
        let len = header.min(write_pos - base) as usize;
        let bytes = self
            .read(global_offset(self.inner.config.shard, base), len)
            .await?;
        if bytes.len() < 40 {
            return Ok(None);
        }
        let sys_flag = i32::from_be_bytes(bytes[36..40].try_into().expect("4 bytes"));
        let pos = record::pos_store_timestamp(sys_flag);
        Ok(bytes
            .get(pos..pos + 8)
            .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes"))))
    }

    /// Deletes the oldest segment if it is not the one being appended to; returns the
    /// new minimum local offset. With `keep_spare`, the file is kept for reuse as a
    /// future segment while fewer than `spare_segments` are kept; without, it and every
    /// kept spare are removed (retention freeing disk space).
    pub async fn delete_oldest_segment(&self, keep_spare: bool) -> Result<Option<u64>, StoreError> {
        let (base, path) = {
            let mut st = self.inner.state.borrow_mut();
            let active = segment_base(&self.inner.config, st.write_pos);
            let Some(&base) = st.segments.keys().next() else {
                return Ok(None);
            };
            if base >= active || st.segments.len() < 2 {
                return Ok(None);
            }
            st.segments.remove(&base);
            let next = *st.segments.keys().next().expect("a newer segment remains");
            st.min_pos = next;
            while st.cache.front().is_some_and(|c| c.end() <= next) {
                let old = st.cache.pop_front().expect("checked");
                st.cache_bytes -= old.mem;
            }
            (base, self.inner.config.dir.join(segment_name(base)))
        };
        let backend = &self.inner.backend;
        let keep =
            keep_spare && self.inner.spares.borrow().len() < self.inner.config.spare_segments;
        if keep {
            let spare = self.inner.config.dir.join(spare_name(base));
            backend
                .rename(&path, &spare)
                .await
                .map_err(|e| io_error("rename", &path, e))?;
            self.inner.spares.borrow_mut().push_back(spare);
        } else {
            backend
                .remove(&path)
                .await
                .map_err(|e| io_error("remove", &path, e))?;
            if !keep_spare {
                let spares = std::mem::take(&mut *self.inner.spares.borrow_mut());
                for spare in spares {
                    backend
                        .remove(&spare)
                        .await
                        .map_err(|e| io_error("remove", &spare, e))?;
                }
            }
        }
        self.inner
            .backend
            .sync_dir(&self.inner.config.dir)
            .await
            .map_err(|e| io_error("sync", &self.inner.config.dir, e))?;
        tracing::info!(
            shard = self.inner.config.shard,
            segment = base,
            "segment deleted by retention"
        );
        Ok(Some(self.inner.state.borrow().min_pos))
    }

    /// STORETIMESTAMP of the record at global `offset` (reads only its header).
    pub async fn store_timestamp(&self, offset: i64, size: usize) -> Result<i64, StoreError> {
        let header = size.min(record::POS_BORN_HOST + 20 + 8);
        let bytes = self.read(offset, header).await?;
        let sys_flag = i32::from_be_bytes(bytes[36..40].try_into().expect("4 bytes"));
        let pos = record::pos_store_timestamp(sys_flag);
        Ok(i64::from_be_bytes(
            bytes[pos..pos + 8].try_into().expect("8 bytes"),
        ))
    }

    /// Calls `f` with every record from global `from` (a record boundary) to the end,
    /// in order, reading in large windows. Used to rebuild consume queues and index.
    pub async fn scan(
        &self,
        from: i64,
        mut f: impl FnMut(&record::RecordView),
    ) -> Result<u64, StoreError> {
        let (_, mut pos) = split_offset(from);
        let window = self.inner.config.scan_window() as u64;
        let mut count = 0;
        loop {
            let end = self.inner.state.borrow().write_pos;
            if pos >= end {
                return Ok(count);
            }
            let seg_end = segment_base(&self.inner.config, pos) + self.inner.config.segment_bytes;
            let len = window.min(end - pos).min(seg_end - pos) as usize;
            let data = self
                .read(global_offset(self.inner.config.shard, pos), len)
                .await?;
            let bytes = bytes::Bytes::copy_from_slice(&data);
            let mut at = 0usize;
            loop {
                match record::peek_record(&bytes, at) {
                    Ok(header) => {
                        let view = record::decode_record(&bytes, at, false)?;
                        f(&view);
                        count += 1;
                        at += header.total_size;
                        pos += header.total_size as u64;
                    }
                    Err(RecordError::Blank { .. }) => {
                        pos = seg_end;
                        break;
                    }
                    Err(RecordError::UnexpectedEof { .. }) if at > 0 => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Seals what is buffered, writes and syncs everything, and stops the writer and
    /// syncer.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.sync_all().await?;
        self.inner.closed.set(true);
        self.inner.shutdown.advance(1);
        Ok(())
    }
}

/// A read of `len` bytes at global `offset` outside what the log holds now.
fn out_of_range<B: Backend>(
    config: &CommitLogConfig,
    st: &State<B>,
    offset: i64,
    len: usize,
) -> StoreError {
    StoreError::OutOfRange {
        offset,
        len,
        min: global_offset(config.shard, st.min_pos),
        max: global_offset(config.shard, st.write_pos),
    }
}

fn segment_base(config: &CommitLogConfig, pos: u64) -> u64 {
    pos - pos % config.segment_bytes
}

/// Creates the segment at `base`: from `spare` (renamed, its written blocks kept) when
/// given, else a new file.
async fn create_segment<B: Backend>(
    backend: &B,
    config: &CommitLogConfig,
    base: u64,
    spare: Option<PathBuf>,
) -> Result<B::File, StoreError> {
    let path = config.dir.join(segment_name(base));
    let file = match spare {
        Some(spare) => {
            // The new segment's end blank starts somewhere in its last record's reach;
            // past the blank header, a disk read must find zeros (as a read from memory
            // does), not the old segment's records. Punched before the rename (a crash
            // leaves a spare or a clean segment), preallocated again below; the
            // segment's first data sync makes the hole durable.
            let zone = blank_zone(config);
            backend
                .open(&spare)
                .await
                .map_err(|e| io_error("open", &spare, e))?
                .punch_hole(zone, config.segment_bytes - zone)
                .await
                .map_err(|e| io_error("punch hole", &spare, e))?;
            backend
                .rename(&spare, &path)
                .await
                .map_err(|e| io_error("rename", &spare, e))?;
            // Opened again by its new name: a glommio file keeps its path for stat.
            backend
                .open(&path)
                .await
                .map_err(|e| io_error("open", &path, e))?
        }
        None => backend
            .create(&path)
            .await
            .map_err(|e| io_error("create", &path, e))?,
    };
    if config.preallocate {
        file.allocate(config.segment_bytes)
            .await
            .map_err(|e| io_error("preallocate", &path, e))?;
    }
    backend
        .sync_dir(&config.dir)
        .await
        .map_err(|e| io_error("sync", &config.dir, e))?;
    Ok(file)
}

/// Offset within a segment (block-aligned) from which its end blank may start: a
/// record that does not fit with a blank behind it, at most `max_record_bytes`, rolls
/// the segment.
fn blank_zone(config: &CommitLogConfig) -> u64 {
    align_down(
        config.segment_bytes - config.max_record_bytes as u64 - END_FILE_MIN_BLANK_LENGTH as u64,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SealKind {
    /// The chunk is full: seal its whole blocks; the partial last block moves on.
    Full,
    /// A flush: seal everything, the partial block included (rewritten by the next).
    Flush,
}

/// Seals the active chunk and starts a new one at the block holding `write_pos`, big
/// enough for a record of `need` bytes.
fn seal_and_restart<B: Backend>(
    config: &CommitLogConfig,
    st: &mut State<B>,
    kind: SealKind,
    need: usize,
) {
    let active = &mut st.active;
    let end = active.base + active.filled as u64;
    assert_eq!(
        end, st.write_pos,
        "active chunk out of step with the write position"
    );
    let partial_start = align_down(end);
    let carry = (end - partial_start) as usize;
    let seal_len = match kind {
        SealKind::Full => (partial_start - active.base) as usize,
        SealKind::Flush => align_up(end - active.base) as usize,
    };
    let file = st
        .segments
        .get(&active.segment)
        .expect("active segment is open")
        .clone();
    let capacity = config
        .chunk_bytes
        .max(align_up((carry + need) as u64) as usize);
    let mut buf = file.alloc(capacity);
    buf.as_mut()[..carry]
        .copy_from_slice(&active.buf.as_ref()[active.filled - carry..active.filled]);
    let mut old = std::mem::replace(&mut active.buf, buf);
    let old_base = active.base;
    let segment = active.segment;
    active.base = partial_start;
    active.filled = carry;
    if seal_len > 0 {
        // Zero what follows the valid bytes in the last block: a later scan must stop there.
        let valid = if kind == SealKind::Flush {
            (end - old_base) as usize
        } else {
            seal_len
        };
        old.as_mut()[valid..seal_len].fill(0);
        let mem = old.as_ref().len();
        <B::File as BackendFile>::trim(&mut old, seal_len);
        st.sealed.push_back(Sealed {
            buf: Rc::new(old),
            base: old_base,
            valid,
            segment,
            mem,
            write: WriteState::Waiting,
        });
    }
}

/// Ends the current segment with a blank record and moves to the next.
fn roll<B: Backend>(config: &CommitLogConfig, st: &mut State<B>, seg_end: u64) {
    let blank_len = (seg_end - st.write_pos) as usize;
    assert!(
        blank_len >= END_FILE_MIN_BLANK_LENGTH,
        "no room for the end-of-segment blank"
    );
    // Only the blank's header is written; the rest of the segment stays as it is.
    let header_room = st.active.buf.as_ref().len() - st.active.filled;
    if header_room < END_FILE_MIN_BLANK_LENGTH {
        seal_and_restart(config, st, SealKind::Full, END_FILE_MIN_BLANK_LENGTH);
    }
    let at = st.active.filled;
    let buf = &mut st.active.buf.as_mut()[at..at + END_FILE_MIN_BLANK_LENGTH];
    buf[..4].copy_from_slice(&(blank_len as i32).to_be_bytes());
    buf[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    st.active.filled += END_FILE_MIN_BLANK_LENGTH;
    st.write_pos += END_FILE_MIN_BLANK_LENGTH as u64;
    // Seal everything written in this segment, then jump to the next.
    seal_and_restart(config, st, SealKind::Flush, 0);
    let file = st
        .segments
        .get(&seg_end)
        .expect("next segment created before rolling")
        .clone();
    st.write_pos = seg_end;
    let buf = file.alloc(config.chunk_bytes);
    st.active = Active {
        buf,
        base: seg_end,
        filled: 0,
        segment: seg_end,
    };
}

/// Local offset of the oldest byte still in memory (cached, sealed or active).
fn oldest_in_memory<B: Backend>(st: &State<B>) -> u64 {
    st.cache
        .front()
        .or(st.sealed.front())
        .map_or(st.active.base, |c| c.base)
}

/// A zero-copy slice when `[pos, pos+len)` lies in one sealed chunk; a copy when it is in
/// memory but spans chunks or the active chunk; `None` when part of it is only on disk.
fn read_memory<B: Backend>(
    config: &CommitLogConfig,
    st: &State<B>,
    pos: u64,
    len: usize,
) -> Option<Payload> {
    let end = pos + len as u64;
    for chunk in st.sealed.iter().rev().chain(st.cache.iter().rev()) {
        if chunk.base <= pos {
            if end <= chunk.end() {
                return Some(chunk.payload(pos, len));
            }
            break;
        }
    }
    // Spans chunks, or is (partly) in the active chunk: assemble a copy, newest first.
    if pos < oldest_in_memory(st) {
        return None;
    }
    let mut out = vec![0u8; len];
    let mut p = pos;
    while p < end {
        let active_end = st.active.base + st.active.filled as u64;
        let (src, src_base, src_end): (&[u8], u64, u64) = if st.active.base <= p {
            (st.active.buf.as_ref(), st.active.base, active_end)
        } else {
            let chunk = st
                .sealed
                .iter()
                .rev()
                .chain(st.cache.iter().rev())
                .find(|c| c.base <= p)?;
            if chunk.end() <= p {
                // Past a closed segment's blank header: zeros up to the segment's end.
                let seg_end = segment_base(config, p) + config.segment_bytes;
                assert!(seg_end <= st.write_pos, "no chunk holds offset {p}");
                let zeros = end.min(seg_end) - p;
                p += zeros; // `out` is zeroed already
                continue;
            }
            (chunk.buf.as_ref().as_ref(), chunk.base, chunk.end())
        };
        let take = (end.min(src_end) - p) as usize;
        assert!(take > 0, "no chunk holds offset {p}");
        let from = (p - src_base) as usize;
        out[(p - pos) as usize..(p - pos) as usize + take].copy_from_slice(&src[from..from + take]);
        p += take as u64;
    }
    Some(Payload::from_vec(out))
}

/// Writes sealed chunks, up to `write_depth` at once; seals the active chunk when the
/// device is idle. Exits when the log is closed and everything is written, or poisoned.
async fn writer<B: Backend>(inner: Rc<Inner<B>>) {
    loop {
        if inner.written.failed().is_some() {
            return;
        }
        let seen_appended = inner.appended.get();
        let seen_done = inner.writes_done.get();
        if inner.closed.get() && inner.written.get() >= seen_appended {
            return; // closed and everything written: release files and cache
        }
        let next = {
            let mut st = inner.state.borrow_mut();
            next_write(&inner.config, &mut st, inner.written.get())
        };
        let Some((chunk, file)) = next else {
            // Nothing to submit: wait for new data, a finished write, or the close.
            let more = inner.appended.wait_for(seen_appended + 1);
            let done = inner.writes_done.wait_for(seen_done + 1);
            let stop = inner.shutdown.wait_for(1);
            let _ = futures_lite::future::or(more, futures_lite::future::or(done, stop)).await;
            continue;
        };
        let inner2 = inner.clone();
        glommio::spawn_local(async move {
            let len = chunk.buf.as_ref().as_ref().len();
            let pos = chunk.base - chunk.segment;
            let result = match file.write_at(chunk.buf.clone(), pos).await {
                Ok(n) if n == len => Ok(()),
                Ok(n) => Err(StoreError::Poisoned {
                    op: "write",
                    message: format!("short write: {n} of {len} bytes at {pos}"),
                }),
                Err(e) => Err(StoreError::Poisoned {
                    op: "write",
                    message: e.to_string(),
                }),
            };
            match result {
                Ok(()) => write_done(&inner2, chunk.base),
                Err(e) => poison(&inner2, e),
            }
        })
        .detach();
    }
}

/// A chunk to write and the segment file it goes to.
type ChunkWrite<F> = (Sealed<F>, Rc<F>);

/// Picks the next chunk to write and marks it in flight: the oldest waiting one, if a
/// write slot is free and it does not rewrite a block still being written. When
/// nothing is in flight, first seals whatever the active chunk holds beyond the last
/// sealed byte.
fn next_write<B: Backend>(
    config: &CommitLogConfig,
    st: &mut State<B>,
    written: u64,
) -> Option<ChunkWrite<B::File>> {
    let in_flight = st
        .sealed
        .iter()
        .filter(|c| c.write == WriteState::InFlight)
        .count();
    if in_flight == 0 {
        let covered = st.sealed.back().map_or(written, |c| c.end());
        if st.active.base + st.active.filled as u64 > covered {
            seal_and_restart(config, st, SealKind::Flush, 0);
        }
    }
    if in_flight >= config.write_depth {
        return None;
    }
    let i = st
        .sealed
        .iter()
        .position(|c| c.write == WriteState::Waiting)?;
    if i > 0 {
        let prev = &st.sealed[i - 1];
        // The previous chunk's padded last block is this chunk's first block.
        let prev_blocks_end = prev.base + prev.buf.as_ref().as_ref().len() as u64;
        if prev.write == WriteState::InFlight && st.sealed[i].base < prev_blocks_end {
            return None;
        }
    }
    let chunk = &mut st.sealed[i];
    chunk.write = WriteState::InFlight;
    let chunk = Sealed {
        buf: chunk.buf.clone(),
        write: WriteState::InFlight,
        ..*chunk
    };
    let file = st
        .segments
        .get(&chunk.segment)
        .expect("segment of a sealed chunk")
        .clone();
    Some((chunk, file))
}

/// A chunk write completed: moves the completed prefix of `sealed` to the cache and
/// advances `written` over it.
fn write_done<B: Backend>(inner: &Rc<Inner<B>>, base: u64) {
    if inner.written.failed().is_some() {
        return;
    }
    let end = {
        let mut st = inner.state.borrow_mut();
        let st = &mut *st;
        let chunk = st
            .sealed
            .iter_mut()
            .find(|c| c.base == base && c.write == WriteState::InFlight)
            .expect("a completed write's chunk is sealed and in flight");
        chunk.write = WriteState::Done;
        let mut end = None;
        let mut unsynced = inner.unsynced.borrow_mut();
        while st
            .sealed
            .front()
            .is_some_and(|c| c.write == WriteState::Done)
        {
            let chunk = st.sealed.pop_front().expect("checked");
            end = Some(chunk.end());
            unsynced.insert(chunk.segment);
            st.cache_bytes += chunk.mem;
            st.cache.push_back(chunk);
        }
        while st.cache_bytes > inner.config.cache_bytes {
            let Some(old) = st.cache.pop_front() else {
                break;
            };
            st.cache_bytes -= old.mem;
        }
        end
    };
    if let Some(end) = end {
        if end > inner.written.get() {
            inner.written.advance(end);
        }
    }
    inner.writes_done.advance(inner.writes_done.get() + 1);
}

/// `fdatasync`s the segments written since the last sync, covering what was written
/// when it starts, while the writer goes on: in sync mode as soon as everything
/// appended when the last sync ended is written; in async mode every `sync_interval`
/// or when [`CommitLog::sync_all`] asks. Exits when the log is closed
/// and everything is durable, or poisoned.
async fn syncer<B: Backend>(inner: Rc<Inner<B>>) {
    let mut last_sync = Instant::now();
    loop {
        let durable = inner.durable.get();
        if inner.closed.get() && durable >= inner.appended.get() {
            return;
        }
        {
            let written = inner.written.wait_for(durable + 1);
            let stop = inner.shutdown.wait_for(1);
            if futures_lite::future::or(written, stop).await.is_err() {
                return; // poisoned
            }
        }
        if let FlushMode::Async { sync_interval, .. } = inner.config.flush {
            let left = sync_interval.saturating_sub(last_sync.elapsed());
            if !left.is_zero() && inner.sync_wanted.get() <= durable {
                let wanted = inner.sync_wanted.wait_for(durable + 1);
                let timer = async {
                    glommio::timer::sleep(left).await;
                    Ok(())
                };
                let stop = inner.shutdown.wait_for(1);
                let _ =
                    futures_lite::future::or(wanted, futures_lite::future::or(timer, stop)).await;
            }
        }
        if matches!(inner.config.flush, FlushMode::Sync { .. }) {
            // One sync for everything appended by now, not just for what happens to be
            // written: with a bounded amount in flight (appenders wait for their ack),
            // syncing the first finished write alone splits the appenders into cohorts
            // that take turns, each paying a whole fdatasync. The wait is bounded:
            // only what is appended now, which the writer is already writing.
            let target = inner.appended.get();
            let written = inner.written.wait_for(target);
            let stop = inner.shutdown.wait_for(1);
            if futures_lite::future::or(written, stop).await.is_err() {
                return; // poisoned
            }
        }
        if inner.durable.failed().is_some() {
            return;
        }
        let end = inner.written.get();
        if end <= durable {
            if inner.closed.get() {
                return;
            }
            continue;
        }
        let touched = std::mem::take(&mut *inner.unsynced.borrow_mut());
        let files: Vec<Rc<B::File>> = {
            let st = inner.state.borrow();
            touched
                .iter()
                .filter_map(|s| st.segments.get(s).cloned())
                .collect()
        };
        for file in files {
            if let Err(e) = file.sync().await {
                poison(
                    &inner,
                    StoreError::Poisoned {
                        op: "fdatasync",
                        message: e.to_string(),
                    },
                );
                return;
            }
        }
        last_sync = Instant::now();
        if end > inner.durable.get() {
            inner.durable.advance(end);
        }
    }
}

fn poison<B: Backend>(inner: &Rc<Inner<B>>, error: StoreError) {
    tracing::error!(shard = inner.config.shard, %error, "commit log poisoned");
    inner.written.fail(error.clone());
    inner.durable.fail(error.clone());
    inner.appended.fail(error);
}

/// Finds the end of valid data, truncates whatever follows it, and removes segments
/// past it. Scans from the second-to-last segment: a crash can leave the newest
/// segment's first writes durable while the previous one's last were lost.
async fn recover<B: Backend>(
    backend: &B,
    config: &CommitLogConfig,
    segments: &mut BTreeMap<u64, Rc<B::File>>,
    checkpoint: Option<u64>,
) -> Result<u64, StoreError> {
    let bases: Vec<u64> = segments.keys().copied().collect();
    // Without a checkpoint, start two segments before the newest file: the newest may be
    // the one created ahead of need (empty), the one before it the one appends were in,
    // and the one before that may still have had an unwritten tail at the crash.
    let default_start = bases[bases.len().saturating_sub(3)];
    let mut pos = match checkpoint {
        Some(cp) if segments.contains_key(&segment_base(config, cp)) && cp >= bases[0] => cp,
        _ => default_start,
    };
    tracing::debug!(shard = config.shard, from = pos, "commit log recovery scan");
    let window = config.scan_window() as u64;
    'scan: loop {
        let seg = segment_base(config, pos);
        let Some(file) = segments.get(&seg).cloned() else {
            break;
        };
        let seg_end = seg + config.segment_bytes;
        let from = align_down(pos);
        let want = (window).min(seg_end - from);
        let path = config.dir.join(segment_name(seg));
        let data = file
            .read_at(from - seg, want as usize)
            .await
            .map_err(|e| io_error("read", &path, e))?;
        let full_window = data.len() as u64 == want && from + want < seg_end;
        let bytes = bytes::Bytes::copy_from_slice(&data);
        let mut at = (pos - from) as usize;
        let start = pos;
        loop {
            match record::peek_record(&bytes, at) {
                Ok(header) => match record::decode_record(&bytes, at, true) {
                    Ok(view) if view.physical_offset == global_offset(config.shard, pos) => {
                        at += header.total_size;
                        pos += header.total_size as u64;
                    }
                    _ => break 'scan,
                },
                Err(RecordError::Blank { len, .. }) if pos + len as u64 == seg_end => {
                    pos = seg_end;
                    continue 'scan;
                }
                // A record cut by the end of the window: read on from its start.
                Err(RecordError::UnexpectedEof { .. }) if full_window && pos > start => {
                    continue 'scan
                }
                Err(_) => break 'scan,
            }
        }
    }
    let end = pos;
    // Drop everything past the end: segments entirely beyond it, and the tail of the
    // segment holding it (so no stale record can ever be read as the next one).
    let end_seg = segment_base(config, end);
    let beyond: Vec<u64> = segments.range(end_seg + 1..).map(|(b, _)| *b).collect();
    for base in beyond {
        let path = config.dir.join(segment_name(base));
        segments.remove(&base);
        tracing::warn!(segment = %path.display(), "removing segment past the recovered end");
        backend
            .remove(&path)
            .await
            .map_err(|e| io_error("remove", &path, e))?;
    }
    if let std::collections::btree_map::Entry::Vacant(slot) = segments.entry(end_seg) {
        slot.insert(Rc::new(
            create_segment(backend, config, end_seg, None).await?,
        ));
    }
    let file = segments.get(&end_seg).expect("end segment").clone();
    let path = config.dir.join(segment_name(end_seg));
    let hole_from = align_up(end) - end_seg;
    let file_len = file
        .file_len()
        .await
        .map_err(|e| io_error("stat", &path, e))?;
    if hole_from < file_len {
        file.punch_hole(hole_from, align_up(file_len) - hole_from)
            .await
            .map_err(|e| io_error("truncate", &path, e))?;
        if config.preallocate {
            file.allocate(config.segment_bytes)
                .await
                .map_err(|e| io_error("preallocate", &path, e))?;
        }
        file.sync().await.map_err(|e| io_error("sync", &path, e))?;
    }
    backend
        .sync_dir(&config.dir)
        .await
        .map_err(|e| io_error("sync", &config.dir, e))?;
    Ok(end)
}
