//! `rmq_bench`: a remoting-protocol load generator for any RocketMQ-compatible broker.
//!
//! ```text
//! rmq_bench produce --namesrv 127.0.0.1:9876 --topic BenchTopic --size 1024 \
//!     --connections 4 --inflight 64 --secs 10 [--batch 32]
//! rmq_bench consume --namesrv 127.0.0.1:9876 --topic BenchTopic --group G --secs 10
//! ```
//!
//! Light on purpose so that the broker, not the tool, is measured: one executor per
//! `--threads`, frames encoded once per queue with a binary (ROCKETMQ) header whose
//! opaque is patched in place, responses decoded only as far as code and opaque.
//! Prints a progress line every second and a summary with p50/p99/p999 latency.

use bytes::{Buf, BytesMut};
use clap::{Parser, Subcommand};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use hdrhistogram::Histogram;
use protocol::body::TopicRouteData;
use protocol::code::{request, response};
use protocol::header::{
    GetRouteInfoRequestHeader, PullMessageRequestHeader, SendMessageRequestHeaderV2,
};
use protocol::{FrameDecoder, RemotingCommand, SerializeType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    #[arg(long, default_value = "BenchTopic")]
    topic: String,
    /// Run time in seconds.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Load-generator executors (threads).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections per thread.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Write a JSON summary here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Send messages as fast as the in-flight window allows.
    Produce {
        #[command(flatten)]
        common: Common,
        /// Body bytes per message.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 32)]
        inflight: usize,
        /// Messages per request (SEND_BATCH_MESSAGE when > 1).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// The reference: round trips of 40 bytes over localhost TCP between two blocking
    /// threads (the machine's floor for a request/response).
    Echo {
        #[arg(long, default_value_t = 5000)]
        round_trips: usize,
    },
    /// Pull every queue from the first offset.
    Consume {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "bench_consumer")]
        group: String,
        /// Messages per pull.
        #[arg(long, default_value_t = 32)]
        pull_batch: i32,
    },
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
}

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

fn send_frame(topic: &str, queue_id: i32, body: &[u8], batch: usize) -> Vec<u8> {
    let header = SendMessageRequestHeaderV2 {
        a: "bench_producer".into(),
        b: topic.to_owned(),
        c: "TBW102".into(),
        d: 8,
        e: queue_id,
        f: 0,
        g: 1_700_000_000_000,
        h: 0,
        i: Some(String::new()),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(batch > 1),
        n: None,
    };
    let (code, payload) = if batch > 1 {
        let mut out = Vec::new();
        for _ in 0..batch {
            protocol::message::record::encode_batch_entry(&mut out, 0, body, b"")
                .expect("batch entry");
        }
        (request::SEND_BATCH_MESSAGE, out)
    } else {
        (request::SEND_MESSAGE_V2, body.to_vec())
    };
    RemotingCommand::request(code)
        .with_header(&header)
        .with_serialize_type(SerializeType::RocketMq)
        .with_body(payload)
        .encode()
        .expect("encode")
        .to_vec()
}

/// Reads frames and returns (code, opaque, body) for each; header fields are skipped.
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
    totals: Arc<Totals>,
    hist: Rc<RefCell<Histogram<u64>>>,
}

async fn produce_conn(
    addr: SocketAddr,
    frames_by_queue: Rc<Vec<Vec<u8>>>,
    (inflight, batch, body_len): (usize, u64, u64),
    run: Run,
    conn_no: usize,
) {
    let Run { stop, totals, hist } = run;
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect {addr}: {e}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let started: Rc<RefCell<HashMap<i32, Instant>>> = Rc::default();
    let window = Rc::new(glommio::sync::Semaphore::new(inflight as u64));
    let w_started = started.clone();
    let w_window = window.clone();
    let w_stop = stop.clone();
    let writer_task = glommio::spawn_local(async move {
        let mut opaque = 1i32;
        let mut q = conn_no;
        let mut out = Vec::with_capacity(256 * 1024);
        while !w_stop.load(Ordering::Relaxed) {
            if w_window.acquire(1).await.is_err() {
                break;
            }
            // Send as many as the window allows in one write.
            let mut n = 1;
            while n < 64 && w_window.try_acquire(1).unwrap_or(false) {
                n += 1;
            }
            out.clear();
            let now = Instant::now();
            for _ in 0..n {
                let frame = &frames_by_queue[q % frames_by_queue.len()];
                q += 1;
                let at = out.len();
                out.extend_from_slice(frame);
                out[at + OPAQUE_AT..at + OPAQUE_AT + 4].copy_from_slice(&opaque.to_be_bytes());
                w_started.borrow_mut().insert(opaque, now);
                opaque = opaque.wrapping_add(1).max(1);
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut tmp = vec![0u8; 256 * 1024];
    loop {
        let read = futures_lite::future::or(async { Some(reader.read(&mut tmp).await) }, async {
            while !stop.load(Ordering::Relaxed) || !started.borrow().is_empty() {
                glommio::timer::sleep(Duration::from_millis(50)).await;
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
            let _ = hist
                .borrow_mut()
                .record(t0.elapsed().as_micros().max(1) as u64);
            totals.requests.fetch_add(1, Ordering::Relaxed);
            if cmd.code == response::SUCCESS {
                totals.messages.fetch_add(batch, Ordering::Relaxed);
                totals.bytes.fetch_add(batch * body_len, Ordering::Relaxed);
            } else {
                totals.failures.fetch_add(1, Ordering::Relaxed);
            }
            window.signal(1);
        }
        if stop.load(Ordering::Relaxed) && started.borrow().is_empty() {
            break;
        }
    }
    window.close();
    writer_task.await;
}

async fn consume_queue(
    stream: Rc<RefCell<Option<TcpStream>>>,
    (topic, group): (String, String),
    queue_id: i32,
    pull_batch: i32,
    run: Run,
) {
    let Run { stop, totals, hist } = run;
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut offset = 0i64;
    let mut opaque = 0;
    let mut tmp = vec![0u8; 512 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let header = PullMessageRequestHeader {
            consumer_group: group.clone(),
            topic: topic.clone(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: pull_batch,
            sys_flag: protocol::message::pull_sys_flag::SUBSCRIPTION
                | protocol::message::pull_sys_flag::SUSPEND,
            commit_offset: 0,
            suspend_timeout_millis: 1000,
            subscription: Some("*".into()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
            request_source: None,
            proxy_forward_client_id: None,
            broker_name: None,
        };
        opaque += 1;
        let mut cmd = RemotingCommand::request(request::PULL_MESSAGE)
            .with_header(&header)
            .with_serialize_type(SerializeType::RocketMq);
        cmd.opaque = opaque;
        let Ok(frame) = cmd.encode() else { return };
        let t0 = Instant::now();
        let Some(mut s) = stream.borrow_mut().take() else {
            return;
        };
        if s.write_all(&frame).await.is_err() {
            return;
        }
        let answer = loop {
            if let Ok(Some(a)) = decoder.decode(&mut buf) {
                break a;
            }
            match s.read(&mut tmp).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        *stream.borrow_mut() = Some(s);
        totals.requests.fetch_add(1, Ordering::Relaxed);
        if answer.code == response::SUCCESS {
            let _ = hist
                .borrow_mut()
                .record(t0.elapsed().as_micros().max(1) as u64);
            let mut body = answer.body.clone();
            let mut count = 0u64;
            while body.len() >= 4 {
                let size = (&body[..4]).get_i32() as usize;
                if size < 4 || size > body.len() {
                    break;
                }
                body.advance(size);
                count += 1;
            }
            totals.messages.fetch_add(count, Ordering::Relaxed);
            totals
                .bytes
                .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
        } else if answer.code != response::PULL_NOT_FOUND {
            totals.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(next) = answer
            .ext_fields
            .get("nextBeginOffset")
            .and_then(|v| v.parse().ok())
        {
            offset = next;
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
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut b = [0u8; 64];
    for _ in 0..round_trips {
        let t = Instant::now();
        s.write_all(&[1u8; 40])?;
        let mut got = 0;
        while got < 40 {
            got += s.read(&mut b)?;
        }
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
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
    println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
    Ok(())
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
    let (addr, queues) = match route(&common.namesrv, &common.topic) {
        Ok(r) => r,
        Err(e) if producing => {
            eprintln!("no route yet ({e}); sending to create the topic from TBW102");
            match route(&common.namesrv, "TBW102") {
                Ok((addr, _)) => (addr, 8),
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
    let queues = queues.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let hists: Arc<Mutex<Vec<Histogram<u64>>>> = Arc::default();
    let mut handles = Vec::new();
    for t in 0..common.threads {
        let stop = stop.clone();
        let totals = totals.clone();
        let hists = hists.clone();
        let common = common.clone();
        let mode = match &args.mode {
            Mode::Produce {
                size,
                inflight,
                batch,
                ..
            } => (true, *size, *inflight, *batch, String::new(), 0),
            Mode::Consume {
                group, pull_batch, ..
            } => (false, 0, 0, 0, group.clone(), *pull_batch),
            Mode::Echo { .. } => unreachable!("handled above"),
        };
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("bench-{t}"))
            .spawn(move || async move {
                let hist = Rc::new(RefCell::new(
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
                ));
                let (produce, size, inflight, batch, group, pull_batch) = mode;
                let run = Run {
                    stop: stop.clone(),
                    totals: totals.clone(),
                    hist: hist.clone(),
                };
                let mut tasks = Vec::new();
                if produce {
                    let body = vec![b'x'; size];
                    let frames = Rc::new(
                        (0..queues)
                            .map(|q| send_frame(&common.topic, q, &body, batch))
                            .collect::<Vec<_>>(),
                    );
                    for c in 0..common.connections {
                        tasks.push(glommio::spawn_local(produce_conn(
                            addr,
                            frames.clone(),
                            (inflight, batch as u64, size as u64),
                            run.clone(),
                            t * common.connections + c,
                        )));
                    }
                } else {
                    // Queues split over threads and connections; each connection pulls
                    // its queues one request at a time per queue.
                    let conns = common.connections.max(1);
                    let mut streams = Vec::new();
                    for _ in 0..conns {
                        match TcpStream::connect(addr).await {
                            Ok(s) => streams.push(Rc::new(RefCell::new(Some(s)))),
                            Err(e) => eprintln!("connect {addr}: {e}"),
                        }
                    }
                    for q in (0..queues).filter(|q| *q as usize % common.threads == t) {
                        let Some(stream) = streams.get(q as usize % streams.len().max(1)) else {
                            break;
                        };
                        // One pull at a time per connection: a queue per connection.
                        if Rc::strong_count(stream) > 1 {
                            let s = match TcpStream::connect(addr).await {
                                Ok(s) => Rc::new(RefCell::new(Some(s))),
                                Err(_) => continue,
                            };
                            streams.push(s.clone());
                            tasks.push(glommio::spawn_local(consume_queue(
                                s,
                                (common.topic.clone(), group.clone()),
                                q,
                                pull_batch,
                                run.clone(),
                            )));
                            continue;
                        }
                        tasks.push(glommio::spawn_local(consume_queue(
                            stream.clone(),
                            (common.topic.clone(), group.clone()),
                            q,
                            pull_batch,
                            run.clone(),
                        )));
                    }
                }
                for t in tasks {
                    t.await;
                }
                let h = hist.borrow().clone();
                hists.lock().expect("histograms").push(h);
            })
            .expect("executor");
        handles.push(handle);
    }
    let start = Instant::now();
    let mut last = (0u64, 0u64, start);
    while start.elapsed() < Duration::from_secs(common.secs) {
        std::thread::sleep(Duration::from_secs(1));
        let msgs = totals.messages.load(Ordering::Relaxed);
        let bytes = totals.bytes.load(Ordering::Relaxed);
        let dt = last.2.elapsed().as_secs_f64();
        println!(
            "{:>4.0}s  {} TPS {:>10.0}  MB/s {:>8.1}  failures {}",
            start.elapsed().as_secs_f64(),
            if producing { "Send" } else { "Consume" },
            (msgs - last.0) as f64 / dt,
            (bytes - last.1) as f64 / dt / 1e6,
            totals.failures.load(Ordering::Relaxed)
        );
        last = (msgs, bytes, Instant::now());
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for h in handles {
        let _ = h.join();
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for h in hists.lock().expect("histograms").iter() {
        let _ = all.add(h);
    }
    let msgs = totals.messages.load(Ordering::Relaxed);
    let bytes = totals.bytes.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "mode": if producing { "produce" } else { "consume" },
        "broker": addr.to_string(),
        "topic": common.topic,
        "queues": queues,
        "secs": elapsed,
        "messages": msgs,
        "msgs_per_sec": msgs as f64 / elapsed,
        "mb_per_sec": bytes as f64 / elapsed / 1e6,
        "requests": totals.requests.load(Ordering::Relaxed),
        "failures": totals.failures.load(Ordering::Relaxed),
        "latency_us": {
            "p50": all.value_at_quantile(0.5),
            "p99": all.value_at_quantile(0.99),
            "p999": all.value_at_quantile(0.999),
            "max": all.max(),
            "mean": all.mean(),
        },
        "args": format!("{:?}", args.mode),
    });
    println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
    if let Some(path) = &common.json {
        if let Err(e) = std::fs::write(path, summary.to_string()) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}
