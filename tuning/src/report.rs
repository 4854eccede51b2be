//! Renders a [`Report`] as a table (with the fixes under it) or as JSON.

use crate::check::{Report, Status};
use std::fmt::Write as _;

/// Longest cell shown in the table; the JSON keeps everything.
const MAX_CELL: usize = 48;

fn cell(text: &str) -> String {
    if text.chars().count() <= MAX_CELL {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX_CELL - 3).collect();
        format!("{cut}...")
    }
}

/// The human-readable report: a header, one row per check (check, expected, found,
/// status, first fix), then every fix and note of the rows that are not OK.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "hostcheck: profile {}", report.profile);
    let _ = writeln!(
        out,
        "host: kernel {}, {} CPUs online; broker: {} shard{}{}",
        report.kernel.as_deref().unwrap_or("?"),
        report
            .cpus_online
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        report.shards,
        if report.shards == 1 { "" } else { "s" },
        if report.cpu_pinning {
            format!(
                ", shard N pinned to CPU N (CPUs {})",
                crate::probe::format_cpu_list(&(0..report.shards as u32).collect::<Vec<_>>())
            )
        } else {
            ", not pinned".to_owned()
        },
    );
    let dir = if report.data_dir == report.resolved_data_dir {
        report.data_dir.display().to_string()
    } else {
        format!(
            "{} (as {})",
            report.data_dir.display(),
            report.resolved_data_dir.display()
        )
    };
    let store = match &report.mount {
        Some(m) => format!(
            "{dir} -> mount {} ({}, {} {}:{}), disk{} {}",
            m.mount_point.display(),
            m.fs_type,
            m.source,
            m.major,
            m.minor,
            if report.devices.len() == 1 { "" } else { "s" },
            if report.devices.is_empty() {
                "none".to_owned()
            } else {
                report
                    .devices
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        None => format!("{dir} -> no mount found"),
    };
    let _ = writeln!(out, "store: {store}");
    let _ = writeln!(out, "limits of: {}", report.limits_of);
    let _ = writeln!(out);

    let header = ["CHECK", "EXPECTED", "FOUND", "STATUS", "FIX"];
    let rows: Vec<[String; 5]> = report
        .checks
        .iter()
        .map(|c| {
            [
                c.check.clone(),
                cell(&c.expected),
                cell(&c.found),
                c.status.label().to_owned(),
                c.fix.first().cloned().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(header));
    for r in &rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }

    let problems: Vec<_> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Warn | Status::Fail))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nTo fix (nothing was changed):");
        for c in problems {
            let _ = writeln!(out, "  {} {}", c.status.label(), c.check);
            if let Some(n) = &c.note {
                let _ = writeln!(out, "      why: {n}");
            }
            for f in &c.fix {
                let _ = writeln!(out, "      {f}");
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} OK, {} WARN, {} FAIL, {} SKIP",
        report.count(Status::Ok),
        report.count(Status::Warn),
        report.count(Status::Fail),
        report.count(Status::Skip)
    );
    out
}

/// The report as pretty JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
