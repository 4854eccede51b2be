//! Commit-log records, batch bodies, properties and offset message ids.
//!
//! Properties checked, on arbitrary input:
//! - walking the input record by record with `decode_record` never panics and stays
//!   inside the buffer; `verify_crc = true` succeeds exactly when the body CRC matches,
//!   and then yields the same view as `verify_crc = false`;
//! - every decoded record, written back with `RecordWriter`, decodes to the same fields
//!   and, when the layout is the one the writer picks (same magic, ports within u16),
//!   is byte-for-byte the original record (BODYCRC recomputed when it did not match);
//! - the append-time patchers land where the decoder reads;
//! - `decode_batch` never panics, and a batch that decodes re-encodes to the original
//!   bytes with the MAGIC and BODYCRC words zeroed (what producers send);
//! - `iter_properties`, `decode_offset_msg_id` never panic and round-trip.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol::message::record::{
    decode_batch, decode_record, encode_batch_entry, pos_store_host, set_physical_offset,
    set_queue_offset, set_store_timestamp, RecordError, RecordView, RecordWriter,
    BATCH_ENTRY_OVERHEAD, MIN_RECORD_LEN, POS_BODY_CRC, POS_BORN_HOST,
};
use protocol::message::{
    body_crc, decode_offset_msg_id, encode_offset_msg_id, encode_properties, get_property,
    index_key_hash, iter_properties, sys_flag, tags_code,
};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);

    let mut offset = 0;
    while offset < buf.len() {
        let Ok(view) = decode_record(&buf, offset, false) else {
            break;
        };
        assert!(view.total_size >= MIN_RECORD_LEN);
        assert!(
            offset + view.total_size <= buf.len(),
            "record runs past the buffer"
        );
        let crc_ok = body_crc(&view.body) == view.body_crc;
        match decode_record(&buf, offset, true) {
            Ok(checked) => {
                assert!(crc_ok, "verify_crc accepted a wrong CRC");
                assert_eq!(checked, view, "verify_crc changed the view");
            }
            Err(RecordError::BodyCrc { .. }) => assert!(!crc_ok, "verify_crc rejected a good CRC"),
            Err(e) => panic!("verify_crc failed where the unchecked decode succeeded: {e}"),
        }
        check_record(&buf[offset..offset + view.total_size], &view);
        offset += view.total_size;
    }

    check_batch(&buf);

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((host, off)) = decode_offset_msg_id(text) {
            let id = encode_offset_msg_id(host, off);
            assert!(
                id.eq_ignore_ascii_case(text),
                "msgId {text} re-encodes as {id}"
            );
        }
    }

    check_properties(data);
});

fn check_record(original: &[u8], v: &RecordView) {
    // The decoder chooses each host's width from SYSFLAG, so the families match it.
    assert_eq!(
        v.born_host.is_ipv6(),
        v.sys_flag & sys_flag::BORNHOST_V6 != 0
    );
    assert_eq!(
        v.store_host.is_ipv6(),
        v.sys_flag & sys_flag::STOREHOSTADDRESS_V6 != 0
    );

    let w = RecordWriter {
        queue_id: v.queue_id,
        flag: v.flag,
        queue_offset: v.queue_offset,
        physical_offset: v.physical_offset,
        sys_flag: v.sys_flag,
        born_timestamp: v.born_timestamp,
        born_host: v.born_host,
        store_timestamp: v.store_timestamp,
        store_host: v.store_host,
        reconsume_times: v.reconsume_times,
        prepared_transaction_offset: v.prepared_transaction_offset,
        body: &v.body,
        topic: v.topic_str(),
        properties: &v.properties,
    };
    assert_eq!(w.effective_sys_flag(), v.sys_flag);
    assert_eq!(v.topic_str().len(), v.topic.len(), "topic_str lost bytes");
    let encoded = w.to_vec().expect("a decoded record re-encodes");
    assert_eq!(encoded.len(), w.encoded_len().expect("length"));

    // Same fields back, CRC now valid.
    let encoded = Bytes::from(encoded);
    let back = decode_record(&encoded, 0, true).expect("re-encoded record decodes with CRC");
    assert_eq!(back.total_size, encoded.len());
    assert_eq!(back.magic, w.magic());
    assert_eq!(back.body_crc, body_crc(&v.body));
    assert_eq!(
        (
            back.queue_id,
            back.flag,
            back.queue_offset,
            back.physical_offset,
            back.sys_flag
        ),
        (
            v.queue_id,
            v.flag,
            v.queue_offset,
            v.physical_offset,
            v.sys_flag
        )
    );
    assert_eq!(
        (
            back.born_timestamp,
            back.born_host,
            back.store_timestamp,
            back.store_host
        ),
        (
            v.born_timestamp,
            v.born_host,
            v.store_timestamp,
            v.store_host
        )
    );
    assert_eq!(
        (back.reconsume_times, back.prepared_transaction_offset),
        (v.reconsume_times, v.prepared_transaction_offset)
    );
    assert_eq!(
        (&back.body, &back.topic, &back.properties),
        (&v.body, &v.topic, &v.properties)
    );

    // Byte for byte, where the writer's layout is the original's: the writer picks V2
    // only for topics over 127 bytes, and the decoder keeps an i32 port modulo 2^16.
    let born_port_at = POS_BORN_HOST + if v.born_host.is_ipv6() { 16 } else { 4 };
    let store_port_at = pos_store_host(v.sys_flag) + if v.store_host.is_ipv6() { 16 } else { 4 };
    let ports_fit = [born_port_at, store_port_at].iter().all(|at| {
        let port = i32::from_be_bytes(original[*at..*at + 4].try_into().expect("4 bytes"));
        u16::try_from(port).is_ok()
    });
    if v.magic == w.magic() && ports_fit {
        let mut expected = original.to_vec();
        expected[POS_BODY_CRC..POS_BODY_CRC + 4].copy_from_slice(&body_crc(&v.body).to_be_bytes());
        assert_eq!(
            &encoded[..],
            &expected[..],
            "re-encoded record differs from the original"
        );
        if v.body_crc == body_crc(&v.body) {
            assert_eq!(&encoded[..], original);
        }
    }

    // The append-time patchers write where the decoder reads.
    let mut patched = encoded.to_vec();
    set_queue_offset(&mut patched, v.queue_offset ^ 0x55);
    set_physical_offset(&mut patched, v.physical_offset ^ 0x66);
    set_store_timestamp(&mut patched, v.store_timestamp ^ 0x77);
    let p = decode_record(&Bytes::from(patched), 0, true).expect("patched record decodes");
    assert_eq!(
        (p.queue_offset, p.physical_offset, p.store_timestamp),
        (
            v.queue_offset ^ 0x55,
            v.physical_offset ^ 0x66,
            v.store_timestamp ^ 0x77
        )
    );
    assert_eq!(
        (p.born_host, p.store_host, &p.body),
        (v.born_host, v.store_host, &v.body)
    );

    // The offset msgId of this record leads back to it.
    let id = encode_offset_msg_id(v.store_host, v.physical_offset);
    assert_eq!(
        decode_offset_msg_id(&id),
        Ok((v.store_host, v.physical_offset))
    );

    // Property lookups and the hashes derived from them.
    let tags = v.tags();
    let _ = tags_code(tags);
    if let Some(keys) = v.property("KEYS") {
        for key in keys.split(' ') {
            let _ = index_key_hash(v.topic_str(), key);
        }
    }
}

fn check_batch(buf: &Bytes) {
    const MAX: usize = 1024;
    let Ok(entries) = decode_batch(buf, MAX) else {
        return;
    };
    assert!(entries.len() <= MAX);
    let mut encoded = Vec::with_capacity(buf.len());
    let mut expected = buf.to_vec();
    let mut at = 0;
    for e in &entries {
        encode_batch_entry(&mut encoded, e.flag, &e.body, &e.properties)
            .expect("a decoded batch entry re-encodes");
        // Producers send MAGIC and BODYCRC as 0; the decoder ignores them.
        expected[at + 4..at + 12].fill(0);
        at += BATCH_ENTRY_OVERHEAD + e.body.len() + e.properties.len();
    }
    assert_eq!(at, buf.len(), "batch entries do not cover the body");
    assert_eq!(encoded, expected, "re-encoded batch differs");
    let back = decode_batch(&Bytes::from(encoded), MAX).expect("re-encoded batch decodes");
    assert_eq!(back, entries);
}

fn check_properties(data: &[u8]) {
    let count = iter_properties(data).count();
    let pairs: Vec<(&str, &str)> = iter_properties(data).collect();
    assert_eq!(pairs.len(), count);
    for (k, v) in &pairs {
        assert!(!k.is_empty() && !v.is_empty());
        assert!(!k.contains('\u{1}') && !k.contains('\u{2}') && !v.contains('\u{2}'));
    }
    // Writing the pairs back and reading them gives the same pairs; the last one wins.
    let raw = encode_properties(pairs.iter().copied());
    assert_eq!(iter_properties(&raw).collect::<Vec<_>>(), pairs);
    if let Some((k, v)) = pairs.last() {
        let expect = pairs.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v)| *v);
        assert_eq!(get_property(data, k), expect);
        assert_eq!(expect, Some(*v));
    }
}
