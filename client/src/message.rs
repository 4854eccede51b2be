//! Messages as applications see them: [`Message`] to send, [`MessageExt`] received,
//! [`SendResult`] back from a send. Properties use RocketMQ's names (`TAGS`, `KEYS`,
//! `DELAY`, `UNIQ_KEY`, ...), so messages interoperate with Java clients.

use crate::error::{ClientError, Result};
use bytes::Bytes;
use flate2::Compression;
use protocol::message::{
    self, decode_record, encode_properties, iter_properties, property, sys_flag, RecordError,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

pub use protocol::body::MessageQueue;

/// Bodies larger than this are zlib-compressed before sending
/// (`compressMsgBodyOverHowmuch`).
pub const COMPRESS_OVER_BYTES: usize = 4096;
/// `compressLevel`.
const COMPRESS_LEVEL: u32 = 5;
/// ZLIB in the compression-type bits of sysFlag (5.x; 4.x reads COMPRESSED as zlib).
const ZLIB_TYPE: i32 = 0x300;
/// The largest decompressed body accepted (a compressed body can expand a lot).
const MAX_INFLATED_BYTES: usize = 64 << 20;

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub flag: i32,
    pub body: Bytes,
    /// User and system properties; `TAGS`, `KEYS` and the delay and timer properties
    /// have setters below.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            ..Self::default()
        }
    }

    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.properties.insert(property::TAGS.into(), tags.into());
        self
    }

    /// Keys for lookup by key (space separated on the wire).
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        self.properties
            .insert(property::KEYS.into(), joined.join(" "));
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// Delay level 1..=18 (1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h
    /// on a default broker).
    pub fn with_delay_level(self, level: i32) -> Self {
        self.with_property(property::DELAY_TIME_LEVEL, level.to_string())
    }

    /// Deliver at this wall-clock time (epoch milliseconds; timer messages, 5.x).
    pub fn with_deliver_time_ms(self, epoch_ms: i64) -> Self {
        self.with_property(property::TIMER_DELIVER_MS, epoch_ms.to_string())
    }

    /// Deliver after this many milliseconds (timer messages, 5.x).
    pub fn with_delay_ms(self, ms: i64) -> Self {
        self.with_property(property::TIMER_DELAY_MS, ms.to_string())
    }

    pub fn tags(&self) -> Option<&str> {
        self.property(property::TAGS)
    }

    pub fn keys(&self) -> Vec<&str> {
        split_keys(self.property(property::KEYS))
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    /// The properties string as the wire carries it.
    pub(crate) fn encoded_properties(&self) -> Vec<u8> {
        encode_properties(
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Checks what a broker would refuse anyway, before anything is sent.
    pub(crate) fn validate(&self, max_body_bytes: usize) -> Result<()> {
        check_topic(&self.topic)?;
        if self.body.is_empty() {
            return Err(ClientError::InvalidMessage("the body is empty".into()));
        }
        if self.body.len() > max_body_bytes {
            return Err(ClientError::InvalidMessage(format!(
                "the body is {} bytes; the limit is {max_body_bytes}",
                self.body.len()
            )));
        }
        for (k, v) in &self.properties {
            let bad = |c: char| c == '\u{1}' || c == '\u{2}';
            if k.is_empty() || k.contains(bad) || v.contains(bad) {
                return Err(ClientError::InvalidMessage(format!(
                    "property {k:?} has an empty name or a separator character"
                )));
            }
        }
        Ok(())
    }
}

/// `KEYS` holds keys separated by spaces.
fn split_keys(keys: Option<&str>) -> Vec<&str> {
    keys.map(|k| k.split(' ').filter(|k| !k.is_empty()).collect())
        .unwrap_or_default()
}

/// RocketMQ's topic name rule: 1..=127 characters of `[A-Za-z0-9_%|-]`.
pub(crate) fn check_topic(topic: &str) -> Result<()> {
    let valid = !topic.is_empty()
        && topic.len() <= 127
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_%|-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ClientError::InvalidMessage(format!(
            "topic {topic:?} must be 1..=127 characters of A-Z a-z 0-9 _ % | -"
        )))
    }
}

/// Compresses `body` as RocketMQ producers do when it is over the threshold; returns the
/// body to send and the sysFlag bits to add.
pub(crate) fn maybe_compress(body: &Bytes, over: usize) -> (Bytes, i32) {
    if body.len() <= over {
        return (body.clone(), 0);
    }
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(body.len() / 2),
        Compression::new(COMPRESS_LEVEL),
    );
    let compressed = z.write_all(body).and_then(|()| z.finish());
    match compressed {
        Ok(data) if data.len() < body.len() => {
            (Bytes::from(data), sys_flag::COMPRESSED | ZLIB_TYPE)
        }
        _ => (body.clone(), 0),
    }
}

/// The body as the producer meant it.
fn decompress(body: Bytes, flag: i32) -> std::result::Result<Bytes, String> {
    if flag & sys_flag::COMPRESSED == 0 {
        return Ok(body);
    }
    match flag & sys_flag::COMPRESSION_TYPE_MASK {
        0 | ZLIB_TYPE => {
            let mut out = Vec::with_capacity(body.len() * 3);
            flate2::read::ZlibDecoder::new(&body[..])
                .take(MAX_INFLATED_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib: {e}"))?;
            if out.len() > MAX_INFLATED_BYTES {
                return Err(format!("inflates past {MAX_INFLATED_BYTES} bytes"));
            }
            Ok(Bytes::from(out))
        }
        other => Err(format!(
            "compression type {:#x} is not supported (only zlib)",
            other
        )),
    }
}

/// A message as stored by a broker and received by a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub topic: String,
    pub queue_id: i32,
    pub broker_name: String,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub flag: i32,
    pub sys_flag: i32,
    pub body: Bytes,
    pub properties: BTreeMap<String, String>,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body_crc: i32,
    pub store_size: usize,
}

impl MessageExt {
    /// The id applications use: the producer's `UNIQ_KEY`, else the offset id.
    pub fn msg_id(&self) -> String {
        self.property(property::UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .map_or_else(|| self.offset_msg_id(), str::to_owned)
    }

    /// The broker's id: store host and commit-log offset.
    pub fn offset_msg_id(&self) -> String {
        message::id::encode_offset_msg_id(self.store_host, self.commit_log_offset)
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }

    pub fn tags(&self) -> Option<&str> {
        self.property(property::TAGS)
    }

    pub fn keys(&self) -> Vec<&str> {
        split_keys(self.property(property::KEYS))
    }

    pub fn message_queue(&self) -> MessageQueue {
        MessageQueue {
            topic: self.topic.clone(),
            broker_name: self.broker_name.clone(),
            queue_id: self.queue_id,
        }
    }

    /// Decodes the records of a pull body (or one record of a check request).
    pub fn decode_all(body: &Bytes, broker_name: &str) -> Result<Vec<MessageExt>, RecordError> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let view = decode_record(body, at, false)?;
            at += view.total_size;
            let props: BTreeMap<String, String> = iter_properties(&view.properties)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let body = match decompress(view.body.clone(), view.sys_flag) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(offset = view.physical_offset, error = %e, "body left compressed");
                    view.body.clone()
                }
            };
            out.push(MessageExt {
                topic: view.topic_str().to_owned(),
                queue_id: view.queue_id,
                broker_name: broker_name.to_owned(),
                queue_offset: view.queue_offset,
                commit_log_offset: view.physical_offset,
                flag: view.flag,
                sys_flag: view.sys_flag,
                body,
                properties: props,
                born_timestamp: view.born_timestamp,
                born_host: view.born_host,
                store_timestamp: view.store_timestamp,
                store_host: view.store_host,
                reconsume_times: view.reconsume_times,
                prepared_transaction_offset: view.prepared_transaction_offset,
                body_crc: view.body_crc,
                store_size: view.total_size,
            });
        }
        Ok(out)
    }
}

/// `SendStatus`: the message is stored in every case; the others say a durability
/// promise was not kept in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// What a broker answered to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The producer-assigned id (`UNIQ_KEY`); for a batch, the ids joined by commas.
    pub msg_id: String,
    /// The broker-assigned id (store host + commit-log offset).
    pub offset_msg_id: String,
    pub message_queue: MessageQueue,
    pub queue_offset: i64,
    pub transaction_id: Option<String>,
}
