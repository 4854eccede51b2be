//! The few `java.lang` conversions RocketMQ's filter leans on, reproduced so that a
//! property string turns into the same number (or fails the same way) as on a Java
//! broker: `Integer.valueOf`, `Long.valueOf`, `Double.valueOf`, `Boolean.valueOf` and
//! `Double.compareTo`.
//!
//! Deliberately ASCII-only: Java's integer parsing also accepts other Unicode decimal
//! digits (`Character.digit`), which no real message property uses.

use std::cmp::Ordering;

/// `Integer.valueOf(String)`: an optional `+`/`-`, then ASCII digits, in `i32` range.
/// Rust's `i32::from_str` accepts exactly that language.
pub(crate) fn parse_int(s: &str) -> Option<i32> {
    s.parse().ok()
}

/// `Long.valueOf(String)`, as [`parse_int`] for `i64`.
pub(crate) fn parse_long(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// `Boolean.valueOf(String)`: true only for "true", ignoring case; never fails.
pub(crate) fn parse_boolean(s: &str) -> bool {
    s.eq_ignore_ascii_case("true")
}

/// `Double.valueOf(String)` (`FloatingDecimal.readJavaFormatString`): surrounding
/// characters `<= ' '` are trimmed; then an optional sign and either `NaN`,
/// `Infinity`, a decimal number (`1`, `1.`, `.5`, `1e5`, `1.5E-3`) or a hexadecimal one
/// (`0x1.8p1`, binary exponent required), each optionally followed by one of `fFdD`.
pub(crate) fn parse_double(s: &str) -> Option<f64> {
    let s = s.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = match body {
        "NaN" => return Some(f64::NAN),
        "Infinity" => f64::INFINITY,
        _ if body.starts_with("0x") || body.starts_with("0X") => parse_hex(&body[2..])?,
        _ => parse_decimal(body)?,
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Strips one trailing type suffix (`f`, `F`, `d`, `D`) as Java allows.
fn strip_suffix(s: &str) -> &str {
    match s.as_bytes().last() {
        Some(b'f' | b'F' | b'd' | b'D') => &s[..s.len() - 1],
        _ => s,
    }
}

/// Unsigned decimal: `digits [. digits] [e [+-] digits]`, at least one mantissa digit.
fn parse_decimal(s: &str) -> Option<f64> {
    let s = strip_suffix(s);
    let b = s.as_bytes();
    let mut i = 0;
    let mut mantissa_digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        mantissa_digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    // The text is now plain ASCII decimal, which Rust rounds correctly (and saturates
    // huge exponents to infinity or zero, as Java does).
    s.parse().ok()
}

/// Unsigned hexadecimal after the `0x`: `hex [. hex] p [+-] digits`, correctly rounded
/// (round half to even), with subnormals.
fn parse_hex(s: &str) -> Option<f64> {
    let s = strip_suffix(s);
    let p = s.find(['p', 'P'])?;
    let (mantissa, exponent) = (&s[..p], &s[p + 1..]);
    let exp_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exp_digits.is_empty() || !exp_digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Clamp: anything beyond this is infinity or zero whatever the mantissa.
    let exp: i64 = exponent
        .parse::<i64>()
        .unwrap_or(if exponent.starts_with('-') {
            -100_000
        } else {
            100_000
        });
    let exp = exp.clamp(-100_000, 100_000);

    let (int_part, frac_part) = match mantissa.find('.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    // Keep the first 16 significant hex digits (64 bits); the rest only matter as a
    // sticky bit for rounding.
    let mut bits: u64 = 0;
    let mut kept = 0u32;
    let mut sticky = false;
    let mut scale: i64 = 0; // value = bits * 2^(scale + exp)
    for (digit_index, c) in int_part.chars().chain(frac_part.chars()).enumerate() {
        let d = c.to_digit(16)? as u64;
        let fractional = digit_index >= int_part.len();
        if kept == 0 && d == 0 {
            if fractional {
                scale -= 4;
            }
            continue;
        }
        if kept < 16 {
            bits = (bits << 4) | d;
            kept += 1;
            if fractional {
                scale -= 4;
            }
        } else {
            sticky |= d != 0;
            if !fractional {
                scale += 4;
            }
        }
    }
    if bits == 0 {
        return Some(0.0);
    }
    let e = scale + exp; // value = bits * 2^e (+ sticky)
    let width = 64 - i64::from(bits.leading_zeros());
    let top = e + width - 1; // exponent of the leading bit
    if top > 1023 {
        return Some(f64::INFINITY);
    }
    // Bits of precision available at this magnitude: 53 for normals, fewer below.
    let precision = if top >= -1022 { 53 } else { 53 - (-1022 - top) };
    if precision <= 0 {
        // Below half the smallest subnormal, or exactly half (ties to even: zero)
        // unless something lies beyond it.
        let half_min =
            precision == 0 && (bits.is_power_of_two() && sticky || !bits.is_power_of_two());
        return Some(if half_min { f64::from_bits(1) } else { 0.0 });
    }
    let drop = width - precision;
    let (mut m, mut e) = (bits, e);
    if drop > 0 {
        let drop = drop as u32;
        let rest = bits & ((1u64 << drop) - 1);
        let half = 1u64 << (drop - 1);
        m = bits >> drop;
        e += i64::from(drop);
        let above_half = rest > half || (rest == half && sticky);
        let tie = rest == half && !sticky;
        if above_half || (tie && m & 1 == 1) {
            m += 1;
        }
    }
    // m < 2^54 and the result is representable, so scaling is exact.
    Some(scale_by_power_of_two(m as f64, e))
}

/// `x * 2^k`, exact when the result is representable.
fn scale_by_power_of_two(mut x: f64, mut k: i64) -> f64 {
    let pow = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
    while k > 1000 {
        x *= pow(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= pow(-1000);
        k += 1000;
    }
    x * pow(k)
}

/// `Double.compareTo`: a total order in which `-0.0 < 0.0` and every NaN equals every
/// other NaN and is greater than everything else.
pub(crate) fn compare_double(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.total_cmp(&b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_java() {
        assert_eq!(parse_int("+10"), Some(10));
        assert_eq!(parse_int("-007"), Some(-7));
        assert_eq!(parse_int("2147483647"), Some(i32::MAX));
        assert_eq!(parse_int("2147483648"), None);
        for bad in ["", "+", "-", " 1", "1 ", "1.0", "0x1", "1L", "--1"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
        assert_eq!(parse_long("2147483648"), Some(2_147_483_648));
        assert_eq!(parse_long("9223372036854775808"), None);
    }

    #[test]
    fn doubles_parse_like_java() {
        let ok = [
            ("1", 1.0),
            ("  1.5 \n", 1.5),
            ("1.", 1.0),
            (".5", 0.5),
            ("-2e3", -2000.0),
            ("1.5E-1", 0.15),
            ("3f", 3.0),
            ("3.5D", 3.5),
            ("+Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("1e999", f64::INFINITY),
            ("1e-999", 0.0),
            ("0x1p3", 8.0),
            ("0x1.8p1", 3.0),
            ("0X.8P1", 1.0),
            ("-0x10p-4", -1.0),
            ("0x1p-1074", f64::from_bits(1)),
            ("0x1p-1075", 0.0),
            ("0x1.0000000000001p-1075", f64::from_bits(1)),
            ("0x1p1024", f64::INFINITY),
            ("0x1.fffffffffffffp1023", f64::MAX),
            ("0x1.00000000000008p0", 1.0),
            ("0x1.00000000000018p0", 1.0 + 2.0 * f64::EPSILON),
            ("0x1.000000000000080001p0", 1.0 + f64::EPSILON),
            ("0x0.0000000000000000001p76", 1.0),
        ];
        for (text, want) in ok {
            let got = parse_double(text).unwrap_or_else(|| panic!("{text:?} rejected"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text:?}: {got} != {want}");
        }
        assert!(parse_double("NaN").is_some_and(f64::is_nan));
        for bad in [
            "",
            " ",
            "inf",
            "infinity",
            "nan",
            "NAN",
            "e5",
            "1e",
            "1e+",
            "1.5.5",
            "1ff",
            "0x",
            "0x1",
            "0x.p1",
            "0x1p",
            "1,5",
            "--1",
            "Infinityf",
        ] {
            assert_eq!(parse_double(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn double_order_matches_java() {
        assert_eq!(compare_double(-0.0, 0.0), Ordering::Less);
        assert_eq!(compare_double(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(compare_double(f64::NAN, -f64::NAN), Ordering::Equal);
        assert_eq!(compare_double(1.0, 2.0), Ordering::Less);
    }

    #[test]
    fn booleans_parse_like_java() {
        assert!(parse_boolean("TrUe"));
        assert!(!parse_boolean("yes"));
        assert!(!parse_boolean(" true"));
    }
}
