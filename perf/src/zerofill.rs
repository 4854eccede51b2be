//! A storage backend whose "preallocation" writes zeros: segments are fully written
//! (and so fully allocated, with written extents and their final size) before the log
//! appends to them. It emulates a zero-fill option that `CommitLogConfig` lacks, to
//! measure what `fallocate`'s unwritten extents cost when a first write is synced.
//!
//! Pre-writing zeros to a segment file before opening the log does not work: recovery
//! finds no record in it and punches a hole from the recovered end (0) to the end of the
//! file, then preallocates again, so the log starts on unwritten extents anyway; and a
//! later segment's file is created with `O_TRUNC`.

use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use storage::io::dma::{DmaBackend, DmaFileHandle};
use storage::io::{Backend, BackendFile, Payload, Space, BLOCK};

/// Largest zero-fill write.
const FILL_CHUNK: usize = 4 << 20;

/// [`DmaBackend`] with zero-filled preallocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroFillBackend(pub DmaBackend);

/// A [`DmaFileHandle`] that remembers whether it still reads as zeros past what the
/// log wrote (then a hole punch has nothing to do).
#[derive(Debug)]
pub struct ZeroFillFile {
    inner: DmaFileHandle,
    /// Zero-filled by `allocate` and not written since.
    pristine: Cell<bool>,
}

impl ZeroFillFile {
    fn new(inner: DmaFileHandle) -> Self {
        Self {
            inner,
            pristine: Cell::new(false),
        }
    }

    /// Writes zeros over `[from, to)` (aligned), then syncs.
    async fn write_zeros(&self, from: u64, to: u64) -> io::Result<()> {
        let mut pos = from;
        while pos < to {
            let len = (to - pos).min(FILL_CHUNK as u64) as usize;
            let mut buf = self.inner.alloc(len);
            buf.as_mut().fill(0);
            let n = self.inner.write_at(Rc::new(buf), pos).await?;
            if n != len {
                return Err(io::Error::other(format!(
                    "short zero-fill write: {n} of {len} bytes at {pos}"
                )));
            }
            pos += len as u64;
        }
        self.inner.sync().await
    }
}

impl Backend for ZeroFillBackend {
    type File = ZeroFillFile;

    async fn create(&self, path: &Path) -> io::Result<ZeroFillFile> {
        Ok(ZeroFillFile::new(self.0.create(path).await?))
    }

    async fn open(&self, path: &Path) -> io::Result<ZeroFillFile> {
        Ok(ZeroFillFile::new(self.0.open(path).await?))
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to).await
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list_dir(dir).await
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.create_dir_all(dir).await
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir).await
    }

    async fn space(&self, dir: &Path) -> io::Result<Space> {
        self.0.space(dir).await
    }
}

impl BackendFile for ZeroFillFile {
    type Buf = <DmaFileHandle as BackendFile>::Buf;

    fn alloc(&self, len: usize) -> Self::Buf {
        self.inner.alloc(len)
    }

    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize> {
        self.pristine.set(false);
        self.inner.write_at(buf, pos).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Payload> {
        self.inner.read_at(pos, len).await
    }

    async fn sync(&self) -> io::Result<()> {
        self.inner.sync().await
    }

    /// Writes zeros from the current end of the file to `len`.
    async fn allocate(&self, len: u64) -> io::Result<()> {
        let current = self.inner.file_len().await?;
        if current >= len {
            return Ok(());
        }
        let from = storage::io::align_down(current);
        self.write_zeros(from, storage::io::align_up(len)).await?;
        self.pristine.set(current == 0);
        Ok(())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.pristine.set(false);
        self.inner.truncate(len).await
    }

    /// Zeros the range by writing zeros (keeping the extents written), or does nothing
    /// on a file that is all zeros anyway.
    async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()> {
        if self.pristine.get() {
            return Ok(());
        }
        let end = (pos + len).min(self.inner.file_len().await?);
        if end > pos {
            let end = storage::io::align_up(end);
            assert_eq!(pos % BLOCK as u64, 0, "unaligned hole at {pos}");
            self.write_zeros(pos, end).await?;
        }
        Ok(())
    }

    async fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len().await
    }

    fn trim(buf: &mut Self::Buf, len: usize) {
        <DmaFileHandle as BackendFile>::trim(buf, len);
    }
}
