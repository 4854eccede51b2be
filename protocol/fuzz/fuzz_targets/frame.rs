//! Remoting frames: decode whatever arrives, re-encode every command and decode it again.
//!
//! Properties checked, on arbitrary input:
//! - `FrameDecoder::decode` never panics, only consumes whole frames, and gives the same
//!   commands and the same final outcome whether the input arrives at once or in chunks;
//! - every decoded command, re-encoded in each header encoding (JSON and ROCKETMQ
//!   binary), decodes to an equal command (up to the documented normalisations below),
//!   and re-encoding that decoded command gives the same bytes again (a fixed point);
//! - reading `extFields` as any typed header never panics, and a header that reads
//!   successfully survives `to_ext_fields` / `from_ext_fields` unchanged;
//! - the JSON body parsers (`protocol::json::from_slice`) never panic on the raw input,
//!   and bodies that parse survive a write / read in both JSON styles.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::body::{
    ClusterInfo, HeartbeatData, LockBatchRequestBody, RegisterBrokerBody,
    TopicConfigSerializeWrapper, TopicRouteData, BROKER_ADDRS_FIELDS,
};
use protocol::frame::FrameError;
use protocol::header::*;
use protocol::json::{self, JsonStyle};
use protocol::{FrameDecoder, LanguageCode, RemotingCommand, SerializeType};

const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(MAX_FRAME);

    // All at once.
    let mut buf = BytesMut::from(data);
    let mut whole = Vec::new();
    let outcome = drain(&decoder, &mut buf, &mut whole);
    for cmd in &whole {
        check_command(cmd);
    }

    // The same bytes in chunks, as a socket would deliver them.
    let chunk = data.first().map_or(1, |b| (*b as usize % 16) + 1);
    let mut buf = BytesMut::new();
    let mut chunked = Vec::new();
    let mut chunked_outcome = Ok(());
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        chunked_outcome = drain(&decoder, &mut buf, &mut chunked);
        if chunked_outcome.is_err() {
            break;
        }
    }
    assert_eq!(whole, chunked, "chunked delivery changed the commands");
    assert_eq!(
        outcome, chunked_outcome,
        "chunked delivery changed the outcome"
    );

    check_json_bodies(data);
});

/// Decodes until more bytes are needed (`Ok`) or the stream is broken (`Err`).
fn drain(
    decoder: &FrameDecoder,
    buf: &mut BytesMut,
    out: &mut Vec<RemotingCommand>,
) -> Result<(), FrameError> {
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Some(cmd)) => {
                assert!(buf.len() < before, "a command was decoded from no bytes");
                out.push(cmd);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                let needed = decoder.needed(buf).expect("decode said Ok(None)");
                assert!(needed > buf.len() && needed <= MAX_FRAME);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

fn check_command(cmd: &RemotingCommand) {
    for ty in [SerializeType::Json, SerializeType::RocketMq] {
        let mut c = cmd.clone();
        c.serialize_type = ty;
        // The binary encoder asserts on keys over i16::MAX bytes (a caller bug by its
        // contract); such keys can only come from a JSON header.
        if ty == SerializeType::RocketMq
            && c.ext_fields
                .iter()
                .any(|(k, _)| k.len() > i16::MAX as usize)
        {
            continue;
        }
        let Ok(wire) = c.encode() else {
            continue;
        };
        let wire = wire.freeze();
        let mut again = BytesMut::from(&wire[..]);
        let back = FrameDecoder::default()
            .decode(&mut again)
            .unwrap_or_else(|e| panic!("re-encoded {ty:?} frame does not decode: {e}"))
            .expect("re-encoded frame is whole");
        assert!(again.is_empty(), "re-encoded frame has trailing bytes");

        // A binary command whose code or version does not fit i16 is sent as JSON.
        let fits_binary = i16::try_from(c.code).is_ok() && i16::try_from(c.version).is_ok();
        let expect_ty = if ty == SerializeType::RocketMq && fits_binary {
            SerializeType::RocketMq
        } else {
            SerializeType::Json
        };
        assert_eq!(back.serialize_type, expect_ty);
        assert_eq!(back.code, c.code, "code");
        assert_eq!(back.version, c.version, "version");
        assert_eq!(back.opaque, c.opaque, "opaque");
        assert_eq!(back.flag, c.flag, "flag");
        assert_eq!(back.ext_fields, c.ext_fields, "ext_fields");
        assert_eq!(back.body, c.body, "body");
        // Binary headers cannot tell an empty remark from none; JSON names the language,
        // so a byte this build does not know comes back as OTHER.
        let (remark, language) = match expect_ty {
            SerializeType::RocketMq => (c.remark.clone().filter(|r| !r.is_empty()), c.language),
            SerializeType::Json => (c.remark.clone(), LanguageCode::from_name(c.language.name())),
        };
        assert_eq!(back.remark, remark, "remark");
        assert_eq!(back.language, language, "language");

        // Fixed point: the decoded command encodes to the very same frame.
        let rewire = back.encode().expect("a decoded command re-encodes");
        assert_eq!(&rewire[..], &wire[..], "re-encoding is not a fixed point");
    }

    check_headers(cmd);
}

/// Reads `extFields` as `H`; a header that reads must survive a round trip.
fn header<H: CommandHeader + PartialEq + std::fmt::Debug>(cmd: &RemotingCommand) -> Option<H> {
    let h = cmd.header::<H>().ok()?;
    let back = H::from_ext_fields(&h.to_ext_fields());
    assert_eq!(
        back.as_ref(),
        Ok(&h),
        "{} round trip",
        std::any::type_name::<H>()
    );
    Some(h)
}

macro_rules! headers {
    ($cmd:expr; $($ty:ty),* $(,)?) => {
        $( let _ = header::<$ty>($cmd); )*
    };
}

fn check_headers(cmd: &RemotingCommand) {
    headers!(cmd;
        // send.rs
        SendMessageRequestHeader, SendMessageResponseHeader,
        // client.rs
        PullMessageRequestHeader, PullMessageResponseHeader, QueryConsumerOffsetRequestHeader,
        OffsetResponseHeader, UpdateConsumerOffsetRequestHeader, UnregisterClientRequestHeader,
        ConsumerGroupRequestHeader, GetProducerConnectionListRequestHeader,
        ConsumerSendMsgBackRequestHeader, CheckTransactionStateRequestHeader,
        // broker.rs
        TopicRequestHeader, GetMaxOffsetRequestHeader, QueueRequestHeader,
        SearchOffsetRequestHeader, TimestampResponseHeader, QueryMessageRequestHeader,
        QueryMessageResponseHeader, ViewMessageRequestHeader, GetBrokerConfigResponseHeader,
        GetConsumeStatsRequestHeader, DeleteSubscriptionGroupRequestHeader,
        ResetOffsetRequestHeader,
        // namesrv.rs
        GetRouteInfoRequestHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
        BrokerIdentityRequestHeader, QueryDataVersionResponseHeader,
        BrokerHeartbeatRequestHeader, PutKvConfigRequestHeader, KvConfigKeyRequestHeader,
        GetKvConfigResponseHeader, GetKvListByNamespaceRequestHeader, BrokerNameRequestHeader,
        WipeWritePermOfBrokerResponseHeader, AddWritePermOfBrokerResponseHeader,
        GetTopicsByClusterRequestHeader, DeleteTopicFromNamesrvRequestHeader,
        GetBrokerMemberGroupRequestHeader,
    );
    if let Some(h) = header::<CreateTopicRequestHeader>(cmd) {
        let _ = h.check();
    }
    if let Some(h) = header::<EndTransactionRequestHeader>(cmd) {
        let _ = h.check();
    }
    if let Some(v2) = header::<SendMessageRequestHeaderV2>(cmd) {
        let v1 = SendMessageRequestHeader::from(v2.clone());
        assert_eq!(SendMessageRequestHeaderV2::from(v1), v2, "V2 -> V1 -> V2");
    }
    if let Ok(h) = SendMessageRequestHeader::from_request(cmd.code, &cmd.ext_fields) {
        let _ = h.is_batch(cmd.code);
    }
}

/// Parses `data` as `T`; if it parses, writing it in either style and reading it back
/// must give the same value. Bodies holding an opaque JSON value with a float in it are
/// not compared: serde_json's default float parsing is not guaranteed to round-trip.
fn body<T>(data: &[u8], opaque: impl Fn(&T) -> Vec<&serde_json::Value>)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = json::from_slice::<T>(data) else {
        return;
    };
    if opaque(&value).into_iter().any(has_float) {
        return;
    }
    for style in [JsonStyle::Standard, JsonStyle::Fastjson] {
        let text = json::to_vec(&value, style, BROKER_ADDRS_FIELDS);
        let back: T = json::from_slice(&text).unwrap_or_else(|e| {
            panic!(
                "{style:?} output of {} does not parse: {e}\n{}",
                std::any::type_name::<T>(),
                String::from_utf8_lossy(&text)
            )
        });
        assert_eq!(
            back,
            value,
            "{style:?} round trip of {}",
            std::any::type_name::<T>()
        );
    }
}

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fn check_json_bodies(data: &[u8]) {
    body::<TopicRouteData>(data, |v| v.topic_queue_mapping_by_broker.iter().collect());
    body::<HeartbeatData>(data, |_| Vec::new());
    body::<ClusterInfo>(data, |_| Vec::new());
    body::<LockBatchRequestBody>(data, |_| Vec::new());
    body::<TopicConfigSerializeWrapper>(data, |v| {
        v.topic_queue_mapping_info_map
            .iter()
            .chain(v.topic_queue_mapping_detail_map.iter())
            .collect()
    });
    body::<RegisterBrokerBody>(data, |v| {
        let w = &v.topic_config_serialize_wrapper;
        w.topic_queue_mapping_info_map
            .iter()
            .chain(w.topic_queue_mapping_detail_map.iter())
            .collect()
    });
}
