//! Broker-wide metadata: topics, consumer offsets and subscription groups.
//!
//! Shared by every shard thread (each store is `Send + Sync`, methods take `&self`) and
//! persisted as JSON under `<store_dir>/config/` in RocketMQ's own file formats, so that
//! operators and RocketMQ's tools recognise them: `topics.json`, `consumerOffset.json`,
//! `subscriptionGroup.json`.
//!
//! Every write replaces the file atomically (`<file>.tmp`, fsync, rename, fsync of the
//! directory) and keeps the previous version as `<file>.bak`, as RocketMQ does. A
//! missing file is an empty store; a file that does not parse is an error (never an
//! empty store that would then overwrite it): the operator decides, for instance by
//! restoring `<file>.bak`.
//!
//! Not here: consumer group membership and client channels (in memory, rebuilt from
//! heartbeats), and the message stores themselves (`storage`).

pub mod groups;
pub mod offsets;
pub mod topics;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use protocol::body::DataVersion;

use crate::config::BrokerConfig;

pub use groups::SubscriptionGroupStore;
pub use offsets::OffsetStore;
pub use topics::TopicStore;

/// A metadata file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is corrupt ({reason}); fix or remove it (the previous version, if any, is {path}.bak)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
}

/// The three stores, opened together from `<store_dir>/config/`.
#[derive(Debug)]
pub struct Metadata {
    pub topics: TopicStore,
    pub offsets: OffsetStore,
    pub groups: SubscriptionGroupStore,
}

impl Metadata {
    /// Opens (creating `<store_dir>/config/` if missing) the stores, adding the system
    /// topics and groups RocketMQ creates at start.
    pub fn open(broker: &BrokerConfig) -> Result<Metadata, MetaError> {
        let dir = config_dir(broker);
        std::fs::create_dir_all(&dir).map_err(|source| MetaError::Io {
            op: "create directory",
            path: dir.clone(),
            source,
        })?;
        Ok(Metadata {
            topics: TopicStore::open(&dir, broker)?,
            offsets: OffsetStore::open(&dir)?,
            groups: SubscriptionGroupStore::open(&dir)?,
        })
    }

    /// Writes every store with unsaved changes (offsets are only written here; topics
    /// and groups are written on every change, so this only retries a failed write).
    /// Tries all three; returns the first error.
    pub fn persist_all(&self) -> Result<(), MetaError> {
        let results = [
            self.offsets.persist(),
            self.topics.persist(),
            self.groups.persist(),
        ];
        results.into_iter().collect()
    }
}

/// `<store_dir>/config`, where RocketMQ keeps the same files.
pub fn config_dir(broker: &BrokerConfig) -> PathBuf {
    broker.store_dir.join("config")
}

/// Reads a whole file; `None` if it does not exist.
pub(crate) fn read_file(path: &Path) -> Result<Option<Vec<u8>>, MetaError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetaError::Io {
            op: "read",
            path: path.into(),
            source,
        }),
    }
}

/// A file that exists but is blank (RocketMQ can leave one after a crash mid-write) is
/// corrupt too: its content is lost, and an empty store must not silently replace it.
pub(crate) fn check_not_blank(path: &Path, bytes: &[u8]) -> Result<(), MetaError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(MetaError::Corrupt {
            path: path.into(),
            reason: "the file is empty".into(),
        });
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically: write `path.tmp`, fsync it, keep the current
/// version as `path.bak` (a hard link, so `path` itself never disappears), rename over
/// `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetaError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| MetaError::Io {
            op,
            path: p,
            source,
        }
    };
    let tmp = sibling(path, ".tmp");
    let bak = sibling(path, ".bak");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    if path.exists() {
        match std::fs::remove_file(&bak) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("remove", &bak)(source)),
        }
        if std::fs::hard_link(path, &bak).is_err() {
            // Filesystems without hard links: a copy is as good for a backup.
            std::fs::copy(path, &bak).map_err(io("copy to backup", &bak))?;
        }
    }
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", &dir))?;
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A fresh `DataVersion`, as Java's constructor makes it.
pub(crate) fn new_data_version() -> DataVersion {
    DataVersion {
        state_version: 0,
        timestamp: now_ms(),
        counter: 0,
    }
}

/// `DataVersion.nextVersion()`: a new timestamp and the next counter.
pub(crate) fn next_version(v: &mut DataVersion) {
    v.timestamp = now_ms();
    v.counter += 1;
}

/// Locks ignoring poisoning: every critical section here leaves the maps consistent
/// (plain inserts and removals), so a panic elsewhere does not make them unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Test helper: a fresh directory under the system temp dir, removed on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub PathBuf);

#[cfg(test)]
impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "node-meta-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_a_backup() {
        let dir = TempDir::new("atomic");
        let path = dir.0.join("x.json");
        write_atomic(&path, b"one").unwrap();
        assert!(!sibling(&path, ".bak").exists());
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read(sibling(&path, ".bak")).unwrap(), b"one");
        assert!(!sibling(&path, ".tmp").exists());
        write_atomic(&path, b"three").unwrap();
        assert_eq!(std::fs::read(sibling(&path, ".bak")).unwrap(), b"two");
        assert_eq!(read_file(&dir.0.join("missing")).unwrap(), None);
    }

    #[test]
    fn metadata_opens_all_three_and_persists() {
        let dir = TempDir::new("all");
        let broker = BrokerConfig {
            store_dir: dir.0.join("store"),
            ..Default::default()
        };
        let meta = Metadata::open(&broker).unwrap();
        assert!(meta.topics.get("TBW102").is_some());
        assert!(meta.groups.get("TOOLS_CONSUMER").is_some());
        meta.offsets.commit("G", "T", 0, 5);
        meta.persist_all().unwrap();
        let config = broker.store_dir.join("config");
        for f in [
            "topics.json",
            "consumerOffset.json",
            "subscriptionGroup.json",
        ] {
            assert!(config.join(f).exists(), "{f}");
        }
        drop(meta);
        let meta = Metadata::open(&broker).unwrap();
        assert_eq!(meta.offsets.query("G", "T", 0), Some(5));
    }

    #[test]
    fn stores_are_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metadata>();
    }
}

/// What a store keeps in one JSON file: its tables plus RocketMQ's data version and a
/// dirty flag (a write failed; the next `persist` retries).
pub(crate) trait FileState {
    fn data_version_mut(&mut self) -> &mut DataVersion;
    fn dirty_mut(&mut self) -> &mut bool;
    fn is_dirty(&self) -> bool;
    /// The file's bytes, as RocketMQ writes it.
    fn encode(&self) -> Vec<u8>;
}

/// A store's state, written to `path` after every change. Changes and writes are
/// serialised (files are written in change order) while readers only wait for the
/// in-memory change.
#[derive(Debug)]
pub(crate) struct Persisted<S> {
    path: PathBuf,
    state: RwLock<S>,
    writer: Mutex<()>,
}

impl<S: FileState> Persisted<S> {
    pub(crate) fn new(path: PathBuf, state: S) -> Self {
        Self {
            path,
            state: RwLock::new(state),
            writer: Mutex::new(()),
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, S> {
        read(&self.state)
    }

    /// Applies `f` (returning its result and whether it changed anything); on a change,
    /// bumps the version and writes the file. If the write fails the change stays in
    /// memory, marked dirty, and the error is returned.
    pub(crate) fn change<R>(&self, f: impl FnOnce(&mut S) -> (R, bool)) -> Result<R, MetaError> {
        let _writer = lock(&self.writer);
        let (result, bytes) = {
            let mut st = write(&self.state);
            let (result, changed) = f(&mut st);
            if !changed {
                return Ok(result);
            }
            next_version(st.data_version_mut());
            *st.dirty_mut() = true;
            (result, st.encode())
        };
        write_atomic(&self.path, &bytes)?;
        *write(&self.state).dirty_mut() = false;
        Ok(result)
    }

    /// Writes the file if a previous write failed (or the state started dirty).
    pub(crate) fn persist(&self) -> Result<(), MetaError> {
        let _writer = lock(&self.writer);
        let bytes = {
            let st = read(&self.state);
            if !st.is_dirty() {
                return Ok(());
            }
            st.encode()
        };
        write_atomic(&self.path, &bytes)?;
        *write(&self.state).dirty_mut() = false;
        Ok(())
    }

    pub(crate) fn is_dirty(&self) -> bool {
        read(&self.state).is_dirty()
    }
}
