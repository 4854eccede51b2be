//! Replication: master/slave copies of the commit log, sync or async, two or three copies.
//!
//! Not built yet: this crate is a placeholder in the workspace layout.
