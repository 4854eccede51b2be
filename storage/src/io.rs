//! All storage I/O goes through two small traits, so the same engine runs on io_uring
//! with O_DIRECT (glommio's `DmaFile`) in production and on an in-memory, fault-injecting
//! backend in tests ([`mem`]).
//!
//! The contract is direct I/O's: every write and read starts at a multiple of
//! [`BLOCK`] and spans whole blocks. The in-memory backend asserts it, so a misaligned
//! access fails in unit tests rather than with `EINVAL` on a real disk.

use std::io;
use std::ops::Deref;
use std::path::Path;
use std::rc::Rc;

/// Direct-I/O alignment and granularity.
pub const BLOCK: usize = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(BLOCK as u64 - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + BLOCK as u64 - 1)
}

/// A directory of files on some device.
#[allow(async_fn_in_trait)]
pub trait Backend: 'static {
    type File: BackendFile;
    /// Creates (or truncates) a file for direct I/O.
    async fn create(&self, path: &Path) -> io::Result<Self::File>;
    async fn open(&self, path: &Path) -> io::Result<Self::File>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file; durable once the directory is synced.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// File names in `dir` (not paths), in no particular order.
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes creations and removals in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Bytes used and total on the device holding `dir`.
    async fn space(&self, dir: &Path) -> io::Result<Space>;
}

/// Device capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

impl Space {
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.used_bytes as f64 / self.total_bytes as f64
    }
}

/// One open file.
#[allow(async_fn_in_trait)]
pub trait BackendFile: 'static {
    /// An aligned buffer this file can write from.
    type Buf: AsRef<[u8]> + AsMut<[u8]> + 'static;
    /// A buffer of `len` bytes (a multiple of [`BLOCK`]); contents unspecified.
    fn alloc(&self, len: usize) -> Self::Buf;
    /// Writes the whole buffer at `pos`; returns the bytes written (short writes happen).
    async fn write_at(&self, buf: Rc<Self::Buf>, pos: u64) -> io::Result<usize>;
    /// Reads up to `len` bytes at `pos` (both aligned); shorter at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Payload>;
    /// `fdatasync`: everything written so far is durable when this returns.
    async fn sync(&self) -> io::Result<()>;
    /// Reserves blocks up to `len` without changing what reads return.
    async fn allocate(&self, len: u64) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Makes `[pos, pos+len)` read as zeros (`fallocate(PUNCH_HOLE)`), both aligned.
    async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()>;
    async fn file_len(&self) -> io::Result<u64>;
    /// Shrinks a buffer from `alloc` to `len` bytes (a multiple of [`BLOCK`]).
    fn trim(buf: &mut Self::Buf, len: usize);
}

/// Bytes held by some buffer (a write chunk still in the tail cache, or the result of
/// a direct read), shared without copying. Not `Send`: it lives on its shard.
#[derive(Clone)]
pub struct Payload {
    owner: Rc<dyn AsRef<[u8]>>,
    start: usize,
    len: usize,
}

impl Payload {
    pub fn new(owner: Rc<dyn AsRef<[u8]>>) -> Self {
        let len = (*owner).as_ref().len();
        Self {
            owner,
            start: 0,
            len,
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        Self::new(Rc::new(v))
    }

    /// A sub-range, sharing the same buffer.
    pub fn slice(&self, start: usize, len: usize) -> Payload {
        assert!(
            start + len <= self.len,
            "slice {start}+{len} of a {}-byte payload",
            self.len
        );
        Payload {
            owner: self.owner.clone(),
            start: self.start + start,
            len,
        }
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len)
    }
}

/// glommio `DmaFile`: O_DIRECT through io_uring.
pub mod dma {
    use super::*;
    use glommio::io::{DmaBuffer, DmaFile, ReadResult};

    #[derive(Debug, Clone, Copy, Default)]
    pub struct DmaBackend;

    #[derive(Debug)]
    pub struct DmaFileHandle(DmaFile);

    struct Read(ReadResult);

    impl AsRef<[u8]> for Read {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    fn err(e: glommio::GlommioError<()>) -> io::Error {
        e.into()
    }

    impl Backend for DmaBackend {
        type File = DmaFileHandle;

        async fn create(&self, path: &Path) -> io::Result<DmaFileHandle> {
            // Created with std, then opened like any existing file: a handle that
            // glommio itself created fails reads after its first write with EOPNOTSUPP
            // on some devices (seen on this project's virtio disks, glommio 0.9).
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(path)?;
            self.open(path).await
        }

        async fn open(&self, path: &Path) -> io::Result<DmaFileHandle> {
            probe_device(path).await?;
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .dma_open(path)
                .await
                .map_err(err)?;
            Ok(DmaFileHandle(file))
        }

        async fn remove(&self, path: &Path) -> io::Result<()> {
            std::fs::remove_file(path)
        }

        async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            std::fs::rename(from, to)
        }

        async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                if let Some(name) = entry?.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        }

        async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            std::fs::create_dir_all(dir)
        }

        async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            std::fs::File::open(dir)?.sync_all()
        }

        async fn space(&self, dir: &Path) -> io::Result<Space> {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
            // SAFETY: `path` is a valid C string and `st` a properly sized out-parameter.
            let st = unsafe {
                let mut st: libc::statvfs = std::mem::zeroed();
                if libc::statvfs(path.as_ptr(), &mut st) != 0 {
                    return Err(io::Error::last_os_error());
                }
                st
            };
            let block = st.f_frsize as u64;
            let total = st.f_blocks as u64 * block;
            let free = st.f_bfree as u64 * block;
            Ok(Space {
                used_bytes: total - free,
                total_bytes: total,
            })
        }
    }

    /// glommio decides once per device (and thread) whether it supports polled I/O, by reading the
    /// first block of the first file it opens there. When that file is empty the read
    /// succeeds without touching the device, glommio wrongly concludes "pollable", and
    /// every later read on that device fails with EOPNOTSUPP (seen on virtio disks). So
    /// the first open on a device goes to a scratch file holding one real block.
    async fn probe_device(path: &Path) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        // glommio keeps the answer per executor thread, so probe once per thread.
        thread_local! {
            static PROBED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let dev = std::fs::metadata(dir)?.dev();
        if PROBED.with(|p| p.borrow().contains(&dev)) {
            return Ok(());
        }
        let probe = dir.join(format!(".dma-probe-{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(&[1u8; BLOCK])?;
            f.sync_data()?;
        }
        let opened = glommio::io::DmaFile::open(&probe).await.map_err(err);
        let _ = std::fs::remove_file(&probe);
        opened?.close().await.map_err(err)?;
        PROBED.with(|p| p.borrow_mut().push(dev));
        Ok(())
    }

    impl BackendFile for DmaFileHandle {
        type Buf = DmaBuffer;

        fn alloc(&self, len: usize) -> DmaBuffer {
            assert_eq!(len % BLOCK, 0, "buffer of {len} bytes is not whole blocks");
            self.0.alloc_dma_buffer(len)
        }

        async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
            self.0.write_rc_at(buf, pos).await.map_err(err)
        }

        async fn read_at(&self, pos: u64, len: usize) -> io::Result<Payload> {
            let read = self.0.read_at_aligned(pos, len).await.map_err(err)?;
            Ok(Payload::new(Rc::new(Read(read))))
        }

        async fn sync(&self) -> io::Result<()> {
            self.0.fdatasync().await.map_err(err)
        }

        async fn allocate(&self, len: u64) -> io::Result<()> {
            self.0.pre_allocate(len, true).await.map_err(err)
        }

        async fn truncate(&self, len: u64) -> io::Result<()> {
            self.0.truncate(len).await.map_err(err)
        }

        async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()> {
            self.0.deallocate(pos, len).await.map_err(err)
        }

        async fn file_len(&self) -> io::Result<u64> {
            self.0.file_size().await.map_err(err)
        }

        fn trim(buf: &mut DmaBuffer, len: usize) {
            assert_eq!(len % BLOCK, 0, "trim to {len} bytes is not whole blocks");
            buf.trim_to_size(len);
        }
    }
}

/// An in-memory device that models what a crash keeps, and injects faults.
pub mod mem {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Faults to inject; counters are 1-based ("fail the 3rd write").
    #[derive(Debug, Clone, Default)]
    pub struct FaultPlan {
        pub fail_write: Option<u64>,
        pub fail_sync: Option<u64>,
        /// The Nth write writes only its first half and reports that.
        pub short_write: Option<u64>,
        /// Writes that would grow the device past this many bytes fail with ENOSPC.
        pub capacity_bytes: Option<u64>,
        /// Writes take effect after a varying number of scheduler turns, so concurrent
        /// writes complete (and land) in another order than they were issued, as on a
        /// real device.
        pub reorder_writes: bool,
        /// Writes issued from this one on (numbered from 1 over the device's life, see
        /// [`MemBackend::writes_issued`]) wait, taking scheduler turns, until a plan
        /// without this is set.
        pub stall_writes_from: Option<u64>,
        /// Reads take a few scheduler turns, so concurrent reads overlap.
        pub slow_reads: bool,
    }

    /// How a simulated crash treats writes that were never synced.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CrashMode {
        /// Unsynced writes are lost.
        DropUnsynced,
        /// The first `n` unsynced writes (in issue order) survive; the next one is torn:
        /// only a prefix of its 512-byte sectors made it.
        KeepPrefix { writes: usize, torn_sectors: usize },
    }

    #[derive(Debug, Default)]
    struct MemFile {
        /// What reads see now.
        data: Vec<u8>,
        /// What survives a crash.
        durable: Vec<u8>,
        /// Writes since the last sync, in order.
        pending: Vec<(u64, Vec<u8>)>,
    }

    #[derive(Debug, Default)]
    struct Device {
        files: BTreeMap<PathBuf, Rc<RefCell<MemFile>>>,
        plan: FaultPlan,
        writes: u64,
        syncs: u64,
        /// Writes issued (counted before any reordering delay).
        issued: u64,
        reads_in_flight: usize,
        max_reads_in_flight: usize,
    }

    /// Cloning shares the device.
    #[derive(Debug, Clone, Default)]
    pub struct MemBackend {
        dev: Rc<RefCell<Device>>,
    }

    impl MemBackend {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn set_faults(&self, plan: FaultPlan) {
            let mut dev = self.dev.borrow_mut();
            dev.plan = plan;
            dev.writes = 0;
            dev.syncs = 0;
        }

        /// Simulates power loss: every file keeps its durable bytes plus what `mode`
        /// lets through. Open handles keep pointing at the (now crashed) files.
        pub fn crash(&self, mode: CrashMode) {
            let dev = self.dev.borrow();
            for file in dev.files.values() {
                let mut f = file.borrow_mut();
                let mut image = f.durable.clone();
                if let CrashMode::KeepPrefix {
                    writes,
                    torn_sectors,
                } = mode
                {
                    for (i, (pos, bytes)) in f.pending.iter().enumerate() {
                        let take = if i < writes {
                            bytes.len()
                        } else if i == writes {
                            (torn_sectors * 512).min(bytes.len())
                        } else {
                            break;
                        };
                        apply(&mut image, *pos, &bytes[..take]);
                    }
                }
                f.data = image.clone();
                f.durable = image;
                f.pending.clear();
            }
        }

        /// Writes issued so far, over the device's life.
        pub fn writes_issued(&self) -> u64 {
            self.dev.borrow().issued
        }

        /// Syncs since the fault plan was last set.
        pub fn syncs(&self) -> u64 {
            self.dev.borrow().syncs
        }

        /// The most reads that were in flight at once since the last call.
        pub fn take_max_reads_in_flight(&self) -> usize {
            let mut dev = self.dev.borrow_mut();
            let now = dev.reads_in_flight;
            std::mem::replace(&mut dev.max_reads_in_flight, now)
        }

        /// Total bytes held by all files.
        pub fn used_bytes(&self) -> u64 {
            self.dev
                .borrow()
                .files
                .values()
                .map(|f| f.borrow().data.len() as u64)
                .sum()
        }

        pub fn file_len(&self, path: &Path) -> Option<usize> {
            self.dev
                .borrow()
                .files
                .get(path)
                .map(|f| f.borrow().data.len())
        }
    }

    fn apply(image: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
        let end = pos as usize + bytes.len();
        if image.len() < end {
            image.resize(end, 0);
        }
        image[pos as usize..end].copy_from_slice(bytes);
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} not found", path.display()),
        )
    }

    fn fault(kind: io::ErrorKind, what: &str) -> io::Error {
        io::Error::new(kind, format!("injected fault: {what}"))
    }

    #[derive(Debug)]
    pub struct MemFileHandle {
        file: Rc<RefCell<MemFile>>,
        dev: Rc<RefCell<Device>>,
    }

    /// A plain heap buffer; alignment is checked on positions and lengths instead.
    pub struct MemBuf(Vec<u8>);

    impl std::fmt::Debug for MemBuf {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "MemBuf({} bytes)", self.0.len())
        }
    }

    impl AsRef<[u8]> for MemBuf {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl AsMut<[u8]> for MemBuf {
        fn as_mut(&mut self) -> &mut [u8] {
            &mut self.0
        }
    }

    impl Backend for MemBackend {
        type File = MemFileHandle;

        async fn create(&self, path: &Path) -> io::Result<MemFileHandle> {
            let file = Rc::new(RefCell::new(MemFile::default()));
            self.dev
                .borrow_mut()
                .files
                .insert(path.to_owned(), file.clone());
            Ok(MemFileHandle {
                file,
                dev: self.dev.clone(),
            })
        }

        async fn open(&self, path: &Path) -> io::Result<MemFileHandle> {
            let file = self.dev.borrow().files.get(path).cloned();
            match file {
                Some(file) => Ok(MemFileHandle {
                    file,
                    dev: self.dev.clone(),
                }),
                None => Err(not_found(path)),
            }
        }

        async fn remove(&self, path: &Path) -> io::Result<()> {
            match self.dev.borrow_mut().files.remove(path) {
                Some(_) => Ok(()),
                None => Err(not_found(path)),
            }
        }

        async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            let mut dev = self.dev.borrow_mut();
            let Some(file) = dev.files.remove(from) else {
                return Err(not_found(from));
            };
            dev.files.insert(to.to_owned(), file);
            Ok(())
        }

        async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
            // Directories exist implicitly: the first component of any path below `dir`.
            let dev = self.dev.borrow();
            let mut names: Vec<String> = dev
                .files
                .keys()
                .filter_map(|p| p.strip_prefix(dir).ok()?.components().next())
                .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
                .collect();
            names.dedup();
            Ok(names)
        }

        async fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
            Ok(())
        }

        async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
            Ok(())
        }

        async fn space(&self, _dir: &Path) -> io::Result<Space> {
            let total_bytes = self
                .dev
                .borrow()
                .plan
                .capacity_bytes
                .unwrap_or(u64::MAX / 2);
            Ok(Space {
                used_bytes: self.used_bytes(),
                total_bytes,
            })
        }
    }

    impl BackendFile for MemFileHandle {
        type Buf = MemBuf;

        fn alloc(&self, len: usize) -> MemBuf {
            assert_eq!(len % BLOCK, 0, "buffer of {len} bytes is not whole blocks");
            MemBuf(vec![0xAB; len])
        }

        async fn write_at(&self, buf: Rc<MemBuf>, pos: u64) -> io::Result<usize> {
            let bytes = &buf.0;
            assert_eq!(pos % BLOCK as u64, 0, "unaligned write at {pos}");
            let (n, reorder) = {
                let mut dev = self.dev.borrow_mut();
                dev.issued += 1;
                (dev.issued, dev.plan.reorder_writes)
            };
            if reorder {
                // 0 to 4 turns, varying from write to write.
                for _ in 0..(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) % 5 {
                    futures_lite::future::yield_now().await;
                }
            }
            while {
                let plan = &self.dev.borrow().plan;
                plan.stall_writes_from.is_some_and(|from| n >= from)
            } {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(
                bytes.len() % BLOCK,
                0,
                "write of {} bytes is not whole blocks",
                bytes.len()
            );
            let mut dev = self.dev.borrow_mut();
            dev.writes += 1;
            let n = dev.writes;
            if dev.plan.fail_write == Some(n) {
                return Err(fault(io::ErrorKind::Other, "write failed"));
            }
            let mut len = bytes.len();
            if dev.plan.short_write == Some(n) {
                len = (len / 2) / BLOCK * BLOCK;
            }
            if let Some(cap) = dev.plan.capacity_bytes {
                let used: u64 = dev
                    .files
                    .values()
                    .map(|f| f.borrow().data.len() as u64)
                    .sum();
                let grow = (pos + len as u64).saturating_sub(self.file.borrow().data.len() as u64);
                if used + grow > cap {
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
            }
            drop(dev);
            let mut f = self.file.borrow_mut();
            apply(&mut f.data, pos, &bytes[..len]);
            f.pending.push((pos, bytes[..len].to_vec()));
            Ok(len)
        }

        async fn read_at(&self, pos: u64, len: usize) -> io::Result<Payload> {
            assert_eq!(pos % BLOCK as u64, 0, "unaligned read at {pos}");
            assert_eq!(len % BLOCK, 0, "read of {len} bytes is not whole blocks");
            let slow = {
                let mut dev = self.dev.borrow_mut();
                dev.reads_in_flight += 1;
                dev.max_reads_in_flight = dev.max_reads_in_flight.max(dev.reads_in_flight);
                dev.plan.slow_reads
            };
            if slow {
                for _ in 0..3 {
                    futures_lite::future::yield_now().await;
                }
            }
            self.dev.borrow_mut().reads_in_flight -= 1;
            let f = self.file.borrow();
            let start = (pos as usize).min(f.data.len());
            let end = (pos as usize + len).min(f.data.len());
            Ok(Payload::from_vec(f.data[start..end].to_vec()))
        }

        async fn sync(&self) -> io::Result<()> {
            let mut dev = self.dev.borrow_mut();
            dev.syncs += 1;
            if dev.plan.fail_sync == Some(dev.syncs) {
                // Like a real failed fsync: what was pending is in an unknown state.
                return Err(fault(io::ErrorKind::Other, "fsync failed"));
            }
            drop(dev);
            let mut f = self.file.borrow_mut();
            f.durable = f.data.clone();
            f.pending.clear();
            Ok(())
        }

        async fn allocate(&self, _len: u64) -> io::Result<()> {
            Ok(())
        }

        async fn truncate(&self, len: u64) -> io::Result<()> {
            let mut f = self.file.borrow_mut();
            f.data.resize(len as usize, 0);
            // Truncation is metadata; model it as durable with the next sync.
            f.pending.push((len, Vec::new()));
            Ok(())
        }

        async fn punch_hole(&self, pos: u64, len: u64) -> io::Result<()> {
            assert_eq!(pos % BLOCK as u64, 0, "unaligned hole at {pos}");
            let mut f = self.file.borrow_mut();
            let end = ((pos + len) as usize).min(f.data.len());
            let start = (pos as usize).min(end);
            f.data[start..end].fill(0);
            let zeros = vec![0; end - start];
            f.pending.push((start as u64, zeros));
            Ok(())
        }

        async fn file_len(&self) -> io::Result<u64> {
            Ok(self.file.borrow().data.len() as u64)
        }

        fn trim(buf: &mut MemBuf, len: usize) {
            assert_eq!(len % BLOCK, 0, "trim to {len} bytes is not whole blocks");
            buf.0.truncate(len);
        }
    }
}
