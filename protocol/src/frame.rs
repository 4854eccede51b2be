//! Remoting frames.
//!
//! ```text
//! +-----------------+--------------------------------+-------------+-----------+
//! | length: i32 BE  | serialize_type:u8 | hdr_len:u24 | header      | body      |
//! | = 4+hdr+body    | (one i32 BE word)              | hdr_len     | the rest  |
//! +-----------------+--------------------------------+-------------+-----------+
//! ```
//! `length` does not count itself. Netty's `LengthFieldBasedFrameDecoder` in RocketMQ
//! bounds the whole frame, prefix included, at 16 MiB; so does [`FrameDecoder`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::command::{HeaderDecodeError, RemotingCommand, SerializeType};

/// RocketMQ's `com.rocketmq.remoting.frameMaxLength` default, prefix included.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// The length prefix plus the serialize-type word.
pub const FRAME_PREFIX_BYTES: usize = 8;
const MAX_HEADER_BYTES: usize = 0x00FF_FFFF;

/// A frame could not be decoded. Every variant means the stream is unusable from here on:
/// the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {length} is outside 4..={max}")]
    FrameLength { length: i64, max: usize },
    #[error("header length {header_len} exceeds the {available} bytes after the type word")]
    HeaderLength { header_len: usize, available: usize },
    #[error("unknown serialize type {0}")]
    SerializeType(u8),
    #[error(transparent)]
    Header(#[from] HeaderDecodeError),
}

/// A command could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("header of {header_len} bytes exceeds the 24-bit header length field")]
    HeaderTooLarge { header_len: usize },
    #[error("frame of {frame_len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { frame_len: usize, max: usize },
}

/// Incremental decoder: feed it whatever the socket gave, take out whole commands.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// `max_frame_bytes` bounds a whole frame, length prefix included.
    pub fn new(max_frame_bytes: usize) -> Self {
        assert!(
            max_frame_bytes >= FRAME_PREFIX_BYTES,
            "max frame {max_frame_bytes} is below the prefix size"
        );
        assert!(
            max_frame_bytes <= i32::MAX as usize,
            "max frame {max_frame_bytes} does not fit the i32 length"
        );
        Self { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// How many bytes `buf` must hold before the next frame is complete, once its length
    /// prefix is known; lets the caller reserve once instead of growing repeatedly.
    /// Errors as soon as the prefix announces an impossible length.
    pub fn needed(&self, buf: &[u8]) -> Result<usize, FrameError> {
        if buf.len() < 4 {
            return Ok(4);
        }
        let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64;
        if length < 4 || length as u64 + 4 > self.max_frame_bytes as u64 {
            return Err(FrameError::FrameLength {
                length,
                max: self.max_frame_bytes - 4,
            });
        }
        Ok(length as usize + 4)
    }

    /// Takes one whole command off the front of `buf`, or `None` if more bytes are needed.
    /// The body is a zero-copy slice of `buf`'s allocation.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        let needed = self.needed(buf)?;
        if buf.len() < needed {
            return Ok(None);
        }
        let mut frame = buf.split_to(needed).freeze();
        frame.advance(4);
        decode_frame_body(frame).map(Some)
    }
}

/// Decodes one frame without its length prefix (type word, header, body).
pub fn decode_frame_body(mut frame: Bytes) -> Result<RemotingCommand, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::FrameLength {
            length: frame.len() as i64,
            max: DEFAULT_MAX_FRAME_BYTES - 4,
        });
    }
    let word = frame.get_u32();
    let serialize_type = SerializeType::from_code((word >> 24) as u8)
        .ok_or(FrameError::SerializeType((word >> 24) as u8))?;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(FrameError::HeaderLength {
            header_len,
            available: frame.len(),
        });
    }
    let header = frame.split_to(header_len);
    let mut command = RemotingCommand::decode_header(serialize_type, &header)?;
    command.body = frame;
    Ok(command)
}

impl RemotingCommand {
    /// The frame up to (not including) the body: length prefix, type word and header. A
    /// caller that already holds the body in its own buffers writes both with one vectored
    /// write instead of copying the body.
    pub fn encode_prefix(&self, max_frame_bytes: usize) -> Result<BytesMut, EncodeError> {
        let (serialize_type, header) = self.encode_header();
        if header.len() > MAX_HEADER_BYTES {
            return Err(EncodeError::HeaderTooLarge {
                header_len: header.len(),
            });
        }
        let frame_len = FRAME_PREFIX_BYTES + header.len() + self.body.len();
        if frame_len > max_frame_bytes {
            return Err(EncodeError::FrameTooLarge {
                frame_len,
                max: max_frame_bytes,
            });
        }
        let mut out = BytesMut::with_capacity(FRAME_PREFIX_BYTES + header.len());
        out.put_i32((frame_len - 4) as i32);
        out.put_u32(((serialize_type.code() as u32) << 24) | header.len() as u32);
        out.put_slice(&header);
        Ok(out)
    }

    /// The whole frame in one buffer (copies the body).
    pub fn encode(&self) -> Result<BytesMut, EncodeError> {
        let mut out = self.encode_prefix(DEFAULT_MAX_FRAME_BYTES)?;
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_reads_assemble_one_command() {
        let mut cmd = RemotingCommand::request(105)
            .with_opaque(9)
            .with_body(&b"hello"[..]);
        cmd.ext_fields.insert("topic", "TopicTest");
        let wire = cmd.encode().unwrap();
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            assert!(
                decoder.decode(&mut buf).unwrap().is_none(),
                "complete too early at {i}"
            );
            buf.put_u8(*byte);
        }
        let decoded = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, cmd);
        assert!(buf.is_empty());
    }

    #[test]
    fn impossible_lengths_fail_before_buffering() {
        let decoder = FrameDecoder::new(1024);
        for length in [i32::MIN, -1, 0, 3, 1021] {
            let mut buf = BytesMut::from(&length.to_be_bytes()[..]);
            assert!(
                matches!(
                    decoder.decode(&mut buf),
                    Err(FrameError::FrameLength { .. })
                ),
                "{length}"
            );
        }
        // 1020 + 4 = 1024: the largest frame allowed; incomplete, so no command yet.
        let mut buf = BytesMut::from(&1020i32.to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn header_longer_than_frame_is_rejected() {
        let mut buf = BytesMut::new();
        buf.put_i32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::HeaderLength {
                header_len: 100,
                available: 4
            })
        );
        let mut buf = BytesMut::new();
        buf.put_i32(4);
        buf.put_u32(7 << 24);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::SerializeType(7))
        );
    }

    /// A binary-header request, byte by byte from the documented layout.
    #[test]
    fn golden_binary_frame() {
        let mut cmd = RemotingCommand::request(105)
            .with_serialize_type(SerializeType::RocketMq)
            .with_opaque(7)
            .with_body(&b"xy"[..]);
        cmd.language = crate::LanguageCode::RUST;
        cmd.version = 479;
        cmd.ext_fields.insert("topic", "T");
        #[rustfmt::skip]
        let golden: &[u8] = &[
            0, 0, 0, 39,                 // length = 4 + 33 header + 2 body
            1, 0, 0, 33,                 // ROCKETMQ, header length 33
            0, 105,                      // code
            12,                          // language RUST
            0x01, 0xDF,                  // version 479
            0, 0, 0, 7,                  // opaque
            0, 0, 0, 0,                  // flag
            0, 0, 0, 0,                  // remark length 0 (null)
            0, 0, 0, 12,                 // ext length
            0, 5, b't', b'o', b'p', b'i', b'c',
            0, 0, 0, 1, b'T',
            b'x', b'y',                  // body
        ];
        assert_eq!(&cmd.encode().unwrap()[..], golden);
        let mut buf = BytesMut::from(golden);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf).unwrap().unwrap(),
            cmd
        );
    }

    /// A JSON-header response as RocketMQ's nameserver writes it.
    #[test]
    fn golden_json_frame() {
        let header = br#"{"code":17,"flag":1,"language":"JAVA","opaque":3,"remark":"no route","serializeTypeCurrentRPC":"JSON","version":479}"#;
        let mut golden = Vec::new();
        golden.extend_from_slice(&(4 + header.len() as i32).to_be_bytes());
        golden.extend_from_slice(&(header.len() as u32).to_be_bytes()); // type byte 0 = JSON
        golden.extend_from_slice(header);
        let request = RemotingCommand::request(105).with_opaque(3);
        let response = request.error_response(17, "no route");
        assert_eq!(&response.encode().unwrap()[..], &golden[..]);
        let decoded = FrameDecoder::default()
            .decode(&mut BytesMut::from(&golden[..]))
            .unwrap()
            .unwrap();
        assert_eq!(decoded, response);
        assert!(decoded.is_response() && !decoded.is_oneway());
    }

    #[test]
    fn oversized_frames_are_not_encoded() {
        let cmd = RemotingCommand::request(10).with_body(vec![0u8; 100]);
        assert!(matches!(
            cmd.encode_prefix(64),
            Err(EncodeError::FrameTooLarge { .. })
        ));
    }
}
