//! Starting and stopping the broker: one executor per shard, the mesh between them,
//! broker-wide state, registration with the nameservers, clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clients::ClientRegistry;
use crate::config::{BrokerConfig, FlushKind};
use crate::meta::Metadata;
use crate::shard::{ShardCtx, ShardMsg};

/// Counters every shard adds to (relaxed; read for runtime info and stats).
#[derive(Debug, Default)]
pub struct Stats {
    pub put_msgs: AtomicU64,
    pub put_bytes: AtomicU64,
    pub get_msgs: AtomicU64,
    pub get_bytes: AtomicU64,
    pub connections: AtomicU64,
}

/// Broker-wide state shared by every shard.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub meta: Metadata,
    pub clients: ClientRegistry,
    pub locks: crate::locks::QueueLocks,
    /// One sender per shard.
    pub mesh: Vec<flume::Sender<ShardMsg>>,
    /// `host:port` registered with nameservers.
    pub advertised: String,
    /// The store host written into records (and so into msgIds).
    pub store_host: SocketAddr,
    pub boot_ms: i64,
    pub started: Instant,
    pub stats: Stats,
    /// Delay of each level (index 0 is level 1).
    pub delay_levels: Vec<Duration>,
    /// Timer cascade levels (see `schedule`).
    pub timer_levels: Vec<Duration>,
    /// Asks the registrar to register again now (topic configuration changed).
    pub register_now: flume::Sender<()>,
    pub shutting_down: AtomicBool,
    /// `brokerPermission`, updatable at runtime (UPDATE_BROKER_CONFIG).
    pub permission: std::sync::atomic::AtomicI32,
}

impl Broker {
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The broker's permission bits (read 4, write 2).
    pub fn permission(&self) -> i32 {
        self.permission.load(Ordering::Relaxed)
    }

    /// Topic configuration changed: tell the nameservers soon.
    pub fn topics_changed(&self) {
        let _ = self.register_now.try_send(());
    }
}

pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("store directory {path}: {message}")]
    StoreDir { path: PathBuf, message: String },
    #[error(transparent)]
    Meta(#[from] crate::meta::MetaError),
    #[error("shard {shard}: {message}")]
    Shard { shard: usize, message: String },
    #[error("cannot start executor {shard}: {message}")]
    Executor { shard: usize, message: String },
}

/// What a started broker tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub advertised: String,
    pub shards: usize,
    pub registered: Vec<(String, Result<(), String>)>,
}

/// Asks a running broker to stop.
#[derive(Debug, Clone)]
pub struct StopHandle {
    tx: flume::Sender<()>,
}

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.tx.try_send(());
    }
}

/// Checks (or writes, for a new store) the shard count the store was laid out with: a
/// queue's shard depends on it, so opening with another count would lose queues.
fn check_layout(store_dir: &Path, shards: usize) -> Result<(), StartError> {
    let err = |message: String| StartError::StoreDir {
        path: store_dir.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(store_dir).map_err(|e| err(e.to_string()))?;
    let path = store_dir.join("layout");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| err(format!("{} is unreadable: {text:?}", path.display())))?;
            if found != shards {
                return Err(err(format!(
                    "the store was created with {found} shards and this broker runs {shards}; \
                     queues are placed by shard count, so start with `shards = {found}`"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = store_dir.join("layout.tmp");
            std::fs::write(&tmp, format!("shards={shards}\n")).map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
            Ok(())
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// A concrete listen address: port 0 becomes a free port, so that every shard's
/// SO_REUSEPORT listener binds the same one.
fn concrete_listen(listen: SocketAddr) -> Result<SocketAddr, StartError> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = std::net::TcpListener::bind(listen)
        .map_err(|e| StartError::Config(format!("cannot bind {listen}: {e}")))?;
    probe
        .local_addr()
        .map_err(|e| StartError::Config(format!("cannot bind {listen}: {e}")))
}

/// Runs the broker until `stop` is called or the returned handle is used; `on_ready`
/// is called once every shard serves and the first registration round is done.
pub fn run(
    mut config: BrokerConfig,
    on_ready: impl FnOnce(Ready, StopHandle) + Send + 'static,
) -> Result<(), StartError> {
    config.listen = concrete_listen(config.listen)?;
    let shards = config.shard_count();
    check_layout(&config.store_dir, shards)?;
    let advertised = config.advertised_addr(config.listen);
    let store_host: SocketAddr = advertised.parse().unwrap_or(config.listen);
    let meta = Metadata::open(&config)?;

    let mut receivers = Vec::with_capacity(shards);
    let mut mesh = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = flume::bounded(config.max_inflight_sends_per_shard.max(64));
        mesh.push(tx);
        receivers.push(rx);
    }
    let (register_tx, register_rx) = flume::bounded(1);
    let broker = Arc::new(Broker {
        config: config.clone(),
        meta,
        clients: ClientRegistry::default(),
        locks: crate::locks::QueueLocks::default(),
        mesh,
        advertised: advertised.clone(),
        store_host,
        boot_ms: wall_ms(),
        started: Instant::now(),
        stats: Stats::default(),
        timer_levels: crate::schedule::timer_levels(Duration::from_secs(
            config.timer_max_delay_sec,
        )),
        delay_levels: crate::config::parse_delay_levels(&config.message_delay_level)
            .map_err(|e| StartError::Config(format!("message_delay_level: {e}")))?,
        register_now: register_tx,
        shutting_down: AtomicBool::new(false),
        permission: std::sync::atomic::AtomicI32::new(config.broker_permission as i32),
    });

    // Shards report here once serving (or failing).
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, Result<(), String>)>();
    // Each shard's executor ends when its stop channel fires.
    let mut stops = Vec::with_capacity(shards);
    let mut handles = Vec::with_capacity(shards);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (id, rx) in receivers.into_iter().enumerate() {
        let (stop_tx, stop_rx) = flume::bounded::<flume::Sender<()>>(1);
        stops.push(stop_tx);
        let placement = if config.cpu_pinning {
            glommio::Placement::Fixed(id % cores)
        } else {
            glommio::Placement::Unbound
        };
        let broker = broker.clone();
        let ready_tx = ready_tx.clone();
        let register_rx = (id == 0).then(|| register_rx.clone());
        let handle = glommio::LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{id}"))
            .spin_before_park(Duration::from_micros(config.spin_before_park_us))
            .io_memory(config.shard_config(id as u8).io_memory_bytes())
            .spawn(move || async move {
                crate::server::shard_main(id, broker, rx, ready_tx, stop_rx, register_rx).await
            })
            .map_err(|e| StartError::Executor {
                shard: id,
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut failure = None;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(message))) => {
                failure.get_or_insert(StartError::Shard { shard, message });
            }
            Err(_) => {
                failure.get_or_insert(StartError::Shard {
                    shard: 0,
                    message: "a shard exited while starting".into(),
                });
                break;
            }
        }
    }
    if let Some(failure) = failure {
        stop_shards(&broker, &stops);
        for h in handles {
            let _ = h.join();
        }
        return Err(failure);
    }

    // First registration round, from shard 0.
    let (reg_tx, reg_rx) = flume::bounded(1);
    let b = broker.clone();
    let sent = broker.mesh[0]
        .send(ShardMsg::Run(Box::new(move |ctx: Rc<ShardCtx>| {
            Box::pin(async move {
                let result = crate::register::register_all(&ctx.broker).await;
                let _ = reg_tx.send_async(result).await;
                drop(b);
            })
        })))
        .is_ok();
    let registered = if sent {
        reg_rx.recv().unwrap_or_default()
    } else {
        Vec::new()
    };

    let (stop_tx, stop_rx) = flume::bounded(1);
    on_ready(
        Ready {
            advertised,
            shards,
            registered,
        },
        StopHandle { tx: stop_tx },
    );
    let _ = stop_rx.recv();
    tracing::info!("shutting down");
    stop_shards(&broker, &stops);
    let mut result = Ok(());
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                result = Err(StartError::Shard { shard: id, message });
            }
            Err(e) => {
                result = Err(StartError::Executor {
                    shard: id,
                    message: e.to_string(),
                })
            }
        }
    }
    if let Err(e) = broker.meta.persist_all() {
        tracing::error!(error = %e, "cannot persist metadata at shutdown");
        result = result.and(Err(e.into()));
    }
    result
}

/// Unregisters (shard 0) then closes every shard's store, waiting for each.
fn stop_shards(broker: &Arc<Broker>, stops: &[flume::Sender<flume::Sender<()>>]) {
    broker.shutting_down.store(true, Ordering::SeqCst);
    // Unregister first so that clients stop routing here while stores close.
    let (tx, rx) = flume::bounded(1);
    let ok = broker.mesh[0]
        .send(ShardMsg::Run(Box::new(move |ctx: Rc<ShardCtx>| {
            Box::pin(async move {
                crate::register::unregister_all(&ctx.broker).await;
                let _ = tx.send_async(()).await;
            })
        })))
        .is_ok();
    if ok {
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
    for stop in stops {
        let (done_tx, done_rx) = flume::bounded(1);
        if stop.send(done_tx).is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
        }
    }
}

/// One-line description of the running broker for the start banner.
pub fn describe(config: &BrokerConfig, ready: &Ready) -> String {
    format!(
        "broker {} ready on {} ({} shards, store {}, flush {})",
        config.broker_name,
        ready.advertised,
        ready.shards,
        config.store_dir.display(),
        match config.flush {
            FlushKind::Sync => "sync",
            FlushKind::Async => "async",
        }
    )
}
