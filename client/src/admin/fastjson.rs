//! A tolerant reader for the JSON fastjson writes.
//!
//! fastjson writes `Map<K, V>` with whatever `K` serializes to as the key: unquoted
//! numbers (`{0:"a"}`) for `Map<Long, _>`, and whole objects for `Map<MessageQueue, _>`
//! (`{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}}`), as in
//! `TopicStatsTable`, `ConsumeStats` and `ResetOffsetBody`. Neither is JSON. This parser
//! accepts both and returns a `serde_json::Value` in which every non-string key has been
//! replaced by its compact JSON text (objects with sorted keys), so an object key can be
//! parsed back with [`key_object`].

use serde_json::{Map, Value};

/// Nesting deeper than this is refused (bounds the recursion).
const MAX_DEPTH: usize = 128;

/// Where and why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {offset}: {reason}")]
pub struct ParseError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Parses fastjson output (or plain JSON) into a value.
pub fn parse(text: &[u8]) -> Result<Value, ParseError> {
    let mut p = Parser { s: text, pos: 0 };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(value)
}

/// Parses a key that was an object (see the module comment) back into a type.
pub fn key_object<T: serde::de::DeserializeOwned>(key: &str) -> Option<T> {
    serde_json::from_str(key).ok()
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> ParseError {
        ParseError {
            offset: self.pos,
            reason,
        }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), ParseError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(_) => self.scalar(),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.expect(b'{', "expected '{'")?;
        let mut map = Map::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            let key = match self.peek() {
                Some(b'"') => self.string()?,
                Some(b'{') | Some(b'[') => self.value(depth + 1)?.to_string(),
                Some(_) => self.bare_token()?.to_owned(),
                None => return Err(self.err("unexpected end in object")),
            };
            self.expect(b':', "expected ':' after key")?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.err("expected ',' or '}' in object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.expect(b'[', "expected '['")?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']' in array")),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1; // opening quote
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return serde_json::from_slice(&self.s[start..self.pos]).map_err(|_| {
                        ParseError {
                            offset: start,
                            reason: "invalid string",
                        }
                    });
                }
                _ => self.pos += 1,
            }
        }
        Err(ParseError {
            offset: start,
            reason: "unterminated string",
        })
    }

    fn bare_token(&mut self) -> Result<&str, ParseError> {
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric()
                || matches!(self.s[self.pos], b'-' | b'+' | b'.' | b'_'))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("unexpected character"));
        }
        std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("not UTF-8"))
    }

    fn scalar(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let token = self.bare_token()?;
        match token {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            _ => serde_json::from_str::<serde_json::Number>(token)
                .map(Value::Number)
                .map_err(|_| ParseError {
                    offset: start,
                    reason: "invalid number or literal",
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::body::MessageQueue;

    #[test]
    fn object_keys_as_our_broker_writes_them() {
        let body = br#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":5,"maxOffset":3,"minOffset":0},{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"lastUpdateTimestamp":0,"maxOffset":0,"minOffset":0}}}"#;
        let v = parse(body).unwrap();
        let table = v["offsetTable"].as_object().unwrap();
        assert_eq!(table.len(), 2);
        let mut queues: Vec<(MessageQueue, i64)> = table
            .iter()
            .map(|(k, v)| (key_object(k).unwrap(), v["maxOffset"].as_i64().unwrap()))
            .collect();
        queues.sort();
        assert_eq!(queues[0].0.queue_id, 0);
        assert_eq!(queues[0].0.broker_name, "broker-a");
        assert_eq!(queues[0].1, 3);
        assert_eq!(queues[1].0.topic, "T");
    }

    #[test]
    fn java_fastjson_forms() {
        // Unquoted integer keys, floats, nested arrays, escapes, whitespace.
        let v = parse(br#" {"brokerAddrs":{0:"a:1", 1 : "b:2"},"tps":0.0,"l":[1,-2,{"x":"q\"{"}],"n":null,"t":true} "#).unwrap();
        assert_eq!(v["brokerAddrs"]["0"], "a:1");
        assert_eq!(v["brokerAddrs"]["1"], "b:2");
        assert_eq!(v["tps"].as_f64(), Some(0.0));
        assert_eq!(v["l"][1], -2);
        assert_eq!(v["l"][2]["x"], "q\"{");
        assert!(v["n"].is_null());
        assert_eq!(v["t"], true);
        // Key objects written by Java (field order differs) normalise to sorted keys.
        let v = parse(br#"{{"topic":"T","brokerName":"b","queueId":2}:7}"#).unwrap();
        let (k, _) = v.as_object().unwrap().iter().next().unwrap();
        let mq: MessageQueue = key_object(k).unwrap();
        assert_eq!(mq.queue_id, 2);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\"",
            b"{\"a\":}",
            b"[1 2]",
            b"\"abc",
            b"{} x",
            b"{:1}",
            b"nul",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(1000);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
