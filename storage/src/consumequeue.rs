//! Consume queues: per (topic, queue id), the commit-log position of each message in
//! queue order. The logical offset of a message is its entry index.
//!
//! ```text
//! entry (20 bytes, big-endian):  commit-log offset: i64 | size: i32 | tags code: i64
//! file  consumequeue/<topic>/<queue id>/<20-digit index of its first entry>
//!       300 000 entries = 6 000 000 bytes (the last block zero-padded)
//! ```
//! An entry whose size is 0 marks the end (files are zero beyond their last entry).
//!
//! Entries are added in memory as records are appended (same call, no polling thread),
//! and written with direct I/O in whole blocks by [`ConsumeQueue::flush`], which the
//! shard's checkpoint runs: a crash loses only entries past the checkpoint, and those are
//! rebuilt from the commit log.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::commitlog::{io_error, numbered_files, write_whole, StoreError};
use crate::io::{align_down, align_up, Backend, BackendFile, BLOCK};

pub const ENTRY_BYTES: usize = 20;
const _: () = assert!(ENTRY_BYTES == 8 + 4 + 8);
/// RocketMQ's `mappedFileSizeConsumeQueue / 20`.
pub const ENTRIES_PER_FILE: u64 = 300_000;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// Global commit-log offset of the record.
    pub offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl CqEntry {
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.size.to_be_bytes());
        out[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        let offset = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
        let tags_code = i64::from_be_bytes(b[12..20].try_into().expect("8 bytes"));
        Self {
            offset,
            size,
            tags_code,
        }
    }

    fn is_valid(&self) -> bool {
        self.offset >= 0 && self.size > 0
    }
}

use crate::commitlog::numbered_name as file_name;

/// Entries of one file not yet written, from a block-aligned byte position.
struct Tail {
    /// Index of the file's first entry.
    file: u64,
    /// Byte position (in the file) of `bytes[0]`; block-aligned.
    pos: u64,
    bytes: Vec<u8>,
}

struct State<F: BackendFile> {
    files: BTreeMap<u64, Rc<F>>,
    min_index: u64,
    next_index: u64,
    /// Entries below this are written to files.
    written_index: u64,
    /// Unwritten bytes, oldest file first (more than one only across a file boundary).
    tails: Vec<Tail>,
}

/// One queue. Shared on the shard's thread.
pub struct ConsumeQueue<B: Backend> {
    backend: B,
    dir: PathBuf,
    state: RefCell<State<B::File>>,
}

impl<B: Backend> std::fmt::Debug for ConsumeQueue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.borrow();
        f.debug_struct("ConsumeQueue")
            .field("dir", &self.dir)
            .field("min_index", &st.min_index)
            .field("next_index", &st.next_index)
            .field("written_index", &st.written_index)
            .finish()
    }
}

impl<B: Backend + Clone> ConsumeQueue<B> {
    /// Opens a queue directory (creating it), finds its last entry, and drops entries
    /// that point at or past `log_end` (records lost with a torn commit-log tail).
    pub async fn open(backend: B, dir: PathBuf, log_end: i64) -> Result<Self, StoreError> {
        let firsts = numbered_files(&backend, &dir).await?;
        let mut files = BTreeMap::new();
        for first in &firsts {
            let path = dir.join(file_name(*first));
            let file = backend
                .open(&path)
                .await
                .map_err(|e| io_error("open", &path, e))?;
            files.insert(*first, Rc::new(file));
        }
        let min_index = firsts.first().copied().unwrap_or(0);
        // Find the end: the last file's valid entries (read from its last blocks).
        let mut next_index = min_index;
        let mut tail = Tail {
            file: min_index,
            pos: 0,
            bytes: Vec::new(),
        };
        if let Some((&first, file)) = files.iter().next_back() {
            let path = dir.join(file_name(first));
            let len = file
                .file_len()
                .await
                .map_err(|e| io_error("stat", &path, e))?;
            let data = file
                .read_at(0, align_up(len) as usize)
                .await
                .map_err(|e| io_error("read", &path, e))?;
            let mut count = 0u64;
            while (count as usize + 1) * ENTRY_BYTES <= data.len() && count < ENTRIES_PER_FILE {
                let at = count as usize * ENTRY_BYTES;
                let e = CqEntry::decode(&data[at..at + ENTRY_BYTES]);
                if !e.is_valid() || e.offset + e.size as i64 > log_end {
                    break;
                }
                count += 1;
            }
            next_index = first + count;
            let end_byte = count * ENTRY_BYTES as u64;
            let pos = align_down(end_byte);
            let mut bytes = data[pos as usize..end_byte as usize].to_vec();
            bytes.truncate((end_byte - pos) as usize);
            tail = Tail {
                file: first,
                pos,
                bytes,
            };
        }
        let state = State {
            files,
            min_index,
            next_index,
            written_index: next_index,
            tails: vec![tail],
        };
        Ok(Self {
            backend,
            dir,
            state: RefCell::new(state),
        })
    }

    /// Index the next entry gets (the queue's max offset).
    pub fn next_index(&self) -> u64 {
        self.state.borrow().next_index
    }

    pub fn min_index(&self) -> u64 {
        self.state.borrow().min_index
    }

    /// Adds the next entry, in memory. Returns its index.
    pub fn push(&self, entry: CqEntry) -> u64 {
        assert!(entry.is_valid(), "invalid consume-queue entry {entry:?}");
        let mut st = self.state.borrow_mut();
        let index = st.next_index;
        let file = index - index % ENTRIES_PER_FILE;
        let tail = st.tails.last_mut().expect("a tail always exists");
        if tail.file != file {
            st.tails.push(Tail {
                file,
                pos: 0,
                bytes: Vec::with_capacity(BLOCK),
            });
        }
        let tail = st.tails.last_mut().expect("a tail always exists");
        let mut buf = [0u8; ENTRY_BYTES];
        entry.encode(&mut buf);
        tail.bytes.extend_from_slice(&buf);
        st.next_index += 1;
        index
    }

    /// Up to `max` entries from `index`: older ones with one direct read, the newest from
    /// memory. May return fewer than exist (the caller asks again from where it stopped).
    pub async fn get(&self, index: u64, max: usize) -> Result<Vec<CqEntry>, StoreError> {
        let (end, mem_start, file) = {
            let st = self.state.borrow();
            if index < st.min_index || index >= st.next_index {
                return Ok(Vec::new());
            }
            let end = (index + max as u64).min(st.next_index);
            // Entries in memory are a suffix of the queue.
            let mem_start = (index..end)
                .find(|i| in_tails(&st.tails, *i).is_some())
                .unwrap_or(end);
            let first = index - index % ENTRIES_PER_FILE;
            (end, mem_start, st.files.get(&first).cloned())
        };
        let mut out = Vec::with_capacity((end - index) as usize);
        if mem_start > index {
            let Some(file) = file else { return Ok(out) };
            let first = index - index % ENTRIES_PER_FILE;
            let until = mem_start.min(first + ENTRIES_PER_FILE);
            let from_byte = (index - first) * ENTRY_BYTES as u64;
            let start = align_down(from_byte);
            let to = align_up((until - first) * ENTRY_BYTES as u64);
            let data = file
                .read_at(start, (to - start) as usize)
                .await
                .map_err(|e| io_error("read", &self.dir, e))?;
            for i in index..until {
                let at = ((i - first) * ENTRY_BYTES as u64 - start) as usize;
                if at + ENTRY_BYTES > data.len() {
                    return Ok(out);
                }
                let e = CqEntry::decode(&data[at..at + ENTRY_BYTES]);
                if !e.is_valid() {
                    return Ok(out);
                }
                out.push(e);
            }
            if until < mem_start {
                return Ok(out);
            }
        }
        let st = self.state.borrow();
        for i in mem_start..end {
            match in_tails(&st.tails, i) {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    /// Writes every entry added so far (whole blocks, the partial last one padded with
    /// zeros and rewritten next time) and syncs the files written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (jobs, target) = {
            let st = self.state.borrow();
            if st.written_index == st.next_index {
                return Ok(());
            }
            let jobs: Vec<(u64, u64, Vec<u8>)> = st
                .tails
                .iter()
                .map(|t| (t.file, t.pos, t.bytes.clone()))
                .collect();
            (jobs, st.next_index)
        };
        for (first, pos, bytes) in &jobs {
            if bytes.is_empty() {
                continue;
            }
            let file = self.file(*first).await?;
            let mut buf = file.alloc(align_up(bytes.len() as u64) as usize);
            buf.as_mut().fill(0);
            buf.as_mut()[..bytes.len()].copy_from_slice(bytes);
            let path = self.dir.join(file_name(*first));
            write_whole(&*file, buf, *pos, &path).await?;
            file.sync().await.map_err(|e| io_error("sync", &path, e))?;
        }
        let mut st = self.state.borrow_mut();
        // Drop what was written; keep the partial last block (and anything added since).
        let written: Vec<(u64, usize)> = jobs.iter().map(|(f, _, b)| (*f, b.len())).collect();
        let last = st.tails.len() - 1;
        let mut kept = Vec::new();
        for (i, mut tail) in std::mem::take(&mut st.tails).into_iter().enumerate() {
            let done = written
                .iter()
                .find(|(f, _)| *f == tail.file)
                .map_or(0, |(_, n)| *n);
            if i < last && done == tail.bytes.len() {
                continue; // a finished file's tail, fully written
            }
            let keep_from = align_down(done as u64) as usize;
            tail.bytes.drain(..keep_from);
            tail.pos += keep_from as u64;
            kept.push(tail);
        }
        st.tails = kept;
        st.written_index = st.written_index.max(target);
        Ok(())
    }

    /// Deletes whole files whose entries all point below `log_min` (after retention
    /// removed that part of the log). Returns the new minimum index.
    pub async fn delete_below(&self, log_min: i64) -> Result<u64, StoreError> {
        loop {
            let (first, file) = {
                let st = self.state.borrow();
                let Some((&first, file)) = st.files.iter().next() else {
                    return Ok(st.min_index);
                };
                // Never the file still being appended to.
                if first + ENTRIES_PER_FILE > st.written_index {
                    return Ok(st.min_index);
                }
                (first, file.clone())
            };
            let last_byte = (ENTRIES_PER_FILE - 1) * ENTRY_BYTES as u64;
            let start = align_down(last_byte);
            let data = file
                .read_at(
                    start,
                    (align_up(last_byte + ENTRY_BYTES as u64) - start) as usize,
                )
                .await
                .map_err(|e| io_error("read", &self.dir, e))?;
            let at = (last_byte - start) as usize;
            let last = CqEntry::decode(&data[at..at + ENTRY_BYTES]);
            if last.offset + last.size as i64 > log_min {
                return Ok(self.state.borrow().min_index);
            }
            let path = self.dir.join(file_name(first));
            {
                let mut st = self.state.borrow_mut();
                st.files.remove(&first);
                st.min_index = first + ENTRIES_PER_FILE;
            }
            self.backend
                .remove(&path)
                .await
                .map_err(|e| io_error("remove", &path, e))?;
        }
    }

    /// Raises the minimum index to the first entry at or above `log_min` (RocketMQ's
    /// `correctMinOffset`), by binary search. Returns the new minimum.
    pub async fn correct_min(&self, log_min: i64) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = {
            let st = self.state.borrow();
            (st.min_index, st.next_index)
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid, 1).await?.first() {
                Some(e) if e.offset < log_min => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let mut st = self.state.borrow_mut();
        st.min_index = st.min_index.max(lo);
        Ok(st.min_index)
    }

    async fn file(&self, first: u64) -> Result<Rc<B::File>, StoreError> {
        if let Some(f) = self.state.borrow().files.get(&first) {
            return Ok(f.clone());
        }
        let path = self.dir.join(file_name(first));
        let file = Rc::new(
            self.backend
                .create(&path)
                .await
                .map_err(|e| io_error("create", &path, e))?,
        );
        self.backend
            .sync_dir(&self.dir)
            .await
            .map_err(|e| io_error("sync", &self.dir, e))?;
        self.state.borrow_mut().files.insert(first, file.clone());
        Ok(file)
    }
}

/// The entry at `index` if a tail holds all of its bytes.
fn in_tails(tails: &[Tail], index: u64) -> Option<CqEntry> {
    let tail = tails
        .iter()
        .find(|t| t.file <= index && index < t.file + ENTRIES_PER_FILE)?;
    let byte = (index - tail.file) * ENTRY_BYTES as u64;
    if byte < tail.pos {
        return None;
    }
    let at = (byte - tail.pos) as usize;
    (at + ENTRY_BYTES <= tail.bytes.len())
        .then(|| CqEntry::decode(&tail.bytes[at..at + ENTRY_BYTES]))
}
