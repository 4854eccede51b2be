//! Async remoting transport on tokio: one multiplexed TCP connection per peer, many
//! requests in flight, answers matched by opaque in any order, and requests the peer
//! originates (transaction checks, rebalance notices) handed to the client.

use crate::error::{ClientError, Result};
use bytes::BytesMut;
use protocol::code::response;
use protocol::{FrameDecoder, RemotingCommand};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Frames queued for the writer before senders wait.
const OUT_QUEUE: usize = 4096;
/// Bytes gathered from the queue into one write.
const GATHER_BYTES: usize = 256 * 1024;
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Called with each request the peer sends us (not with answers).
pub(crate) type RequestHandler = Arc<dyn Fn(Arc<Connection>, RemotingCommand) + Send + Sync>;

type Pending = Mutex<HashMap<i32, oneshot::Sender<Result<RemotingCommand>>>>;

/// One connection to a nameserver or broker.
pub struct Connection {
    addr: String,
    out: mpsc::Sender<BytesMut>,
    pending: Arc<Pending>,
    next_opaque: AtomicI32,
    closed: Arc<AtomicBool>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) within `timeout`.
    pub(crate) async fn connect(
        addr: &str,
        timeout: Duration,
        handler: Option<RequestHandler>,
    ) -> Result<Arc<Self>> {
        let connect_error = |message: String| ClientError::Connect {
            addr: addr.to_owned(),
            message,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("no answer within {} ms", timeout.as_millis())))?
            .map_err(|e| connect_error(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_error(e.to_string()))?;
        let (mut rd, mut wr) = stream.into_split();
        let (out, mut queue) = mpsc::channel::<BytesMut>(OUT_QUEUE);
        let pending: Arc<Pending> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));

        let writer_closed = closed.clone();
        let writer_addr = addr.to_owned();
        tokio::spawn(async move {
            while let Some(mut frame) = queue.recv().await {
                // Gather what else is queued into one write.
                while frame.len() < GATHER_BYTES {
                    match queue.try_recv() {
                        Ok(next) => frame.extend_from_slice(&next),
                        Err(_) => break,
                    }
                }
                if let Err(e) = wr.write_all(&frame).await {
                    tracing::debug!(addr = %writer_addr, error = %e, "write failed");
                    writer_closed.store(true, Ordering::Release);
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });

        let conn = Arc::new_cyclic(|me: &Weak<Connection>| {
            let me = me.clone();
            let reader_pending = pending.clone();
            let reader_closed = closed.clone();
            let reader_addr = addr.to_owned();
            let reader = tokio::spawn(async move {
                let failure = read_loop(&mut rd, &reader_addr, &reader_pending, &me, handler).await;
                reader_closed.store(true, Ordering::Release);
                let waiting: Vec<_> = reader_pending
                    .lock()
                    .expect("pending lock")
                    .drain()
                    .map(|(_, tx)| tx)
                    .collect();
                for tx in waiting {
                    let _ = tx.send(Err(failure.clone()));
                }
            });
            Connection {
                addr: addr.to_owned(),
                out,
                pending: pending.clone(),
                next_opaque: AtomicI32::new(1),
                closed: closed.clone(),
                reader: reader.abort_handle(),
            }
        });
        Ok(conn)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends a request and waits up to `timeout` for its answer (any response code).
    pub async fn invoke(&self, cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        let frame = cmd
            .with_opaque(opaque)
            .encode()
            .map_err(|e| ClientError::encode(&e))?;
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(opaque, tx);
        let forget = || {
            self.pending.lock().expect("pending lock").remove(&opaque);
        };
        if self.is_closed() || self.out.send(frame).await.is_err() {
            forget();
            return Err(self.closed_error());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                forget();
                Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Sends a request flagged oneway: nothing answers it.
    pub async fn oneway(&self, cmd: RemotingCommand) -> Result<()> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        self.send_frame(cmd.with_opaque(opaque).with_oneway()).await
    }

    /// Sends an answer to a request the peer made (its opaque already set).
    pub async fn answer(&self, cmd: RemotingCommand) -> Result<()> {
        self.send_frame(cmd).await
    }

    async fn send_frame(&self, cmd: RemotingCommand) -> Result<()> {
        let frame = cmd.encode().map_err(|e| ClientError::encode(&e))?;
        if self.is_closed() {
            return Err(self.closed_error());
        }
        self.out.send(frame).await.map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed {
            addr: self.addr.clone(),
        }
    }
}

/// Reads frames until the connection fails; returns the failure for waiting callers.
async fn read_loop(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    addr: &str,
    pending: &Pending,
    me: &Weak<Connection>,
    handler: Option<RequestHandler>,
) -> ClientError {
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) if cmd.is_response() => {
                    let waiter = pending.lock().expect("pending lock").remove(&cmd.opaque);
                    if let Some(tx) = waiter {
                        let _ = tx.send(Ok(cmd));
                    }
                }
                Ok(Some(cmd)) => match (&handler, me.upgrade()) {
                    (Some(handle), Some(conn)) => handle(conn, cmd),
                    _ => tracing::debug!(addr, code = cmd.code, "request from peer ignored"),
                },
                Ok(None) => break,
                Err(e) => return ClientError::frame(addr, &e),
            }
        }
        buf.reserve(READ_CHUNK_BYTES);
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                return ClientError::Closed {
                    addr: addr.to_owned(),
                }
            }
            Ok(_) => {}
            Err(e) => return ClientError::io(addr, &e),
        }
    }
}

/// One address's connection, opened by one caller while others wait.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Connections by address, opened on first use and reopened after a failure.
pub(crate) struct Pool {
    slots: Mutex<HashMap<String, Slot>>,
    handler: Option<RequestHandler>,
    connect_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(handler: Option<RequestHandler>, connect_timeout: Duration) -> Self {
        Self {
            slots: Mutex::default(),
            handler,
            connect_timeout,
        }
    }

    pub(crate) async fn get(&self, addr: &str) -> Result<Arc<Connection>> {
        let slot = self
            .slots
            .lock()
            .expect("pool lock")
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = Connection::connect(addr, self.connect_timeout, self.handler.clone()).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Sends a request to `addr` and returns the answer if its code is SUCCESS.
    pub(crate) async fn call(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let answer = self.get(addr).await?.invoke(cmd, timeout).await?;
        success(addr, answer)
    }

    pub(crate) async fn oneway(&self, addr: &str, cmd: RemotingCommand) -> Result<()> {
        self.get(addr).await?.oneway(cmd).await
    }

    /// Drops every connection (their sockets close).
    pub(crate) fn close_all(&self) {
        self.slots.lock().expect("pool lock").clear();
    }
}

/// The answer, or its code as an error.
pub(crate) fn success(addr: &str, answer: RemotingCommand) -> Result<RemotingCommand> {
    if answer.code == response::SUCCESS {
        Ok(answer)
    } else {
        Err(refused(addr, answer))
    }
}

/// An answer whose code the caller does not accept, as an error.
pub(crate) fn refused(addr: &str, answer: RemotingCommand) -> ClientError {
    ClientError::Broker {
        addr: addr.to_owned(),
        code: answer.code,
        remark: answer.remark.unwrap_or_default(),
    }
}
