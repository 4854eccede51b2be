//! A shard's executor: opens its store, serves the mesh, accepts connections on its own
//! SO_REUSEPORT listener and serves them.
//!
//! Each connection has a reader and a writer task. The reader decodes frames and starts
//! one task per request, here or on the shard that owns the request's queue, so a long
//! poll never holds up the sends behind it; answers go out in the order they are ready,
//! matched by opaque. A connection may have `max_pending_responses` requests in flight;
//! past that its reads pause (TCP pushes back on the client).

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use protocol::code::response;
use protocol::{FrameDecoder, RemotingCommand};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use storage::io::dma::DmaBackend;

use crate::broker::Broker;
use crate::processor::{self, Route};
use crate::shard::{serve_mesh, ConnEntry, ConnId, Outgoing, ShardCtx, ShardMsg, Store};

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub conn: ConnId,
    pub peer: SocketAddr,
}

pub async fn shard_main(
    id: usize,
    broker: Arc<Broker>,
    mesh_rx: flume::Receiver<ShardMsg>,
    ready: std::sync::mpsc::Sender<(usize, Result<(), String>)>,
    stop: flume::Receiver<flume::Sender<()>>,
    register_rx: Option<flume::Receiver<()>>,
) -> Result<(), String> {
    let fail = |message: String| {
        let _ = ready.send((id, Err(message.clone())));
        Err(message)
    };
    let store = match Store::open(DmaBackend, broker.config.shard_config(id as u8)).await {
        Ok(store) => store,
        Err(e) => return fail(format!("cannot open the store: {e}")),
    };
    let ctx = Rc::new(ShardCtx::new(id, broker.clone(), store));
    glommio::spawn_local(serve_mesh(ctx.clone(), mesh_rx)).detach();
    crate::transaction::start(&ctx).await;
    let listener = match TcpListener::bind(broker.config.listen) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {}: {e}", broker.config.listen)),
    };
    let _ = ready.send((id, Ok(())));
    if let Some(register_rx) = register_rx {
        crate::tasks::start_shard0(ctx.clone(), register_rx);
    }
    crate::tasks::start_every_shard(ctx.clone());
    crate::schedule::start(&ctx);

    let accept = accept_loop(ctx.clone(), listener);
    let stopped = futures_lite::future::or(
        async {
            accept.await;
            None
        },
        async { stop.recv_async().await.ok() },
    )
    .await;
    let result = match ctx.store.close().await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::error!(shard = id, error = %e, "store close failed");
            Err(e.to_string())
        }
    };
    if let Some(done) = stopped {
        let _ = done.send_async(()).await;
    }
    result
}

async fn accept_loop(ctx: Rc<ShardCtx>, listener: TcpListener) {
    let max = ctx.broker.config.max_connections as u64;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if ctx.broker.shutting_down.load(Ordering::Relaxed) {
            continue;
        }
        let stats = &ctx.broker.stats;
        if stats.connections.fetch_add(1, Ordering::Relaxed) >= max {
            stats.connections.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                limit = max,
                "connection limit reached; closing new connection"
            );
            continue;
        }
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            serve_connection(&ctx, stream).await;
            ctx.broker.stats.connections.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("peer closed")]
    Eof,
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("malformed frame: {0}")]
    Frame(#[from] protocol::FrameError),
    #[error("writer stopped")]
    WriterGone,
}

async fn serve_connection(ctx: &Rc<ShardCtx>, stream: TcpStream) {
    let conn = ctx.new_conn_id();
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_unbounded();
    ctx.conns.borrow_mut().insert(conn, ConnEntry { tx, peer });
    let config = &ctx.broker.config;
    let permits = Rc::new(Semaphore::new(config.max_pending_responses as u64));
    let (alive_tx, alive_rx) = local_channel::new_bounded::<()>(1);
    let writer_task = glommio::spawn_local(write_loop(
        writer,
        rx,
        permits.clone(),
        config.max_frame_bytes,
        Duration::from_millis(config.idle_timeout_ms),
        alive_tx,
    ));
    let origin = Origin { conn, peer };
    let result = read_loop(ctx, &mut reader, &permits, origin, &alive_rx).await;
    match &result {
        Err(ConnectionEnd::Frame(e)) => {
            tracing::warn!(%peer, error = %e, "malformed frame; closing the connection")
        }
        Err(reason) => tracing::debug!(%peer, %reason, "connection closed"),
        Ok(()) => {}
    }
    // Answers still being computed are dropped once the entry is gone.
    ctx.conns.borrow_mut().remove(&conn);
    writer_task.await;
    let notify = ctx.broker.clients.connection_closed(conn);
    processor::consumer::notify_changes(ctx, notify);
}

async fn read_loop(
    ctx: &Rc<ShardCtx>,
    reader: &mut futures_lite::io::ReadHalf<TcpStream>,
    permits: &Rc<Semaphore>,
    origin: Origin,
    writer_alive: &LocalReceiver<()>,
) -> Result<(), ConnectionEnd> {
    const READ_CHUNK: usize = 256 * 1024;
    let config = &ctx.broker.config;
    let decoder = FrameDecoder::new(config.max_frame_bytes);
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while let Some(request) = decoder.decode(&mut buf)? {
            if request.is_response() {
                continue; // answers to our oneway pushes: nothing to do
            }
            if !request.is_oneway() && permits.acquire(1).await.is_err() {
                return Err(ConnectionEnd::WriterGone);
            }
            dispatch(ctx, origin, request);
        }
        let wanted = decoder
            .needed(&buf)?
            .saturating_sub(buf.len())
            .clamp(4096, READ_CHUNK);
        // Keep whole frames contiguous without copying the bytes already read.
        buf.reserve(wanted);
        let start = buf.len();
        buf.resize(start + wanted, 0);
        let read = futures_lite::future::or(
            async { Wake::Read(reader.read(&mut buf[start..]).await) },
            futures_lite::future::or(
                async {
                    glommio::timer::sleep(idle).await;
                    Wake::Idle
                },
                async {
                    let _ = writer_alive.recv().await;
                    Wake::WriterGone
                },
            ),
        )
        .await;
        match read {
            Wake::Idle => return Err(ConnectionEnd::Idle(idle)),
            Wake::WriterGone => return Err(ConnectionEnd::WriterGone),
            Wake::Read(Ok(0)) => return Err(ConnectionEnd::Eof),
            Wake::Read(Ok(n)) => buf.truncate(start + n),
            Wake::Read(Err(e)) => return Err(ConnectionEnd::Read(e)),
        }
    }
}

/// Why the reader woke up.
enum Wake {
    Read(std::io::Result<usize>),
    Idle,
    WriterGone,
}

/// Runs a request where its queue lives; the answer goes back to the connection.
fn dispatch(ctx: &Rc<ShardCtx>, origin: Origin, mut request: RemotingCommand) {
    let oneway = request.is_oneway();
    let target = match processor::route(ctx, &mut request) {
        Route::Here => ctx.id,
        Route::Shard(s) => s,
        Route::Answer(answer) => {
            if !oneway {
                ctx.deliver(origin.conn, answer, true);
            }
            return;
        }
    };
    let busy = (!oneway).then(|| {
        request.error_response(
            response::SYSTEM_BUSY,
            format!(
                "[REJECTREQUEST]system busy, shard {target} has too many requests queued, \
                 start flow control for a while"
            ),
        )
    });
    let sent = ctx.run_on(target, move |owner| {
        Box::pin(async move {
            let answer = processor::handle(&owner, origin, request).await;
            if !oneway {
                owner.deliver(origin.conn, answer, true);
            }
        })
    });
    if !sent {
        if let Some(busy) = busy {
            ctx.deliver(origin.conn, busy, true);
        }
    }
}

async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    rx: LocalReceiver<Outgoing>,
    permits: Rc<Semaphore>,
    max_frame_bytes: usize,
    write_timeout: Duration,
    alive: local_channel::LocalSender<()>,
) {
    let mut out = Segments::default();
    let mut answered = 0u64;
    while let Some(first) = rx.recv().await {
        answered += encode_into(first, &mut out, max_frame_bytes);
        while out.len < 1024 * 1024 {
            match futures_lite::future::poll_once(rx.recv()).await {
                Some(Some(next)) => answered += encode_into(next, &mut out, max_frame_bytes),
                _ => break,
            }
        }
        let written = futures_lite::future::or(
            async {
                for segment in out.finish() {
                    writer.write_all(&segment).await?;
                }
                Ok::<(), std::io::Error>(())
            },
            async {
                glommio::timer::sleep(write_timeout).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "write timed out",
                ))
            },
        )
        .await;
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::warn!(timeout = ?write_timeout, "client stopped reading its answers; closing");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "write failed");
                break;
            }
        }
        permits.signal(answered);
        answered = 0;
    }
    // Wakes a reader waiting for a slot or for bytes.
    permits.close();
    drop(alive);
    let _ = writer.close().await;
}

/// What the writer sends next: headers and small bodies coalesced into one buffer,
/// large bodies (pulled records) passed through as the `Bytes` they already are.
#[derive(Default)]
struct Segments {
    buf: BytesMut,
    done: Vec<bytes::Bytes>,
    len: usize,
}

impl Segments {
    /// Bodies at least this big are written from their own buffer, not copied.
    const PASS_THROUGH: usize = 16 * 1024;

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn body(&mut self, body: &bytes::Bytes) {
        if body.len() < Self::PASS_THROUGH {
            return self.extend_from_slice(body);
        }
        if !self.buf.is_empty() {
            self.done.push(self.buf.split().freeze());
        }
        self.done.push(body.clone());
        self.len += body.len();
    }

    fn finish(&mut self) -> Vec<bytes::Bytes> {
        if !self.buf.is_empty() {
            self.done.push(self.buf.split().freeze());
        }
        self.len = 0;
        std::mem::take(&mut self.done)
    }
}

/// Encodes one outgoing command; returns how many in-flight slots it frees.
fn encode_into(item: Outgoing, out: &mut Segments, max_frame_bytes: usize) -> u64 {
    let (cmd, slots) = match item {
        Outgoing::Response(cmd) => (cmd, 1),
        Outgoing::Push(cmd) => (cmd, 0),
    };
    match cmd.encode_prefix(max_frame_bytes) {
        Ok(prefix) => {
            out.extend_from_slice(&prefix);
            out.body(&cmd.body);
        }
        Err(e) => {
            tracing::error!(code = cmd.code, error = %e, "response does not fit a frame");
            let fallback = RemotingCommand {
                code: response::SYSTEM_ERROR,
                body: bytes::Bytes::new(),
                ext_fields: Default::default(),
                remark: Some(e.to_string()),
                ..cmd
            };
            if let Ok(prefix) = fallback.encode_prefix(max_frame_bytes) {
                out.extend_from_slice(&prefix);
            }
        }
    }
    slots
}
