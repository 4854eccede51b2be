//! `nameserver`: the route server binary.

use clap::Parser;
use nameserver::config::NamesrvConfig;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// RocketMQ-compatible nameserver.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (every key optional; see nameserver/nameserver.example.toml).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Remoting listen address (default 0.0.0.0:9876). Port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve the HTTP address endpoint (GET /rocketmq/nsaddr) on this address.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Where KV config persists (default ~/namesrv/kvConfig.json).
    #[arg(long)]
    kv_config_path: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match NamesrvConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("nameserver: {e}");
                return ExitCode::from(2);
            }
        },
        None => NamesrvConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(http) = args.http_listen {
        config.http_listen = Some(http);
    }
    if let Some(path) = args.kv_config_path {
        config.kv_config_path = Some(path);
    }
    let expiry = config.broker_expiry_ms;
    let result = nameserver::server::run(config, move |bound| {
        // One status line on stdout; tests and scripts read the port from it.
        let http = bound
            .http
            .map(|a| format!(", http {a}"))
            .unwrap_or_default();
        println!(
            "nameserver listening on {}{http} (broker expiry {expiry} ms)",
            bound.remoting
        );
        let _ = std::io::stdout().flush();
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nameserver: {e}");
            ExitCode::FAILURE
        }
    }
}
