//! One shard: the state an executor owns (its store, its connections, its long polls)
//! and the mesh that joins it to the other shards.
//!
//! A queue `(topic, queue id)` belongs to exactly one shard ([`owner_of`]); a request for
//! it that arrives on another shard's connection is run on the owner through the mesh
//! ([`ShardMsg::Run`]) and its response comes back as [`ShardMsg::Deliver`] to the shard
//! that holds the connection. Messages on the mesh are `Send`: a request's body is a
//! `Bytes` handed over as is, never copied.

use futures_lite::future::BoxedLocal;
use glommio::channels::local_channel::LocalSender;
use protocol::RemotingCommand;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use storage::io::dma::DmaBackend;

use crate::broker::Broker;

/// The store type every shard runs.
pub type Store = storage::Shard<DmaBackend>;

/// Work sent to a shard.
pub enum ShardMsg {
    /// Run a task on the receiving shard's executor.
    Run(Box<dyn FnOnce(Rc<ShardCtx>) -> BoxedLocal<()> + Send>),
    /// A response (to a request the connection sent) or a request pushed by the broker
    /// (`response == false`) for one of the receiving shard's connections.
    Deliver {
        conn: ConnId,
        cmd: RemotingCommand,
        response: bool,
    },
}

/// A connection, broker-wide: the shard that holds it in its high bits.
pub type ConnId = u64;

pub fn conn_shard(conn: ConnId) -> usize {
    (conn >> 48) as usize
}

/// The shard that owns a queue. Stable for a given shard count; the store records the
/// count it was created with and refuses to open with another.
pub fn owner_of(topic: &str, queue_id: i32, shards: usize) -> usize {
    let h = protocol::message::java_string_hash(topic) as u32 as u64;
    ((h + queue_id as u32 as u64) % shards as u64) as usize
}

/// What the writer of a connection sends.
#[derive(Debug)]
pub enum Outgoing {
    /// Answers a request; frees one of the connection's in-flight slots.
    Response(RemotingCommand),
    /// A request the broker sends the client (NOTIFY_CONSUMER_IDS_CHANGED, ...).
    Push(RemotingCommand),
}

/// A connection as its shard knows it.
#[derive(Debug)]
pub struct ConnEntry {
    pub tx: LocalSender<Outgoing>,
    pub peer: SocketAddr,
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardMsg::Run(_) => f.write_str("Run"),
            ShardMsg::Deliver {
                conn,
                cmd,
                response,
            } => f
                .debug_struct("Deliver")
                .field("conn", conn)
                .field("code", &cmd.code)
                .field("response", response)
                .finish(),
        }
    }
}

/// Wakes long polls parked on a queue when records are appended to it.
#[derive(Debug, Default)]
pub struct Arrivals {
    waiters: RefCell<HashMap<(String, i32), Vec<Waker>>>,
    generation: Cell<u64>,
}

impl Arrivals {
    /// Registers `waker` to be woken at the next arrival on the queue.
    pub fn register(&self, topic: &str, queue_id: i32, waker: &Waker) {
        let mut w = self.waiters.borrow_mut();
        let list = w.entry((topic.to_owned(), queue_id)).or_default();
        if !list.iter().any(|x| x.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    pub fn notify(&self, topic: &str, queue_id: i32) {
        self.generation.set(self.generation.get() + 1);
        let mut w = self.waiters.borrow_mut();
        if w.is_empty() {
            return;
        }
        if let Some(list) = w.remove(&(topic.to_owned(), queue_id)) {
            list.into_iter().for_each(Waker::wake);
        }
    }

    /// Counts every notification; a poll that saw no change since its last check parks.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }
}

/// Per-executor state.
#[derive(Debug)]
pub struct ShardCtx {
    pub id: usize,
    pub broker: Arc<Broker>,
    pub store: Store,
    pub conns: RefCell<HashMap<ConnId, ConnEntry>>,
    next_conn: Cell<u64>,
    pub arrivals: Arrivals,
    pub transactions: crate::transaction::Transactions,
}

impl ShardCtx {
    pub fn new(id: usize, broker: Arc<Broker>, store: Store) -> Self {
        Self {
            id,
            broker,
            store,
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
            arrivals: Arrivals::default(),
            transactions: Default::default(),
        }
    }

    pub fn shards(&self) -> usize {
        self.broker.mesh.len()
    }

    pub fn new_conn_id(&self) -> ConnId {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        ((self.id as u64) << 48) | n
    }

    /// Hands a command to a connection's writer, on whichever shard holds it. Dropped if
    /// the connection is gone (the client reconnects and asks again).
    pub fn deliver(&self, conn: ConnId, cmd: RemotingCommand, response: bool) {
        let shard = conn_shard(conn);
        if shard == self.id {
            if let Some(entry) = self.conns.borrow().get(&conn) {
                let out = if response {
                    Outgoing::Response(cmd)
                } else {
                    Outgoing::Push(cmd)
                };
                // The queue is unbounded: in-flight requests are bounded by the reader.
                let _ = entry.tx.try_send(out);
            }
        } else if let Some(tx) = self.broker.mesh.get(shard) {
            let _ = tx.try_send(ShardMsg::Deliver {
                conn,
                cmd,
                response,
            });
        }
    }

    /// Runs `f` on shard `target` (here if it is this one). `false` if that shard's
    /// queue is full or gone.
    pub fn run_on<F>(self: &Rc<Self>, target: usize, f: F) -> bool
    where
        F: FnOnce(Rc<ShardCtx>) -> BoxedLocal<()> + Send + 'static,
    {
        if target == self.id {
            glommio::spawn_local(f(self.clone())).detach();
            return true;
        }
        match self.broker.mesh.get(target) {
            Some(tx) => tx.try_send(ShardMsg::Run(Box::new(f))).is_ok(),
            None => false,
        }
    }

    /// Runs `f` on shard `target` and returns its result; `None` if that shard could not
    /// take the work (queue full, shutting down).
    pub async fn call_on<T, F>(self: &Rc<Self>, target: usize, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<ShardCtx>) -> BoxedLocal<T> + Send + 'static,
    {
        if target == self.id {
            return Some(f(self.clone()).await);
        }
        let (tx, rx) = flume::bounded(1);
        let sent = self.run_on(target, move |ctx| {
            Box::pin(async move {
                let _ = tx.send_async(f(ctx).await).await;
            })
        });
        if !sent {
            return None;
        }
        rx.recv_async().await.ok()
    }

    /// Runs `f` on every shard and collects the results (in shard order).
    pub async fn on_all<T, F>(self: &Rc<Self>, f: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(Rc<ShardCtx>) -> BoxedLocal<T> + Send + Sync + Clone + 'static,
    {
        let n = self.shards();
        let (tx, rx) = flume::bounded(n);
        for shard in 0..n {
            let tx = tx.clone();
            let f = f.clone();
            let sent = self.run_on(shard, move |ctx| {
                Box::pin(async move {
                    let v = f(ctx).await;
                    let _ = tx.send_async((shard, v)).await;
                })
            });
            if !sent {
                tracing::warn!(shard, "shard queue full; fan-out skips it");
            }
        }
        drop(tx);
        let mut out = Vec::with_capacity(n);
        while let Ok(v) = rx.recv_async().await {
            out.push(v);
        }
        out.sort_by_key(|(s, _)| *s);
        out.into_iter().map(|(_, v)| v).collect()
    }
}

impl ShardCtx {
    /// The record stored at a commit-log `offset` of this shard (size from its first
    /// four bytes, bounded by the largest record the broker accepts), decoded.
    pub async fn read_record_at(
        &self,
        offset: i64,
    ) -> Option<protocol::message::record::RecordView> {
        if storage::commitlog::split_offset(offset).0 as usize != self.id {
            return None;
        }
        let log = self.store.log();
        let head = log.read(offset, 4).await.ok()?;
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let max = self.broker.config.max_message_size + 64 * 1024;
        if size <= 0 || size as usize > max {
            return None;
        }
        let record = log.read(offset, size as usize).await.ok()?;
        let bytes = bytes::Bytes::copy_from_slice(&record);
        protocol::message::record::decode_record(&bytes, 0, false).ok()
    }

    /// Stores one record on this shard, which owns its queue, and wakes the queue's
    /// readers (once durable under sync flush). Nobody waits for the flush here.
    pub async fn put_one(
        self: &Rc<Self>,
        record: protocol::message::record::RecordWriter<'_>,
    ) -> Result<storage::commitlog::Appended, storage::StoreError> {
        let mut records = [record];
        let appended = self
            .store
            .put(&mut records, crate::broker::wall_ms())
            .await?;
        let r = &records[0];
        crate::processor::send::notify_stored(self, r.topic, r.queue_id, appended, true);
        Ok(appended)
    }
}

/// A stored message put again elsewhere (its real queue, a retry or timer queue): the
/// same body, flags, born and reconsume fields, a fresh store host.
pub fn restore<'a>(
    view: &'a protocol::message::record::RecordView,
    topic: &'a str,
    queue_id: i32,
    properties: &'a [u8],
    store_host: SocketAddr,
) -> protocol::message::record::RecordWriter<'a> {
    protocol::message::record::RecordWriter {
        queue_id,
        flag: view.flag,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: view.sys_flag,
        born_timestamp: view.born_timestamp,
        born_host: view.born_host,
        store_timestamp: 0,
        store_host,
        reconsume_times: view.reconsume_times,
        prepared_transaction_offset: view.prepared_transaction_offset,
        body: &view.body,
        topic,
        properties,
    }
}

/// Serves the mesh: runs tasks other shards send and hands over deliveries.
pub async fn serve_mesh(ctx: Rc<ShardCtx>, rx: flume::Receiver<ShardMsg>) {
    while let Ok(msg) = rx.recv_async().await {
        match msg {
            ShardMsg::Run(f) => {
                glommio::spawn_local(f(ctx.clone())).detach();
            }
            ShardMsg::Deliver {
                conn,
                cmd,
                response,
            } => ctx.deliver(conn, cmd, response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_has_one_owner_in_range() {
        for shards in 1..8 {
            for q in 0..64 {
                let a = owner_of("TopicTest", q, shards);
                assert!(a < shards);
                assert_eq!(a, owner_of("TopicTest", q, shards));
            }
        }
    }

    #[test]
    fn queues_of_a_topic_spread_over_shards() {
        let mut seen = [0usize; 4];
        for q in 0..16 {
            seen[owner_of("TopicTest", q, 4)] += 1;
        }
        assert_eq!(seen, [4, 4, 4, 4]);
    }

    #[test]
    fn conn_ids_carry_their_shard() {
        assert_eq!(conn_shard((3u64 << 48) | 17), 3);
    }
}
