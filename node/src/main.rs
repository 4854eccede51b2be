//! `broker`: the thread-per-core RocketMQ-compatible broker binary.

use clap::Parser;
use node::config::BrokerConfig;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// RocketMQ-compatible broker. Settings apply in this order, later winning: defaults,
/// `--config`, `--broker-conf`, env NAMESRV_ADDR, the other flags, `--set`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (every key optional; see node/broker.example.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// A RocketMQ `broker.conf` (Java properties); keys that map are applied.
    #[arg(long)]
    broker_conf: Option<PathBuf>,
    /// Nameserver addresses, `host:port;host:port` (default 127.0.0.1:9876).
    #[arg(long, short = 'n')]
    namesrv: Option<String>,
    /// Remoting listen address (default 0.0.0.0:10911). Port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Store root directory (default ./store).
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Shards (executors); 0 = one per core.
    #[arg(long)]
    shards: Option<usize>,
    /// Any config key, `key=value` (TOML value), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn load(args: &Args) -> Result<BrokerConfig, String> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load_toml(path).map_err(|e| e.to_string())?,
        None => BrokerConfig::default(),
    };
    if let Some(path) = &args.broker_conf {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let ignored = config
            .apply_broker_conf(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for key in ignored {
            tracing::warn!(%key, "broker.conf key not used by this broker");
        }
    }
    if let Ok(addr) = std::env::var("NAMESRV_ADDR") {
        if !addr.trim().is_empty() {
            config.namesrv_addr = split_addrs(&addr);
        }
    }
    if let Some(addr) = &args.namesrv {
        config.namesrv_addr = split_addrs(addr);
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.store_dir {
        config.store_dir = dir.clone();
    }
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    for kv in &args.set {
        config.apply_override(kv).map_err(|e| e.to_string())?;
    }
    if let Some(url) = config.namesrv_address_url.clone() {
        match client::addrsrv::fetch(&url, std::time::Duration::from_secs(5)) {
            Ok(addrs) => {
                tracing::info!(%url, ?addrs, "nameserver addresses from the address server");
                config.namesrv_addr = addrs;
            }
            Err(e) => {
                tracing::warn!(error = %e, "address server failed; using the configured nameservers")
            }
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn split_addrs(text: &str) -> Vec<String> {
    text.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic is a broken invariant: a shard that died would leave a process that
    // accepts connections and never answers them. End the whole process instead, so a
    // supervisor restarts it (recovery handles the rest) and clients fail over.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("broker: a thread panicked; aborting the process");
        std::process::abort();
    }));
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("broker: {e}");
            return ExitCode::from(2);
        }
    };
    let banner_config = config.clone();
    let result = node::broker::run(config, move |ready, stop| {
        for (addr, result) in &ready.registered {
            if let Err(e) = result {
                tracing::warn!(namesrv = %addr, error = %e, "first registration failed; retrying in the background");
            }
        }
        // One status line on stdout; tests and scripts read the address from it.
        println!("{}", node::broker::describe(&banner_config, &ready));
        let _ = std::io::stdout().flush();
        let signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ]);
        match signals {
            Ok(mut signals) => {
                std::thread::spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        tracing::info!(signal = sig, "signal received");
                        stop.stop();
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot install signal handlers"),
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("broker stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}
