//! The key index: find records by message key or unique key (`topic#key`), RocketMQ's
//! IndexFile idea (a hash table of chains, one file per 20 M entries) written with
//! direct I/O, with memory bounded by one file's slot table whatever the number of keys.
//!
//! ```text
//! file index/<20-digit local commit-log offset of its first indexed record>
//! block 0, header (written at every flush):
//!    0  4  magic "RQIX"          4  4  version (1)
//!    8  4  slot count           12  4  entry capacity
//!   16  4  entries written      20  1  sealed (slots written)   21 3 zero
//!   24  8  first store time (ms) 32  8  last store time (ms)
//!   40  8  last indexed global commit-log offset (+1), 0 if none
//!   48  4  CRC-32C of bytes 0..48
//! blocks 1..: slot table, slot count x u32 = entry number of the newest entry with
//!             that hash (1-based; 0 = empty). Written once, when the file is sealed.
//! then, block-aligned: entries, capacity x 20 bytes:
//!    key hash i32 | commit-log offset i64 | store time - first store time, s: i32
//!    | previous entry number with the same slot u32 (0 = end of chain)
//! ```
//! The open file keeps its slots in memory (20 MB at RocketMQ's 5 M slots) and appends
//! entries; a flush writes new entries and the header. After a crash its slots are
//! rebuilt from its entries, and the records past the last flushed one are replayed.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::commitlog::{io_error, numbered_files, write_whole, StoreError};
use crate::io::{align_down, align_up, Backend, BackendFile, BLOCK};

const MAGIC: &[u8; 4] = b"RQIX";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 52;
pub const ENTRY_BYTES: usize = 20;

/// Sizes of index files.
#[derive(Debug, Clone, Copy)]
pub struct IndexConfig {
    /// Hash slots per file (RocketMQ: 5 000 000). Memory of the open file: 4 bytes each.
    pub slots: u32,
    /// Entries per file (RocketMQ: 20 000 000).
    pub entries: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            slots: 5_000_000,
            entries: 20_000_000,
        }
    }
}

impl IndexConfig {
    fn slots_bytes(&self) -> u64 {
        align_up(self.slots as u64 * 4)
    }
    fn entries_pos(&self) -> u64 {
        BLOCK as u64 + self.slots_bytes()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Header {
    slots: u32,
    capacity: u32,
    count: u32,
    sealed: bool,
    first_ts: i64,
    last_ts: i64,
    end_offset: i64,
}

impl Header {
    fn encode(&self, out: &mut [u8]) {
        out[..HEADER_BYTES].fill(0);
        out[0..4].copy_from_slice(MAGIC);
        out[4..8].copy_from_slice(&VERSION.to_be_bytes());
        out[8..12].copy_from_slice(&self.slots.to_be_bytes());
        out[12..16].copy_from_slice(&self.capacity.to_be_bytes());
        out[16..20].copy_from_slice(&self.count.to_be_bytes());
        out[20] = u8::from(self.sealed);
        out[24..32].copy_from_slice(&self.first_ts.to_be_bytes());
        out[32..40].copy_from_slice(&self.last_ts.to_be_bytes());
        out[40..48].copy_from_slice(&self.end_offset.to_be_bytes());
        let crc = crc32c::crc32c(&out[..48]);
        out[48..52].copy_from_slice(&crc.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER_BYTES || &b[0..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let i64_at = |i: usize| i64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(48) != crc32c::crc32c(&b[..48]) || u32_at(4) != VERSION {
            return None;
        }
        Some(Self {
            slots: u32_at(8),
            capacity: u32_at(12),
            count: u32_at(16),
            sealed: b[20] == 1,
            first_ts: i64_at(24),
            last_ts: i64_at(32),
            end_offset: i64_at(40),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: i32,
    offset: i64,
    time_diff_s: i32,
    prev: u32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..4].copy_from_slice(&self.hash.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..16].copy_from_slice(&self.time_diff_s.to_be_bytes());
        b[16..20].copy_from_slice(&self.prev.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Self {
        Self {
            hash: i32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            offset: i64::from_be_bytes(b[4..12].try_into().expect("8 bytes")),
            time_diff_s: i32::from_be_bytes(b[12..16].try_into().expect("4 bytes")),
            prev: u32::from_be_bytes(b[16..20].try_into().expect("4 bytes")),
        }
    }
}

use crate::commitlog::numbered_name as file_name;

/// The open (unsealed) file.
struct Open<F: BackendFile> {
    name: u64,
    file: Rc<F>,
    header: Header,
    slots: Vec<u32>,
    /// Entries not yet written, from the block-aligned byte position `tail_pos` of the
    /// entries region.
    tail_pos: u64,
    tail: Vec<u8>,
}

/// A sealed file: only its header is kept in memory.
struct Sealed<F: BackendFile> {
    name: u64,
    file: Rc<F>,
    header: Header,
}

struct State<F: BackendFile> {
    sealed: Vec<Sealed<F>>,
    open: Option<Open<F>>,
}

/// The key index of one shard.
pub struct KeyIndex<B: Backend> {
    backend: B,
    dir: PathBuf,
    config: IndexConfig,
    state: RefCell<State<B::File>>,
}

impl<B: Backend> std::fmt::Debug for KeyIndex<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.borrow();
        f.debug_struct("KeyIndex")
            .field("dir", &self.dir)
            .field("sealed_files", &st.sealed.len())
            .field("open_entries", &st.open.as_ref().map(|o| o.header.count))
            .finish()
    }
}

impl<B: Backend> KeyIndex<B> {
    /// Opens the index directory. Returns it with the global commit-log offset past the
    /// last record it holds (records from there on must be re-added).
    pub async fn open(
        backend: B,
        dir: PathBuf,
        config: IndexConfig,
    ) -> Result<(Self, i64), StoreError> {
        assert!(
            config.slots > 0 && config.entries > 0,
            "index sizes must be positive"
        );
        let names = numbered_files(&backend, &dir).await?;
        let mut sealed = Vec::new();
        let mut open = None;
        let mut end_offset = 0i64;
        for name in names {
            let path = dir.join(file_name(name));
            let file = Rc::new(
                backend
                    .open(&path)
                    .await
                    .map_err(|e| io_error("open", &path, e))?,
            );
            let block = file
                .read_at(0, BLOCK)
                .await
                .map_err(|e| io_error("read", &path, e))?;
            let Some(header) = Header::decode(&block) else {
                // Created but never flushed: nothing in it is needed.
                drop(file);
                backend
                    .remove(&path)
                    .await
                    .map_err(|e| io_error("remove", &path, e))?;
                continue;
            };
            end_offset = end_offset.max(header.end_offset);
            if header.sealed {
                sealed.push(Sealed { name, file, header });
                continue;
            }
            // The open file: rebuild its slots from the entries it has.
            let mut slots = vec![0u32; header.slots as usize];
            let bytes = header.count as u64 * ENTRY_BYTES as u64;
            let pos = config_entries_pos(&header);
            let data = file
                .read_at(pos, align_up(bytes) as usize)
                .await
                .map_err(|e| io_error("read", &path, e))?;
            if (data.len() as u64) < bytes {
                return Err(StoreError::Io {
                    op: "read",
                    path: path.display().to_string(),
                    message: "index entries truncated".into(),
                });
            }
            for n in 0..header.count as usize {
                let e = Entry::decode(&data[n * ENTRY_BYTES..(n + 1) * ENTRY_BYTES]);
                slots[(e.hash as u32 % header.slots) as usize] = n as u32 + 1;
            }
            let tail_pos = align_down(bytes);
            let tail = data[tail_pos as usize..bytes as usize].to_vec();
            open = Some(Open {
                name,
                file,
                header,
                slots,
                tail_pos,
                tail,
            });
        }
        let this = Self {
            backend,
            dir,
            config,
            state: RefCell::new(State { sealed, open }),
        };
        Ok((this, end_offset))
    }

    /// Indexes `hash` for the record at global `offset` stored at `store_ts`. `local`
    /// names a new file if one is needed (the record's local offset).
    pub async fn add(
        &self,
        hash: i32,
        offset: i64,
        store_ts: i64,
        local: u64,
    ) -> Result<(), StoreError> {
        let full = self
            .state
            .borrow()
            .open
            .as_ref()
            .is_none_or(|o| o.header.count >= o.header.capacity);
        if full {
            self.seal().await?;
            self.create(local, store_ts).await?;
        }
        let mut st = self.state.borrow_mut();
        let open = st.open.as_mut().expect("an open index file");
        let h = &mut open.header;
        let slot = (hash as u32 % h.slots) as usize;
        let entry = Entry {
            hash,
            offset,
            time_diff_s: ((store_ts - h.first_ts).max(0) / 1000).min(i32::MAX as i64) as i32,
            prev: open.slots[slot],
        };
        open.tail.extend_from_slice(&entry.encode());
        h.count += 1;
        open.slots[slot] = h.count;
        h.last_ts = h.last_ts.max(store_ts);
        h.end_offset = h.end_offset.max(offset + 1);
        Ok(())
    }

    async fn create(&self, name: u64, first_ts: i64) -> Result<(), StoreError> {
        let path = self.dir.join(file_name(name));
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
        let header = Header {
            slots: self.config.slots,
            capacity: self.config.entries,
            count: 0,
            sealed: false,
            first_ts,
            last_ts: first_ts,
            end_offset: 0,
        };
        let slots = vec![0u32; self.config.slots as usize];
        self.state.borrow_mut().open = Some(Open {
            name,
            file,
            header,
            slots,
            tail_pos: 0,
            tail: Vec::new(),
        });
        Ok(())
    }

    /// Writes new entries and the header of the open file, and syncs it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let job = {
            let st = self.state.borrow();
            let Some(open) = st.open.as_ref() else {
                return Ok(());
            };
            (
                open.file.clone(),
                open.name,
                open.header,
                open.tail_pos,
                open.tail.clone(),
            )
        };
        let (file, name, header, tail_pos, tail) = job;
        let path = self.dir.join(file_name(name));
        if !tail.is_empty() {
            let mut buf = file.alloc(align_up(tail.len() as u64) as usize);
            buf.as_mut().fill(0);
            buf.as_mut()[..tail.len()].copy_from_slice(&tail);
            write_whole(&*file, buf, config_entries_pos(&header) + tail_pos, &path).await?;
        }
        write_header(&*file, &header, &path).await?;
        file.sync().await.map_err(|e| io_error("sync", &path, e))?;
        let mut st = self.state.borrow_mut();
        if let Some(open) = st.open.as_mut().filter(|o| o.name == name) {
            let keep = align_down(tail.len() as u64) as usize;
            open.tail.drain(..keep);
            open.tail_pos += keep as u64;
        }
        Ok(())
    }

    /// Writes the open file's slots and marks it sealed.
    async fn seal(&self) -> Result<(), StoreError> {
        if self.state.borrow().open.is_none() {
            return Ok(());
        }
        self.flush().await?;
        let Some(open) = self.state.borrow_mut().open.take() else {
            return Ok(());
        };
        let path = self.dir.join(file_name(open.name));
        let slot_bytes = self.config_for(&open.header).slots_bytes() as usize;
        let mut buf = open.file.alloc(slot_bytes);
        buf.as_mut().fill(0);
        for (i, s) in open.slots.iter().enumerate() {
            buf.as_mut()[i * 4..i * 4 + 4].copy_from_slice(&s.to_be_bytes());
        }
        write_whole(&*open.file, buf, BLOCK as u64, &path).await?;
        let header = Header {
            sealed: true,
            ..open.header
        };
        write_header(&*open.file, &header, &path).await?;
        open.file
            .sync()
            .await
            .map_err(|e| io_error("sync", &path, e))?;
        self.state.borrow_mut().sealed.push(Sealed {
            name: open.name,
            file: open.file,
            header,
        });
        Ok(())
    }

    fn config_for(&self, h: &Header) -> IndexConfig {
        IndexConfig {
            slots: h.slots,
            entries: h.capacity,
        }
    }

    /// Global commit-log offsets of records indexed under `hash` and stored within
    /// `[begin_ts, end_ts]`, newest first, at most `max`. Hash collisions are possible:
    /// the caller checks the record's keys.
    pub async fn lookup(
        &self,
        hash: i32,
        begin_ts: i64,
        end_ts: i64,
        max: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::new();
        // The open file, from memory and its entry region.
        let open = {
            let st = self.state.borrow();
            st.open.as_ref().map(|o| {
                (
                    o.file.clone(),
                    o.name,
                    o.header,
                    o.slots[(hash as u32 % o.header.slots) as usize],
                )
            })
        };
        if let Some((file, name, header, head)) = open {
            self.walk(
                &file, name, &header, head, hash, begin_ts, end_ts, max, &mut out,
            )
            .await?;
        }
        let sealed: Vec<(Rc<B::File>, u64, Header)> = self
            .state
            .borrow()
            .sealed
            .iter()
            .rev()
            .map(|s| (s.file.clone(), s.name, s.header))
            .collect();
        for (file, name, header) in sealed {
            if out.len() >= max || header.last_ts < begin_ts {
                break;
            }
            if header.first_ts > end_ts {
                continue;
            }
            let slot_pos = BLOCK as u64 + (hash as u32 % header.slots) as u64 * 4;
            let block = align_down(slot_pos);
            let path = self.dir.join(file_name(name));
            let data = file
                .read_at(block, BLOCK)
                .await
                .map_err(|e| io_error("read", &path, e))?;
            let at = (slot_pos - block) as usize;
            let head = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
            self.walk(
                &file, name, &header, head, hash, begin_ts, end_ts, max, &mut out,
            )
            .await?;
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        file: &Rc<B::File>,
        name: u64,
        header: &Header,
        mut next: u32,
        hash: i32,
        begin_ts: i64,
        end_ts: i64,
        max: usize,
        out: &mut Vec<i64>,
    ) -> Result<(), StoreError> {
        let path = self.dir.join(file_name(name));
        // Bounded by the file's entries: a corrupt chain cannot loop forever.
        let mut hops = 0u32;
        while next != 0 && out.len() < max && hops <= header.capacity {
            hops += 1;
            let n = next - 1;
            if n >= header.count.max(self.live_count(name)) {
                break;
            }
            let entry = match self.entry_in_memory(name, n) {
                Some(e) => e,
                None => {
                    let pos = config_entries_pos(header) + n as u64 * ENTRY_BYTES as u64;
                    let block = align_down(pos);
                    let len = (align_up(pos + ENTRY_BYTES as u64) - block) as usize;
                    let data = file
                        .read_at(block, len)
                        .await
                        .map_err(|e| io_error("read", &path, e))?;
                    let at = (pos - block) as usize;
                    if data.len() < at + ENTRY_BYTES {
                        break;
                    }
                    Entry::decode(&data[at..at + ENTRY_BYTES])
                }
            };
            let ts = header.first_ts + entry.time_diff_s as i64 * 1000;
            if entry.hash == hash && ts + 999 >= begin_ts && ts <= end_ts {
                out.push(entry.offset);
            }
            if entry.prev >= next {
                break; // chains only go back
            }
            next = entry.prev;
        }
        Ok(())
    }

    fn live_count(&self, name: u64) -> u32 {
        let st = self.state.borrow();
        st.open
            .as_ref()
            .filter(|o| o.name == name)
            .map_or(0, |o| o.header.count)
    }

    fn entry_in_memory(&self, name: u64, n: u32) -> Option<Entry> {
        let st = self.state.borrow();
        let open = st.open.as_ref().filter(|o| o.name == name)?;
        let pos = n as u64 * ENTRY_BYTES as u64;
        if pos < open.tail_pos {
            return None;
        }
        let at = (pos - open.tail_pos) as usize;
        (at + ENTRY_BYTES <= open.tail.len())
            .then(|| Entry::decode(&open.tail[at..at + ENTRY_BYTES]))
    }

    /// Deletes sealed files whose records all lie below global `log_min`.
    pub async fn delete_below(&self, log_min: i64) -> Result<(), StoreError> {
        loop {
            let victim = {
                let st = self.state.borrow();
                st.sealed
                    .first()
                    .filter(|s| s.header.end_offset <= log_min)
                    .map(|s| s.name)
            };
            let Some(name) = victim else { return Ok(()) };
            self.state.borrow_mut().sealed.remove(0);
            let path = self.dir.join(file_name(name));
            self.backend
                .remove(&path)
                .await
                .map_err(|e| io_error("remove", &path, e))?;
        }
    }

    /// Seals nothing, but writes everything: for a clean shutdown.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.flush().await
    }
}

fn config_entries_pos(h: &Header) -> u64 {
    IndexConfig {
        slots: h.slots,
        entries: h.capacity,
    }
    .entries_pos()
}

async fn write_header<F: BackendFile>(
    file: &F,
    header: &Header,
    path: &std::path::Path,
) -> Result<(), StoreError> {
    let mut buf = file.alloc(BLOCK);
    buf.as_mut().fill(0);
    header.encode(buf.as_mut());
    write_whole(file, buf, 0, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_corruption() {
        let h = Header {
            slots: 7,
            capacity: 9,
            count: 3,
            sealed: true,
            first_ts: 1,
            last_ts: 2,
            end_offset: 77,
        };
        let mut b = [0u8; BLOCK];
        h.encode(&mut b);
        assert_eq!(Header::decode(&b), Some(h));
        b[10] ^= 1;
        assert_eq!(Header::decode(&b), None);
        let e = Entry {
            hash: -5,
            offset: 1 << 40,
            time_diff_s: 3,
            prev: 2,
        };
        assert_eq!(Entry::decode(&e.encode()), e);
    }
}
