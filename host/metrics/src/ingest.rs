//! Recording: the in-process API ([`Metrics`]), the bounded queue behind it,
//! and the worker that moves queued records into the store and hands batches
//! to the writer.
//!
//! A record call resolves its series (a read-locked hash lookup, no
//! allocation once the series exists), takes the time and pushes 32 bytes
//! into a lock-free queue. It never touches the disk. When the queue is full
//! the configured [`FullQueue`] behaviour applies and every record that does
//! not get in is counted.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::config::{FullQueue, PersistConfig};
use super::persist::Writer;
use super::series::{Interner, Kind, SeriesError, SeriesId};
use super::store::{Op, SeriesStore};
use super::validate::{self, Invalid, Operation};
use warden_core::records::TimestampMs;

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The series could not be had (name, labels, cap, kind).
    #[error(transparent)]
    Series(#[from] SeriesError),
    /// A value or field is not acceptable.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The queue is full and the behaviour is `reject`, or `wait` timed out.
    #[error(
        "the metrics queue is full ({capacity} records); the record was dropped and counted (raise `metrics.persist.max_queue_size` or slow down)"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// Recording has stopped (the daemon is shutting down).
    #[error("metrics recording has stopped")]
    Stopped,
}

/// One queued record.
#[derive(Debug)]
pub(crate) enum Item {
    Sample {
        id: SeriesId,
        op: Op,
        at_ms: TimestampMs,
        value: f64,
    },
    Operation {
        at_ms: TimestampMs,
        op: Box<Operation>,
    },
}

/// A record as it is persisted: a sample as the store now holds it, or an
/// operation.
#[derive(Debug)]
pub(crate) enum Persisted {
    Sample {
        id: SeriesId,
        at_ms: TimestampMs,
        value: f64,
    },
    Operation {
        at_ms: TimestampMs,
        op: Box<Operation>,
    },
}

/// Counters of what happened to records.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Records taken into the queue.
    pub total_recorded: u64,
    /// Records written to batch files.
    pub total_persisted: u64,
    /// Records queued or waiting for the writer.
    pub queue_size: u64,
    /// Batch files written.
    pub batches_written: u64,
    /// When the last batch was written (ms since the epoch).
    pub last_flush_timestamp_ms: Option<i64>,
    /// Records per batch file, on average.
    pub avg_batch_size: f64,
    /// Records lost to a full queue, all causes.
    pub dropped: u64,
    /// Of those: the oldest queued record made room (`drop_oldest`).
    pub dropped_oldest: u64,
    /// Of those: refused at once (`reject`).
    pub rejected: u64,
    /// Of those: `wait` timed out.
    pub wait_timeouts: u64,
    /// Batch writes that failed (each retried).
    pub write_errors: u64,
    /// Of the dropped: records whose batch could still not be written when
    /// the daemon stopped.
    pub abandoned_at_shutdown: u64,
    /// While batch writes fail (a full disk): the latest error, and since
    /// when; `None` once a write succeeds again.
    pub write_failing: Option<WriteFailure>,
    /// Pushed records refused, by reason (`invalid`, `reserved`,
    /// `personal_data`, `too_far_ahead`, `too_old`, `kind_mismatch`,
    /// `series_cap`, and `with_batch` for valid records refused with the
    /// invalid ones of their batch).
    pub refused: std::collections::BTreeMap<&'static str, u64>,
    /// Series in the store.
    pub series: usize,
    /// New series refused by the cap.
    pub series_refused: u64,
    /// True while recording runs.
    pub is_running: bool,
}

/// Why batch writes are failing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteFailure {
    /// The latest error.
    pub error: String,
    /// When writes started failing, ms since the epoch.
    pub since_ms: i64,
}

#[derive(Default)]
struct Counters {
    /// Taken out of the queue by the worker. With what is still queued and
    /// what `drop_oldest` pushed out, it is everything recorded, so the
    /// record path needs no counter of its own.
    popped: AtomicU64,
    persisted: AtomicU64,
    /// Taken out of the queue by the worker, not yet written.
    in_flight: AtomicU64,
    batches: AtomicU64,
    last_flush_ms: AtomicI64,
    dropped_oldest: AtomicU64,
    rejected: AtomicU64,
    wait_timeouts: AtomicU64,
    write_errors: AtomicU64,
    abandoned: AtomicU64,
    write_failing: Mutex<Option<WriteFailure>>,
    refused: [AtomicU64; crate::push::Reason::ALL.len()],
}

struct Shared {
    store: Arc<SeriesStore>,
    queue: ArrayQueue<Item>,
    full: FullQueue,
    wait_timeout: Duration,
    counters: Counters,
    running: AtomicBool,
    parked: AtomicBool,
    worker: OnceLock<Thread>,
    /// Flush requests and completions, for [`Metrics::flush`].
    flush: Mutex<(u64, u64)>,
    flushed: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The recording handle. Cheap to clone; every clone records into the same
/// queue. Call [`Metrics::shutdown`] to write everything before exit.
#[derive(Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("queue_capacity", &self.shared.queue.capacity())
            .finish_non_exhaustive()
    }
}

/// A series resolved once, for the cheapest recording.
#[derive(Clone, Debug)]
pub struct Handle {
    metrics: Metrics,
    id: SeriesId,
    kind: Kind,
}

impl Handle {
    /// Records `value`: a gauge's new value, a counter's increment or a
    /// histogram's observation, by the series' kind.
    #[inline]
    pub fn record(&self, value: f64) -> Result<(), RecordError> {
        let op = match self.kind {
            Kind::Gauge => {
                validate::value(value)?;
                Op::Set
            }
            Kind::Counter => {
                validate::increment(value)?;
                Op::Add
            }
            Kind::Histogram => {
                validate::value(value)?;
                Op::Observe
            }
        };
        self.metrics.push(Item::Sample {
            id: self.id,
            op,
            at_ms: warden_core::clock::now_ms(),
            value,
        })
    }
}

impl Metrics {
    /// Starts recording into `store`, with batch files written by `writer`
    /// (none: records only reach the store).
    pub fn start(
        store: Arc<SeriesStore>,
        config: &PersistConfig,
        writer: Option<Writer>,
    ) -> std::io::Result<Metrics> {
        let shared = Arc::new(Shared {
            store,
            queue: ArrayQueue::new(config.max_queue_size.max(1)),
            full: config.full_queue,
            wait_timeout: config.wait_timeout.0,
            counters: Counters::default(),
            running: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            worker: OnceLock::new(),
            flush: Mutex::new((0, 0)),
            flushed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
        });
        let max_batch = config.max_batch_size.max(1);
        let interval = config.flush_interval.0.max(Duration::from_millis(1));
        // One file being written and up to GROUP_COMMIT batches waiting:
        // beyond that the worker stops draining and the queue's full
        // behaviour applies.
        let (tx, writer_thread) = match writer {
            Some(mut writer) => {
                let (tx, rx) = sync_channel::<Batch>(GROUP_COMMIT);
                let s = Arc::clone(&shared);
                let t = std::thread::Builder::new()
                    .name("warden-metrics-writer".into())
                    .spawn(move || {
                        while let Ok(first) = rx.recv() {
                            // Group commit: batches that piled up while the
                            // last file was written go into one file, one
                            // pair of fsyncs for all of them.
                            let mut group = first;
                            for _ in 1..GROUP_COMMIT {
                                let Ok(more) = rx.try_recv() else { break };
                                group.records.extend(more.records);
                                group.completes = group.completes.max(more.completes);
                            }
                            s.write(&mut writer, &group);
                        }
                    })?;
                (Some(tx), Some(t))
            }
            None => (None, None),
        };
        let s = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("warden-metrics-ingest".into())
            .spawn(move || s.work(max_batch, interval, tx.as_ref()))?;
        let _ = shared.worker.set(worker.thread().clone());
        let mut threads = shared.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.push(worker);
        threads.extend(writer_thread);
        drop(threads);
        Ok(Metrics { shared })
    }

    /// The store records go to.
    pub fn store(&self) -> &Arc<SeriesStore> {
        &self.shared.store
    }

    /// Resolves a series once; recording through the handle skips the lookup.
    pub fn handle(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        kind: Kind,
    ) -> Result<Handle, RecordError> {
        let id = self.shared.store.interner().intern(metric, labels, kind)?;
        Ok(Handle {
            metrics: self.clone(),
            id,
            kind,
        })
    }

    #[inline]
    fn sample(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        kind: Kind,
        op: Op,
        value: f64,
    ) -> Result<(), RecordError> {
        let id = self.shared.store.interner().intern(metric, labels, kind)?;
        self.push(Item::Sample {
            id,
            op,
            at_ms: warden_core::clock::now_ms(),
            value,
        })
    }

    /// Records a value: sets the gauge `metric{labels}`.
    #[inline]
    pub fn record(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), RecordError> {
        validate::value(value)?;
        self.sample(metric, labels, Kind::Gauge, Op::Set, value)
    }

    /// Sets a gauge. The same as [`Metrics::record`].
    #[inline]
    pub fn gauge(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), RecordError> {
        self.record(metric, labels, value)
    }

    /// Adds `by` (0 or more) to the counter `metric{labels}`.
    #[inline]
    pub fn increment(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        by: f64,
    ) -> Result<(), RecordError> {
        validate::increment(by)?;
        self.sample(metric, labels, Kind::Counter, Op::Add, by)
    }

    /// Records one observation (a size, a latency) of the histogram
    /// `metric{labels}`; it is queried as quantiles.
    #[inline]
    pub fn observe(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), RecordError> {
        validate::value(value)?;
        self.sample(metric, labels, Kind::Histogram, Op::Observe, value)
    }

    /// Records a duration, in seconds, as an observation.
    pub fn time(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        took: Duration,
    ) -> Result<(), RecordError> {
        self.observe(metric, labels, took.as_secs_f64())
    }

    /// Records an operation's outcome. It is persisted whole, and feeds the
    /// series `operation_duration_ms{operation_type, operation_name}` and
    /// `operations_total{operation_type, operation_name, outcome}`.
    pub fn record_operation(&self, op: Operation) -> Result<(), RecordError> {
        validate::operation(&op, self.shared.store.interner().pii())?;
        self.push(Item::Operation {
            at_ms: warden_core::clock::now_ms(),
            op: Box::new(op),
        })
    }

    /// Queues a sample already resolved and checked (the HTTP ingest path).
    pub fn push_sample(
        &self,
        id: SeriesId,
        op: Op,
        at_ms: TimestampMs,
        value: f64,
    ) -> Result<(), RecordError> {
        self.push(Item::Sample {
            id,
            op,
            at_ms,
            value,
        })
    }

    /// Queues an operation already checked (the HTTP ingest path).
    pub fn push_operation(&self, at_ms: TimestampMs, op: Operation) -> Result<(), RecordError> {
        self.push(Item::Operation {
            at_ms,
            op: Box::new(op),
        })
    }

    /// How many records the queue holds at most.
    pub fn queue_capacity(&self) -> usize {
        self.shared.queue.capacity()
    }

    /// Room left in the queue now.
    pub fn free(&self) -> usize {
        self.shared.queue.capacity() - self.shared.queue.len()
    }

    /// The configured full-queue behaviour.
    pub fn full_queue(&self) -> FullQueue {
        self.shared.full
    }

    /// Counts `n` pushed records refused for `reason`.
    pub fn count_refused(&self, reason: crate::push::Reason, n: u64) {
        self.shared.counters.refused[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    fn push(&self, item: Item) -> Result<(), RecordError> {
        let s = &*self.shared;
        if !s.running.load(Ordering::Relaxed) {
            return Err(RecordError::Stopped);
        }
        match s.queue.push(item) {
            Ok(()) => {}
            Err(item) => self.full(item)?,
        }
        s.wake();
        Ok(())
    }

    #[cold]
    fn full(&self, mut item: Item) -> Result<(), RecordError> {
        let s = &*self.shared;
        let capacity = s.queue.capacity();
        match s.full {
            FullQueue::Reject => {
                s.counters.rejected.fetch_add(1, Ordering::Relaxed);
                Err(RecordError::QueueFull { capacity })
            }
            FullQueue::DropOldest => {
                if s.queue.force_push(item).is_some() {
                    s.counters.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            FullQueue::Wait => {
                let deadline = Instant::now() + s.wait_timeout;
                let mut spins = 0u32;
                loop {
                    s.force_wake();
                    match s.queue.push(item) {
                        Ok(()) => return Ok(()),
                        Err(back) => item = back,
                    }
                    if Instant::now() >= deadline {
                        s.counters.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(RecordError::QueueFull { capacity });
                    }
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
    }

    /// Returns once everything recorded before the call is in the store and,
    /// with persistence, written to disk.
    pub fn flush(&self) {
        let s = &*self.shared;
        let mut g = s.flush.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let want = g.0;
        s.force_wake();
        while g.1 < want && s.running.load(Ordering::Acquire) {
            g = s
                .flushed
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            s.force_wake();
        }
    }

    /// Stops recording, writes everything queued and waits for the writer.
    /// Idempotent.
    pub fn shutdown(&self) {
        let s = &*self.shared;
        if s.running.swap(false, Ordering::AcqRel) {
            s.force_wake();
        }
        let threads: Vec<_> =
            std::mem::take(&mut *s.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let s = &*self.shared;
        let c = &s.counters;
        let batches = c.batches.load(Ordering::Relaxed);
        let persisted = c.persisted.load(Ordering::Relaxed);
        let last = c.last_flush_ms.load(Ordering::Relaxed);
        let dropped_oldest = c.dropped_oldest.load(Ordering::Relaxed);
        let rejected = c.rejected.load(Ordering::Relaxed);
        let wait_timeouts = c.wait_timeouts.load(Ordering::Relaxed);
        let abandoned = c.abandoned.load(Ordering::Relaxed);
        Stats {
            total_recorded: c.popped.load(Ordering::Relaxed)
                + s.queue.len() as u64
                + dropped_oldest,
            total_persisted: persisted,
            queue_size: s.queue.len() as u64 + c.in_flight.load(Ordering::Relaxed),
            batches_written: batches,
            last_flush_timestamp_ms: (last > 0).then_some(last),
            avg_batch_size: if batches == 0 {
                0.0
            } else {
                persisted as f64 / batches as f64
            },
            dropped: dropped_oldest + rejected + wait_timeouts + abandoned,
            abandoned_at_shutdown: abandoned,
            dropped_oldest,
            rejected,
            wait_timeouts,
            write_errors: c.write_errors.load(Ordering::Relaxed),
            write_failing: c
                .write_failing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            refused: crate::push::Reason::ALL
                .iter()
                .zip(&c.refused)
                .map(|(r, n)| (r.name(), n.load(Ordering::Relaxed)))
                .collect(),
            series: s.store.series_count(),
            series_refused: s.store.refused_series(),
            is_running: s.running.load(Ordering::Relaxed),
        }
    }
}

/// The series every recorded operation feeds; pushes may not write them.
pub const OPERATION_SERIES: [&str; 2] = ["operation_duration_ms", "operations_total"];

/// The changes an operation makes to its two series,
/// `operation_duration_ms{operation_type, operation_name}` and
/// `operations_total{..., outcome}`: on record, and again on refill, since the
/// operation alone is persisted.
pub(crate) fn operation_series(
    interner: &Interner,
    operation_type: &str,
    operation_name: &str,
    success: bool,
    duration_ms: f64,
    at_ms: TimestampMs,
    out: &mut Vec<(SeriesId, Op, TimestampMs, f64)>,
) {
    let base = [
        ("operation_type", operation_type),
        ("operation_name", operation_name),
    ];
    // A refused series (the cap) is counted by the interner; the operation
    // itself is still persisted.
    if let Ok(id) = interner.intern(OPERATION_SERIES[0], &base, Kind::Histogram) {
        out.push((id, Op::Observe, at_ms, duration_ms));
    }
    let outcome = if success { "success" } else { "failure" };
    let labels = [base[0], base[1], ("outcome", outcome)];
    if let Ok(id) = interner.intern(OPERATION_SERIES[1], &labels, Kind::Counter) {
        out.push((id, Op::Add, at_ms, 1.0));
    }
}

/// A batch on its way to the writer, with the flush request it completes.
struct Batch {
    records: Vec<Persisted>,
    completes: Option<u64>,
}

/// The most batches waiting for the writer, and so the most that one file
/// holds when the writer is behind.
const GROUP_COMMIT: usize = 16;

/// The longest wait between two attempts at a batch that failed to be
/// written: how soon writing resumes once the disk has room again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How many records the worker takes per lock of the store.
const CHUNK: usize = 4096;
/// Empty polls (200 µs apart) before the worker parks.
const POLLS_BEFORE_PARK: u32 = 5;

impl Shared {
    #[inline]
    fn wake(&self) {
        // Only pays for a wake-up when the worker is actually parked.
        if self.parked.load(Ordering::Relaxed) {
            self.force_wake();
        }
    }

    fn force_wake(&self) {
        if self.parked.swap(false, Ordering::AcqRel)
            && let Some(t) = self.worker.get()
        {
            t.unpark();
        }
    }

    fn work(&self, max_batch: usize, interval: Duration, tx: Option<&SyncSender<Batch>>) {
        let mut changes: Vec<(SeriesId, Op, TimestampMs, f64)> = Vec::with_capacity(CHUNK);
        let mut derived: Vec<(SeriesId, Op, TimestampMs, f64)> = Vec::new();
        let mut batch: Vec<Persisted> = Vec::with_capacity(max_batch.min(1 << 20));
        let mut batch_started = Instant::now();
        let mut empty_polls = 0u32;
        loop {
            let stopping = !self.running.load(Ordering::Acquire);
            changes.clear();
            derived.clear();
            let mut took = 0usize;
            while took < CHUNK && batch.len() + took < max_batch {
                let Some(item) = self.queue.pop() else { break };
                took += 1;
                match item {
                    Item::Sample {
                        id,
                        op,
                        at_ms,
                        value,
                    } => changes.push((id, op, at_ms, value)),
                    Item::Operation { at_ms, op } => {
                        operation_series(
                            self.store.interner(),
                            &op.operation_type,
                            &op.operation_name,
                            op.success,
                            op.duration_ms,
                            at_ms,
                            &mut derived,
                        );
                        batch.push(Persisted::Operation { at_ms, op });
                    }
                }
            }
            if took > 0 {
                if batch.is_empty() {
                    batch_started = Instant::now();
                }
                self.counters
                    .in_flight
                    .fetch_add(took as u64, Ordering::Relaxed);
                self.counters
                    .popped
                    .fetch_add(took as u64, Ordering::Relaxed);
                self.store.apply(&changes, |id, at_ms, value| {
                    batch.push(Persisted::Sample { id, at_ms, value });
                });
                // Operation-derived series are rebuilt from the operations on
                // refill, so they are not persisted separately.
                self.store.apply(&derived, |_, _, _| {});
            }
            let queue_empty = self.queue.is_empty();
            let flush_asked = {
                let g = self.flush.lock().unwrap_or_else(|p| p.into_inner());
                (g.0 > g.1 && queue_empty).then_some(g.0)
            };
            let due = batch.len() >= max_batch
                || (!batch.is_empty() && batch_started.elapsed() >= interval)
                || flush_asked.is_some()
                || (stopping && queue_empty);
            if due {
                let records =
                    std::mem::replace(&mut batch, Vec::with_capacity(max_batch.min(1 << 20)));
                let out = Batch {
                    records,
                    completes: flush_asked,
                };
                match tx {
                    Some(tx) => {
                        if let Err(e) = tx.send(out) {
                            // The writer is gone; nothing more can be written.
                            self.counters
                                .in_flight
                                .fetch_sub(e.0.records.len() as u64, Ordering::Relaxed);
                        }
                    }
                    None => {
                        self.counters
                            .in_flight
                            .fetch_sub(out.records.len() as u64, Ordering::Relaxed);
                        if let Some(n) = out.completes {
                            self.complete_flush(n);
                        }
                    }
                }
                batch_started = Instant::now();
            }
            if stopping && queue_empty {
                return;
            }
            if took == 0 {
                empty_polls += 1;
                if empty_polls <= POLLS_BEFORE_PARK {
                    std::thread::sleep(Duration::from_micros(200));
                } else {
                    self.parked.store(true, Ordering::Release);
                    // A record that came in before the flag was set would not wake us.
                    if self.queue.is_empty() && self.running.load(Ordering::Acquire) {
                        let wait = if batch.is_empty() {
                            Duration::from_secs(1)
                        } else {
                            interval.saturating_sub(batch_started.elapsed())
                        };
                        std::thread::park_timeout(wait);
                    }
                    self.parked.store(false, Ordering::Release);
                    empty_polls = 0;
                }
            } else {
                empty_polls = 0;
            }
        }
    }

    fn write(&self, writer: &mut Writer, batch: &Batch) {
        let n = batch.records.len() as u64;
        if n > 0 {
            let mut delay = Duration::from_millis(100);
            loop {
                match writer.write_batch(&batch.records, self.store.interner()) {
                    Ok(_) => {
                        if let Some(f) = self
                            .counters
                            .write_failing
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take()
                        {
                            tracing::info!(
                                failing_since_ms = f.since_ms,
                                "metrics batches are written again"
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, records = n, "writing a metrics batch failed; retrying");
                        self.counters
                            .write_failing
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| WriteFailure {
                                error: String::new(),
                                since_ms: warden_core::clock::now_ms(),
                            })
                            .error = e.to_string();
                        // Retention must not wait for a write to succeed: on a
                        // full disk, deleting expired batches is what makes room.
                        writer.expire_now();
                        if !self.running.load(Ordering::Acquire) && delay > Duration::from_secs(2) {
                            tracing::error!(
                                records = n,
                                "giving up on a metrics batch at shutdown; counted in `dropped`"
                            );
                            self.counters.abandoned.fetch_add(n, Ordering::Relaxed);
                            self.counters.in_flight.fetch_sub(n, Ordering::Relaxed);
                            return;
                        }
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(MAX_RETRY_DELAY);
                    }
                }
            }
            self.counters.persisted.fetch_add(n, Ordering::Relaxed);
            self.counters.in_flight.fetch_sub(n, Ordering::Relaxed);
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .last_flush_ms
                .store(warden_core::clock::now_ms(), Ordering::Relaxed);
        }
        writer.expire_if_due();
        if let Some(req) = batch.completes {
            self.complete_flush(req);
        }
    }

    fn complete_flush(&self, req: u64) {
        let mut g = self.flush.lock().unwrap_or_else(|p| p.into_inner());
        g.1 = g.1.max(req);
        self.flushed.notify_all();
    }
}

#[cfg(test)]
mod tests;
