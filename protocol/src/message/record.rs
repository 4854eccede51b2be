//! The commit-log record, byte for byte as RocketMQ stores it (and sends it in pull
//! responses and replication), and the batch body producers send.
//!
//! ```text
//! off  size  field
//!   0     4  TOTALSIZE                 whole record, this field included
//!   4     4  MAGICCODE                 V1 0xDAA320A7 (topic len i8) | V2 0xDAA320AB (i16)
//!   8     4  BODYCRC                   IEEE CRC-32 of the body, masked to 31 bits
//!  12     4  QUEUEID
//!  16     4  FLAG                      user flag
//!  20     8  QUEUEOFFSET               logical offset in the consume queue
//!  28     8  PHYSICALOFFSET            commit-log offset of this record
//!  36     4  SYSFLAG
//!  40     8  BORNTIMESTAMP
//!  48   8|20 BORNHOST                  IPv4: 4 + port i32; IPv6 (sysflag 0x10): 16 + port
//!   .     8  STORETIMESTAMP
//!   .   8|20 STOREHOST                 IPv6 when sysflag 0x20
//!   .     4  RECONSUMETIMES
//!   .     8  PREPAREDTRANSACTIONOFFSET
//!   .  4+n   BODYLENGTH, BODY
//!   . 1|2+n  TOPICLENGTH, TOPIC        length i8 (V1) or i16 (V2)
//!   .  2+n   PROPERTIESLENGTH, PROPERTIES   `k\x01v\x02`...
//! ```
//! At the end of a segment a blank record `[len:i32][BLANK_MAGIC:i32]` fills the rest.
//!
//! Batch body (SEND_BATCH_MESSAGE), one entry per message:
//! `TOTALSIZE:i32 | MAGIC:i32 (0) | BODYCRC:i32 (0) | FLAG:i32 | BODYLEN:i32 BODY | PROPLEN:i16 PROPERTIES`

use bytes::{Buf, BufMut, Bytes};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::sys_flag;

pub const MAGIC_V1: i32 = -626843481;
pub const MAGIC_V2: i32 = -626843477;
pub const BLANK_MAGIC: i32 = -875286124;
/// The smallest blank record: length and magic.
pub const END_FILE_MIN_BLANK_LENGTH: usize = 8;

pub const POS_TOTAL_SIZE: usize = 0;
pub const POS_MAGIC: usize = 4;
pub const POS_BODY_CRC: usize = 8;
pub const POS_QUEUE_ID: usize = 12;
pub const POS_FLAG: usize = 16;
pub const POS_QUEUE_OFFSET: usize = 20;
pub const POS_PHYSICAL_OFFSET: usize = 28;
pub const POS_SYS_FLAG: usize = 36;
pub const POS_BORN_TIMESTAMP: usize = 40;
pub const POS_BORN_HOST: usize = 48;

const _: () = assert!(POS_QUEUE_OFFSET == 20 && POS_PHYSICAL_OFFSET == 28 && POS_SYS_FLAG == 36);

/// Host field width: 4-byte IPv4 or 16-byte IPv6, plus a 4-byte port.
pub fn host_len(v6: bool) -> usize {
    if v6 {
        20
    } else {
        8
    }
}

/// Where STORETIMESTAMP sits, which depends on the born host's family.
pub fn pos_store_timestamp(sys_flag: i32) -> usize {
    POS_BORN_HOST + host_len(sys_flag & sys_flag::BORNHOST_V6 != 0)
}

/// Where STOREHOST sits.
pub fn pos_store_host(sys_flag: i32) -> usize {
    pos_store_timestamp(sys_flag) + 8
}

/// Where BODYLENGTH sits.
pub fn pos_body_len(sys_flag: i32) -> usize {
    pos_store_host(sys_flag) + host_len(sys_flag & sys_flag::STOREHOSTADDRESS_V6 != 0) + 4 + 8
}

/// Fixed part with two IPv4 hosts, up to (not including) BODYLENGTH.
const MIN_FIXED_LEN: usize = 48 + 8 + 8 + 8 + 4 + 8;
/// Smallest possible record: fixed part, empty body, empty V1 topic, empty properties.
pub const MIN_RECORD_LEN: usize = MIN_FIXED_LEN + 4 + 1 + 2;

/// A record or batch could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record at {offset} needs {need} bytes, {have} available")]
    UnexpectedEof {
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("record at {offset} has total size {total_size}")]
    BadTotalSize { offset: usize, total_size: i32 },
    #[error("record at {offset} has magic {magic:#x}")]
    BadMagic { offset: usize, magic: i32 },
    #[error("record at {offset} is an end-of-segment blank of {len} bytes")]
    Blank { offset: usize, len: usize },
    #[error("record at {offset}: field {field} has length {length}, {remaining} bytes remain")]
    BadFieldLength {
        offset: usize,
        field: &'static str,
        length: i64,
        remaining: usize,
    },
    #[error(
        "record at {offset}: fields add up to {computed} bytes but total size is {total_size}"
    )]
    SizeMismatch {
        offset: usize,
        computed: usize,
        total_size: usize,
    },
    #[error("record at {offset}: body CRC {stored:#x} does not match computed {computed:#x}")]
    BodyCrc {
        offset: usize,
        stored: i32,
        computed: i32,
    },
    #[error("record at {offset}: topic is not UTF-8")]
    TopicNotUtf8 { offset: usize },
    #[error("topic of {len} bytes exceeds {max}")]
    TopicTooLong { len: usize, max: usize },
    #[error("properties of {len} bytes exceed {max}")]
    PropertiesTooLong { len: usize, max: usize },
    #[error("body of {len} bytes exceeds {max}")]
    BodyTooLong { len: usize, max: usize },
}

/// What a record is made of, as the broker knows it at append time.
#[derive(Debug, Clone, Copy)]
pub struct RecordWriter<'a> {
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    /// The host-family bits are set from `born_host` and `store_host`; the rest is kept.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a str,
    pub properties: &'a [u8],
}

impl RecordWriter<'_> {
    /// The sysFlag as written: the caller's, with the IPv6 bits matching the hosts.
    pub fn effective_sys_flag(&self) -> i32 {
        let mut flag = self.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOSTADDRESS_V6);
        if self.born_host.is_ipv6() {
            flag |= sys_flag::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            flag |= sys_flag::STOREHOSTADDRESS_V6;
        }
        flag
    }

    /// V2 only when the topic does not fit V1's signed byte (`autoMessageVersionOnTopicLen`).
    pub fn magic(&self) -> i32 {
        if self.topic.len() > i8::MAX as usize {
            MAGIC_V2
        } else {
            MAGIC_V1
        }
    }

    /// The encoded length, or why it cannot be encoded.
    pub fn encoded_len(&self) -> Result<usize, RecordError> {
        if self.topic.len() > i16::MAX as usize {
            return Err(RecordError::TopicTooLong {
                len: self.topic.len(),
                max: i16::MAX as usize,
            });
        }
        if self.properties.len() > i16::MAX as usize {
            return Err(RecordError::PropertiesTooLong {
                len: self.properties.len(),
                max: i16::MAX as usize,
            });
        }
        let topic_len_bytes = if self.magic() == MAGIC_V2 { 2 } else { 1 };
        let len = pos_body_len(self.effective_sys_flag())
            + 4
            + self.body.len()
            + topic_len_bytes
            + self.topic.len()
            + 2
            + self.properties.len();
        if len > i32::MAX as usize {
            return Err(RecordError::BodyTooLong {
                len: self.body.len(),
                max: i32::MAX as usize - len + self.body.len(),
            });
        }
        Ok(len)
    }

    /// Writes the record into `out`, which must be exactly `encoded_len()` bytes. Computes
    /// BODYCRC from the body.
    pub fn write(&self, out: &mut [u8]) -> Result<(), RecordError> {
        let len = self.encoded_len()?;
        assert_eq!(
            out.len(),
            len,
            "record buffer of {} bytes for a {len}-byte record",
            out.len()
        );
        let flag = self.effective_sys_flag();
        let magic = self.magic();
        let mut w = &mut out[..];
        w.put_i32(len as i32);
        w.put_i32(magic);
        w.put_i32(super::body_crc(self.body));
        w.put_i32(self.queue_id);
        w.put_i32(self.flag);
        w.put_i64(self.queue_offset);
        w.put_i64(self.physical_offset);
        w.put_i32(flag);
        w.put_i64(self.born_timestamp);
        put_host(&mut w, self.born_host);
        w.put_i64(self.store_timestamp);
        put_host(&mut w, self.store_host);
        w.put_i32(self.reconsume_times);
        w.put_i64(self.prepared_transaction_offset);
        w.put_i32(self.body.len() as i32);
        w.put_slice(self.body);
        if magic == MAGIC_V2 {
            w.put_i16(self.topic.len() as i16);
        } else {
            w.put_i8(self.topic.len() as i8);
        }
        w.put_slice(self.topic.as_bytes());
        w.put_i16(self.properties.len() as i16);
        w.put_slice(self.properties);
        assert!(
            w.is_empty(),
            "record writer left {} bytes unwritten",
            w.len()
        );
        Ok(())
    }

    /// Convenience: the record in a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = vec![0u8; self.encoded_len()?];
        self.write(&mut out)?;
        Ok(out)
    }
}

fn put_host(w: &mut &mut [u8], addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => w.put_slice(&ip.octets()),
        IpAddr::V6(ip) => w.put_slice(&ip.octets()),
    }
    w.put_i32(addr.port() as i32);
}

/// Patches the fields the store assigns at append time into an encoded record.
pub fn set_queue_offset(record: &mut [u8], queue_offset: i64) {
    record[POS_QUEUE_OFFSET..POS_QUEUE_OFFSET + 8].copy_from_slice(&queue_offset.to_be_bytes());
}

pub fn set_physical_offset(record: &mut [u8], physical_offset: i64) {
    record[POS_PHYSICAL_OFFSET..POS_PHYSICAL_OFFSET + 8]
        .copy_from_slice(&physical_offset.to_be_bytes());
}

pub fn set_store_timestamp(record: &mut [u8], store_timestamp: i64) {
    let sys_flag = i32::from_be_bytes([record[36], record[37], record[38], record[39]]);
    let pos = pos_store_timestamp(sys_flag);
    record[pos..pos + 8].copy_from_slice(&store_timestamp.to_be_bytes());
}

/// A decoded record; byte fields are zero-copy slices of the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub total_size: usize,
    pub magic: i32,
    pub body_crc: i32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: Bytes,
    pub properties: Bytes,
}

impl RecordView {
    pub fn topic_str(&self) -> &str {
        // Checked at decode time.
        std::str::from_utf8(&self.topic).unwrap_or_default()
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        super::get_property(&self.properties, name)
    }

    pub fn tags(&self) -> Option<&str> {
        self.property(super::property::TAGS)
    }
}

/// The header common to a record's bounds checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub total_size: usize,
    pub magic: i32,
}

/// Reads the first two words of the entry at `offset`: a record's size and magic, or the
/// blank that ends a segment. Does not validate the rest.
pub fn peek_record(buf: &[u8], offset: usize) -> Result<RecordHeader, RecordError> {
    let have = buf.len().saturating_sub(offset);
    if have < 8 {
        return Err(RecordError::UnexpectedEof {
            offset,
            need: 8,
            have,
        });
    }
    let at = &buf[offset..];
    let total_size = i32::from_be_bytes([at[0], at[1], at[2], at[3]]);
    let magic = i32::from_be_bytes([at[4], at[5], at[6], at[7]]);
    match magic {
        BLANK_MAGIC => {
            if total_size < END_FILE_MIN_BLANK_LENGTH as i32 {
                return Err(RecordError::BadTotalSize { offset, total_size });
            }
            Err(RecordError::Blank {
                offset,
                len: total_size as usize,
            })
        }
        MAGIC_V1 | MAGIC_V2 => {
            if total_size < MIN_RECORD_LEN as i32 {
                return Err(RecordError::BadTotalSize { offset, total_size });
            }
            let total_size = total_size as usize;
            if total_size > have {
                return Err(RecordError::UnexpectedEof {
                    offset,
                    need: total_size,
                    have,
                });
            }
            Ok(RecordHeader { total_size, magic })
        }
        _ => Err(RecordError::BadMagic { offset, magic }),
    }
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    offset: usize,
}

impl Reader<'_> {
    fn need(&self, field: &'static str, n: usize) -> Result<(), RecordError> {
        let remaining = self.end - self.pos;
        if n > remaining {
            return Err(RecordError::BadFieldLength {
                offset: self.offset,
                field,
                length: n as i64,
                remaining,
            });
        }
        Ok(())
    }
    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        self.need(field, 2)?;
        let v = (&self.buf[self.pos..]).get_i16();
        self.pos += 2;
        Ok(v)
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        self.need(field, 4)?;
        let v = (&self.buf[self.pos..]).get_i32();
        self.pos += 4;
        Ok(v)
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        self.need(field, 8)?;
        let v = (&self.buf[self.pos..]).get_i64();
        self.pos += 8;
        Ok(v)
    }
    fn bytes(&mut self, field: &'static str, len: i64) -> Result<Bytes, RecordError> {
        let remaining = self.end - self.pos;
        let n = usize::try_from(len)
            .ok()
            .filter(|n| *n <= remaining)
            .ok_or(RecordError::BadFieldLength {
                offset: self.offset,
                field,
                length: len,
                remaining,
            })?;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }
    fn host(&mut self, field: &'static str, v6: bool) -> Result<SocketAddr, RecordError> {
        let ip = if v6 {
            self.need(field, 16)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&self.buf[self.pos..self.pos + 16]);
            self.pos += 16;
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            self.need(field, 4)?;
            let at = &self.buf[self.pos..self.pos + 4];
            let ip = Ipv4Addr::new(at[0], at[1], at[2], at[3]);
            self.pos += 4;
            IpAddr::V4(ip)
        };
        let port = self.i32(field)?;
        // Java stores the port as an int; anything outside u16 is kept modulo, as Java's
        // InetSocketAddress would refuse it. Records we write always hold a real port.
        Ok(SocketAddr::new(ip, port as u16))
    }
}

/// Decodes the record at `offset` of `buf`, checking every length against the record's
/// TOTALSIZE and the buffer, and the fields adding up to TOTALSIZE exactly. With
/// `verify_crc` the body CRC is checked too.
pub fn decode_record(
    buf: &Bytes,
    offset: usize,
    verify_crc: bool,
) -> Result<RecordView, RecordError> {
    let RecordHeader { total_size, magic } = peek_record(buf, offset)?;
    let mut r = Reader {
        buf,
        pos: offset + 8,
        end: offset + total_size,
        offset,
    };
    let body_crc = r.i32("BODYCRC")?;
    let queue_id = r.i32("QUEUEID")?;
    let flag = r.i32("FLAG")?;
    let queue_offset = r.i64("QUEUEOFFSET")?;
    let physical_offset = r.i64("PHYSICALOFFSET")?;
    let sys_flag = r.i32("SYSFLAG")?;
    let born_timestamp = r.i64("BORNTIMESTAMP")?;
    let born_host = r.host("BORNHOST", sys_flag & sys_flag::BORNHOST_V6 != 0)?;
    let store_timestamp = r.i64("STORETIMESTAMP")?;
    let store_host = r.host("STOREHOST", sys_flag & sys_flag::STOREHOSTADDRESS_V6 != 0)?;
    let reconsume_times = r.i32("RECONSUMETIMES")?;
    let prepared_transaction_offset = r.i64("PREPAREDTRANSACTIONOFFSET")?;
    let body_len = r.i32("BODYLENGTH")?;
    let body = r.bytes("BODY", body_len as i64)?;
    let topic_len = if magic == MAGIC_V2 {
        r.i16("TOPICLENGTH")? as i64
    } else {
        r.need("TOPICLENGTH", 1)?;
        let v = buf[r.pos] as i8;
        r.pos += 1;
        // Java reads the V1 length as a signed byte; a negative one is corrupt.
        v as i64
    };
    let topic = r.bytes("TOPIC", topic_len)?;
    let properties_len = r.i16("PROPERTIESLENGTH")?;
    let properties = r.bytes("PROPERTIES", properties_len as i64)?;
    let computed = r.pos - offset;
    if computed != total_size {
        return Err(RecordError::SizeMismatch {
            offset,
            computed,
            total_size,
        });
    }
    if std::str::from_utf8(&topic).is_err() {
        return Err(RecordError::TopicNotUtf8 { offset });
    }
    if verify_crc {
        let computed = super::body_crc(&body);
        if computed != body_crc {
            return Err(RecordError::BodyCrc {
                offset,
                stored: body_crc,
                computed,
            });
        }
    }
    Ok(RecordView {
        total_size,
        magic,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic,
        properties,
    })
}

/// One message of a batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    pub properties: Bytes,
}

/// TOTALSIZE, MAGIC, BODYCRC, FLAG, BODYLEN, PROPLEN.
pub const BATCH_ENTRY_OVERHEAD: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Appends one batch entry as `MessageDecoder.encodeMessage` lays it out.
pub fn encode_batch_entry(
    out: &mut Vec<u8>,
    flag: i32,
    body: &[u8],
    properties: &[u8],
) -> Result<(), RecordError> {
    if properties.len() > i16::MAX as usize {
        return Err(RecordError::PropertiesTooLong {
            len: properties.len(),
            max: i16::MAX as usize,
        });
    }
    let total = BATCH_ENTRY_OVERHEAD + body.len() + properties.len();
    if total > i32::MAX as usize {
        return Err(RecordError::BodyTooLong {
            len: body.len(),
            max: i32::MAX as usize - BATCH_ENTRY_OVERHEAD - properties.len(),
        });
    }
    out.reserve(total);
    out.put_i32(total as i32);
    out.put_i32(0);
    out.put_i32(0);
    out.put_i32(flag);
    out.put_i32(body.len() as i32);
    out.put_slice(body);
    out.put_i16(properties.len() as i16);
    out.put_slice(properties);
    Ok(())
}

/// Splits a batch body into its messages, at most `max_messages` of them; every entry's
/// lengths must add up to its TOTALSIZE and stay inside the body.
pub fn decode_batch(body: &Bytes, max_messages: usize) -> Result<Vec<BatchEntry>, RecordError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < body.len() {
        if entries.len() == max_messages {
            return Err(RecordError::BadFieldLength {
                offset,
                field: "batch message count",
                length: entries.len() as i64 + 1,
                remaining: body.len() - offset,
            });
        }
        let have = body.len() - offset;
        if have < 4 {
            return Err(RecordError::UnexpectedEof {
                offset,
                need: 4,
                have,
            });
        }
        let total_size = (&body[offset..]).get_i32();
        if total_size < BATCH_ENTRY_OVERHEAD as i32 {
            return Err(RecordError::BadTotalSize { offset, total_size });
        }
        let total = total_size as usize;
        if total > have {
            return Err(RecordError::UnexpectedEof {
                offset,
                need: total,
                have,
            });
        }
        let mut r = Reader {
            buf: body,
            pos: offset + 12,
            end: offset + total,
            offset,
        };
        let flag = r.i32("FLAG")?;
        let body_len = r.i32("BODYLENGTH")?;
        let msg_body = r.bytes("BODY", body_len as i64)?;
        let properties_len = r.i16("PROPERTIESLENGTH")?;
        let properties = r.bytes("PROPERTIES", properties_len as i64)?;
        if r.pos - offset != total {
            return Err(RecordError::SizeMismatch {
                offset,
                computed: r.pos - offset,
                total_size: total,
            });
        }
        entries.push(BatchEntry {
            flag,
            body: msg_body,
            properties,
        });
        offset += total;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, a)), port)
    }

    /// A record written out by hand from the layout, field by field.
    #[test]
    fn golden_v1_record() {
        let props = b"TAGS\x01A\x02";
        let w = RecordWriter {
            queue_id: 3,
            flag: 0,
            queue_offset: 7,
            physical_offset: 0x100,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: v4(1, 5000),
            store_timestamp: 2,
            store_host: v4(2, 10911),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"hi",
            topic: "T",
            properties: props,
        };
        let mut golden: Vec<u8> = Vec::new();
        let total = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 2 + 1 + 1 + 2 + 7;
        golden.extend_from_slice(&(total as i32).to_be_bytes());
        golden.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]); // MAGIC V1
        golden.extend_from_slice(&((crc32fast::hash(b"hi") & 0x7FFF_FFFF) as i32).to_be_bytes());
        golden.extend_from_slice(&[0, 0, 0, 3]); // queue id
        golden.extend_from_slice(&[0, 0, 0, 0]); // flag
        golden.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]); // queue offset
        golden.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]); // physical offset
        golden.extend_from_slice(&[0, 0, 0, 0]); // sys flag
        golden.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]); // born ts
        golden.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0x13, 0x88]); // born host :5000
        golden.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]); // store ts
        golden.extend_from_slice(&[127, 0, 0, 2, 0, 0, 0x2A, 0x9F]); // store host :10911
        golden.extend_from_slice(&[0, 0, 0, 0]); // reconsume
        golden.extend_from_slice(&[0; 8]); // prepared tx offset
        golden.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        golden.extend_from_slice(&[1, b'T']);
        golden.extend_from_slice(&[0, 7, b'T', b'A', b'G', b'S', 1, b'A', 2]);
        assert_eq!(golden.len(), total);
        assert_eq!(w.to_vec().unwrap(), golden);
        let view = decode_record(&Bytes::from(golden), 0, true).unwrap();
        assert_eq!(view.store_timestamp, 2);
        assert_eq!(view.tags(), Some("A"));
        assert_eq!(pos_store_timestamp(view.sys_flag), 56);
    }

    #[test]
    fn blank_and_garbage() {
        let mut blank = vec![0u8; 16];
        blank[..4].copy_from_slice(&16i32.to_be_bytes());
        blank[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
        assert_eq!(
            decode_record(&Bytes::from(blank), 0, false),
            Err(RecordError::Blank { offset: 0, len: 16 })
        );
        let junk = Bytes::from_static(&[0, 0, 0, 100, 1, 2, 3, 4]);
        assert!(matches!(
            decode_record(&junk, 0, false),
            Err(RecordError::BadMagic { .. })
        ));
        assert!(matches!(
            decode_record(&junk, 4, false),
            Err(RecordError::UnexpectedEof { .. })
        ));
    }

    fn host() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(ip.into()), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(ip.into()), p)),
        ]
    }

    proptest! {
        #[test]
        fn record_round_trip(
            queue_id: i32, flag: i32, queue_offset: i64, physical_offset: i64,
            sys_flag in 0i32..0x800, born_timestamp: i64, store_timestamp: i64,
            born_host in host(), store_host in host(), reconsume_times: i32, prepared: i64,
            body in proptest::collection::vec(any::<u8>(), 0..300),
            topic in "[a-zA-Z0-9%_-]{0,200}",
            properties in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let w = RecordWriter {
                queue_id, flag, queue_offset, physical_offset, sys_flag, born_timestamp, born_host,
                store_timestamp, store_host, reconsume_times, prepared_transaction_offset: prepared,
                body: &body, topic: &topic, properties: &properties,
            };
            let bytes = Bytes::from(w.to_vec().unwrap());
            let v = decode_record(&bytes, 0, true).unwrap();
            prop_assert_eq!(v.total_size, bytes.len());
            prop_assert_eq!(v.magic, if topic.len() > 127 { MAGIC_V2 } else { MAGIC_V1 });
            prop_assert_eq!((v.queue_id, v.flag, v.queue_offset, v.physical_offset), (queue_id, flag, queue_offset, physical_offset));
            prop_assert_eq!(v.sys_flag, w.effective_sys_flag());
            prop_assert_eq!((v.born_timestamp, v.store_timestamp, v.born_host, v.store_host), (born_timestamp, store_timestamp, born_host, store_host));
            prop_assert_eq!((v.reconsume_times, v.prepared_transaction_offset), (reconsume_times, prepared));
            prop_assert_eq!(&v.body[..], &body[..]);
            prop_assert_eq!(v.topic_str(), topic.as_str());
            prop_assert_eq!(&v.properties[..], &properties[..]);
            // Every truncation is an error, never a panic.
            for cut in 0..bytes.len() {
                prop_assert!(decode_record(&bytes.slice(..cut), 0, false).is_err());
            }
            // Patching the append-time fields lands where the decoder reads them.
            let mut patched = bytes.to_vec();
            set_queue_offset(&mut patched, 11);
            set_physical_offset(&mut patched, 12);
            set_store_timestamp(&mut patched, 13);
            let p = decode_record(&Bytes::from(patched), 0, true).unwrap();
            prop_assert_eq!((p.queue_offset, p.physical_offset, p.store_timestamp), (11, 12, 13));
        }

        #[test]
        fn batch_round_trip(msgs in proptest::collection::vec((any::<i32>(), proptest::collection::vec(any::<u8>(), 0..64), proptest::collection::vec(any::<u8>(), 0..32)), 0..10)) {
            let mut body = Vec::new();
            for (flag, b, p) in &msgs {
                encode_batch_entry(&mut body, *flag, b, p).unwrap();
            }
            let body = Bytes::from(body);
            let entries = decode_batch(&body, 64).unwrap();
            prop_assert_eq!(entries.len(), msgs.len());
            for (e, (flag, b, p)) in entries.iter().zip(&msgs) {
                prop_assert_eq!(e.flag, *flag);
                prop_assert_eq!(&e.body[..], &b[..]);
                prop_assert_eq!(&e.properties[..], &p[..]);
            }
            if !msgs.is_empty() {
                prop_assert!(decode_batch(&body, msgs.len() - 1).is_err());
                prop_assert!(decode_batch(&body.slice(..body.len() - 1), 64).is_err());
            }
        }
    }
}
