//! The network side: one glommio executor serving remoting connections, the expiry scan
//! and the optional HTTP address endpoint.
//!
//! Each connection has a reader task and a writer task joined by a bounded queue of
//! responses. The reader never waits for a write, so a client that pipelines gets each
//! answer as soon as it is computed; a client that stops reading fills its own queue and
//! only its reads pause. A malformed frame closes that connection alone.

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use protocol::code::response;
use protocol::{FrameDecoder, RemotingCommand};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::NamesrvConfig;
use crate::kv::KvConfig;
use crate::processor::NameServer;
use crate::route::ConnId;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start the executor: {0}")]
    Executor(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Kv(#[from] crate::kv::KvError),
}

/// Where the server ended up listening (ports may have been 0 in the config).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub remoting: SocketAddr,
    pub http: Option<SocketAddr>,
}

struct Shared {
    state: RefCell<NameServer>,
    started: Instant,
    connections: Cell<usize>,
    next_conn: Cell<ConnId>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Runs the nameserver on the current thread until the process ends. `on_bound` is
/// called once the sockets listen.
pub fn run(
    config: NamesrvConfig,
    on_bound: impl FnOnce(Bound) + Send + 'static,
) -> Result<(), ServerError> {
    let kv = KvConfig::open(&config.kv_config_path())?;
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("nameserver")
        .spawn(move || async move { serve(config, kv, on_bound).await })
        .map_err(|e| ServerError::Executor(e.to_string()))?;
    handle
        .join()
        .map_err(|e| ServerError::Executor(e.to_string()))?
}

async fn serve(
    config: NamesrvConfig,
    kv: KvConfig,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServerError> {
    let bind = |addr: SocketAddr| {
        TcpListener::bind(addr).map_err(|e| ServerError::Bind {
            addr,
            source: std::io::Error::other(e.to_string()),
        })
    };
    let listener = bind(config.listen)?;
    let remoting = listener.local_addr().map_err(|e| ServerError::Bind {
        addr: config.listen,
        source: e.into(),
    })?;
    let http = match config.http_listen {
        Some(addr) => {
            let l = bind(addr)?;
            let local = l.local_addr().map_err(|e| ServerError::Bind {
                addr,
                source: e.into(),
            })?;
            Some((l, local))
        }
        None => None,
    };
    on_bound(Bound {
        remoting,
        http: http.as_ref().map(|(_, a)| *a),
    });

    let shared = Rc::new(Shared {
        state: RefCell::new(NameServer::new(config.clone(), kv)),
        started: Instant::now(),
        connections: Cell::new(0),
        next_conn: Cell::new(1),
    });

    let scanner = shared.clone();
    glommio::spawn_local(async move {
        loop {
            let interval = scanner
                .state
                .borrow()
                .config
                .scan_not_active_broker_interval_ms;
            glommio::timer::sleep(Duration::from_millis(interval)).await;
            let now = scanner.now_ms();
            scanner.state.borrow_mut().expire(now);
        }
    })
    .detach();

    if let Some((http_listener, _)) = http {
        let advertised = Rc::new(config.advertised(remoting));
        glommio::spawn_local(async move {
            loop {
                match http_listener.accept().await {
                    Ok(stream) => {
                        glommio::spawn_local(crate::http::serve(stream, advertised.clone()))
                            .detach();
                    }
                    Err(e) => tracing::warn!(error = %e, "http accept failed"),
                }
            }
        })
        .detach();
    }

    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors and the like: keep serving existing connections.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.connections.get() >= config.max_connections {
            tracing::warn!(
                limit = config.max_connections,
                "connection limit reached; closing new connection"
            );
            drop(stream);
            continue;
        }
        let conn = shared.next_conn.get();
        shared.next_conn.set(conn + 1);
        shared.connections.set(shared.connections.get() + 1);
        let shared = shared.clone();
        let config = config.clone();
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().ok();
            let _ = stream.set_nodelay(true);
            if let Err(reason) = serve_connection(stream, &shared, conn, &config).await {
                tracing::debug!(?peer, conn, %reason, "connection closed");
            }
            shared.connections.set(shared.connections.get() - 1);
            shared.state.borrow_mut().connection_closed(conn);
        })
        .detach();
    }
}

/// Why a connection ended.
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
}

async fn serve_connection(
    stream: TcpStream,
    shared: &Rc<Shared>,
    conn: ConnId,
    config: &NamesrvConfig,
) -> Result<(), ConnectionEnd> {
    let (mut reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded(config.max_pending_responses);
    let write_timeout = Duration::from_millis(config.idle_timeout_ms);
    let writer_task = glommio::spawn_local(write_loop(
        writer,
        rx,
        config.max_frame_bytes,
        write_timeout,
    ));
    let result = read_loop(&mut reader, &tx, shared, conn, config).await;
    if let Err(ConnectionEnd::Frame(e)) = &result {
        tracing::warn!(conn, error = %e, "malformed frame; closing the connection");
    }
    drop(tx);
    // Let queued answers go out before closing (bounded by the queue).
    writer_task.await;
    result
}

async fn read_loop(
    reader: &mut futures_lite::io::ReadHalf<TcpStream>,
    tx: &LocalSender<RemotingCommand>,
    shared: &Rc<Shared>,
    conn: ConnId,
    config: &NamesrvConfig,
) -> Result<(), ConnectionEnd> {
    const READ_CHUNK: usize = 64 * 1024;
    let decoder = FrameDecoder::new(config.max_frame_bytes);
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while let Some(request) = decoder.decode(&mut buf)? {
            if request.is_response() {
                continue; // the nameserver sends no requests that expect answers
            }
            let now = shared.now_ms();
            let answer = shared.state.borrow_mut().handle(&request, conn, now);
            if let Some(answer) = answer {
                if tx.send(answer).await.is_err() {
                    return Ok(()); // the writer is gone: the socket failed
                }
            }
        }
        // Read at least what the current frame still needs (up to a chunk), and at least
        // a page, since more frames may follow.
        let wanted = decoder
            .needed(&buf)?
            .saturating_sub(buf.len())
            .clamp(4096, READ_CHUNK);
        let start = buf.len();
        buf.resize(start + wanted, 0);
        let read = futures_lite::future::or(
            async { Some(reader.read(&mut buf[start..]).await) },
            async {
                glommio::timer::sleep(idle).await;
                None
            },
        )
        .await;
        match read {
            None => {
                buf.truncate(start);
                return Err(ConnectionEnd::Idle(idle));
            }
            Some(Ok(0)) => return Err(ConnectionEnd::Eof),
            Some(Ok(n)) => buf.truncate(start + n),
            Some(Err(e)) => return Err(ConnectionEnd::Read(e)),
        }
    }
}

async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    rx: LocalReceiver<RemotingCommand>,
    max_frame_bytes: usize,
    write_timeout: Duration,
) {
    let mut out = BytesMut::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        encode_into(&first, &mut out, max_frame_bytes);
        // Coalesce whatever else is ready into the same write.
        while out.len() < 256 * 1024 {
            match futures_lite::future::poll_once(rx.recv()).await {
                Some(Some(next)) => encode_into(&next, &mut out, max_frame_bytes),
                _ => break,
            }
        }
        // A client that stops reading for this long is dropped; returning drops the
        // queue, which ends the reader too.
        let written =
            futures_lite::future::or(async { Some(writer.write_all(&out).await) }, async {
                glommio::timer::sleep(write_timeout).await;
                None
            })
            .await;
        match written {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                return;
            }
            None => {
                tracing::warn!(timeout = ?write_timeout, "client stopped reading its answers; closing");
                return;
            }
        }
        out.clear();
    }
    let _ = writer.flush().await;
    let _ = writer.close().await;
}

fn encode_into(cmd: &RemotingCommand, out: &mut BytesMut, max_frame_bytes: usize) {
    match cmd.encode_prefix(max_frame_bytes) {
        Ok(prefix) => {
            out.extend_from_slice(&prefix);
            out.extend_from_slice(&cmd.body);
        }
        Err(e) => {
            tracing::error!(code = cmd.code, error = %e, "response does not fit a frame");
            let fallback = RemotingCommand {
                body: bytes::Bytes::new(),
                ext_fields: Default::default(),
                ..cmd.clone()
            };
            let fallback = RemotingCommand {
                code: response::SYSTEM_ERROR,
                ..fallback
            }
            .with_remark(e.to_string());
            if let Ok(prefix) = fallback.encode_prefix(max_frame_bytes) {
                out.extend_from_slice(&prefix);
            }
        }
    }
}
