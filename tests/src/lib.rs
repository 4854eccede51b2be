//! Helpers for end-to-end tests: start the real binaries as child processes, talk to
//! them with a small blocking remoting client built on `protocol`.
//!
//! The binaries are taken from the workspace target directory; build them first
//! (`cargo build --bins`, which `scripts/test.sh` does). Tests never build anything.
//!
//! [`NameServerProcess`] and [`BrokerProcess`] run the real binaries ([`Cluster`] runs
//! one of each); the request builders ([`send_request`], [`pull_request`], ...) and
//! [`decode_records`] speak the broker's codes with our own `protocol` crate.

use bytes::{Bytes, BytesMut};
use protocol::body::{
    DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, TopicRouteData,
};
use protocol::code::{request, response};
use protocol::header::{
    GetRouteInfoRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, RegisterBrokerRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use protocol::json::{self, JsonStyle};
use protocol::message::record::RecordView;
use protocol::message::{property, pull_sys_flag, UniqIdGenerator};
use protocol::{FrameDecoder, RemotingCommand};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        Self::new_in(&std::env::temp_dir(), tag)
    }

    /// A scratch directory under `parent` (created if missing).
    pub fn new_in(parent: &Path, tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = parent.join(format!("rmq-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// A scratch directory on a real disk, for stores: the broker opens its files with
    /// O_DIRECT, which tmpfs (a common `/tmp`) refuses. `E2E_STORE_TMP` overrides the
    /// default, the workspace target directory.
    pub fn for_store(tag: &str) -> Self {
        let parent = std::env::var_os("E2E_STORE_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| bin_dir().join("e2e-stores"));
        Self::new_in(&parent, tag)
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
    /// Requests the server sent while [`RemotingClient::call`] waited for a response.
    pub server_requests: Vec<RemotingCommand>,
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
            server_requests: Vec::new(),
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

    /// Reads the next command if one arrives within `timeout`; `None` on timeout.
    /// Panics if the server closes the connection.
    pub fn try_receive(&mut self, timeout: Duration) -> Option<RemotingCommand> {
        let previous = self.stream.read_timeout().expect("read timeout");
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set read timeout");
        let result = loop {
            if let Some(cmd) = self
                .decoder
                .decode(&mut self.buf)
                .expect("valid frame from server")
            {
                break Some(cmd);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None
                }
                Err(e) => panic!("read failed: {e}"),
            }
        };
        self.stream
            .set_read_timeout(previous)
            .expect("restore read timeout");
        result
    }

    /// Sends a request and waits for its response, keeping any request the server sends
    /// meanwhile (a broker notifies consumers) in `server_requests`.
    pub fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd);
        loop {
            let cmd = self
                .receive()
                .expect("connection closed before the response");
            if !cmd.is_response() {
                self.server_requests.push(cmd);
                continue;
            }
            assert_eq!(cmd.opaque, opaque, "response to another request");
            return cmd;
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

/// Arguments that keep a test broker small: two shards, no pinning (tests run side by
/// side), 64 MiB segments, a 16 MiB cache and a small key index.
pub const SMALL_BROKER_ARGS: &[&str] = &[
    "--shards",
    "2",
    "--set",
    "cpu_pinning=false",
    "--set",
    "segment_bytes=67108864",
    "--set",
    "cache_bytes=16777216",
    "--set",
    "index_slots=100000",
    "--set",
    "index_entries=400000",
];

/// How long a broker may take to print its ready line (a debug build on a slow
/// machine preallocates segments and registers with the nameserver first).
const BROKER_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a broker may take to exit after SIGTERM.
const BROKER_EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running broker process, killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
    /// The status line the broker printed when ready.
    pub ready_line: String,
    /// Holds the store (`<dir>/store`); handed back by [`BrokerProcess::stop`] and
    /// [`BrokerProcess::kill`] for restarts.
    pub dir: TempDir,
    namesrv: String,
    extra: Vec<String>,
}

impl BrokerProcess {
    /// Starts `broker` on a free port with a fresh store, registered with `namesrv`
    /// (`host:port[;host:port]`), with [`SMALL_BROKER_ARGS`] then `extra` (later `--set`s
    /// win), and waits for its ready line.
    pub fn start(namesrv: &str, extra: &[&str]) -> Self {
        Self::start_in(TempDir::for_store("broker"), namesrv, extra)
    }

    /// Starts a broker on the store in `dir` (a restart) on a free port.
    pub fn start_in(dir: TempDir, namesrv: &str, extra: &[&str]) -> Self {
        Self::start_on(dir, namesrv, 0, extra)
    }

    /// Starts a broker on the store in `dir`, listening on `127.0.0.1:<port>` (0 picks a
    /// free port). A fixed port is retried for a while: the previous process may still
    /// hold it.
    pub fn start_on(dir: TempDir, namesrv: &str, port: u16, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Self::spawn(&dir, namesrv, port, &extra) {
                Ok((child, addr, ready_line)) => {
                    return Self {
                        child,
                        addr,
                        ready_line,
                        dir,
                        namesrv: namesrv.to_owned(),
                        extra,
                    }
                }
                Err(why) if port != 0 && Instant::now() < deadline => {
                    eprintln!("broker did not start on port {port} ({why}); retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(why) => panic!("broker did not start: {why}"),
            }
        }
    }

    fn spawn(
        dir: &TempDir,
        namesrv: &str,
        port: u16,
        extra: &[String],
    ) -> Result<(Child, SocketAddr, String), String> {
        let mut child = Command::new(binary("broker"))
            .args(["--namesrv", namesrv])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--store-dir")
            .arg(dir.0.join("store"))
            .args(SMALL_BROKER_ARGS)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Forward everything so that a failing test shows it; keep draining so the
            // child never blocks on stdout.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("broker ") && line.contains("ready on ") {
                    let _ = tx.send(line);
                } else {
                    eprintln!("[broker stdout] {line}");
                }
            }
        });
        let line = match rx.recv_timeout(BROKER_READY_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_with_timeout(&mut child, Duration::from_secs(10));
                return Err(format!("it exited before its ready line: {status:?}"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker printed no ready line within {BROKER_READY_TIMEOUT:?}");
            }
        };
        let addr = parse_after(&line, "ready on ")
            .unwrap_or_else(|| panic!("no address after `ready on ` in {line:?}"));
        Ok((child, addr, line))
    }

    /// The address the broker listens on (and registers with the nameserver).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connect(&self) -> RemotingClient {
        RemotingClient::connect(self.addr)
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, waits for the exit, asserts a clean one (code 0) and hands back the store.
    pub fn stop(mut self) -> TempDir {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = wait_with_timeout(&mut self.child, BROKER_EXIT_TIMEOUT);
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("broker did not exit within {BROKER_EXIT_TIMEOUT:?} of SIGTERM");
        };
        assert_eq!(
            status.code(),
            Some(0),
            "broker exit after SIGTERM: {status}"
        );
        self.into_dir()
    }

    /// SIGKILL (a crash) and hands back the store.
    pub fn kill(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.into_dir()
    }

    /// Clean restart: [`BrokerProcess::stop`], then the same store, port and arguments.
    pub fn restart(self) -> Self {
        let (port, namesrv, extra) = (self.addr.port(), self.namesrv.clone(), self.extra.clone());
        let dir = self.stop();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::start_on(dir, &namesrv, port, &extra)
    }

    /// Crash restart: [`BrokerProcess::kill`], then the same store, port and arguments.
    pub fn kill_and_restart(self) -> Self {
        let (port, namesrv, extra) = (self.addr.port(), self.namesrv.clone(), self.extra.clone());
        let dir = self.kill();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::start_on(dir, &namesrv, port, &extra)
    }

    fn into_dir(mut self) -> TempDir {
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        // The child is reaped; dropping `self` would only kill a dead pid. The stdout
        // thread and pipes go away with the process.
        let _ = self.child.try_wait();
        std::mem::forget(self);
        dir
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(e) => panic!("wait for child: {e}"),
        }
    }
}

/// A nameserver and one broker registered with it.
#[derive(Debug)]
pub struct Cluster {
    pub ns: NameServerProcess,
    broker: Option<BrokerProcess>,
}

impl Cluster {
    /// Starts a nameserver, then a broker with `broker_extra` arguments.
    pub fn start(broker_extra: &[&str]) -> Self {
        let ns = NameServerProcess::start(&[]);
        let broker = BrokerProcess::start(&ns.addr.to_string(), broker_extra);
        Self {
            ns,
            broker: Some(broker),
        }
    }

    pub fn broker(&mut self) -> &mut BrokerProcess {
        self.broker.as_mut().expect("broker running")
    }

    pub fn broker_addr(&self) -> SocketAddr {
        self.broker.as_ref().expect("broker running").addr()
    }

    /// The nameserver address as clients are given it.
    pub fn namesrv(&self) -> String {
        self.ns.addr.to_string()
    }

    pub fn connect_broker(&self) -> RemotingClient {
        self.broker.as_ref().expect("broker running").connect()
    }

    pub fn connect_ns(&self) -> RemotingClient {
        self.ns.connect()
    }

    /// SIGTERM and start again on the same store and port.
    pub fn restart_broker(&mut self) {
        let broker = self.broker.take().expect("broker running");
        self.broker = Some(broker.restart());
    }

    /// SIGKILL and start again on the same store and port.
    pub fn kill_and_restart_broker(&mut self) {
        let broker = self.broker.take().expect("broker running");
        self.broker = Some(broker.kill_and_restart());
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A fresh `UNIQ_KEY`, as a Java producer generates it.
pub fn next_uniq_key() -> String {
    static GENERATOR: OnceLock<Mutex<UniqIdGenerator>> = OnceLock::new();
    GENERATOR
        .get_or_init(|| {
            Mutex::new(UniqIdGenerator::new(
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::process::id(),
                now_ms() as i32,
            ))
        })
        .lock()
        .expect("generator lock")
        .next_id(now_ms())
}

/// A message to send with [`send_request`].
#[derive(Debug, Clone, Default)]
pub struct OutMessage<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub body: &'a [u8],
    pub tags: Option<&'a str>,
    /// Space-separated keys.
    pub keys: Option<&'a str>,
    /// User properties, in addition to TAGS, KEYS, UNIQ_KEY and WAIT.
    pub properties: &'a [(&'a str, &'a str)],
    /// The `UNIQ_KEY`; a fresh one when `None`.
    pub uniq_key: Option<String>,
}

/// SEND_MESSAGE_V2 (310) as the Java producer sends it: group `e2e-producer`, default
/// topic TBW102 with 4 queues, properties TAGS, KEYS, UNIQ_KEY, WAIT and the user's.
pub fn send_request(msg: &OutMessage<'_>) -> RemotingCommand {
    let uniq = msg.uniq_key.clone().unwrap_or_else(next_uniq_key);
    let mut props: Vec<(&str, &str)> = Vec::new();
    if let Some(tags) = msg.tags {
        props.push((property::TAGS, tags));
    }
    if let Some(keys) = msg.keys {
        props.push((property::KEYS, keys));
    }
    props.push((property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX, &uniq));
    props.push((property::WAIT_STORE_MSG_OK, "true"));
    props.extend_from_slice(msg.properties);
    let properties = protocol::message::encode_properties(props);
    let header = SendMessageRequestHeaderV2 {
        a: "e2e-producer".into(),
        b: msg.topic.into(),
        c: "TBW102".into(),
        d: 4,
        e: msg.queue_id,
        f: 0,
        g: now_ms(),
        h: 0,
        i: Some(String::from_utf8(properties).expect("UTF-8 properties")),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(false),
        n: Some("broker-a".into()),
    };
    RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&header)
        .with_body(msg.body.to_vec())
}

/// Sends one message and returns the response (any code).
pub fn send_message(
    client: &mut RemotingClient,
    topic: &str,
    queue_id: i32,
    body: &[u8],
    tags: Option<&str>,
    keys: Option<&str>,
) -> RemotingCommand {
    client.call(send_request(&OutMessage {
        topic,
        queue_id,
        body,
        tags,
        keys,
        ..Default::default()
    }))
}

/// Sends one message, asserts success and returns the send response header.
pub fn send_ok(client: &mut RemotingClient, msg: &OutMessage<'_>) -> SendMessageResponseHeader {
    let resp = client.call(send_request(msg));
    assert_eq!(
        resp.code,
        response::SUCCESS,
        "send to {}/{} failed: {resp:?}",
        msg.topic,
        msg.queue_id
    );
    resp.header()
        .unwrap_or_else(|e| panic!("send response header: {e}: {resp:?}"))
}

/// PULL_MESSAGE as a push consumer sends it: subscription flag with a TAG expression,
/// plus the suspend flag and timeout when `suspend_ms` is given.
pub fn pull_request(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max: i32,
    subscription: &str,
    suspend_ms: Option<i64>,
) -> RemotingCommand {
    let mut sys_flag = pull_sys_flag::SUBSCRIPTION;
    if suspend_ms.is_some() {
        sys_flag |= pull_sys_flag::SUSPEND;
    }
    let header = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: max,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms.unwrap_or(0),
        subscription: Some(subscription.into()),
        sub_version: now_ms(),
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_forward_client_id: None,
        broker_name: Some("broker-a".into()),
    };
    RemotingCommand::request(request::PULL_MESSAGE).with_header(&header)
}

/// Pulls with subscription `*` and no suspension; returns the response and its records.
pub fn pull(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max: i32,
) -> (RemotingCommand, Vec<RecordView>) {
    pull_filtered(client, group, topic, queue_id, offset, max, "*")
}

/// Pulls with a TAG subscription expression and no suspension.
pub fn pull_filtered(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max: i32,
    subscription: &str,
) -> (RemotingCommand, Vec<RecordView>) {
    let resp = client.call(pull_request(
        group,
        topic,
        queue_id,
        offset,
        max,
        subscription,
        None,
    ));
    let records = if resp.code == response::SUCCESS {
        decode_records(&resp.body)
    } else {
        Vec::new()
    };
    (resp, records)
}

/// Pulls everything in a queue from `offset` to its end, following `nextBeginOffset`.
pub fn pull_all(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    mut offset: i64,
) -> Vec<RecordView> {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let (resp, records) = pull(client, group, topic, queue_id, offset, 32);
        match resp.code {
            response::SUCCESS => {
                assert!(!records.is_empty(), "SUCCESS without records: {resp:?}");
                let next = pull_header(&resp).next_begin_offset;
                assert!(next > offset, "no progress from {offset}: {resp:?}");
                offset = next;
                all.extend(records);
            }
            response::PULL_NOT_FOUND => return all,
            other => panic!("pull {topic}/{queue_id}@{offset}: code {other}: {resp:?}"),
        }
    }
    panic!("pull_all did not reach the end of {topic}/{queue_id}");
}

/// The pull response header; panics with the response if it is missing.
pub fn pull_header(resp: &RemotingCommand) -> PullMessageResponseHeader {
    resp.header()
        .unwrap_or_else(|e| panic!("pull response header: {e}: {resp:?}"))
}

/// Decodes a body of back-to-back commit-log records (a pull or query answer), checking
/// every record's body CRC.
pub fn decode_records(body: &Bytes) -> Vec<RecordView> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let record = protocol::message::decode_record(body, pos, true)
            .unwrap_or_else(|e| panic!("record at {pos} of a {}-byte body: {e}", body.len()));
        pos += record.total_size;
        records.push(record);
    }
    records
}

/// UPDATE_CONSUMER_OFFSET as a request (not oneway); returns the response.
pub fn update_offset(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> RemotingCommand {
    client.call(
        RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(
            &UpdateConsumerOffsetRequestHeader {
                consumer_group: group.into(),
                topic: topic.into(),
                queue_id,
                commit_offset: offset,
            },
        ),
    )
}

/// QUERY_CONSUMER_OFFSET with `setZeroIfNotFound=false`: `Some(offset)` on SUCCESS,
/// `None` on QUERY_NOT_FOUND, panics on anything else.
pub fn query_offset(
    client: &mut RemotingClient,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Option<i64> {
    let resp = client.call(
        RemotingCommand::request(request::QUERY_CONSUMER_OFFSET).with_header(
            &QueryConsumerOffsetRequestHeader {
                consumer_group: group.into(),
                topic: topic.into(),
                queue_id,
                set_zero_if_not_found: Some(false),
            },
        ),
    );
    match resp.code {
        response::SUCCESS => Some(
            resp.header::<OffsetResponseHeader>()
                .unwrap_or_else(|e| panic!("offset header: {e}: {resp:?}"))
                .offset,
        ),
        response::QUERY_NOT_FOUND => None,
        other => panic!("QUERY_CONSUMER_OFFSET answered {other}: {resp:?}"),
    }
}

/// GET_ROUTEINFO_BY_TOPIC against a nameserver: `None` for TOPIC_NOT_EXIST.
pub fn route(ns: &mut RemotingClient, topic: &str) -> Option<TopicRouteData> {
    let resp = ns.call(
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: None,
            },
        ),
    );
    match resp.code {
        response::SUCCESS => Some(
            json::from_slice(&resp.body)
                .unwrap_or_else(|e| panic!("route body for {topic}: {e:?}: {resp:?}")),
        ),
        response::TOPIC_NOT_EXIST => None,
        other => panic!("route for {topic} answered {other}: {resp:?}"),
    }
}

/// A name unique to this test process and call, for topics and groups.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// What one run of the `rmqadmin` binary produced.
#[derive(Debug)]
pub struct AdminRun {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl AdminRun {
    /// stdout as JSON (for `--json` runs); panics with both streams if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "rmqadmin stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `rmqadmin -n <namesrv> <args>` (the binary `cargo build --bins` built) with
/// `NAMESRV_ADDR` unset, and waits for it (at most 60 s).
pub fn rmqadmin(namesrv: Option<&str>, args: &[&str]) -> AdminRun {
    let mut cmd = Command::new(binary("rmqadmin"));
    cmd.env_remove("NAMESRV_ADDR");
    if let Some(ns) = namesrv {
        cmd.args(["-n", ns]);
    }
    rmqadmin_with(cmd, args)
}

/// Runs a prepared `rmqadmin` command (environment set by the caller) with `args`.
pub fn rmqadmin_with(mut cmd: Command, args: &[&str]) -> AdminRun {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rmqadmin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("rmqadmin {args:?} did not finish within 60 s");
    });
    AdminRun {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// HEART_BEAT of one clustering consumer of `group` subscribed to all of `topic`.
pub fn consumer_heartbeat(client_id: &str, group: &str, topic: &str) -> RemotingCommand {
    heartbeat(client_id, None, Some((group, topic, "*")))
}

/// HEART_BEAT of a client in `producer_group` (if any) and in one clustering consumer
/// group (if any), given as (group, topic, tag expression).
pub fn heartbeat(
    client_id: &str,
    producer_group: Option<&str>,
    consumer: Option<(&str, &str, &str)>,
) -> RemotingCommand {
    let body = protocol::body::HeartbeatData {
        client_id: client_id.into(),
        producer_data_set: producer_group
            .map(|g| protocol::body::ProducerData {
                group_name: g.into(),
            })
            .into_iter()
            .collect(),
        consumer_data_set: consumer
            .map(|(group, topic, sub)| protocol::body::ConsumerData {
                group_name: group.into(),
                consume_type: "CONSUME_PASSIVELY".into(),
                message_model: "CLUSTERING".into(),
                consume_from_where: "CONSUME_FROM_FIRST_OFFSET".into(),
                subscription_data_set: vec![protocol::body::SubscriptionData {
                    topic: topic.into(),
                    sub_string: sub.into(),
                    sub_version: now_ms(),
                    expression_type: Some("TAG".into()),
                    ..Default::default()
                }],
                unit_mode: false,
            })
            .into_iter()
            .collect(),
        heartbeat_fingerprint: None,
        without_sub: None,
    };
    RemotingCommand::request(request::HEART_BEAT).with_body(json::to_vec(
        &body,
        JsonStyle::Standard,
        &[],
    ))
}
