//! The checkpoint: how far the consume queues are known durable, and whether the last
//! shutdown was clean.
//!
//! ```text
//! file `checkpoint`, two 4096-byte slots (A at 0, B at 4096), written alternately:
//!   0  4  magic "RQCP"
//!   4  4  format version (1)
//!   8  8  sequence number (higher wins)
//!  16  8  log offset: local commit-log offset, a record boundary; every record below
//!         it is durable in the commit log AND has its consume-queue entries durable
//!  24  1  clean shutdown (1) or running (0)
//!  25  3  zero
//!  28  4  CRC-32C of bytes 0..28
//!  .. zero to 4096
//! ```
//! A torn write damages one slot only; the other still holds the previous checkpoint.

use std::path::PathBuf;
use std::rc::Rc;

use crate::commitlog::{io_error, write_whole, StoreError};
use crate::io::{Backend, BackendFile, BLOCK};

const MAGIC: &[u8; 4] = b"RQCP";
const VERSION: u32 = 1;
const RECORD_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub sequence: u64,
    pub log_offset: u64,
    pub clean: bool,
}

impl Checkpoint {
    fn encode(&self, out: &mut [u8]) {
        out[..RECORD_BYTES].fill(0);
        out[0..4].copy_from_slice(MAGIC);
        out[4..8].copy_from_slice(&VERSION.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.log_offset.to_be_bytes());
        out[24] = u8::from(self.clean);
        let crc = crc32c::crc32c(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < RECORD_BYTES || &b[0..4] != MAGIC {
            return None;
        }
        let crc = u32::from_be_bytes(b[28..32].try_into().ok()?);
        if crc != crc32c::crc32c(&b[..28])
            || u32::from_be_bytes(b[4..8].try_into().ok()?) != VERSION
        {
            return None;
        }
        Some(Self {
            sequence: u64::from_be_bytes(b[8..16].try_into().ok()?),
            log_offset: u64::from_be_bytes(b[16..24].try_into().ok()?),
            clean: b[24] == 1,
        })
    }
}

/// The checkpoint file of one shard.
pub struct CheckpointFile<B: Backend> {
    file: Rc<B::File>,
    path: PathBuf,
    last: std::cell::Cell<Checkpoint>,
}

impl<B: Backend> std::fmt::Debug for CheckpointFile<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointFile")
            .field("path", &self.path)
            .field("last", &self.last.get())
            .finish()
    }
}

impl<B: Backend> CheckpointFile<B> {
    /// Opens or creates the file; returns it with the newest valid checkpoint, if any.
    pub async fn open(
        backend: &B,
        path: PathBuf,
    ) -> Result<(Self, Option<Checkpoint>), StoreError> {
        let file = match backend.open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => backend
                .create(&path)
                .await
                .map_err(|e| io_error("create", &path, e))?,
            Err(e) => return Err(io_error("open", &path, e)),
        };
        let data = file
            .read_at(0, 2 * BLOCK)
            .await
            .map_err(|e| io_error("read", &path, e))?;
        let a = (data.len() >= BLOCK)
            .then(|| Checkpoint::decode(&data[..BLOCK]))
            .flatten();
        let b = (data.len() >= 2 * BLOCK)
            .then(|| Checkpoint::decode(&data[BLOCK..2 * BLOCK]))
            .flatten();
        let newest = match (a, b) {
            (Some(a), Some(b)) => Some(if a.sequence >= b.sequence { a } else { b }),
            (a, b) => a.or(b),
        };
        let this = Self {
            file: Rc::new(file),
            path,
            last: std::cell::Cell::new(newest.unwrap_or_default()),
        };
        Ok((this, newest))
    }

    /// Writes and syncs a new checkpoint into the slot the previous one is not in.
    pub async fn write(&self, log_offset: u64, clean: bool) -> Result<(), StoreError> {
        let next = Checkpoint {
            sequence: self.last.get().sequence + 1,
            log_offset,
            clean,
        };
        let mut buf = self.file.alloc(BLOCK);
        buf.as_mut().fill(0);
        next.encode(buf.as_mut());
        let slot = (next.sequence % 2) * BLOCK as u64;
        write_whole(&*self.file, buf, slot, &self.path).await?;
        self.file
            .sync()
            .await
            .map_err(|e| io_error("sync", &self.path, e))?;
        self.last.set(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let cp = Checkpoint {
            sequence: 7,
            log_offset: 123_456,
            clean: true,
        };
        let mut buf = [0u8; BLOCK];
        cp.encode(&mut buf);
        assert_eq!(Checkpoint::decode(&buf), Some(cp));
        buf[17] ^= 1;
        assert_eq!(Checkpoint::decode(&buf), None);
        assert_eq!(Checkpoint::decode(&[0u8; BLOCK]), None);
    }
}
