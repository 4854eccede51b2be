//! Outbound remoting: the broker as a client of its nameservers.

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use protocol::{FrameDecoder, RemotingCommand};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A connection that sends one request at a time and waits for its answer.
#[derive(Debug)]
pub struct Outbound {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
    next_opaque: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed answer: {0}")]
    Frame(#[from] protocol::FrameError),
    #[error("cannot encode: {0}")]
    Encode(#[from] protocol::EncodeError),
    #[error("connection closed")]
    Closed,
}

fn resolve(addr: &str) -> Result<SocketAddr, OutboundError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| OutboundError::Resolve(addr.to_owned()))
}

async fn with_timeout<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, OutboundError>>,
) -> Result<T, OutboundError> {
    futures_lite::future::or(f, async {
        glommio::timer::sleep(timeout).await;
        Err(OutboundError::Timeout(timeout))
    })
    .await
}

impl Outbound {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, OutboundError> {
        let sock = resolve(addr)?;
        let stream = with_timeout(timeout, async {
            TcpStream::connect(sock)
                .await
                .map_err(|e| OutboundError::Connect {
                    addr: addr.to_owned(),
                    message: e.to_string(),
                })
        })
        .await?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            decoder: FrameDecoder::new(protocol::DEFAULT_MAX_FRAME_BYTES),
            buf: BytesMut::with_capacity(16 * 1024),
            next_opaque: 1,
        })
    }

    /// Sends `cmd` and waits for the answer with the same opaque.
    pub async fn invoke(
        &mut self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, OutboundError> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        cmd.opaque = opaque;
        let frame = cmd.encode()?;
        with_timeout(timeout, async {
            self.stream.write_all(&frame).await?;
            loop {
                while let Some(answer) = self.decoder.decode(&mut self.buf)? {
                    if answer.is_response() && answer.opaque == opaque {
                        return Ok(answer);
                    }
                }
                let start = self.buf.len();
                self.buf.resize(start + 16 * 1024, 0);
                let n = self.stream.read(&mut self.buf[start..]).await?;
                self.buf.truncate(start + n);
                if n == 0 {
                    return Err(OutboundError::Closed);
                }
            }
        })
        .await
    }
}
