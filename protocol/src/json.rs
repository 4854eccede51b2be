//! JSON bodies as Java's fastjson writes and reads them.
//!
//! fastjson writes maps with integer keys unquoted (`{"brokerAddrs":{0:"host:port"}}`),
//! which is not JSON. [`from_slice`] accepts it; [`to_vec`] with [`JsonStyle::Fastjson`]
//! produces it for clients older than 4.9.4 that did not ask for standard JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::V4_9_4;

/// A body could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("JSON body is malformed: {source}")]
pub struct JsonError {
    #[from]
    source: serde_json::Error,
}

/// How a body is written for a given client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// Standard JSON, keys quoted.
    Standard,
    /// fastjson's own dialect: integer map keys unquoted.
    Fastjson,
}

impl JsonStyle {
    /// RocketMQ's nameserver writes standard JSON when the client is at least V4_9_4 or
    /// asked with `acceptStandardJsonOnly`; older clients get fastjson's dialect.
    pub fn for_client(version: i32, accept_standard_json_only: bool) -> Self {
        if accept_standard_json_only || version >= V4_9_4 {
            JsonStyle::Standard
        } else {
            JsonStyle::Fastjson
        }
    }
}

/// Parses a body, accepting fastjson's unquoted object keys.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(first) => match quote_bare_keys(bytes) {
            Some(fixed) => serde_json::from_slice(&fixed).map_err(JsonError::from),
            None => Err(first.into()),
        },
    }
}

/// Serializes a body in the given style. In fastjson style, integer keys of objects named
/// in `integer_key_fields` are written unquoted, as fastjson writes `Map<Long, _>`.
pub fn to_vec<T: Serialize>(value: &T, style: JsonStyle, integer_key_fields: &[&str]) -> Vec<u8> {
    let standard =
        serde_json::to_vec(value).expect("serializing a body with string keys cannot fail");
    match style {
        JsonStyle::Standard => standard,
        JsonStyle::Fastjson => unquote_integer_keys(&standard, integer_key_fields),
    }
}

/// Rewrites bare object keys (`{0:"a", key:1}`) as quoted ones. `None` if there were
/// none, so the caller's original error stands.
fn quote_bare_keys(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() + 16);
    let mut changed = false;
    let mut i = 0;
    // Whether the next non-space token is in key position.
    let mut key_position = false;
    while i < input.len() {
        let c = input[i];
        match c {
            b'"' => {
                let end = string_end(input, i)?;
                out.extend_from_slice(&input[i..end]);
                i = end;
                key_position = false;
                continue;
            }
            b'{' => key_position = true,
            b',' => {
                // After a comma we are in key position only inside an object; a bare token
                // followed by ':' below settles it either way.
                key_position = true;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ if key_position && (c.is_ascii_alphanumeric() || c == b'-' || c == b'_') => {
                let start = i;
                let mut end = i;
                while end < input.len()
                    && (input[end].is_ascii_alphanumeric()
                        || matches!(input[end], b'-' | b'_' | b'.'))
                {
                    end += 1;
                }
                let mut after = end;
                while after < input.len() && input[after].is_ascii_whitespace() {
                    after += 1;
                }
                if after < input.len() && input[after] == b':' {
                    out.push(b'"');
                    out.extend_from_slice(&input[start..end]);
                    out.push(b'"');
                    changed = true;
                } else {
                    out.extend_from_slice(&input[start..end]);
                }
                i = end;
                key_position = false;
                continue;
            }
            _ => key_position = false,
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

/// Index just past the string starting at `start` (a `"`), or `None` if unterminated.
fn string_end(input: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < input.len() {
        match input[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// In standard JSON text, unquotes the integer keys of every object that is the value of
/// a key in `fields`.
fn unquote_integer_keys(json: &[u8], fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    // Depth of the objects whose keys we unquote: a stack of nesting depths.
    let mut depth = 0usize;
    let mut target_depths: Vec<usize> = Vec::new();
    let mut pending_target = false;
    let mut expect_key = false;
    while i < json.len() {
        let c = json[i];
        match c {
            b'"' => {
                let end = string_end(json, i).unwrap_or(json.len());
                let content = &json[i + 1..end.saturating_sub(1).max(i + 1)];
                let is_key = expect_key && json.get(end) == Some(&b':');
                if is_key && target_depths.last() == Some(&depth) && is_integer(content) {
                    out.extend_from_slice(content);
                } else {
                    out.extend_from_slice(&json[i..end]);
                }
                pending_target = is_key && fields.iter().any(|f| f.as_bytes() == content);
                expect_key = false;
                i = end;
                continue;
            }
            b'{' => {
                depth += 1;
                if pending_target {
                    target_depths.push(depth);
                }
                pending_target = false;
                expect_key = true;
            }
            b'}' => {
                if target_depths.last() == Some(&depth) {
                    target_depths.pop();
                }
                depth = depth.saturating_sub(1);
                expect_key = false;
            }
            b',' => expect_key = true,
            b':' => {}
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                // '[' or a scalar: whatever value this is, it is not a target object.
                pending_target = false;
                expect_key = false;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_integer(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn parses_fastjson_integer_keys() {
        let text = br#"{"brokerAddrs":{0:"127.0.0.1:10911", 1 : "127.0.0.2:10911"},"list":[0,1],"s":"a{0:b"}"#;
        let v: serde_json::Value = from_slice(text).unwrap();
        assert_eq!(v["brokerAddrs"]["0"], "127.0.0.1:10911");
        assert_eq!(v["brokerAddrs"]["1"], "127.0.0.2:10911");
        assert_eq!(v["list"][1], 1);
        assert_eq!(v["s"], "a{0:b");
        let m: BTreeMap<i64, String> = from_slice(br#"{-1:"x",7:"y"}"#).unwrap();
        assert_eq!(m[&-1], "x");
        assert!(from_slice::<serde_json::Value>(b"{0:").is_err());
        assert!(from_slice::<serde_json::Value>(b"[1 2]").is_err());
    }

    #[test]
    fn writes_fastjson_integer_keys_only_where_asked() {
        let v = serde_json::json!({
            "brokerAddrs": {"0": "a:1", "1": "b:2"},
            "other": {"0": "kept"},
            "nested": [{"brokerAddrs": {"2": "c:3", "x": {"3": "d"}}}],
            "s": "\"brokerAddrs\":{\"0\":1}"
        });
        let out = String::from_utf8(to_vec(&v, JsonStyle::Fastjson, &["brokerAddrs"])).unwrap();
        assert!(out.contains(r#""brokerAddrs":{0:"a:1",1:"b:2"}"#), "{out}");
        assert!(out.contains(r#""other":{"0":"kept"}"#), "{out}");
        assert!(out.contains(r#"{2:"c:3","x":{"3":"d"}}"#), "{out}");
        assert!(out.contains(r#""s":"\"brokerAddrs\":{\"0\":1}""#), "{out}");
        // And it parses back to the same value.
        let back: serde_json::Value = from_slice(out.as_bytes()).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            to_vec(&v, JsonStyle::Standard, &["brokerAddrs"]),
            serde_json::to_vec(&v).unwrap()
        );
    }

    #[test]
    fn style_follows_client_version() {
        assert_eq!(JsonStyle::for_client(400, false), JsonStyle::Fastjson);
        assert_eq!(JsonStyle::for_client(400, true), JsonStyle::Standard);
        assert_eq!(JsonStyle::for_client(401, false), JsonStyle::Standard);
    }
}
