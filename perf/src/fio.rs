//! Runs `fio` for a raw-disk baseline and reads its JSON report.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `fio` is on `PATH` and runs.
pub fn available() -> Option<String> {
    let out = Command::new("fio").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One sequential fio job with 1 MiB blocks and O_DIRECT.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub file: PathBuf,
    pub read: bool,
    pub iodepth: usize,
    /// I/O engine of the queued jobs (`libaio`, `io_uring`).
    pub engine: String,
    /// `fdatasync` after every write (then the engine is `psync`, depth 1).
    pub fdatasync_each: bool,
    pub size_bytes: u64,
    pub runtime_secs: u64,
}

/// What a job measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub command: String,
    pub mib_s: f64,
    pub iops: f64,
    pub bytes: u64,
    pub runtime_ms: u64,
    /// Completion latency of the reads or writes.
    pub clat_p50_us: f64,
    pub clat_p99_us: f64,
    /// `fdatasync` latency, for `fdatasync_each` jobs.
    pub sync_p50_us: Option<f64>,
    pub sync_p99_us: Option<f64>,
}

impl Job {
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--name={}", self.name),
            format!("--filename={}", self.file.display()),
            format!("--rw={}", if self.read { "read" } else { "write" }),
            "--bs=1M".to_owned(),
            format!("--size={}", self.size_bytes),
            "--direct=1".to_owned(),
            // Like the commit log's segments: blocks reserved, file size unchanged.
            "--fallocate=keep".to_owned(),
            format!("--runtime={}", self.runtime_secs.max(1)),
            "--output-format=json".to_owned(),
        ];
        if self.fdatasync_each {
            a.extend(["--ioengine=psync".to_owned(), "--fdatasync=1".to_owned()]);
        } else {
            a.extend([
                format!("--ioengine={}", self.engine),
                format!("--iodepth={}", self.iodepth),
            ]);
        }
        a
    }

    /// Runs the job and parses its report.
    pub fn run(&self) -> Result<Outcome, String> {
        let args = self.args();
        let command = format!("fio {}", args.join(" "));
        let out = Command::new("fio")
            .args(&args)
            .output()
            .map_err(|e| format!("{command}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{command}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let report: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{command}: unreadable JSON report: {e}"))?;
        parse(&report, &self.name, self.read, command)
    }
}

fn parse(report: &Value, name: &str, read: bool, command: String) -> Result<Outcome, String> {
    let job = &report["jobs"][0];
    let error = job["error"].as_i64().unwrap_or(0);
    if error != 0 {
        return Err(format!("{command}: fio job error {error}"));
    }
    let dir = &job[if read { "read" } else { "write" }];
    let pct = |v: &Value, p: &str| v["percentile"][p].as_f64().map(|ns| ns / 1000.0);
    let bytes = dir["io_bytes"].as_u64().unwrap_or(0);
    let sync = &job["sync"]["lat_ns"];
    let has_sync = sync["N"].as_u64().unwrap_or(0) > 0;
    Ok(Outcome {
        name: name.to_owned(),
        command,
        mib_s: dir["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
        iops: dir["iops"].as_f64().unwrap_or(0.0),
        bytes,
        runtime_ms: dir["runtime"].as_u64().unwrap_or(0),
        clat_p50_us: pct(&dir["clat_ns"], "50.000000").unwrap_or(0.0),
        clat_p99_us: pct(&dir["clat_ns"], "99.000000").unwrap_or(0.0),
        sync_p50_us: has_sync.then(|| pct(sync, "50.000000")).flatten(),
        sync_p99_us: has_sync.then(|| pct(sync, "99.000000")).flatten(),
    })
}

/// Removes a job's file (fio leaves it behind).
pub fn remove_file(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sync_write_report() {
        let report: Value = serde_json::from_str(
            r#"{"jobs":[{"error":0,
                "write":{"bw_bytes":239674514,"iops":228.57,"io_bytes":67108864,"runtime":280,
                         "clat_ns":{"N":64,"percentile":{"50.000000":569344,"99.000000":22937600}}},
                "read":{"bw_bytes":0},
                "sync":{"lat_ns":{"N":63,"percentile":{"50.000000":3358720,"99.000000":7438336}}}}]}"#,
        )
        .unwrap();
        let o = parse(&report, "b", false, "fio".into()).unwrap();
        assert!((o.mib_s - 228.57).abs() < 0.01);
        assert_eq!(o.bytes, 64 << 20);
        assert!((o.clat_p50_us - 569.344).abs() < 1e-9);
        assert_eq!(o.sync_p99_us, Some(7438.336));
    }
}
