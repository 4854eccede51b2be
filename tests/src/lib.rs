//! Helpers for end-to-end tests: start the real binaries as child processes, talk to
//! them with a small blocking remoting client built on `protocol`.
//!
//! The binaries are taken from the workspace target directory; build them first
//! (`cargo build --bins`, which `scripts/test.sh` does). Tests never build anything.

use bytes::BytesMut;
use protocol::body::{DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper};
use protocol::code::request;
use protocol::header::RegisterBrokerRequestHeader;
use protocol::json::{self, JsonStyle};
use protocol::{FrameDecoder, RemotingCommand};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace's `target/<profile>` directory holding the binaries.
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    let profile = std::env::var("E2E_PROFILE").unwrap_or_else(|_| "debug".to_owned());
    target.join(profile)
}

/// A built binary of the workspace; panics with the fix if it was not built.
pub fn binary(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(format!("{}_BIN", name.to_uppercase())) {
        return PathBuf::from(path);
    }
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("rmq-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running nameserver process, killed on drop.
#[derive(Debug)]
pub struct NameServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
    pub dir: TempDir,
}

impl NameServerProcess {
    /// Starts `nameserver --listen 127.0.0.1:0` with a private KV file, plus `extra`
    /// arguments, and waits for its status line.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_in(TempDir::new("ns"), extra)
    }

    pub fn start_in(dir: TempDir, extra: &[&str]) -> Self {
        let kv = dir.0.join("kvConfig.json");
        let mut child = Command::new(binary("nameserver"))
            .args(["--listen", "127.0.0.1:0", "--kv-config-path"])
            .arg(&kv)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nameserver");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep draining so the child never blocks on stdout
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("nameserver printed no status line within 20 s");
            }
        };
        let addr = parse_after(&line, "listening on ").expect("remoting address in status line");
        let http = parse_after(&line, "http ");
        Self {
            child,
            addr,
            http,
            dir,
        }
    }

    pub fn connect(&self) -> RemotingClient {
        RemotingClient::connect(self.addr)
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process and hands back its directory (for restarts).
    pub fn stop(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        std::mem::forget(self); // the child is already reaped
        dir
    }
}

impl Drop for NameServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A blocking remoting client: one socket, requests numbered by opaque.
#[derive(Debug)]
pub struct RemotingClient {
    pub stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
    decoder: FrameDecoder,
}

impl RemotingClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: BytesMut::new(),
            next_opaque: 1,
            decoder: FrameDecoder::default(),
        }
    }

    /// Sends a request (assigning its opaque) without waiting; returns the opaque.
    pub fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        cmd.opaque = self.next_opaque;
        self.next_opaque += 1;
        let bytes = cmd.encode().expect("encode");
        self.stream.write_all(&bytes).expect("write request");
        cmd.opaque
    }

    /// Reads the next command, or `None` when the server closed the connection.
    pub fn receive(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Some(cmd) = self
                .decoder
                .decode(&mut self.buf)
                .expect("valid frame from server")
            {
                return Some(cmd);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Sends a request and waits for its response.
    pub fn invoke(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd);
        let resp = self
            .receive()
            .expect("connection closed before the response");
        assert!(resp.is_response(), "expected a response, got {resp:?}");
        assert_eq!(resp.opaque, opaque, "response to another request");
        resp
    }
}

/// A broker registration as a Java broker sends it: standard JSON body, CRC in the header.
pub fn register_broker_request(
    cluster: &str,
    broker_name: &str,
    broker_addr: &str,
    broker_id: i64,
    topics: &[(&str, i32)],
    counter: i64,
) -> RemotingCommand {
    let mut wrapper = TopicConfigSerializeWrapper {
        data_version: DataVersion {
            state_version: 0,
            timestamp: 1_700_000_000_000,
            counter,
        },
        ..Default::default()
    };
    for (topic, queues) in topics {
        wrapper.topic_config_table.insert(
            (*topic).to_owned(),
            TopicConfig {
                topic_name: (*topic).to_owned(),
                read_queue_nums: *queues,
                write_queue_nums: *queues,
                ..Default::default()
            },
        );
    }
    let body = json::to_vec(
        &RegisterBrokerBody {
            topic_config_serialize_wrapper: wrapper,
            filter_server_list: vec![],
        },
        JsonStyle::Standard,
        &[],
    );
    let header = RegisterBrokerRequestHeader {
        broker_name: broker_name.to_owned(),
        broker_addr: broker_addr.to_owned(),
        cluster_name: cluster.to_owned(),
        ha_server_addr: String::new(),
        broker_id,
        heartbeat_timeout_millis: None,
        enable_acting_master: None,
        compressed: false,
        body_crc32: protocol::message::body_crc(&body),
    };
    RemotingCommand::request(request::REGISTER_BROKER)
        .with_header(&header)
        .with_body(body)
}

/// Polls `f` until it returns true or `timeout` passes; returns whether it did.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
