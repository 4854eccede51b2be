//! Output helpers: aligned tables, timestamps (UTC, no clock or time-zone crate), and
//! timestamp arguments.

use std::fmt::Write;

/// A table printed with columns padded to their widest cell, `#Header` style as
/// `mqadmin` prints them.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| format!("#{h}")).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "table row width");
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let last = line.len() - 1;
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                if i == last {
                    out.push_str(cell);
                } else {
                    let _ = write!(out, "{cell:<width$}  ", width = w);
                }
            }
            // Trailing padding of an empty last cell is not worth keeping.
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('\n');
        }
        out
    }
}

/// `key : value` lines, keys padded to the widest, as `brokerStatus` prints them.
pub fn key_values<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = writeln!(out, "{k:<width$} : {v}");
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC); `-` for 0 or less
/// (RocketMQ's "never").
pub fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Reads a timestamp argument: milliseconds since the epoch, `now`, or a UTC date-time
/// as `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.mmm]`, `YYYY-MM-DDTHH:MM:SS[.mmm]` or
/// mqadmin's `yyyy-MM-dd#HH:mm:ss:SSS`.
pub fn parse_timestamp(text: &str, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Some(now_ms);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = match text.find([' ', 'T', '#']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let mut date_parts = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, d) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    if date_parts.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut fields = [0i64; 4];
    if !time.is_empty() {
        let parts: Vec<&str> = time.split([':', '.']).collect();
        if parts.len() < 2 || parts.len() > 4 {
            return None;
        }
        for (slot, part) in fields.iter_mut().zip(&parts) {
            *slot = part.parse().ok()?;
        }
    }
    let [h, mi, s, ms] = fields;
    if h > 23 || mi > 59 || s > 60 || ms > 999 {
        return None;
    }
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000 + ms)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["Topic", "QID"]);
        t.row(vec!["TopicTest".into(), "0".into()]);
        t.row(vec!["T".into(), "12".into()]);
        assert_eq!(t.render(), "#Topic     #QID\nTopicTest  0\nT          12\n");
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(format_ms(0), "-");
        assert_eq!(format_ms(1), "1970-01-01 00:00:00.001");
        // 2024-02-29 12:34:56.789 UTC
        let ms = 1_709_210_096_789;
        assert_eq!(format_ms(ms), "2024-02-29 12:34:56.789");
        assert_eq!(parse_timestamp("2024-02-29 12:34:56.789", 0), Some(ms));
        assert_eq!(parse_timestamp("2024-02-29T12:34:56.789", 0), Some(ms));
        assert_eq!(parse_timestamp("2024-02-29#12:34:56:789", 0), Some(ms));
        assert_eq!(parse_timestamp("2024-02-29", 0), Some(1_709_164_800_000));
        assert_eq!(parse_timestamp("1709210096789", 0), Some(ms));
        assert_eq!(parse_timestamp("now", 42), Some(42));
        for bad in [
            "",
            "2024-13-01",
            "2024-02",
            "x",
            "2024-02-29 25:00:00",
            "2024-02-29 1",
        ] {
            assert_eq!(parse_timestamp(bad, 0), None, "{bad}");
        }
        for ms in [86_399_999i64, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_timestamp(&format_ms(ms), 0), Some(ms));
        }
    }

    #[test]
    fn key_values_pad_keys() {
        assert_eq!(key_values([("a", "1"), ("bbb", "2")]), "a   : 1\nbbb : 2\n");
    }
}
