//! `rmq_bench`: a remoting-protocol load generator for any RocketMQ-compatible broker.
//!
//! ```text
//! rmq_bench produce --namesrv 127.0.0.1:9876 --topic BenchTopic --size 1024 \
//!     --connections 4 --inflight 64 --secs 10 [--batch 32] [--rate 20000] [--count N]
//!     [--oneway] [--tag TagA] [--keys] [--delay-level 3] [--topic-count 10] [--queues 8]
//! rmq_bench consume --namesrv 127.0.0.1:9876 --topic BenchTopic --group G --secs 10
//!     [--from last] [--process-us 50] [--pause-file PATH]
//! rmq_bench echo      # the localhost TCP round trip, the floor of any request
//! ```
//!
//! Light on purpose so that the broker, not the tool, is measured: one executor per
//! `--threads`; send frames are a per-queue header encoded once with a binary (ROCKETMQ)
//! header whose opaque and born timestamp are patched in place, followed by one shared
//! body; responses are decoded only as far as code and opaque; pulled records are read
//! only for their born and store timestamps.
//!
//! Sends: `--inflight 1` is RocketMQ's synchronous send, a larger window its async send,
//! `--oneway` sends without an answer. With `--rate` the producer is open loop and
//! coordinated-omission aware: request *i* of a connection is due at
//! `start + i / rate`, and its latency is measured from that intended time, so a broker
//! that stalls is charged for every request the stall delayed, not only the one it held.
//!
//! Consumers keep one pull in flight per queue, many queues per connection; a pull
//! answer's `maxOffset` gives the backlog. `--pause-file`: no pulls while that file
//! exists (the scenario runner creates it to hold a group back and removes it to let the
//! group catch up).
//!
//! Every `--report-secs` a RocketMQ-benchmark style progress line goes to stdout and,
//! with `--series`, one JSON line per interval to a file; `--json` writes the summary.

use bytes::{Buf, BytesMut};
use clap::{Parser, Subcommand};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use perf::latency::{self, Latency};
use protocol::body::TopicRouteData;
use protocol::code::{request, response};
use protocol::header::{
    GetMaxOffsetRequestHeader, GetRouteInfoRequestHeader, SendMessageRequestHeaderV2,
};
use protocol::message::record;
use protocol::{FrameDecoder, RemotingCommand, SerializeType};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `println!` that ignores a closed stdout (`rmq_bench ... | head` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[derive(Debug, Parser)]
#[command(about = "RocketMQ-protocol load generator")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, clap::Args, Clone)]
struct Common {
    /// Nameserver to ask for the topic's route.
    #[arg(long, default_value = "127.0.0.1:9876")]
    namesrv: String,
    /// Topic, or several separated by commas.
    #[arg(long, default_value = "BenchTopic")]
    topic: String,
    /// Use `TOPIC-0` .. `TOPIC-(N-1)` instead of `TOPIC` (one topic name given).
    #[arg(long)]
    topic_count: Option<usize>,
    /// Use only the first N queues of each topic (default: all the route has).
    #[arg(long)]
    queues: Option<usize>,
    /// Run time in seconds (the run also ends when `--count` is reached).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Load-generator executors (threads).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections per thread.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Seconds between progress lines and series samples.
    #[arg(long, default_value_t = 1)]
    report_secs: u64,
    /// Write a JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Append one JSON line per interval here.
    #[arg(long)]
    series: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// End the run (as if `--secs` had passed) once this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Send messages: closed loop (as fast as the in-flight window allows) or at `--rate`.
    Produce {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        p: ProduceArgs,
    },
    /// The reference: round trips of 40 bytes over localhost TCP between two blocking
    /// threads (the machine's floor for a request/response).
    Echo {
        #[arg(long, default_value_t = 5000)]
        round_trips: usize,
    },
    /// Pull every queue, one pull in flight per queue.
    Consume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        c: ConsumeArgs,
    },
}

#[derive(Debug, clap::Args, Clone)]
struct ProduceArgs {
    /// Body bytes per message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Requests in flight per connection (1 = RocketMQ's synchronous send).
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Messages per request (SEND_BATCH_MESSAGE when > 1).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Messages per second over all connections; 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Oneway sends (no answer, no latency).
    #[arg(long)]
    oneway: bool,
    /// TAGS property of every message.
    #[arg(long)]
    tag: Option<String>,
    /// A KEYS property: a distinct key per request (a fixed one per batch entry).
    #[arg(long)]
    keys: bool,
    /// DELAY property (delay level, 1..18).
    #[arg(long)]
    delay_level: Option<u32>,
}

#[derive(Debug, clap::Args, Clone)]
struct ConsumeArgs {
    #[arg(long, default_value = "bench_consumer")]
    group: String,
    /// Messages per pull.
    #[arg(long, default_value_t = 32)]
    pull_batch: i32,
    /// Start from the first offset or the last (GET_MAX_OFFSET).
    #[arg(long, default_value = "first", value_parser = ["first", "last"])]
    from: String,
    /// Simulated processing per message, in microseconds, before the queue's next pull.
    #[arg(long, default_value_t = 0)]
    process_us: u64,
    /// Pull nothing while this file exists.
    #[arg(long)]
    pause_file: Option<PathBuf>,
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
}

/// Histograms one executor fills; the main thread takes them every interval.
struct Hists {
    /// Send round trip, or pull round trip for consumers.
    rt: Histogram<u64>,
    /// Store time to consume time, per message.
    s2c: Histogram<u64>,
    /// Born time to consume time, per message.
    b2c: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        Self {
            rt: latency::histogram(),
            s2c: latency::histogram(),
            b2c: latency::histogram(),
        }
    }
    fn add(&mut self, o: &Hists) {
        let _ = self.rt.add(&o.rt);
        let _ = self.s2c.add(&o.s2c);
        let _ = self.b2c.add(&o.b2c);
    }
    fn reset(&mut self) {
        self.rt.reset();
        self.s2c.reset();
        self.b2c.reset();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The broker address and queue count of each topic.
fn route(namesrv: &str, topic: &str) -> Result<(SocketAddr, i32), String> {
    let mut s = std::net::TcpStream::connect(namesrv).map_err(|e| format!("{namesrv}: {e}"))?;
    let mut cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(
        &GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
        },
    );
    cmd.opaque = 1;
    s.write_all(&cmd.encode().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    loop {
        if let Some(r) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            if r.code != response::SUCCESS {
                return Err(format!("route for {topic}: code {} {:?}", r.code, r.remark));
            }
            let data: TopicRouteData =
                protocol::json::from_slice(&r.body).map_err(|e| e.to_string())?;
            let broker = data
                .broker_datas
                .first()
                .and_then(|b| b.broker_addrs.get(&0))
                .ok_or("route has no master")?;
            let queues = data.queue_datas.first().map_or(0, |q| q.write_queue_nums);
            let addr = broker
                .parse()
                .map_err(|e| format!("broker address {broker}: {e}"))?;
            return Ok((addr, queues));
        }
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("nameserver closed the connection".into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Offset of the opaque in a frame with a ROCKETMQ binary header: length, header
/// length, code (2), language (1), version (2).
const OPAQUE_AT: usize = 4 + 4 + 2 + 1 + 2;
/// The born timestamp the frames are encoded with, patched with the send time.
const BORN_PLACEHOLDER: &[u8] = b"1700000000000";
/// A distinct key per request: `K` and 12 digits, patched with a counter.
const KEY_PLACEHOLDER: &[u8] = b"K000000000000";

/// One send request without its body: the whole frame is `prefix ++ body`.
struct SendFrame {
    prefix: Vec<u8>,
    /// Where the born timestamp's 13 digits sit in `prefix`.
    born_at: Option<usize>,
    key_at: Option<usize>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn properties(p: &ProduceArgs, key: bool) -> String {
    let mut s = String::new();
    if let Some(t) = &p.tag {
        s.push_str(&format!("TAGS\u{1}{t}\u{2}"));
    }
    if key {
        s.push_str(&format!(
            "KEYS\u{1}{}\u{2}",
            String::from_utf8_lossy(KEY_PLACEHOLDER)
        ));
    }
    if let Some(d) = p.delay_level {
        s.push_str(&format!("DELAY\u{1}{d}\u{2}"));
    }
    s
}

/// The shared body of every request: the message, or a batch of them.
fn send_body(p: &ProduceArgs) -> Result<Vec<u8>, String> {
    let msg = vec![b'x'; p.size];
    if p.batch > 1 {
        let props = properties(p, p.keys);
        let mut out = Vec::new();
        for _ in 0..p.batch {
            record::encode_batch_entry(&mut out, 0, &msg, props.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(out)
    } else {
        Ok(msg)
    }
}

fn send_frame(topic: &str, queue_id: i32, p: &ProduceArgs, body_len: usize) -> SendFrame {
    let header = SendMessageRequestHeaderV2 {
        a: "bench_producer".into(),
        b: topic.to_owned(),
        c: "TBW102".into(),
        d: 8,
        e: queue_id,
        f: 0,
        g: 1_700_000_000_000,
        h: 0,
        i: Some(if p.batch > 1 {
            String::new()
        } else {
            properties(p, p.keys)
        }),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(p.batch > 1),
        n: None,
    };
    let code = if p.batch > 1 {
        request::SEND_BATCH_MESSAGE
    } else {
        request::SEND_MESSAGE_V2
    };
    let mut cmd = RemotingCommand::request(code)
        .with_header(&header)
        .with_serialize_type(SerializeType::RocketMq);
    if p.oneway {
        cmd = cmd.with_oneway();
    }
    let mut prefix = cmd.encode().expect("a send header encodes").to_vec();
    // The length field counts everything after itself, the body included.
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) + body_len as u32;
    prefix[..4].copy_from_slice(&len.to_be_bytes());
    SendFrame {
        born_at: find(&prefix, BORN_PLACEHOLDER),
        key_at: if p.keys && p.batch == 1 {
            find(&prefix, KEY_PLACEHOLDER)
        } else {
            None
        },
        prefix,
    }
}

/// Reads every complete frame.
fn frames(buf: &mut BytesMut, decoder: &FrameDecoder) -> Vec<RemotingCommand> {
    let mut out = Vec::new();
    while let Ok(Some(cmd)) = decoder.decode(buf) {
        out.push(cmd);
    }
    out
}

/// What every load task of an executor shares.
#[derive(Clone)]
struct Run {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    totals: Arc<Totals>,
    hists: Arc<Mutex<Hists>>,
    /// Messages left to send when `--count` is set.
    budget: Option<Arc<AtomicI64>>,
}

impl Run {
    fn record_rt(&self, d: Duration) {
        if let Ok(mut h) = self.hists.lock() {
            latency::record(&mut h.rt, d);
        }
    }
}

struct ProduceConn {
    addr: SocketAddr,
    frames: Rc<Vec<SendFrame>>,
    body: Rc<Vec<u8>>,
    p: ProduceArgs,
    /// Messages per second for this connection; 0 = closed loop.
    rate: f64,
    conn_no: usize,
}

async fn produce_conn(c: ProduceConn, run: Run) {
    let addr = c.addr;
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect {addr}: {e}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    // Opaque -> intended send time.
    let started: Rc<RefCell<HashMap<i32, Instant>>> = Rc::default();
    let inflight = if c.p.oneway { 1 << 20 } else { c.p.inflight };
    let window = Rc::new(glommio::sync::Semaphore::new(inflight as u64));
    let batch = c.p.batch as u64;
    let body_len = c.p.size as u64;
    let writer_done = Rc::new(Cell::new(false));
    let w_started = started.clone();
    let w_window = window.clone();
    let w_run = run.clone();
    let w_done = writer_done.clone();
    let oneway = c.p.oneway;
    let writer_task = glommio::spawn_local(async move {
        let run = w_run;
        let mut opaque = 1i32;
        let mut q = c.conn_no;
        let mut key = c.conn_no as u64 * 1_000_000_000;
        let mut out = Vec::with_capacity(256 * 1024);
        let start = Instant::now();
        let mut sent = 0u64;
        let step = if c.rate > 0.0 {
            Duration::from_secs_f64(batch as f64 / c.rate)
        } else {
            Duration::ZERO
        };
        let mut exhausted = false;
        while !run.stop.load(Ordering::Relaxed) && !exhausted {
            let mut due = 64;
            if c.rate > 0.0 {
                let now = Instant::now();
                let should =
                    (now.duration_since(start).as_secs_f64() * c.rate / batch as f64) as u64 + 1;
                if should <= sent {
                    let next = start + step.mul_f64(sent as f64);
                    glommio::timer::sleep(next.saturating_duration_since(now)).await;
                    continue;
                }
                due = (should - sent).min(64);
            }
            if w_window.acquire(1).await.is_err() {
                break;
            }
            let mut n = 1;
            while n < due && w_window.try_acquire(1).unwrap_or(false) {
                n += 1;
            }
            out.clear();
            let now = Instant::now();
            let born = now_ms().to_string();
            for _ in 0..n {
                if let Some(b) = &run.budget {
                    if b.fetch_sub(batch as i64, Ordering::Relaxed) <= 0 {
                        // What is already in `out` still goes: its answers are awaited.
                        exhausted = true;
                        break;
                    }
                }
                let frame = &c.frames[q % c.frames.len()];
                q += 1;
                let at = out.len();
                out.extend_from_slice(&frame.prefix);
                out[at + OPAQUE_AT..at + OPAQUE_AT + 4].copy_from_slice(&opaque.to_be_bytes());
                if let Some(p) = frame.born_at {
                    if born.len() == BORN_PLACEHOLDER.len() {
                        out[at + p..at + p + born.len()].copy_from_slice(born.as_bytes());
                    }
                }
                if let Some(p) = frame.key_at {
                    key += 1;
                    let k = format!("{:012}", key % 1_000_000_000_000);
                    out[at + p + 1..at + p + 13].copy_from_slice(k.as_bytes());
                }
                out.extend_from_slice(&c.body);
                let intended = if c.rate > 0.0 {
                    start + step.mul_f64(sent as f64)
                } else {
                    now
                };
                sent += 1;
                if oneway {
                    run.totals.requests.fetch_add(1, Ordering::Relaxed);
                    run.totals.messages.fetch_add(batch, Ordering::Relaxed);
                    run.totals
                        .bytes
                        .fetch_add(batch * body_len, Ordering::Relaxed);
                    w_window.signal(1);
                } else {
                    w_started.borrow_mut().insert(opaque, intended);
                }
                opaque = opaque.wrapping_add(1).max(1);
            }
            if !out.is_empty() && writer.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = writer.flush().await;
        w_done.set(true);
    });
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut tmp = vec![0u8; 256 * 1024];
    loop {
        let read = futures_lite::future::or(async { Some(reader.read(&mut tmp).await) }, async {
            while !(writer_done.get() && started.borrow().is_empty()) {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            None
        })
        .await;
        let n = match read {
            Some(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buf.extend_from_slice(&tmp[..n]);
        for cmd in frames(&mut buf, &decoder) {
            let Some(t0) = started.borrow_mut().remove(&cmd.opaque) else {
                continue;
            };
            run.record_rt(t0.elapsed());
            run.totals.requests.fetch_add(1, Ordering::Relaxed);
            if cmd.code == response::SUCCESS {
                run.totals.messages.fetch_add(batch, Ordering::Relaxed);
                run.totals
                    .bytes
                    .fetch_add(batch * body_len, Ordering::Relaxed);
            } else {
                run.totals.failures.fetch_add(1, Ordering::Relaxed);
            }
            window.signal(1);
        }
    }
    window.close();
    writer_task.await;
}

/// One consumer connection: pulls of many queues in flight, answers matched by opaque.
struct PullConn {
    /// Frames waiting for the writer task, which `wake` wakes.
    out: Rc<RefCell<Vec<u8>>>,
    wake: local_channel::LocalSender<()>,
    pending: Rc<RefCell<HashMap<i32, local_channel::LocalSender<RemotingCommand>>>>,
    next_opaque: Cell<i32>,
    /// The reader saw the connection end: every call fails at once.
    closed: Rc<Cell<bool>>,
}

impl PullConn {
    async fn open(addr: SocketAddr) -> std::io::Result<Rc<PullConn>> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = futures_lite::io::split(stream);
        let (wake, rx) = local_channel::new_bounded::<()>(1);
        let out: Rc<RefCell<Vec<u8>>> = Rc::default();
        let conn = Rc::new(PullConn {
            out: out.clone(),
            wake,
            pending: Rc::default(),
            next_opaque: Cell::new(1),
            closed: Rc::default(),
        });
        glommio::spawn_local(async move {
            let mut batch = Vec::new();
            while rx.recv().await.is_some() {
                std::mem::swap(&mut batch, &mut *out.borrow_mut());
                if !batch.is_empty() && writer.write_all(&batch).await.is_err() {
                    break;
                }
                batch.clear();
            }
        })
        .detach();
        let pending = conn.pending.clone();
        let closed = conn.closed.clone();
        glommio::spawn_local(async move {
            let decoder = FrameDecoder::default();
            let mut buf = BytesMut::with_capacity(1 << 20);
            let mut tmp = vec![0u8; 1 << 20];
            loop {
                match reader.read(&mut tmp).await {
                    Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                    _ => break,
                }
                for cmd in frames(&mut buf, &decoder) {
                    let waiter = pending.borrow_mut().remove(&cmd.opaque);
                    if let Some(w) = waiter {
                        let _ = w.try_send(cmd);
                    }
                }
            }
            // Dropping the senders wakes every waiter with an error.
            closed.set(true);
            pending.borrow_mut().clear();
        })
        .detach();
        Ok(conn)
    }

    async fn call(&self, mut cmd: RemotingCommand) -> Option<RemotingCommand> {
        if self.closed.get() {
            return None;
        }
        let opaque = self.next_opaque.get();
        self.next_opaque.set(opaque.wrapping_add(1).max(1));
        cmd.opaque = opaque;
        let frame = cmd.encode().ok()?.to_vec();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(opaque, tx);
        self.out.borrow_mut().extend_from_slice(&frame);
        // Full means the writer is already due to run.
        let _ = self.wake.try_send(());
        rx.recv().await
    }
}

/// A consumer connection shared by several queues, reopened when the broker closes it.
struct ConnSlot {
    addr: SocketAddr,
    conn: RefCell<Option<Rc<PullConn>>>,
    reopening: Cell<bool>,
}

impl ConnSlot {
    fn new(addr: SocketAddr) -> Rc<Self> {
        Rc::new(Self {
            addr,
            conn: RefCell::new(None),
            reopening: Cell::new(false),
        })
    }

    /// The open connection, reopening it (once, for every queue on it) if it closed.
    async fn get(&self, stop: &AtomicBool) -> Option<Rc<PullConn>> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let current = self.conn.borrow().clone();
            match current {
                Some(c) if !c.closed.get() => return Some(c),
                _ if self.reopening.get() => {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
                stale => {
                    self.reopening.set(true);
                    if stale.is_some() {
                        eprintln!("connection to {} closed; reconnecting", self.addr);
                    }
                    match PullConn::open(self.addr).await {
                        Ok(c) => *self.conn.borrow_mut() = Some(c),
                        Err(e) => {
                            eprintln!("connect {}: {e}", self.addr);
                            glommio::timer::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    self.reopening.set(false);
                }
            }
        }
    }
}

struct QueueJob {
    topic: String,
    queue_id: i32,
    /// Index into the shared backlog counters.
    slot: usize,
}

/// GET_MAX_OFFSET of one queue.
async fn max_offset(conn: &PullConn, job: &QueueJob) -> Option<i64> {
    let cmd = RemotingCommand::request(request::GET_MAX_OFFSET)
        .with_header(&GetMaxOffsetRequestHeader {
            topic: job.topic.clone(),
            queue_id: job.queue_id,
            committed: true,
        })
        .with_serialize_type(SerializeType::RocketMq);
    match conn.call(cmd).await {
        Some(r) if r.code == response::SUCCESS => {
            r.ext_fields.get("offset").and_then(|v| v.parse().ok())
        }
        _ => None,
    }
}

async fn consume_queue(
    slot: Rc<ConnSlot>,
    job: QueueJob,
    c: Rc<ConsumeArgs>,
    backlog: Arc<Vec<AtomicI64>>,
    run: Run,
) {
    let mut offset = 0i64;
    if c.from == "last" {
        let Some(conn) = slot.get(&run.stop).await else {
            return;
        };
        match max_offset(&conn, &job).await {
            Some(o) => offset = o,
            None => eprintln!("GET_MAX_OFFSET {} {} failed", job.topic, job.queue_id),
        }
    }
    let mut last_probe = Instant::now();
    while !run.stop.load(Ordering::Relaxed) {
        if run.paused.load(Ordering::Relaxed) {
            // While paused, a GET_MAX_OFFSET every few seconds keeps the connection from
            // being closed as idle and the backlog figure current.
            if last_probe.elapsed() > Duration::from_secs(5) {
                last_probe = Instant::now();
                if let Some(conn) = slot.get(&run.stop).await {
                    if let Some(max) = max_offset(&conn, &job).await {
                        backlog[job.slot].store((max - offset).max(0), Ordering::Relaxed);
                    }
                }
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Some(conn) = slot.get(&run.stop).await else {
            return;
        };
        let header = perf::remoting::pull_header(
            &c.group,
            &job.topic,
            job.queue_id,
            offset,
            c.pull_batch,
            Some(1000),
        );
        let cmd = RemotingCommand::request(request::PULL_MESSAGE)
            .with_header(&header)
            .with_serialize_type(SerializeType::RocketMq);
        let t0 = Instant::now();
        let Some(answer) = conn.call(cmd).await else {
            // Connection lost: counted, and the next round reconnects.
            run.totals.failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        run.totals.requests.fetch_add(1, Ordering::Relaxed);
        let mut count = 0u64;
        if answer.code == response::SUCCESS {
            let now = now_ms();
            let mut body = answer.body.clone();
            if let Ok(mut h) = run.hists.lock() {
                latency::record(&mut h.rt, t0.elapsed());
                while body.len() >= 4 {
                    let size = (&body[..4]).get_i32() as usize;
                    if size < record::MIN_RECORD_LEN || size > body.len() {
                        break;
                    }
                    let sys_flag = (&body[record::POS_SYS_FLAG..]).get_i32();
                    let born = (&body[record::POS_BORN_TIMESTAMP..]).get_i64();
                    let store_at = record::pos_store_timestamp(sys_flag);
                    if store_at + 8 <= size {
                        let stored = (&body[store_at..]).get_i64();
                        h.s2c
                            .saturating_record(((now - stored).max(0) as u64 * 1000).max(1));
                    }
                    h.b2c
                        .saturating_record(((now - born).max(0) as u64 * 1000).max(1));
                    body.advance(size);
                    count += 1;
                }
            }
            run.totals.messages.fetch_add(count, Ordering::Relaxed);
            run.totals
                .bytes
                .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
        } else if answer.code != response::PULL_NOT_FOUND
            && answer.code != response::PULL_RETRY_IMMEDIATELY
            && answer.code != response::PULL_OFFSET_MOVED
        {
            run.totals.failures.fetch_add(1, Ordering::Relaxed);
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        let field = |k: &str| answer.ext_fields.get(k).and_then(|v| v.parse::<i64>().ok());
        if let Some(next) = field("nextBeginOffset") {
            offset = next;
        }
        if let Some(max) = field("maxOffset") {
            backlog[job.slot].store((max - offset).max(0), Ordering::Relaxed);
        }
        if c.process_us > 0 && count > 0 {
            glommio::timer::sleep(Duration::from_micros(c.process_us * count)).await;
        }
    }
}

fn echo(round_trips: usize) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 64];
        loop {
            let n = s.read(&mut b)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&b[..n])?;
        }
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut hist = latency::histogram();
    let mut b = [0u8; 64];
    for _ in 0..round_trips {
        let t = Instant::now();
        s.write_all(&[1u8; 40])?;
        let mut got = 0;
        while got < 40 {
            got += s.read(&mut b)?;
        }
        latency::record(&mut hist, t.elapsed());
    }
    let summary = serde_json::json!({
        "mode": "echo",
        "round_trips": round_trips,
        "latency_us": {
            "p50": hist.value_at_quantile(0.5),
            "p99": hist.value_at_quantile(0.99),
            "max": hist.max(),
        },
    });
    say!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(())
}

fn lat_json(l: &Latency) -> serde_json::Value {
    serde_json::json!({
        "mean": l.mean_us, "p50": l.p50_us, "p99": l.p99_us, "p999": l.p999_us, "max": l.max_us,
    })
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn topics_of(common: &Common) -> Vec<String> {
    match common.topic_count {
        Some(n) => (0..n).map(|i| format!("{}-{i}", common.topic)).collect(),
        None => common
            .topic
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

fn main() {
    let args = Args::parse();
    let (common, producing) = match &args.mode {
        Mode::Produce { common, .. } => (common.clone(), true),
        Mode::Consume { common, .. } => (common.clone(), false),
        Mode::Echo { round_trips } => {
            if let Err(e) = echo(*round_trips) {
                eprintln!("rmq_bench echo: {e}");
                std::process::exit(1);
            }
            return;
        }
    };
    let topics = topics_of(&common);
    if topics.is_empty() {
        eprintln!("rmq_bench: no topic");
        std::process::exit(2);
    }
    // (topic, queue id) pairs, and the broker.
    let mut addr = None;
    let mut pairs: Vec<(String, i32)> = Vec::new();
    for topic in &topics {
        let (a, queues) = match route(&common.namesrv, topic) {
            Ok(r) => r,
            Err(e) if producing => {
                eprintln!("no route yet ({e}); sending to create {topic} from TBW102");
                match route(&common.namesrv, "TBW102") {
                    Ok((a, _)) => (a, 4),
                    Err(e) => {
                        eprintln!("rmq_bench: {e}");
                        std::process::exit(2);
                    }
                }
            }
            Err(e) => {
                eprintln!("rmq_bench: {e}");
                std::process::exit(2);
            }
        };
        addr = Some(a);
        let n = common.queues.map_or(queues, |q| q as i32).max(1);
        pairs.extend((0..n).map(|q| (topic.clone(), q)));
    }
    let Some(addr) = addr else {
        std::process::exit(2);
    };
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let pairs = Arc::new(pairs);
    let backlog: Arc<Vec<AtomicI64>> =
        Arc::new((0..pairs.len()).map(|_| AtomicI64::new(0)).collect());
    let (produce_args, consume_args) = match &args.mode {
        Mode::Produce { p, .. } => (Some(p.clone()), None),
        Mode::Consume { c, .. } => (None, Some(c.clone())),
        Mode::Echo { .. } => (None, None),
    };
    let pause_file = consume_args.as_ref().and_then(|c| c.pause_file.clone());
    let check_pause = |paused: &AtomicBool| {
        if let Some(f) = &pause_file {
            paused.store(f.exists(), Ordering::Relaxed);
        }
    };
    check_pause(&paused);
    let budget = produce_args
        .as_ref()
        .and_then(|p| p.count)
        .map(|c| Arc::new(AtomicI64::new(c as i64)));
    let running = Arc::new(AtomicUsize::new(common.threads));
    let mut all_hists = Vec::new();
    let mut handles = Vec::new();
    for t in 0..common.threads {
        let hists = Arc::new(Mutex::new(Hists::new()));
        all_hists.push(hists.clone());
        let run = Run {
            stop: stop.clone(),
            paused: paused.clone(),
            totals: totals.clone(),
            hists,
            budget: budget.clone(),
        };
        let common = common.clone();
        let pairs = pairs.clone();
        let backlog = backlog.clone();
        let produce_args = produce_args.clone();
        let consume_args = consume_args.clone();
        let running = running.clone();
        let spawned = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("bench-{t}"))
            .spawn(move || async move {
                let mut tasks = Vec::new();
                if let Some(p) = produce_args {
                    let body = match send_body(&p) {
                        Ok(b) => Rc::new(b),
                        Err(e) => {
                            eprintln!("rmq_bench: {e}");
                            running.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    let frames = Rc::new(
                        pairs
                            .iter()
                            .map(|(topic, q)| send_frame(topic, *q, &p, body.len()))
                            .collect::<Vec<_>>(),
                    );
                    let conns = common.threads * common.connections;
                    for c in 0..common.connections {
                        tasks.push(glommio::spawn_local(produce_conn(
                            ProduceConn {
                                addr,
                                frames: frames.clone(),
                                body: body.clone(),
                                p: p.clone(),
                                rate: p.rate / conns.max(1) as f64,
                                conn_no: t * common.connections + c,
                            },
                            run.clone(),
                        )));
                    }
                } else if let Some(c) = consume_args {
                    let c = Rc::new(c);
                    let conns: Vec<Rc<ConnSlot>> = (0..common.connections.max(1))
                        .map(|_| ConnSlot::new(addr))
                        .collect();
                    let mine = pairs
                        .iter()
                        .enumerate()
                        .filter(|(slot, _)| slot % common.threads == t);
                    for (i, (slot, (topic, q))) in mine.enumerate() {
                        let Some(conn) = conns.get(i % conns.len().max(1)) else {
                            break;
                        };
                        tasks.push(glommio::spawn_local(consume_queue(
                            conn.clone(),
                            QueueJob {
                                topic: topic.clone(),
                                queue_id: *q,
                                slot,
                            },
                            c.clone(),
                            backlog.clone(),
                            run.clone(),
                        )));
                    }
                }
                for t in tasks {
                    t.await;
                }
                running.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("rmq_bench: cannot start an executor: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut series = common.series.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("cannot open {}: {e}", p.display()))
            .ok()
    });
    let start = Instant::now();
    let mut last = (0u64, 0u64, 0u64, start);
    let mut total_h = Hists::new();
    let mut interval_h = Hists::new();
    let deadline = Duration::from_secs(common.secs);
    let tick = Duration::from_secs(common.report_secs.max(1));
    let mut next_report = start + tick;
    loop {
        let done = running.load(Ordering::Relaxed) == 0
            || start.elapsed() >= deadline
            || common.stop_file.as_ref().is_some_and(|f| f.exists());
        std::thread::sleep(Duration::from_millis(50));
        check_pause(&paused);
        if Instant::now() < next_report && !done {
            continue;
        }
        next_report += tick;
        interval_h.reset();
        for h in &all_hists {
            if let Ok(mut h) = h.lock() {
                interval_h.add(&h);
                h.reset();
            }
        }
        total_h.add(&interval_h);
        let msgs = totals.messages.load(Ordering::Relaxed);
        let bytes = totals.bytes.load(Ordering::Relaxed);
        let failures = totals.failures.load(Ordering::Relaxed);
        let dt = last.3.elapsed().as_secs_f64().max(1e-3);
        let tps = (msgs - last.0) as f64 / dt;
        let mbps = (bytes - last.1) as f64 / dt / 1e6;
        let rt = Latency::of(&interval_h.rt);
        let t = start.elapsed().as_secs_f64();
        let sample = if producing {
            if !common.quiet {
                say!(
                    "{t:>6.0}s Send TPS: {tps:.0} MB/s: {mbps:.1} Max RT(ms): {} Average RT(ms): {} p50: {} p99: {} p999: {} Send Failed: {}",
                    ms(rt.max_us as f64),
                    ms(rt.mean_us),
                    ms(rt.p50_us as f64),
                    ms(rt.p99_us as f64),
                    ms(rt.p999_us as f64),
                    failures - last.2
                );
            }
            serde_json::json!({
                "t": t, "unix_ms": now_ms(), "send_tps": tps, "send_mbps": mbps,
                "send_failures": failures - last.2, "send_rt_us": lat_json(&rt),
            })
        } else {
            let s2c = Latency::of(&interval_h.s2c);
            let b2c = Latency::of(&interval_h.b2c);
            let lag: i64 = backlog.iter().map(|b| b.load(Ordering::Relaxed)).sum();
            if !common.quiet {
                say!(
                    "{t:>6.0}s Consume TPS: {tps:.0} MB/s: {mbps:.1} Average(B2C) RT(ms): {} p99: {} Max: {} Average(S2C) RT(ms): {} p99: {} Max: {} Backlog: {lag}{}",
                    ms(b2c.mean_us),
                    ms(b2c.p99_us as f64),
                    ms(b2c.max_us as f64),
                    ms(s2c.mean_us),
                    ms(s2c.p99_us as f64),
                    ms(s2c.max_us as f64),
                    if paused.load(Ordering::Relaxed) { " (paused)" } else { "" },
                );
            }
            serde_json::json!({
                "t": t, "unix_ms": now_ms(), "consume_tps": tps, "consume_mbps": mbps,
                "consume_failures": failures - last.2, "pull_rt_us": lat_json(&rt),
                "s2c_us": lat_json(&s2c), "b2c_us": lat_json(&b2c), "backlog_msgs": lag,
                "paused": paused.load(Ordering::Relaxed),
            })
        };
        // A last interval much shorter than the others would be noise in the series.
        let partial = done && dt < tick.as_secs_f64() / 2.0;
        if let Some(f) = series.as_mut().filter(|_| !partial) {
            if writeln!(f, "{sample}").and_then(|_| f.flush()).is_err() {
                eprintln!("rmq_bench: cannot write the series file");
                series = None;
            }
        }
        last = (msgs, bytes, failures, Instant::now());
        if done {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for h in handles {
        let _ = h.join();
    }
    for h in &all_hists {
        if let Ok(h) = h.lock() {
            total_h.add(&h);
        }
    }
    let msgs = totals.messages.load(Ordering::Relaxed);
    let bytes = totals.bytes.load(Ordering::Relaxed);
    let rt = Latency::of(&total_h.rt);
    let mut summary = serde_json::json!({
        "mode": if producing { "produce" } else { "consume" },
        "broker": addr.to_string(),
        "topic": common.topic,
        "topics": topics.len(),
        "queues": pairs.len(),
        "secs": elapsed,
        "messages": msgs,
        "bytes": bytes,
        "msgs_per_sec": msgs as f64 / elapsed,
        "mb_per_sec": bytes as f64 / elapsed / 1e6,
        "requests": totals.requests.load(Ordering::Relaxed),
        "failures": totals.failures.load(Ordering::Relaxed),
        "latency_us": lat_json(&rt),
        "args": format!("{:?}", args.mode),
    });
    if !producing {
        summary["s2c_us"] = lat_json(&Latency::of(&total_h.s2c));
        summary["b2c_us"] = lat_json(&Latency::of(&total_h.b2c));
        summary["backlog_msgs"] = backlog
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<i64>()
            .into();
    }
    if !common.quiet {
        say!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    }
    if let Some(path) = &common.json {
        if let Err(e) = std::fs::write(path, summary.to_string()) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(batch: usize, keys: bool) -> ProduceArgs {
        ProduceArgs {
            size: 100,
            inflight: 1,
            batch,
            rate: 0.0,
            count: None,
            oneway: false,
            tag: Some("TagA".into()),
            keys,
            delay_level: Some(3),
        }
    }

    /// A prefix plus the shared body is one valid frame, and the patch points exist.
    #[test]
    fn send_frames_decode_with_their_body_and_patch_points() {
        for (batch, keys) in [(1, true), (4, true), (1, false)] {
            let p = args(batch, keys);
            let body = send_body(&p).expect("body");
            let f = send_frame("T", 3, &p, body.len());
            assert!(f.born_at.is_some());
            assert_eq!(f.key_at.is_some(), keys && batch == 1);
            let mut bytes = BytesMut::from(&f.prefix[..]);
            bytes.extend_from_slice(&body);
            let cmd = FrameDecoder::default()
                .decode(&mut bytes)
                .expect("decodes")
                .expect("complete");
            assert!(bytes.is_empty());
            assert_eq!(cmd.body.len(), body.len());
            let h: SendMessageRequestHeaderV2 = cmd.header().expect("header");
            assert_eq!(h.e, 3);
            if batch == 1 {
                let props = h.i.unwrap_or_default();
                assert!(props.contains("TAGS\u{1}TagA") && props.contains("DELAY\u{1}3"));
            } else {
                assert_eq!(cmd.code, request::SEND_BATCH_MESSAGE);
                let entries = record::decode_batch(&cmd.body, 100).expect("batch");
                assert_eq!(entries.len(), batch);
            }
        }
    }

    #[test]
    fn topic_lists() {
        let Args {
            mode: Mode::Consume { common: mut c, .. },
        } = Args::parse_from(["x", "consume", "--topic", "A, B,"])
        else {
            panic!("consume");
        };
        assert_eq!(topics_of(&c), ["A", "B"]);
        c.topic_count = Some(2);
        c.topic = "Q".into();
        assert_eq!(topics_of(&c), ["Q-0", "Q-1"]);
    }
}
