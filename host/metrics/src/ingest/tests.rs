use super::*;
use crate::config::Compression;
use crate::store::StoreLimits;
use crate::validate::PiiKeys;

fn config(full: FullQueue, queue: usize) -> PersistConfig {
    PersistConfig {
        max_batch_size: 1,
        max_queue_size: queue,
        full_queue: full,
        wait_timeout: warden_core::values::HumanDuration(Duration::from_millis(50)),
        flush_interval: warden_core::values::HumanDuration(Duration::from_millis(1)),
        ..PersistConfig::default()
    }
}

/// A pipeline whose writer cannot write (its directory is gone) until
/// the returned directory is re-created: the worker stalls on the
/// hand-off and the queue fills.
fn stalled(full: FullQueue, queue: usize) -> (Metrics, tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let writer = Writer::open(&dir, Compression::None, 3, Duration::from_secs(3600)).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let store = Arc::new(SeriesStore::new(StoreLimits::default(), PiiKeys::default()));
    let m = Metrics::start(store, &config(full, queue), Some(writer)).unwrap();
    // Fill the writer and the hand-off, then wait for the worker to block.
    // One batch in the writer, GROUP_COMMIT waiting, one in the worker.
    // Each is taken by the worker before the next goes in; after the
    // last the worker is blocked on the full hand-off.
    let t = Instant::now();
    for i in 0..GROUP_COMMIT + 2 {
        m.record("fill", &[], i as f64).unwrap();
        while m.free() < queue {
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", m.stats());
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    for i in 0..queue {
        m.record("fill", &[], i as f64).unwrap();
    }
    assert_eq!(m.free(), 0, "the queue should be full");
    (m, tmp, dir)
}

fn unstall(m: &Metrics, dir: &std::path::Path) -> Stats {
    std::fs::create_dir(dir).unwrap();
    m.flush();
    let stats = m.stats();
    m.shutdown();
    stats
}

#[test]
fn reject_refuses_at_once_and_counts() {
    let (m, _tmp, dir) = stalled(FullQueue::Reject, 8);
    let e = m.record("x", &[], 1.0).unwrap_err();
    assert_eq!(e, RecordError::QueueFull { capacity: 8 });
    assert!(e.to_string().contains("max_queue_size"), "{e}");
    assert!(m.increment("y", &[], 1.0).is_err());
    let s = unstall(&m, &dir);
    assert_eq!((s.rejected, s.dropped), (2, 2));
    assert_eq!(s.total_persisted, s.total_recorded, "{s:?}");
}

#[test]
fn drop_oldest_makes_room_and_counts_every_drop() {
    let (m, _tmp, dir) = stalled(FullQueue::DropOldest, 8);
    for i in 0..5 {
        m.record("newest", &[], f64::from(i)).unwrap();
    }
    let s = unstall(&m, &dir);
    assert_eq!(s.dropped_oldest, 5);
    // Nothing is lost silently: every record is either on disk or counted.
    assert_eq!(
        s.total_recorded,
        s.total_persisted + s.dropped_oldest,
        "{s:?}"
    );
    let newest = m.store().range(
        &warden_core::records::SeriesSelector {
            metric: "newest".into(),
            matchers: vec![],
        },
        i64::MIN,
        i64::MAX,
    );
    assert_eq!(newest[0].samples.len(), 5, "the newest records were kept");
}

#[test]
fn wait_gives_up_after_the_timeout_and_counts() {
    let (m, _tmp, dir) = stalled(FullQueue::Wait, 8);
    let t = Instant::now();
    let e = m.record("x", &[], 1.0).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(matches!(e, RecordError::QueueFull { .. }));
    // Room appears once the writer can write: waiting then succeeds.
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        loop {
            match m2.record("late", &[], 1.0) {
                Ok(()) => return true,
                Err(_) if t.elapsed() < Duration::from_secs(10) => {}
                Err(_) => return false,
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let s = unstall(&m, &dir);
    assert!(waiter.join().unwrap());
    assert!(s.wait_timeouts >= 1);
    assert!(
        s.write_errors >= 1,
        "the stalled writes were counted: {s:?}"
    );
}

#[test]
fn operations_are_checked_persisted_whole_and_feed_two_series() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Writer::open(tmp.path(), Compression::None, 3, Duration::from_secs(3600)).unwrap();
    let store = Arc::new(SeriesStore::new(StoreLimits::default(), PiiKeys::default()));
    let m = Metrics::start(store, &PersistConfig::default(), Some(writer)).unwrap();
    let op = |success: bool, key: &str| Operation {
        operation_type: "db".into(),
        operation_name: "select".into(),
        duration_ms: 3.0,
        success,
        error_message: (!success).then(|| "timeout".into()),
        metadata: [(key.to_owned(), crate::MetaValue::Number(1.0))].into(),
    };
    m.record_operation(op(true, "rows")).unwrap();
    m.record_operation(op(false, "rows")).unwrap();
    let e = m.record_operation(op(true, "password")).unwrap_err();
    assert!(e.to_string().starts_with("metadata.password:"), "{e}");
    m.flush();
    let sel = |metric: &str| warden_core::records::SeriesSelector {
        metric: metric.into(),
        matchers: vec![],
    };
    let totals = m
        .store()
        .range(&sel("operations_total"), i64::MIN, i64::MAX);
    assert_eq!(totals.len(), 2, "one series per outcome");
    let durations = m
        .store()
        .range(&sel("operation_duration_ms"), i64::MIN, i64::MAX);
    assert_eq!(durations[0].samples.len(), 2);
    let s = m.stats();
    m.shutdown();
    assert_eq!((s.total_recorded, s.total_persisted), (2, 2));
    let files = crate::persist::batch_files(tmp.path()).unwrap();
    let records: usize = files
        .iter()
        .map(|(p, _)| crate::persist::read_batch(p).unwrap().total_records)
        .sum();
    assert_eq!(
        records, 2,
        "operations are persisted whole, their series are not"
    );
    assert!(matches!(m.record("x", &[], 1.0), Err(RecordError::Stopped)));
}
