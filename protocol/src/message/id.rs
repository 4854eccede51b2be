//! Message ids.
//!
//! *Offset msgId* (`MessageDecoder.createMessageId`): upper-case hex of the store host
//! (4 or 16 address bytes, then the port as an i32) followed by the 8-byte commit-log
//! offset: 32 hex characters for IPv4, 56 for IPv6. It leads back to one record.
//!
//! *Unique id* (`UNIQ_KEY`, `MessageClientIDSetter`): upper-case hex of
//! `ip (4|16) | pid:u16 | seed:i32 | millis since start of month:i32 | counter:u16`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xF) as usize] as char);
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// An offset msgId could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgIdError {
    #[error("message id has {len} characters; expected 32 (IPv4) or 56 (IPv6)")]
    Length { len: usize },
    #[error("message id is not hexadecimal")]
    NotHex,
    #[error("message id port {port} is out of range")]
    Port { port: i32 },
}

/// Encodes the offset msgId of the record at `offset` stored by `store_host`.
pub fn encode_offset_msg_id(store_host: SocketAddr, offset: i64) -> String {
    let mut out = String::with_capacity(56);
    match store_host.ip() {
        IpAddr::V4(ip) => push_hex(&mut out, &ip.octets()),
        IpAddr::V6(ip) => push_hex(&mut out, &ip.octets()),
    }
    push_hex(&mut out, &(store_host.port() as i32).to_be_bytes());
    push_hex(&mut out, &offset.to_be_bytes());
    out
}

/// Decodes an offset msgId into the store host and commit-log offset.
pub fn decode_offset_msg_id(msg_id: &str) -> Result<(SocketAddr, i64), MsgIdError> {
    let ip_len = match msg_id.len() {
        32 => 4,
        56 => 16,
        len => return Err(MsgIdError::Length { len }),
    };
    let bytes = parse_hex(msg_id).ok_or(MsgIdError::NotHex)?;
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&bytes[..16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let port = i32::from_be_bytes(bytes[ip_len..ip_len + 4].try_into().expect("4 bytes"));
    let port = u16::try_from(port).map_err(|_| MsgIdError::Port { port })?;
    let offset = i64::from_be_bytes(bytes[ip_len + 4..ip_len + 12].try_into().expect("8 bytes"));
    Ok((SocketAddr::new(ip, port), offset))
}

/// Generates `UNIQ_KEY` values. The protocol crate reads no clock: callers pass the time.
///
/// RocketMQ measures the time part from the start of the month in the JVM's local time
/// zone; this generator uses UTC. The part is only read back approximately
/// (`getNearlyTimeFromID`), so ids stay unique and well-formed either way.
#[derive(Debug, Clone)]
pub struct UniqIdGenerator {
    prefix: String,
    month_start_ms: i64,
    next_month_start_ms: i64,
    counter: u16,
}

impl UniqIdGenerator {
    /// `seed` stands where Java puts the class loader's hash: anything that differs
    /// between two processes with the same ip and pid.
    pub fn new(ip: IpAddr, pid: u32, seed: i32) -> Self {
        let mut prefix = String::with_capacity(44);
        match ip {
            IpAddr::V4(ip) => push_hex(&mut prefix, &ip.octets()),
            IpAddr::V6(ip) => push_hex(&mut prefix, &ip.octets()),
        }
        push_hex(&mut prefix, &(pid as u16).to_be_bytes());
        push_hex(&mut prefix, &seed.to_be_bytes());
        Self {
            prefix,
            month_start_ms: 0,
            next_month_start_ms: i64::MIN,
            counter: 0,
        }
    }

    /// The next id at wall-clock time `now_ms` (Unix epoch milliseconds).
    pub fn next_id(&mut self, now_ms: i64) -> String {
        // A clock outside 1970..=9999 is a broken clock; keep the arithmetic in range.
        const MAX_MS: i64 = 253_402_300_799_999;
        let now_ms = now_ms.clamp(0, MAX_MS);
        if now_ms >= self.next_month_start_ms || now_ms < self.month_start_ms - 1_000_000 {
            let (start, next) = month_bounds_utc(now_ms);
            self.month_start_ms = start;
            self.next_month_start_ms = next;
        }
        let mut diff = (now_ms - self.month_start_ms) as i32;
        if diff < 0 && diff > -1_000_000 {
            diff = 0; // clock stepped back a little (NTP), as Java tolerates
        }
        let mut out = String::with_capacity(self.prefix.len() + 12);
        out.push_str(&self.prefix);
        push_hex(&mut out, &diff.to_be_bytes());
        push_hex(&mut out, &self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        out
    }
}

/// Start of the UTC month containing `ms`, and of the next one, in epoch milliseconds.
fn month_bounds_utc(ms: i64) -> (i64, i64) {
    const DAY_MS: i64 = 86_400_000;
    let days = ms.div_euclid(DAY_MS);
    let (year, month, _) = civil_from_days(days);
    let start = days_from_civil(year, month, 1) * DAY_MS;
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let next = days_from_civil(ny, nm, 1) * DAY_MS;
    (start, next)
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_offset_msg_id() {
        let addr: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        // 0A000001 | 00002A9F | 0000000000000100
        assert_eq!(
            encode_offset_msg_id(addr, 256),
            "0A00000100002A9F0000000000000100"
        );
        assert_eq!(
            decode_offset_msg_id("0a00000100002a9f0000000000000100"),
            Ok((addr, 256))
        );
        assert_eq!(
            decode_offset_msg_id("0A"),
            Err(MsgIdError::Length { len: 2 })
        );
        assert_eq!(
            decode_offset_msg_id(&"G".repeat(32)),
            Err(MsgIdError::NotHex)
        );
        assert_eq!(
            decode_offset_msg_id("0A000001FFFFFFFF0000000000000100"),
            Err(MsgIdError::Port { port: -1 })
        );
    }

    #[test]
    fn uniq_ids_are_distinct_and_shaped() {
        let mut g = UniqIdGenerator::new("192.168.0.2".parse().unwrap(), 0x12345, 0x0BADF00D);
        // 2026-11-25T00:00:00Z; month start 2026-11-01T00:00:00Z = 1793491200000.
        let now = 1_795_564_800_000;
        let a = g.next_id(now);
        let b = g.next_id(now);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        // ip C0A80002, pid 0x2345 (truncated to u16), seed 0BADF00D, diff, counter 0000.
        let diff = (now - 1_793_491_200_000) as i32;
        assert_eq!(a, format!("C0A8000223450BADF00D{diff:08X}0000"));
        assert!(b.ends_with("0001"));
        let v6 = UniqIdGenerator::new("::1".parse().unwrap(), 1, 1).next_id(now);
        assert_eq!(g.next_id(i64::MIN).len(), 32);
        assert_eq!(g.next_id(i64::MAX).len(), 32);
        assert_eq!(v6.len(), 56);
    }

    #[test]
    fn month_bounds() {
        assert_eq!(month_bounds_utc(0), (0, 31 * 86_400_000));
        // 2024-02-15 → Feb 1 and Mar 1 of a leap year.
        let feb15 = days_from_civil(2024, 2, 15) * 86_400_000;
        let (s, n) = month_bounds_utc(feb15);
        assert_eq!((n - s) / 86_400_000, 29);
        assert_eq!(
            civil_from_days(days_from_civil(2026, 12, 31)),
            (2026, 12, 31)
        );
    }

    proptest! {
        #[test]
        fn offset_msg_id_round_trip(ip in any::<[u8; 16]>(), v6: bool, port: u16, offset: i64) {
            let ip = if v6 { IpAddr::V6(ip.into()) } else { IpAddr::V4([ip[0], ip[1], ip[2], ip[3]].into()) };
            let addr = SocketAddr::new(ip, port);
            let id = encode_offset_msg_id(addr, offset);
            prop_assert_eq!(decode_offset_msg_id(&id), Ok((addr, offset)));
        }
    }
}
