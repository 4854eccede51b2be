//! A small blocking remoting connection: one TCP stream, one request in flight, a
//! deadline on every call. Enough for the admin CLI; the async client is separate work.

use bytes::BytesMut;
use protocol::{EncodeError, FrameDecoder, FrameError, RemotingCommand};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A call could not be completed. Every variant names the peer.
#[derive(Debug, thiserror::Error)]
pub enum RemotingError {
    #[error("cannot resolve {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connection to {addr} failed: {source}")]
    Io { addr: String, source: io::Error },
    #[error("{addr} did not answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("bad frame from {addr}: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("request to {addr} cannot be encoded: {source}")]
    Encode { addr: String, source: EncodeError },
}

impl RemotingError {
    /// The peer was never reached (as opposed to failing mid-conversation).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RemotingError::Resolve { .. } | RemotingError::Connect { .. }
        )
    }
}

/// One blocking connection to a nameserver or broker.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
    timeout: Duration,
    next_opaque: i32,
}

impl Connection {
    /// Connects to `addr` (`host:port`), trying each resolved address within `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self, RemotingError> {
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| RemotingError::Resolve {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        let mut last = None;
        for sock in resolved {
            match TcpStream::connect_timeout(&sock, timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Self {
                        addr: addr.to_owned(),
                        stream,
                        decoder: FrameDecoder::default(),
                        buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
                        timeout,
                        next_opaque: 1,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(source) => RemotingError::Connect {
                addr: addr.to_owned(),
                source,
            },
            None => RemotingError::Resolve {
                addr: addr.to_owned(),
                reason: "no addresses".to_owned(),
            },
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits for the response with the same opaque; responses to
    /// other opaques (late answers to an earlier timed-out call) are skipped, and
    /// requests the peer pushes (e.g. NOTIFY_CONSUMER_IDS_CHANGED) are ignored.
    pub fn call(&mut self, mut request: RemotingCommand) -> Result<RemotingCommand, RemotingError> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1).max(1);
        request.opaque = opaque;
        let frame = request.encode().map_err(|source| RemotingError::Encode {
            addr: self.addr.clone(),
            source,
        })?;
        let deadline = Instant::now() + self.timeout;
        self.set_timeout(deadline)?;
        self.stream
            .write_all(&frame)
            .map_err(|e| self.io_error(e))?;
        loop {
            while let Some(command) =
                self.decoder
                    .decode(&mut self.buf)
                    .map_err(|source| RemotingError::Frame {
                        addr: self.addr.clone(),
                        source,
                    })?
            {
                if command.is_response() && command.opaque == opaque {
                    return Ok(command);
                }
            }
            self.set_timeout(deadline)?;
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK_BYTES, 0);
            let read = self.stream.read(&mut self.buf[start..]);
            match read {
                Ok(0) => {
                    self.buf.truncate(start);
                    return Err(RemotingError::Closed {
                        addr: self.addr.clone(),
                    });
                }
                Ok(n) => self.buf.truncate(start + n),
                Err(e) => {
                    self.buf.truncate(start);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(self.io_error(e));
                }
            }
        }
    }

    fn set_timeout(&self, deadline: Instant) -> Result<(), RemotingError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout_error());
        }
        self.stream
            .set_read_timeout(Some(left))
            .and_then(|()| self.stream.set_write_timeout(Some(left)))
            .map_err(|e| self.io_error(e))
    }

    fn timeout_error(&self) -> RemotingError {
        RemotingError::Timeout {
            addr: self.addr.clone(),
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }

    fn io_error(&self, e: io::Error) -> RemotingError {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            self.timeout_error()
        } else {
            RemotingError::Io {
                addr: self.addr.clone(),
                source: e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn call_matches_opaque_and_skips_others() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let decoder = FrameDecoder::default();
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(req) = decoder.decode(&mut buf).unwrap() {
                    // A stale answer first, then the real one.
                    let stale = req.response(1).with_opaque(req.opaque + 100);
                    sock.write_all(&stale.encode().unwrap()).unwrap();
                    let resp = req.response(0).with_body(&b"ok"[..]);
                    sock.write_all(&resp.encode().unwrap()).unwrap();
                    return;
                }
            }
        });
        let mut conn = Connection::connect(&addr, Duration::from_secs(5)).unwrap();
        let resp = conn.call(RemotingCommand::request(106)).unwrap();
        assert_eq!(resp.code, 0);
        assert_eq!(&resp.body[..], b"ok");
        server.join().unwrap();
    }

    #[test]
    fn silent_peer_times_out_and_refused_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut conn = Connection::connect(&addr, Duration::from_millis(200)).unwrap();
        let err = conn.call(RemotingCommand::request(106)).unwrap_err();
        assert!(matches!(err, RemotingError::Timeout { .. }), "{err}");
        drop(listener);
        let err = Connection::connect(&addr, Duration::from_millis(200)).unwrap_err();
        assert!(err.is_unreachable(), "{err}");
    }
}
