//! `extFields`: the string map that carries every command's custom header.
//!
//! Java reflects each `CommandCustomHeader` field into this map as a string. Real clients
//! are looser than that (numbers and booleans as JSON values, booleans as `"0"`/`"1"`), so
//! values are coerced to strings when a header is decoded and parsed leniently by
//! [`HeaderValue`] when a typed header is read.

use std::fmt;

/// Insertion-ordered `extFields`. Headers carry a dozen fields or so, so a vector with a
/// linear lookup beats a hash map here and keeps the wire order stable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtFields {
    entries: Vec<(String, String)>,
}

impl ExtFields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, replacing an earlier value (Java's map semantics: the last one wins).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Reads a required field of a typed header.
    pub fn required<T: HeaderValue>(&self, key: &'static str) -> Result<T, HeaderError> {
        match self.get(key) {
            Some(raw) => T::parse_header(raw).ok_or(HeaderError::InvalidField {
                field: key,
                expected: T::EXPECTED,
                found: truncate_for_error(raw),
            }),
            None => Err(HeaderError::MissingField { field: key }),
        }
    }

    /// Reads an optional field. An empty string counts as absent, as fastjson does for
    /// non-string types; for strings the empty value is kept.
    pub fn optional<T: HeaderValue>(&self, key: &'static str) -> Result<Option<T>, HeaderError> {
        match self.get(key) {
            None => Ok(None),
            Some("") if !T::EMPTY_IS_VALUE => Ok(None),
            Some(raw) => T::parse_header(raw)
                .map(Some)
                .ok_or(HeaderError::InvalidField {
                    field: key,
                    expected: T::EXPECTED,
                    found: truncate_for_error(raw),
                }),
        }
    }

    /// Writes a typed value.
    pub fn put<T: HeaderValue>(&mut self, key: &str, value: &T) {
        self.insert(key, value.format_header());
    }

    /// Writes an optional typed value; `None` leaves the field out, as fastjson omits nulls.
    pub fn put_opt<T: HeaderValue>(&mut self, key: &str, value: &Option<T>) {
        if let Some(value) = value {
            self.put(key, value);
        }
    }
}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = ExtFields::new();
        for (k, v) in iter {
            fields.insert(k, v);
        }
        fields
    }
}

fn truncate_for_error(raw: &str) -> String {
    const LIMIT: usize = 64;
    if raw.len() <= LIMIT {
        return raw.to_owned();
    }
    let mut end = LIMIT;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

/// A typed header field could not be read from `extFields`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Java answers this case with "the custom field <x> is null".
    #[error("the custom field <{field}> is null")]
    MissingField { field: &'static str },
    #[error("the custom field <{field}> is not {expected}: {found:?}")]
    InvalidField {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
}

/// How a Java header field type is written to and read from `extFields`.
pub trait HeaderValue: Sized {
    /// Named in errors.
    const EXPECTED: &'static str;
    /// Whether `""` is a value (strings) or means absent (numbers, booleans).
    const EMPTY_IS_VALUE: bool = false;
    fn parse_header(raw: &str) -> Option<Self>;
    fn format_header(&self) -> String;
}

impl HeaderValue for String {
    const EXPECTED: &'static str = "a string";
    const EMPTY_IS_VALUE: bool = true;
    fn parse_header(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
    fn format_header(&self) -> String {
        self.clone()
    }
}

macro_rules! integer_header_value {
    ($($ty:ty => $expected:literal),*) => {$(
        impl HeaderValue for $ty {
            const EXPECTED: &'static str = $expected;
            fn parse_header(raw: &str) -> Option<Self> {
                let raw = raw.trim();
                if let Ok(v) = raw.parse::<$ty>() {
                    return Some(v);
                }
                // A JSON number coerced to a string may read "3.0"; accept integral floats.
                let f = raw.parse::<f64>().ok()?;
                // MAX as f64 rounds up (to 2^63 for i64), so bound it exclusively.
                (f.fract() == 0.0 && f >= <$ty>::MIN as f64 && f < <$ty>::MAX as f64 + 1.0)
                    .then_some(f as $ty)
            }
            fn format_header(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_header_value!(i32 => "an int", i64 => "a long");

impl HeaderValue for bool {
    const EXPECTED: &'static str = "a boolean";
    fn parse_header(raw: &str) -> Option<Self> {
        parse_bool(raw)
    }
    fn format_header(&self) -> String {
        if *self { "true" } else { "false" }.to_owned()
    }
}

/// Booleans as Java's fastjson accepts them, and as the C++ cores send them ("0"/"1").
pub fn parse_bool(raw: &str) -> Option<bool> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("true") || raw == "1" || raw.eq_ignore_ascii_case("y") {
        Some(true)
    } else if raw.eq_ignore_ascii_case("false") || raw == "0" || raw.eq_ignore_ascii_case("n") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_insert_wins_and_order_is_kept() {
        let mut f = ExtFields::new();
        f.insert("b", "1");
        f.insert("a", "2");
        f.insert("b", "3");
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![("b", "3"), ("a", "2")]);
    }

    #[test]
    fn lenient_values() {
        let f: ExtFields = [
            ("t", "true"),
            ("one", "1"),
            ("zero", "0"),
            ("n", "3.0"),
            ("bad", "x"),
            ("e", ""),
        ]
        .into_iter()
        .collect();
        assert!(f.required::<bool>("t").unwrap());
        assert!(f.required::<bool>("one").unwrap());
        assert!(!f.required::<bool>("zero").unwrap());
        assert_eq!(f.required::<i32>("n").unwrap(), 3);
        assert_eq!(f.required::<i64>("one").unwrap(), 1);
        assert_eq!(
            f.required::<i32>("bad"),
            Err(HeaderError::InvalidField {
                field: "bad",
                expected: "an int",
                found: "x".into()
            })
        );
        assert_eq!(
            f.required::<i32>("missing"),
            Err(HeaderError::MissingField { field: "missing" })
        );
        assert_eq!(f.optional::<i32>("e").unwrap(), None);
        let big: ExtFields = [
            ("x", "9223372036854775808"),
            ("y", "9.3e18"),
            ("z", "2147483647.0"),
        ]
        .into_iter()
        .collect();
        assert!(big.required::<i64>("x").is_err());
        assert!(big.required::<i64>("y").is_err());
        assert_eq!(big.required::<i32>("z").unwrap(), i32::MAX);
        assert_eq!(f.optional::<String>("e").unwrap(), Some(String::new()));
    }
}
