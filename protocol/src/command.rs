//! `RemotingCommand` and its two header encodings.
//!
//! JSON header (serialize type 0), as fastjson writes it:
//! `{"code":10,"extFields":{..},"flag":0,"language":"JAVA","opaque":1,"remark":..,
//!   "serializeTypeCurrentRPC":"JSON","version":475}`
//!
//! ROCKETMQ binary header (serialize type 1), all big-endian:
//! ```text
//! code:i16 | language:u8 | version:i16 | opaque:i32 | flag:i32
//! | remark_len:i32 | remark (UTF-8; length 0 = null)
//! | ext_len:i32 | { key_len:i16 | key | val_len:i32 | val }*
//! ```

use bytes::{Buf, BufMut, Bytes};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

use crate::ext::{ExtFields, HeaderError};
use crate::header::CommandHeader;

/// Flag bit 0: this command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the sender expects no response.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// `MQVersion.Version.V5_3_3.ordinal()`: the release whose protocol this implementation
/// speaks, sent as `version` in the commands we originate.
pub const SERVER_VERSION: i32 = 479;
/// `V4_9_4.ordinal()`: clients at or above it accept standard JSON bodies.
pub const V4_9_4: i32 = 401;

/// The header encoding of a command (the high byte of the second frame word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

impl SerializeType {
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }
}

/// `LanguageCode`: a name in JSON headers, a byte in binary ones. Kept as the byte so that
/// values this build does not know survive a round trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanguageCode(pub u8);

impl LanguageCode {
    pub const JAVA: Self = Self(0);
    pub const CPP: Self = Self(1);
    pub const DOTNET: Self = Self(2);
    pub const PYTHON: Self = Self(3);
    pub const DELPHI: Self = Self(4);
    pub const ERLANG: Self = Self(5);
    pub const RUBY: Self = Self(6);
    pub const OTHER: Self = Self(7);
    pub const HTTP: Self = Self(8);
    pub const GO: Self = Self(9);
    pub const PHP: Self = Self(10);
    pub const OMS: Self = Self(11);
    pub const RUST: Self = Self(12);
    pub const NODE_JS: Self = Self(13);

    const NAMES: [&'static str; 14] = [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
        "PHP", "OMS", "RUST", "NODE_JS",
    ];

    /// The enum name as Java writes it; unknown bytes are written as `OTHER`.
    pub fn name(self) -> &'static str {
        Self::NAMES.get(self.0 as usize).copied().unwrap_or("OTHER")
    }

    /// Unknown names map to `OTHER` rather than failing the whole command.
    pub fn from_name(name: &str) -> Self {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(Self::OTHER, |i| Self(i as u8))
    }
}

impl fmt::Debug for LanguageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One remoting request or response.
#[derive(Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code, or response code for responses (0 = success).
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    /// Request id; a response echoes its request's.
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    /// The header encoding this command arrived in, or will be sent in.
    pub serialize_type: SerializeType,
    pub body: Bytes,
}

impl fmt::Debug for RemotingCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotingCommand")
            .field("code", &self.code)
            .field("language", &self.language)
            .field("version", &self.version)
            .field("opaque", &self.opaque)
            .field("flag", &self.flag)
            .field("remark", &self.remark)
            .field("ext_fields", &self.ext_fields)
            .field("serialize_type", &self.serialize_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl RemotingCommand {
    /// A new request. Language is `JAVA` on purpose: Java clients before 5.x fail to parse
    /// a JSON header whose language they do not know (`RUST` was added in 5.x), and a
    /// server never learns anything useful from ours.
    pub fn request(code: i32) -> Self {
        Self {
            code,
            language: LanguageCode::JAVA,
            version: SERVER_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            serialize_type: SerializeType::Json,
            body: Bytes::new(),
        }
    }

    /// The response to this request: same opaque and header encoding, response flag set.
    pub fn response(&self, code: i32) -> Self {
        Self {
            code,
            language: LanguageCode::JAVA,
            version: SERVER_VERSION,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: ExtFields::new(),
            serialize_type: self.serialize_type,
            body: Bytes::new(),
        }
    }

    /// A response with an error remark.
    pub fn error_response(&self, code: i32, remark: impl Into<String>) -> Self {
        self.response(code).with_remark(remark)
    }

    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> Self {
        self.serialize_type = serialize_type;
        self
    }

    pub fn with_oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    /// Replaces `extFields` with the given typed header.
    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        self.ext_fields = header.to_ext_fields();
        self
    }

    /// Reads `extFields` as a typed header.
    pub fn header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::from_ext_fields(&self.ext_fields)
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Encodes the header in `self.serialize_type`, except that a code or version that does
    /// not fit the binary header's `i16` falls back to JSON (the peer decodes by the type
    /// byte, so this stays correct where Java would silently truncate).
    pub fn encode_header(&self) -> (SerializeType, Vec<u8>) {
        let fits_binary = i16::try_from(self.code).is_ok() && i16::try_from(self.version).is_ok();
        match self.serialize_type {
            SerializeType::RocketMq if fits_binary => {
                (SerializeType::RocketMq, self.encode_binary_header())
            }
            _ => (SerializeType::Json, self.encode_json_header()),
        }
    }

    fn encode_json_header(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(128 + self.ext_fields.len() * 32);
        let string = |out: &mut Vec<u8>, s: &str| {
            serde_json::to_writer(out, s).expect("writing a JSON string into a Vec cannot fail");
        };
        // Keys sorted as fastjson writes them.
        let _ = write!(out, "{{\"code\":{}", self.code);
        if !self.ext_fields.is_empty() {
            out.extend_from_slice(b",\"extFields\":{");
            for (i, (k, v)) in self.ext_fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(&mut out, k);
                out.push(b':');
                string(&mut out, v);
            }
            out.push(b'}');
        }
        let _ = write!(
            out,
            ",\"flag\":{},\"language\":\"{}\",\"opaque\":{}",
            self.flag,
            self.language.name(),
            self.opaque
        );
        if let Some(remark) = &self.remark {
            out.extend_from_slice(b",\"remark\":");
            string(&mut out, remark);
        }
        let _ = write!(
            out,
            ",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":{}}}",
            self.version
        );
        out
    }

    fn encode_binary_header(&self) -> Vec<u8> {
        let ext_len: usize = self
            .ext_fields
            .iter()
            .map(|(k, v)| 2 + k.len() + 4 + v.len())
            .sum();
        let remark = self.remark.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(BINARY_FIXED_LEN + 8 + remark.len() + ext_len);
        out.put_i16(self.code as i16);
        out.put_u8(self.language.0);
        out.put_i16(self.version as i16);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        out.put_i32(remark.len() as i32);
        out.put_slice(remark.as_bytes());
        out.put_i32(ext_len as i32);
        for (k, v) in self.ext_fields.iter() {
            // Keys are header field names; a key over i16::MAX is a caller bug.
            assert!(
                k.len() <= i16::MAX as usize,
                "extFields key of {} bytes",
                k.len()
            );
            out.put_i16(k.len() as i16);
            out.put_slice(k.as_bytes());
            out.put_i32(v.len() as i32);
            out.put_slice(v.as_bytes());
        }
        out
    }

    /// Decodes a header of the given type; the body is attached by the caller.
    pub fn decode_header(
        serialize_type: SerializeType,
        header: &[u8],
    ) -> Result<Self, HeaderDecodeError> {
        match serialize_type {
            SerializeType::Json => decode_json_header(header),
            SerializeType::RocketMq => decode_binary_header(header),
        }
    }
}

/// code(2) + language(1) + version(2) + opaque(4) + flag(4).
const BINARY_FIXED_LEN: usize = 13;

/// A command header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderDecodeError {
    #[error("JSON header is malformed: {reason}")]
    Json { reason: String },
    #[error("binary header field {field} at offset {offset} needs {need} bytes, {have} left")]
    UnexpectedEof {
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("binary header field {field} has negative length {length}")]
    NegativeLength { field: &'static str, length: i64 },
    #[error("binary header field {field} is not UTF-8")]
    InvalidUtf8 { field: &'static str },
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, HeaderDecodeError> {
    // serde would also take a JSON array for a struct; a header is always an object.
    if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(HeaderDecodeError::Json {
            reason: "header is not a JSON object".to_owned(),
        });
    }
    let raw: JsonHeader = serde_json::from_slice(header).map_err(|e| HeaderDecodeError::Json {
        reason: e.to_string(),
    })?;
    Ok(RemotingCommand {
        code: raw.code,
        language: raw.language,
        version: raw.version,
        opaque: raw.opaque,
        flag: raw.flag,
        remark: raw.remark,
        ext_fields: raw.ext_fields,
        serialize_type: SerializeType::Json,
        body: Bytes::new(),
    })
}

struct BinaryReader<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> BinaryReader<'a> {
    fn take(&mut self, field: &'static str, need: usize) -> Result<&'a [u8], HeaderDecodeError> {
        let have = self.buf.len() - self.offset;
        if need > have {
            return Err(HeaderDecodeError::UnexpectedEof {
                field,
                offset: self.offset,
                need,
                have,
            });
        }
        let slice = &self.buf[self.offset..self.offset + need];
        self.offset += need;
        Ok(slice)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, HeaderDecodeError> {
        Ok(self.take(field, 2)?.get_i16())
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, HeaderDecodeError> {
        Ok(self.take(field, 4)?.get_i32())
    }

    fn len(&mut self, field: &'static str, length: i64) -> Result<usize, HeaderDecodeError> {
        usize::try_from(length).map_err(|_| HeaderDecodeError::NegativeLength { field, length })
    }

    fn string(&mut self, field: &'static str, len: usize) -> Result<String, HeaderDecodeError> {
        let bytes = self.take(field, len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| HeaderDecodeError::InvalidUtf8 { field })
    }
}

fn decode_binary_header(header: &[u8]) -> Result<RemotingCommand, HeaderDecodeError> {
    let mut r = BinaryReader {
        buf: header,
        offset: 0,
    };
    let code = r.i16("code")? as i32;
    let language = LanguageCode(r.take("language", 1)?[0]);
    let version = r.i16("version")? as i32;
    let opaque = r.i32("opaque")?;
    let flag = r.i32("flag")?;
    let remark_len = r.i32("remark_len")?;
    let remark_len = r.len("remark_len", remark_len as i64)?;
    let remark = if remark_len > 0 {
        Some(r.string("remark", remark_len)?)
    } else {
        None
    };
    let ext_len = r.i32("ext_len")?;
    let ext_len = r.len("ext_len", ext_len as i64)?;
    let ext_bytes = r.take("ext_fields", ext_len)?;
    let mut ext = BinaryReader {
        buf: ext_bytes,
        offset: 0,
    };
    let mut ext_fields = ExtFields::new();
    while ext.offset < ext_bytes.len() {
        let key_len = ext.i16("ext_key_len")?;
        let key_len = ext.len("ext_key_len", key_len as i64)?;
        let key = ext.string("ext_key", key_len)?;
        let val_len = ext.i32("ext_value_len")?;
        let val_len = ext.len("ext_value_len", val_len as i64)?;
        let value = ext.string("ext_value", val_len)?;
        ext_fields.insert(key, value);
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMq,
        body: Bytes::new(),
    })
}

/// The JSON header as real clients send it: unknown keys ignored, `remark` absent or null,
/// numbers possibly quoted, `extFields` values of any scalar JSON type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonHeader {
    #[serde(default, deserialize_with = "lenient_i32")]
    code: i32,
    #[serde(default = "java", deserialize_with = "lenient_language")]
    language: LanguageCode,
    #[serde(default, deserialize_with = "lenient_i32")]
    version: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    opaque: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    flag: i32,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default, deserialize_with = "lenient_ext_fields")]
    ext_fields: ExtFields,
}

fn java() -> LanguageCode {
    LanguageCode::JAVA
}

/// A scalar JSON value coerced to a string the way fastjson would. `None` for null.
enum Scalar {
    Null,
    Text(String),
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON scalar")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Text(if v { "true" } else { "false" }.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
    // Nested values are not header fields; keep their JSON text rather than fail.
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Scalar::Text(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Scalar::Text(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(0),
        Scalar::Text(s) => <i32 as crate::ext::HeaderValue>::parse_header(&s)
            .ok_or_else(|| de::Error::custom(format!("expected an int, found {s:?}"))),
    }
}

fn lenient_language<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(LanguageCode::JAVA),
        Scalar::Text(s) => Ok(match s.parse::<u8>() {
            Ok(byte) => LanguageCode(byte),
            Err(_) => LanguageCode::from_name(&s),
        }),
    }
}

fn lenient_ext_fields<'de, D: Deserializer<'de>>(d: D) -> Result<ExtFields, D::Error> {
    struct ExtVisitor;
    impl<'de> Visitor<'de> for ExtVisitor {
        type Value = ExtFields;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an extFields object")
        }
        fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
            Ok(ExtFields::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<ExtFields, E> {
            Ok(ExtFields::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ExtFields, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
            let mut fields = ExtFields::with_capacity(map.size_hint().unwrap_or(8).min(64));
            while let Some((key, value)) = map.next_entry::<String, Scalar>()? {
                // fastjson drops null-valued fields.
                if let Scalar::Text(value) = value {
                    fields.insert(key, value);
                }
            }
            Ok(fields)
        }
    }
    d.deserialize_any(ExtVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> RemotingCommand {
        RemotingCommand::decode_header(SerializeType::Json, text.as_bytes()).unwrap()
    }

    #[test]
    fn tolerates_what_real_clients_send() {
        // C++ core: trailing newline, remark null, no serializeTypeCurrentRPC, numbers and
        // booleans as extFields values, extra keys.
        let cmd = json(
            "{\"code\":310,\"extFields\":{\"e\":3,\"k\":false,\"AccessKey\":\"\",\"n\":null},\
             \"flag\":0,\"language\":\"CPP\",\"opaque\":7,\"remark\":null,\"version\":333,\"x\":[1]}\n",
        );
        assert_eq!(cmd.code, 310);
        assert_eq!(cmd.language, LanguageCode::CPP);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields.get("e"), Some("3"));
        assert_eq!(cmd.ext_fields.get("k"), Some("false"));
        assert_eq!(cmd.ext_fields.get("AccessKey"), Some(""));
        assert_eq!(cmd.ext_fields.get("n"), None);
        assert_eq!(
            json("{\"code\":\"105\",\"language\":\"KOTLIN\"}").language,
            LanguageCode::OTHER
        );
        assert_eq!(
            json("{\"code\":105,\"remark\":\"\"}").remark.as_deref(),
            Some("")
        );
        assert_eq!(
            json("{\"code\":105,\"extFields\":null}").ext_fields.len(),
            0
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(RemotingCommand::decode_header(SerializeType::Json, b"{\"code\":").is_err());
        assert!(RemotingCommand::decode_header(SerializeType::Json, b"[]").is_err());
        assert!(RemotingCommand::decode_header(SerializeType::Json, b"{\"code\":\"x\"}").is_err());
        assert!(RemotingCommand::decode_header(SerializeType::RocketMq, &[0, 1, 2]).is_err());
    }

    #[test]
    fn binary_header_bounds_every_length() {
        let mut cmd = RemotingCommand::request(105).with_serialize_type(SerializeType::RocketMq);
        cmd.ext_fields.insert("topic", "T");
        let (ty, bytes) = cmd.encode_header();
        assert_eq!(ty, SerializeType::RocketMq);
        for cut in 0..bytes.len() {
            assert!(
                RemotingCommand::decode_header(ty, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut negative = bytes.clone();
        negative[13..17].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            RemotingCommand::decode_header(ty, &negative),
            Err(HeaderDecodeError::NegativeLength {
                field: "remark_len",
                length: -1
            })
        );
    }

    #[test]
    fn binary_falls_back_to_json_for_wide_codes() {
        let cmd = RemotingCommand::request(200050).with_serialize_type(SerializeType::RocketMq);
        assert_eq!(cmd.encode_header().0, SerializeType::Json);
    }
}
