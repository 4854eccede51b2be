//! `hostcheck`: compares this machine with a tuning profile's host expectations and
//! prints what to change. Read-only. Exit code: 0 all checks pass (warnings allowed),
//! 1 a check failed, 2 usage error (bad flags, unreadable or invalid profile).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tuning::{BrokerSummary, Host, HostProfile, Options};

/// Compare this machine with a tuning profile (tuning/profiles/*.host.toml) and print
/// what to change. Changes nothing.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Host expectations file, e.g. tuning/profiles/nvme-throughput.host.toml.
    #[arg(long)]
    profile: PathBuf,
    /// The broker's store_dir (need not exist yet): its filesystem and disk are checked.
    #[arg(long, default_value = "./store")]
    data_dir: PathBuf,
    /// Shards the broker runs, if not the broker profile's (e.g. after --set shards=N).
    #[arg(long)]
    shards: Option<usize>,
    /// Read the resource limits of this process (the running broker) instead of
    /// hostcheck's own.
    #[arg(long)]
    pid: Option<u32>,
    /// Network interface whose interrupts are checked (repeatable; default: all
    /// interfaces backed by a device).
    #[arg(long = "net-iface")]
    net_ifaces: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Directory holding the sys/ and proc/ trees to read (tests).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let profile = match HostProfile::load(&args.profile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hostcheck: {e}");
            return ExitCode::from(2);
        }
    };
    let broker = match profile.broker_profile_path(&args.profile) {
        None => BrokerSummary::default(),
        Some(path) => match BrokerSummary::load(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("hostcheck: broker profile: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let host = Host::with_root(&args.root);
    let opts = Options {
        data_dir: args.data_dir,
        shards: args.shards,
        pid: args.pid,
        net_interfaces: args.net_ifaces,
    };
    let report = tuning::run(&host, &profile, broker, &opts);
    if args.json {
        println!("{}", tuning::report::json(&report));
    } else {
        print!("{}", tuning::report::table(&report));
    }
    if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
