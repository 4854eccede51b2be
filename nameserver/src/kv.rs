//! KV config (PUT/GET/DELETE_KV_CONFIG): namespaces of string pairs, persisted as
//! RocketMQ's `kvConfig.json` (`{"configTable":{"ns":{"k":"v"}}}`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct KvFile {
    config_table: BTreeMap<String, BTreeMap<String, String>>,
}

/// The KV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a KV config file: {source}")]
    Parse {
        path: PathBuf,
        source: protocol::json::JsonError,
    },
}

#[derive(Debug)]
pub struct KvConfig {
    table: BTreeMap<String, BTreeMap<String, String>>,
    path: Option<PathBuf>,
}

impl KvConfig {
    /// In memory only.
    pub fn in_memory() -> Self {
        Self {
            table: BTreeMap::new(),
            path: None,
        }
    }

    /// Loads `path` if it exists; later changes are written back to it.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let table = match std::fs::read(path) {
            Ok(bytes) => {
                protocol::json::from_slice::<KvFile>(&bytes)
                    .map_err(|source| KvError::Parse {
                        path: path.into(),
                        source,
                    })?
                    .config_table
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(KvError::Io {
                    op: "read",
                    path: path.into(),
                    source,
                })
            }
        };
        Ok(Self {
            table,
            path: Some(path.into()),
        })
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.table.get(namespace)?.get(key).map(String::as_str)
    }

    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.table.get(namespace)
    }

    pub fn put(&mut self, namespace: &str, key: &str, value: &str) -> Result<(), KvError> {
        self.table
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        self.persist()
    }

    /// Removes a key; the namespace stays even when empty, as in RocketMQ.
    pub fn delete(&mut self, namespace: &str, key: &str) -> Result<(), KvError> {
        if let Some(ns) = self.table.get_mut(namespace) {
            if ns.remove(key).is_some() {
                return self.persist();
            }
        }
        Ok(())
    }

    /// Writes a temporary file, syncs it, and renames it over the old one, so a crash
    /// leaves either the old or the new table, never a torn one.
    fn persist(&self) -> Result<(), KvError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |op, source| KvError::Io {
            op,
            path: path.clone(),
            source,
        };
        // A bare file name's parent is "": the current directory.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&KvFile {
            config_table: self.table.clone(),
        })
        .expect("string maps serialize");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
            f.write_all(&text).map_err(|e| io("write", e))?;
            f.sync_all().map_err(|e| io("sync", e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| io("rename onto", e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the directory of", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_across_reopen() {
        let dir = std::env::temp_dir().join(format!("kv-test-{}", std::process::id()));
        let path = dir.join("kvConfig.json");
        let _ = std::fs::remove_dir_all(&dir);
        let mut kv = KvConfig::open(&path).unwrap();
        kv.put("ORDER_TOPIC_CONFIG", "T", "broker-a:4").unwrap();
        kv.put("ns", "k", "v").unwrap();
        kv.delete("ns", "k").unwrap();
        let kv = KvConfig::open(&path).unwrap();
        assert_eq!(kv.get("ORDER_TOPIC_CONFIG", "T"), Some("broker-a:4"));
        assert!(kv.namespace("ns").is_some_and(|ns| ns.is_empty()));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(KvConfig::open(&path), Err(KvError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A bare file name (relative to the working directory) has an empty parent.
    #[test]
    fn a_bare_file_name_persists_in_the_working_directory() {
        let name = format!("kv-bare-name-test-{}.json", std::process::id());
        let path = std::path::Path::new(&name);
        let mut kv = KvConfig::open(path).unwrap();
        kv.put("ns", "k", "v").unwrap();
        kv.delete("ns", "k").unwrap();
        assert!(path.exists());
        std::fs::remove_file(path).unwrap();
    }
}
