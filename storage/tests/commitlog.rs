//! Commit log behaviour on the in-memory fault-injecting backend and on real files.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use bytes::Bytes;
use proptest::prelude::*;
use protocol::message::record::{decode_record, RecordWriter, BLANK_MAGIC};
use std::net::SocketAddr;
use std::time::Duration;
use storage::commitlog::{
    global_offset, spare_name, split_offset, CommitLog, CommitLogConfig, FlushMode, StoreError,
};
use storage::io::mem::{CrashMode, FaultPlan, MemBackend};
use storage::io::Backend;

mod common;
use common::run;

fn config(flush: FlushMode) -> CommitLogConfig {
    CommitLogConfig {
        segment_bytes: 64 * 1024,
        chunk_bytes: 8 * 1024,
        cache_bytes: 32 * 1024,
        max_record_bytes: 16 * 1024,
        flush,
        ..CommitLogConfig::new("/store/commitlog", 3)
    }
}

fn sync_mode() -> FlushMode {
    FlushMode::Sync {
        timeout: Duration::from_secs(5),
    }
}

fn host(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Body bytes derived from `i`, of `len` bytes.
fn body(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn writer<'a>(body: &'a [u8], queue_offset: i64) -> RecordWriter<'a> {
    RecordWriter {
        queue_id: 1,
        flag: 0,
        queue_offset,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 1,
        born_host: host(5000),
        store_timestamp: 0,
        store_host: host(10911),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        topic: "TopicTest",
        properties: b"TAGS\x01A\x02",
    }
}

/// Appends one record and waits for its acknowledgement; returns (offset, size).
async fn append_one<B: Backend>(
    log: &CommitLog<B>,
    i: u64,
    len: usize,
) -> Result<(i64, usize), StoreError> {
    let b = body(i, len);
    let mut recs = [writer(&b, i as i64)];
    let appended = log.append(&mut recs, 1_700_000_000_000 + i as i64).await?;
    log.wait_acked(appended.end).await?;
    Ok((recs[0].physical_offset, recs[0].encoded_len()?))
}

async fn check_record<B: Backend>(
    log: &CommitLog<B>,
    offset: i64,
    size: usize,
    i: u64,
    len: usize,
) {
    let bytes = log
        .read(offset, size)
        .await
        .unwrap_or_else(|e| panic!("read {offset}: {e}"));
    let view = decode_record(&Bytes::copy_from_slice(&bytes), 0, true).expect("valid record");
    assert_eq!(view.physical_offset, offset);
    assert_eq!(view.queue_offset, i as i64);
    assert_eq!(&view.body[..], &body(i, len)[..]);
    assert_eq!(view.store_timestamp, 1_700_000_000_000 + i as i64);
}

fn len_of(i: u64) -> usize {
    [10, 700, 3000, 9000, 100][(i % 5) as usize]
}

#[test]
fn offsets_carry_the_shard() {
    let o = global_offset(7, 12345);
    assert_eq!(split_offset(o), (7, 12345));
    assert!(o > 0);
}

#[test]
fn append_read_across_segments_and_restart() {
    run(|| async {
        let backend = MemBackend::new();
        let log = CommitLog::open(backend.clone(), config(sync_mode()))
            .await
            .unwrap();
        let mut acked = Vec::new();
        for i in 0..200u64 {
            let (offset, size) = append_one(&log, i, len_of(i)).await.unwrap();
            assert_eq!(split_offset(offset).0, 3);
            acked.push((offset, size, i));
        }
        assert!(
            split_offset(log.max_offset()).1 > 3 * 64 * 1024,
            "several segments used"
        );
        for &(offset, size, i) in &acked {
            check_record(&log, offset, size, i, len_of(i)).await;
        }
        // A scan walks every record in order, across segment ends, from memory...
        let scan_all = |log: CommitLog<MemBackend>| async move {
            let mut seen = Vec::new();
            let n = log
                .scan(log.min_offset(), |v| seen.push(v.queue_offset))
                .await
                .unwrap();
            assert_eq!(n, 200);
            assert_eq!(seen, (0..200).collect::<Vec<i64>>());
        };
        scan_all(log.clone()).await;
        let max = log.max_offset();
        drop(log);
        let log = CommitLog::open(backend.clone(), config(sync_mode()))
            .await
            .unwrap();
        assert_eq!(log.max_offset(), max);
        // ...and from disk.
        scan_all(log.clone()).await;
        for &(offset, size, i) in &acked {
            check_record(&log, offset, size, i, len_of(i)).await;
        }
        let (offset, size) = append_one(&log, 200, 50).await.unwrap();
        assert_eq!(offset, max);
        check_record(&log, offset, size, 200, 50).await;
    });
}

/// Sync mode: appends made while an earlier write is in flight are covered by the same
/// fdatasync as that write, so appenders acknowledged together stay one cohort.
#[test]
fn one_sync_covers_what_was_appended_while_the_previous_write_was_in_flight() {
    run(|| async {
        let backend = MemBackend::new();
        let log = CommitLog::open(backend.clone(), config(sync_mode()))
            .await
            .unwrap();
        let turns = || async {
            for _ in 0..10 {
                futures_lite::future::yield_now().await;
            }
        };
        backend.set_faults(FaultPlan {
            stall_writes_from: Some(backend.writes_issued() + 1),
            ..FaultPlan::default()
        });
        let (a, b) = (body(1, 300), body(2, 300));
        let first = log.append(&mut [writer(&a, 1)], 1).await.unwrap();
        turns().await; // the first record's write is issued, and stalls
        let issued = backend.writes_issued();
        let second = log.append(&mut [writer(&b, 2)], 2).await.unwrap();
        // The first write completes; the second (issued once it has) stalls.
        backend.set_faults(FaultPlan {
            stall_writes_from: Some(issued + 1),
            ..FaultPlan::default()
        });
        turns().await;
        assert_eq!(
            backend.writes_issued(),
            issued + 1,
            "the second write is issued"
        );
        assert_eq!(
            backend.syncs(),
            0,
            "the first record was synced without the one appended beside its write"
        );
        backend.set_faults(FaultPlan::default());
        log.wait_acked(first.end).await.unwrap();
        log.wait_acked(second.end).await.unwrap();
        assert_eq!(backend.syncs(), 1);
        log.close().await.unwrap();
    });
}

#[test]
fn acknowledged_records_survive_power_loss() {
    for mode in [
        CrashMode::DropUnsynced,
        CrashMode::KeepPrefix {
            writes: 0,
            torn_sectors: 3,
        },
        CrashMode::KeepPrefix {
            writes: 1,
            torn_sectors: 1,
        },
        CrashMode::KeepPrefix {
            writes: 3,
            torn_sectors: 0,
        },
    ] {
        run(move || async move {
            let backend = MemBackend::new();
            let log = CommitLog::open(backend.clone(), config(sync_mode()))
                .await
                .unwrap();
            let mut acked = Vec::new();
            for i in 0..60u64 {
                acked.push((append_one(&log, i, len_of(i)).await.unwrap(), i));
            }
            // Appended but never acknowledged: may or may not survive.
            let b = body(999, 2000);
            let mut extra = [writer(&b, 999), writer(&b, 1000)];
            log.append(&mut extra, 0).await.unwrap();
            backend.crash(mode);
            drop(log);
            let log = CommitLog::open(backend.clone(), config(sync_mode()))
                .await
                .unwrap();
            for &((offset, size), i) in &acked {
                check_record(&log, offset, size, i, len_of(i)).await;
            }
            // The log continues at a record boundary: new appends read back after
            // another restart.
            let (offset, size) = append_one(&log, 61, 500).await.unwrap();
            drop(log);
            let log = CommitLog::open(backend.clone(), config(sync_mode()))
                .await
                .unwrap();
            check_record(&log, offset, size, 61, 500).await;
            assert_eq!(log.max_offset(), offset + size as i64, "{mode:?}");
        });
    }
}

#[test]
fn failed_write_or_sync_poisons_and_nothing_unacked_is_claimed() {
    for plan in [
        FaultPlan {
            fail_write: Some(5),
            ..Default::default()
        },
        FaultPlan {
            fail_sync: Some(4),
            ..Default::default()
        },
        FaultPlan {
            short_write: Some(3),
            ..Default::default()
        },
        FaultPlan {
            capacity_bytes: Some(100 * 1024),
            ..Default::default()
        },
    ] {
        run(move || async move {
            let backend = MemBackend::new();
            let log = CommitLog::open(backend.clone(), config(sync_mode()))
                .await
                .unwrap();
            backend.set_faults(plan.clone());
            let mut acked = Vec::new();
            let mut failure = None;
            for i in 0..100u64 {
                match append_one(&log, i, 3000).await {
                    Ok(r) => acked.push((r, i)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let failure = failure.unwrap_or_else(|| panic!("{plan:?} never surfaced"));
            assert!(matches!(failure, StoreError::Poisoned { .. }), "{failure}");
            // Poisoned: every later append is refused.
            assert!(matches!(
                append_one(&log, 500, 10).await,
                Err(StoreError::Poisoned { .. })
            ));
            backend.set_faults(FaultPlan::default());
            backend.crash(CrashMode::DropUnsynced);
            drop(log);
            let log = CommitLog::open(backend.clone(), config(sync_mode()))
                .await
                .unwrap();
            for &((offset, size), i) in &acked {
                check_record(&log, offset, size, i, 3000).await;
            }
        });
    }
}

#[test]
fn async_mode_acknowledges_from_memory_and_syncs_on_close() {
    run(|| async {
        let backend = MemBackend::new();
        let flush = FlushMode::Async {
            max_unwritten_bytes: 1 << 20,
            sync_interval: Duration::from_millis(50),
        };
        let log = CommitLog::open(backend.clone(), config(flush))
            .await
            .unwrap();
        let mut acked = Vec::new();
        for i in 0..50u64 {
            acked.push((append_one(&log, i, len_of(i)).await.unwrap(), i));
        }
        // Readable at once, before any write.
        for &((offset, size), i) in &acked {
            check_record(&log, offset, size, i, len_of(i)).await;
        }
        log.close().await.unwrap();
        backend.crash(CrashMode::DropUnsynced);
        let log = CommitLog::open(backend.clone(), config(flush))
            .await
            .unwrap();
        for &((offset, size), i) in &acked {
            check_record(&log, offset, size, i, len_of(i)).await;
        }
    });
}

#[test]
fn reads_outside_the_log_are_refused() {
    run(|| async {
        let log = CommitLog::open(MemBackend::new(), config(sync_mode()))
            .await
            .unwrap();
        let (offset, size) = append_one(&log, 1, 100).await.unwrap();
        assert!(matches!(
            log.read(offset, size + 1).await,
            Err(StoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            log.read(global_offset(4, 0), 10).await,
            Err(StoreError::OutOfRange { .. })
        ));
        let b = vec![0u8; 20_000];
        let mut big = [writer(&b, 0)];
        assert!(matches!(
            log.append(&mut big, 0).await,
            Err(StoreError::RecordTooLarge { .. })
        ));
    });
}

#[test]
fn real_files_with_direct_io() {
    let dir = std::env::temp_dir().join(format!("commitlog-dma-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    run(move || async move {
        let backend = storage::io::dma::DmaBackend;
        let cfg = CommitLogConfig {
            dir: d.clone(),
            ..config(sync_mode())
        };
        let log = CommitLog::open(backend, cfg.clone()).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..100u64 {
            acked.push((append_one(&log, i, len_of(i)).await.unwrap(), i));
        }
        drop(log);
        let log = CommitLog::open(backend, cfg).await.unwrap();
        for &((offset, size), i) in &acked {
            check_record(&log, offset, size, i, len_of(i)).await;
        }
    });
    let segments = std::fs::read_dir(&dir).unwrap().count();
    assert!(segments >= 3, "{segments} segment files");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The next segment exists before an append needs it (created in the background as
/// soon as appends reach the newest segment), so the append path does not wait for
/// file creation and preallocation.
#[test]
fn the_next_segment_is_created_ahead_of_need() {
    run(|| async {
        let log = CommitLog::open(MemBackend::new(), config(sync_mode()))
            .await
            .unwrap();
        append_one(&log, 0, 100).await.unwrap();
        for _ in 0..100 {
            if log.segment_bases().len() == 2 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(log.segment_bases(), vec![0, 64 * 1024]);
        // Filling the first segment moves into it and creates the one after.
        let mut i = 1;
        while log.max_offset() < storage::commitlog::global_offset(3, 64 * 1024) {
            append_one(&log, i, 3000).await.unwrap();
            i += 1;
        }
        for _ in 0..100 {
            if log.segment_bases().len() == 3 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(log.segment_bases(), vec![0, 64 * 1024, 128 * 1024]);
    });
}

/// A crash while appends were two segments past the last sync (the next segment was
/// created ahead of need too): recovery without a checkpoint must find the end in the
/// oldest unsynced segment, not trust a newer one's zeros.
#[test]
fn recovery_without_checkpoint_looks_behind_the_segment_created_ahead() {
    run(|| async {
        let backend = MemBackend::new();
        let flush = FlushMode::Async {
            max_unwritten_bytes: 1 << 30,
            sync_interval: Duration::from_secs(3600),
        };
        let log = CommitLog::open(backend.clone(), config(flush))
            .await
            .unwrap();
        let mut i = 0;
        while log.max_offset() < storage::commitlog::global_offset(3, 64 * 1024 + 4096) {
            append_one(&log, i, 3000).await.unwrap();
            i += 1;
        }
        // Let the flusher write (not sync) and the next segment be created.
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(log.segment_bases().len(), 3);
        drop(log);
        backend.crash(CrashMode::DropUnsynced);
        let log = CommitLog::open(backend.clone(), config(flush))
            .await
            .unwrap();
        let mut seen = 0;
        let count = log
            .scan(log.min_offset(), |view| {
                assert_eq!(view.queue_offset, seen);
                seen += 1;
            })
            .await
            .unwrap();
        assert_eq!(count, seen as u64);
        assert!(
            log.max_offset() <= storage::commitlog::global_offset(3, 0) + seen * 4096,
            "recovered end {} claims more than the {seen} readable records",
            log.max_offset()
        );
    });
}

/// A record is readable at every moment after its append: also while the flusher has
/// its chunk in flight to the disk (it used to be in neither the sealed list nor the
/// cache then, and a read panicked).
#[test]
fn records_are_readable_while_their_chunk_is_written() {
    let dir = std::env::temp_dir().join(format!("commitlog-inflight-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    run(move || async move {
        let cfg = CommitLogConfig {
            dir: d.clone(),
            ..config(FlushMode::Async {
                max_unwritten_bytes: 1 << 20,
                sync_interval: Duration::from_millis(1),
            })
        };
        let log = CommitLog::open(storage::io::dma::DmaBackend, cfg)
            .await
            .unwrap();
        let mut acked: Vec<((i64, usize), u64)> = Vec::new();
        for i in 0..400u64 {
            acked.push((append_one(&log, i, len_of(i)).await.unwrap(), i));
            // Let the flusher start writing, then read back the newest records.
            if i % 2 == 0 {
                glommio::executor().yield_task_queue_now().await;
            } else {
                glommio::timer::sleep(Duration::from_micros(20)).await;
            }
            for &((offset, size), j) in acked.iter().rev().take(3) {
                check_record(&log, offset, size, j, len_of(j)).await;
            }
        }
        log.close().await.unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cold reads give way to appends: while appended data waits to be written, at most
/// `cold_reads_while_writing` direct reads are in flight (and every reader still gets
/// its data); with nothing to write, readers are not held back.
#[test]
fn cold_reads_take_turns_while_appends_wait_to_be_written() {
    run(|| async {
        let cfg = config(FlushMode::Async {
            max_unwritten_bytes: 1 << 20,
            sync_interval: Duration::from_millis(1),
        });
        assert_eq!(cfg.cold_reads_while_writing, 1);
        let backend = MemBackend::new();
        let log = CommitLog::open(backend.clone(), cfg).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..60u64 {
            acked.push(append_one(&log, i, 600).await.unwrap());
        }
        log.sync_all().await.unwrap();
        // The first records left the 32 KiB tail cache: reading them goes to the device.
        let cold: std::rc::Rc<Vec<(i64, usize)>> = std::rc::Rc::new(acked[..8].to_vec());
        let read_all = |log: CommitLog<MemBackend>| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (log, cold) = (log.clone(), cold.clone());
                    glommio::spawn_local(async move {
                        for (i, &(offset, size)) in cold.iter().enumerate() {
                            check_record(&log, offset, size, i as u64, 600).await;
                        }
                    })
                })
                .collect();
            async move {
                for h in handles {
                    h.await;
                }
            }
        };

        backend.set_faults(FaultPlan {
            stall_writes_from: Some(backend.writes_issued() + 1),
            slow_reads: true,
            ..FaultPlan::default()
        });
        let b = body(1000, 600);
        let appended = log.append(&mut [writer(&b, 1000)], 1).await.unwrap();
        backend.take_max_reads_in_flight();
        read_all(log.clone()).await;
        assert_eq!(
            backend.take_max_reads_in_flight(),
            1,
            "readers took more than their slot while an append waited to be written"
        );

        backend.set_faults(FaultPlan {
            slow_reads: true,
            ..FaultPlan::default()
        });
        log.sync_all().await.unwrap();
        assert!(log.durable_pos() >= appended.end);
        backend.take_max_reads_in_flight();
        read_all(log.clone()).await;
        assert!(
            backend.take_max_reads_in_flight() > 1,
            "readers were held back with nothing to write"
        );
        log.close().await.unwrap();
    });
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: usize,
        len: usize,
    },
    Crash {
        keep: usize,
        torn: usize,
    },
    Restart,
    ReadAll,
    /// Retention deletes the oldest segment, keeping it as a spare or not.
    Delete {
        keep_spare: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 1usize..6000).prop_map(|(count, len)| Op::Append { count, len }),
        1 => (0usize..4, 0usize..8).prop_map(|(keep, torn)| Op::Crash { keep, torn }),
        1 => Just(Op::Restart),
        1 => Just(Op::ReadAll),
        1 => any::<bool>().prop_map(|keep_spare| Op::Delete { keep_spare }),
    ]
}

/// Every record a full scan of `log` finds, as (offset, queue offset), must be exactly
/// the model's from the log's minimum on: nothing lost, nothing stale come back.
async fn assert_scan_matches(log: &CommitLog<MemBackend>, model: &[(i64, usize, u64, usize)]) {
    let mut found = Vec::new();
    log.scan(log.min_offset(), |v| {
        found.push((v.physical_offset, v.queue_offset))
    })
    .await
    .unwrap();
    let expected: Vec<(i64, i64)> = model
        .iter()
        .filter(|(o, ..)| *o >= log.min_offset())
        .map(|&(o, _, i, _)| (o, i as i64))
        .collect();
    assert_eq!(found, expected);
}

/// A segment deleted by retention becomes the next one; after a crash, recovery stops
/// at the last new record although the old records behind it, at the same places in
/// the file, are intact and pass their CRC (they are at another PHYSICALOFFSET).
#[test]
fn a_reused_segment_never_brings_back_its_old_records() {
    run(|| async {
        let backend = MemBackend::new();
        let cfg = config(sync_mode());
        let log = CommitLog::open(backend.clone(), cfg.clone()).await.unwrap();
        let seg = cfg.segment_bytes;
        let mut model: Vec<(i64, usize, u64, usize)> = Vec::new();
        // Records of exactly one block: the new data ends at a block boundary, where
        // the old segment has a whole record (no zeroed block tail in between).
        let len = 4096 - writer(&[], 0).encoded_len().unwrap();
        let append = |log: CommitLog<MemBackend>, i: u64| async move {
            let (offset, size) = append_one(&log, i, len).await.unwrap();
            (offset, size, i, len)
        };
        let mut i = 0;
        while split_offset(log.max_offset()).1 < 2 * seg + seg / 2 {
            model.push(append(log.clone(), i).await);
            i += 1;
        }
        assert_eq!(log.delete_oldest_segment(true).await.unwrap(), Some(seg));
        model.retain(|(o, ..)| split_offset(*o).1 >= seg);
        let spare = std::path::Path::new("/store/commitlog/00000000000000000000.spare");
        assert!(backend.file_len(spare).is_some(), "kept as a spare");
        // Segment 3 was created ahead before the deletion; segment 4, created once
        // appends enter 3, is made from the spare.
        while split_offset(log.max_offset()).1 < 4 * seg + 5000 {
            model.push(append(log.clone(), i).await);
            i += 1;
        }
        assert!(
            backend.file_len(spare).is_none(),
            "the spare became a segment"
        );
        drop(log);
        backend.crash(CrashMode::KeepPrefix {
            writes: 0,
            torn_sectors: 0,
        });
        let log = CommitLog::open(backend.clone(), cfg).await.unwrap();
        let (o, size, ..) = *model.last().unwrap();
        assert_eq!(log.max_offset(), o + size as i64);
        assert_scan_matches(&log, &model).await;
    });
}

/// Past a reused segment's end blank, a read from disk finds zeros, as a read from
/// memory does: the old segment's records there are not served again.
#[test]
fn a_reused_segment_reads_as_zeros_past_its_blank() {
    run(|| reused_segment_reads_as_zeros(MemBackend::new(), config(sync_mode())));
}

/// The same on real files, starting from a directory that holds only a spare (left
/// there as garbage): the first segment is made from it at open, and recovery stats
/// it by its new name (a glommio file keeps the path it was opened by).
#[test]
fn a_reused_segment_on_real_files() {
    let dir = std::env::temp_dir().join(format!("commitlog-reuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(spare_name(0)), vec![0xEE; 64 * 1024]).unwrap();
    let cfg = CommitLogConfig {
        dir: dir.clone(),
        ..config(sync_mode())
    };
    run(move || reused_segment_reads_as_zeros(storage::io::dma::DmaBackend, cfg));
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn reused_segment_reads_as_zeros<B: Backend + Clone>(backend: B, cfg: CommitLogConfig) {
    let seg = cfg.segment_bytes;
    let log = CommitLog::open(backend.clone(), cfg.clone()).await.unwrap();
    // The old data: small records, reaching close to each segment's end.
    let mut i = 0;
    while split_offset(log.max_offset()).1 < 2 * seg + seg / 2 {
        append_one(&log, i, 100).await.unwrap();
        i += 1;
    }
    assert_eq!(log.delete_oldest_segment(true).await.unwrap(), Some(seg));
    // The new data: records of 10 000 bytes, so segment 4 (made from the spare)
    // ends with a blank whole blocks before where the old records ended.
    let len = 10_000 - writer(&[], 0).encoded_len().unwrap();
    let mut blank = 0;
    while split_offset(log.max_offset()).1 <= 5 * seg {
        let (offset, size) = append_one(&log, i, len).await.unwrap();
        let end = split_offset(offset).1 + size as u64;
        if end <= 5 * seg {
            blank = end;
        }
        i += 1;
    }
    assert!(
        blank > 4 * seg && 5 * seg - blank > 4096,
        "blank at {blank}"
    );
    let past_blank = (5 * seg - blank) as usize;
    let from_memory = log
        .read(global_offset(3, blank), past_blank)
        .await
        .unwrap()
        .to_vec();
    log.close().await.unwrap();
    let log = CommitLog::open(backend.clone(), cfg).await.unwrap();
    let from_disk = log
        .read(global_offset(3, blank), past_blank)
        .await
        .unwrap()
        .to_vec();
    assert_eq!(&from_disk[4..8], &BLANK_MAGIC.to_be_bytes());
    assert!(
        from_disk[8..].iter().all(|b| *b == 0),
        "old bytes past the blank at {blank}"
    );
    assert_eq!(from_disk, from_memory);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random appends, crashes, restarts and deletions against a model: every acknowledged record
    /// reads back intact, and the log always continues right after the last record.
    #[test]
    fn model_check(ops in proptest::collection::vec(op(), 1..40)) {
        run(move || async move {
            let backend = MemBackend::new();
            let mut log = CommitLog::open(backend.clone(), config(sync_mode())).await.unwrap();
            let mut model: Vec<(i64, usize, u64, usize)> = Vec::new();
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::Append { count, len } => {
                        let bodies: Vec<Vec<u8>> = (0..count as u64).map(|k| body(next + k, len)).collect();
                        let mut recs: Vec<RecordWriter> = bodies.iter().enumerate().map(|(k, b)| writer(b, (next + k as u64) as i64)).collect();
                        let appended = log.append(&mut recs, 1_700_000_000_000).await.unwrap();
                        log.wait_acked(appended.end).await.unwrap();
                        for (k, r) in recs.iter().enumerate() {
                            model.push((r.physical_offset, r.encoded_len().unwrap(), next + k as u64, len));
                        }
                        next += count as u64;
                    }
                    Op::Crash { keep, torn } => {
                        backend.crash(CrashMode::KeepPrefix { writes: keep, torn_sectors: torn });
                        log = CommitLog::open(backend.clone(), config(sync_mode())).await.unwrap();
                    }
                    Op::Restart => {
                        log = CommitLog::open(backend.clone(), config(sync_mode())).await.unwrap();
                    }
                    Op::ReadAll => {}
                    Op::Delete { keep_spare } => {
                        if let Some(min) = log.delete_oldest_segment(keep_spare).await.unwrap() {
                            model.retain(|(o, ..)| split_offset(*o).1 >= min);
                        }
                    }
                }
                let expected_end = model.last().map_or(global_offset(3, 0), |(o, s, _, _)| o + *s as i64);
                assert!(log.max_offset() >= expected_end);
                assert_scan_matches(&log, &model).await;
                for &(offset, size, i, len) in &model {
                    let bytes = log.read(offset, size).await.unwrap();
                    let view = decode_record(&Bytes::copy_from_slice(&bytes), 0, true).unwrap();
                    assert_eq!(view.queue_offset, i as i64);
                    assert_eq!(&view.body[..], &body(i, len)[..]);
                }
            }
        });
    }
}

#[derive(Debug, Clone)]
enum SpanOp {
    Append {
        count: usize,
        len: usize,
    },
    /// Lets the flusher run for a while (writes, evicts from the tail cache).
    Flush,
    /// Reads the records `from..=to` (indexes into what was appended) as one span.
    Span {
        from: usize,
        to: usize,
    },
}

fn span_op() -> impl Strategy<Value = SpanOp> {
    prop_oneof![
        4 => (1usize..8, 1usize..4000).prop_map(|(count, len)| SpanOp::Append { count, len }),
        2 => Just(SpanOp::Flush),
        3 => (0usize..1000, 0usize..1000).prop_map(|(from, to)| SpanOp::Span { from, to }),
    ]
}

/// A consumer's span read may start in a chunk already evicted from the tail cache
/// (on disk only) and end in records not yet written (in memory only). Async flush, so
/// unwritten records exist; a small cache, so written ones leave memory soon.
fn check_spans(ops: Vec<SpanOp>) {
    run(move || async move {
        let cfg = CommitLogConfig {
            cache_bytes: 8 * 1024,
            ..config(FlushMode::Async {
                max_unwritten_bytes: 1 << 20,
                sync_interval: Duration::from_millis(1),
            })
        };
        let log = CommitLog::open(MemBackend::new(), cfg).await.unwrap();
        // (offset, size, index, body len)
        let mut model: Vec<(i64, usize, u64, usize)> = Vec::new();
        for op in ops {
            match op {
                SpanOp::Append { count, len } => {
                    let next = model.len() as u64;
                    let bodies: Vec<Vec<u8>> =
                        (0..count as u64).map(|k| body(next + k, len)).collect();
                    let mut recs: Vec<RecordWriter> = bodies
                        .iter()
                        .enumerate()
                        .map(|(k, b)| writer(b, (next + k as u64) as i64))
                        .collect();
                    // No await between appends and reads: what is appended stays unwritten.
                    log.append(&mut recs, 1_700_000_000_000).await.unwrap();
                    for (k, r) in recs.iter().enumerate() {
                        model.push((
                            r.physical_offset,
                            r.encoded_len().unwrap(),
                            next + k as u64,
                            len,
                        ));
                    }
                }
                SpanOp::Flush => glommio::timer::sleep(Duration::from_millis(3)).await,
                SpanOp::Span { from, to } => {
                    if model.is_empty() {
                        continue;
                    }
                    let a = from % model.len();
                    let b = a + to % (model.len() - a);
                    // A span stays in one segment, as a pull's does.
                    let (first, _, _, _) = model[a];
                    let seg = |o: i64| split_offset(o).1 / (64 * 1024);
                    let b = (a..=b)
                        .take_while(|&k| seg(model[k].0) == seg(first))
                        .last()
                        .unwrap();
                    let end = model[b].0 + model[b].1 as i64;
                    let bytes = log.read(first, (end - first) as usize).await.unwrap();
                    let bytes = Bytes::copy_from_slice(&bytes);
                    let mut at = 0;
                    for &(offset, size, i, len) in &model[a..=b] {
                        let view = decode_record(&bytes, at, true).unwrap();
                        assert_eq!(view.physical_offset, offset);
                        assert_eq!(view.queue_offset, i as i64);
                        assert_eq!(&view.body[..], &body(i, len)[..]);
                        at += size;
                    }
                    assert_eq!(at, bytes.len());
                }
            }
        }
        log.close().await.unwrap();
    });
}

/// The case that aborted a broker: a span from an evicted (disk-only) record to an
/// unwritten one.
#[test]
fn span_from_disk_into_unwritten_memory() {
    check_spans(vec![
        SpanOp::Append {
            count: 8,
            len: 3000,
        },
        SpanOp::Flush,
        SpanOp::Append {
            count: 3,
            len: 3000,
        },
        SpanOp::Span { from: 0, to: 10 },
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn span_reads_across_disk_cache_and_unwritten(ops in proptest::collection::vec(span_op(), 1..60)) {
        check_spans(ops);
    }
}

/// Several appenders at once, on a device that completes writes out of order: the
/// writer keeps several chunks in flight, rewrites partial blocks, and syncs while
/// it writes. Every acknowledged record reads back intact before and after power loss
/// (sync) or a clean close (async).
fn check_concurrent(sync: bool, tasks: usize, write_depth: usize, lens: Vec<usize>) {
    run(move || async move {
        let flush = if sync {
            sync_mode()
        } else {
            FlushMode::Async {
                max_unwritten_bytes: 32 * 1024,
                sync_interval: Duration::from_millis(1),
            }
        };
        let cfg = CommitLogConfig {
            write_depth,
            ..config(flush)
        };
        let backend = MemBackend::new();
        backend.set_faults(FaultPlan {
            reorder_writes: true,
            ..FaultPlan::default()
        });
        let log = CommitLog::open(backend.clone(), cfg.clone()).await.unwrap();
        let lens = std::rc::Rc::new(lens);
        let appenders: Vec<_> = (0..tasks)
            .map(|t| {
                let (log, lens) = (log.clone(), lens.clone());
                glommio::spawn_local(async move {
                    let mut acked = Vec::new();
                    for (k, &len) in lens.iter().enumerate() {
                        let i = (k * tasks + t) as u64;
                        // Batches of one to three records, all acknowledged together.
                        let n = 1 + k % 3;
                        let bodies: Vec<Vec<u8>> =
                            (0..n as u64).map(|j| body(i * 4 + j, len)).collect();
                        let mut recs: Vec<RecordWriter> = bodies
                            .iter()
                            .enumerate()
                            .map(|(j, b)| writer(b, (i * 4) as i64 + j as i64))
                            .collect();
                        let appended = log.append(&mut recs, 1_700_000_000_000).await.unwrap();
                        log.wait_acked(appended.end).await.unwrap();
                        for (j, r) in recs.iter().enumerate() {
                            acked.push((
                                r.physical_offset,
                                r.encoded_len().unwrap(),
                                i * 4 + j as u64,
                                len,
                            ));
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut model = Vec::new();
        for a in appenders {
            model.extend(a.await);
        }
        let check = |log: CommitLog<MemBackend>, model: Vec<(i64, usize, u64, usize)>| async move {
            for (offset, size, i, len) in model {
                let bytes = log.read(offset, size).await.unwrap();
                let view = decode_record(&Bytes::copy_from_slice(&bytes), 0, true)
                    .unwrap_or_else(|e| panic!("record {i} at {offset}: {e}"));
                assert_eq!(view.queue_offset, i as i64);
                assert_eq!(&view.body[..], &body(i, len)[..]);
            }
        };
        check(log.clone(), model.clone()).await;
        if sync {
            // Acknowledged means durable: power loss now keeps all of it.
            backend.crash(CrashMode::DropUnsynced);
        } else {
            log.close().await.unwrap();
        }
        let reopened = CommitLog::open(backend.clone(), cfg).await.unwrap();
        let end = model
            .iter()
            .map(|(o, s, _, _)| o + *s as i64)
            .max()
            .unwrap_or(0);
        assert!(reopened.max_offset() >= end);
        check(reopened, model).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_appends_on_a_reordering_device(
        sync in any::<bool>(),
        tasks in 1usize..6,
        write_depth in 1usize..5,
        lens in proptest::collection::vec(1usize..5000, 1..30),
    ) {
        check_concurrent(sync, tasks, write_depth, lens);
    }
}
