//! Issue 16's figures for registered resources, measured on the durable
//! registry (its log buffer active, flushed as the daemon does):
//!
//! - register, in process: p50 and p99 per call (goal ≤ 1 µs p50);
//! - memory per registered resource: bytes live in the heap after
//!   registering 1,000,000 resources of a realistic small name, one of 50
//!   owners and one or two labels, divided by the count (goal ≤ 200 B),
//!   counted by a counting global allocator (requested sizes; the same
//!   with glibc's per-block header and rounding is shown beside it);
//! - leak scan: [`Registry::scan`] over the 1,000,000, finding those idle
//!   past their TTL and the orphans (goal ≤ 50 ms);
//! - open (restart) time from the snapshot and log they leave (no goal);
//! - how long a registration waits while the daemon's flusher runs beside
//!   it, on another thread, over 1,000,000 resources that churn (each new
//!   one replaces one registered 100,000 earlier) at 250,000 changes a
//!   second, flushed every 50,000 changes (what the daemon's one flush a second meets at the HTTP
//!   figure's rate), with at least one compaction among the flushes: the
//!   longest wait of a registration or release and the 99.9th percentile
//!   (no goal; the registry's lock
//!   is what they measure).
//!
//! Run: `cargo bench -p warden-resources --bench registry`. Knob:
//! `WARDEN_BENCH_RESOURCES` (default 1,000,000). Under `cargo test` it runs
//! small (20,000) as a smoke test; the goals are printed, not enforced.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use warden_core::records::ResourceKind;
use warden_resources::{Registration, Registry, RegistryLimits, RegistryOptions};

/// Counts the bytes live in the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The same, each block counted as glibc's malloc holds it: the request
/// plus an 8-byte header, rounded up to 16, at least 32.
static HELD: AtomicIsize = AtomicIsize::new(0);

fn held(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            HELD.fetch_add(held(layout.size()), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            HELD.fetch_add(held(layout.size()), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        HELD.fetch_sub(held(layout.size()), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
            HELD.fetch_add(held(new_size) - held(layout.size()), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NOW: i64 = 1_704_067_200_000;
/// Registrations between two flushes: the daemon flushes on an interval,
/// from another thread; here in between, outside the timed calls.
const FLUSH_EVERY: usize = 10_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
        })
        .unwrap_or(default)
}

/// Resource `i`: a cache entry or a connection of one of 50 services, in
/// one of 100 tenants, one in ten with a TTL, one in a hundred owned by a
/// process that is gone.
fn registration(i: usize, gone_pid: u32) -> Registration {
    let mut labels = vec![("pool".to_owned(), ["a", "b", "c"][i % 3].to_owned())];
    if i.is_multiple_of(2) {
        labels.push(("tenant".to_owned(), format!("t{}", i % 100)));
    }
    Registration {
        kind: if i.is_multiple_of(4) {
            ResourceKind::Socket
        } else {
            ResourceKind::AppObject
        },
        name: if i.is_multiple_of(4) {
            format!("conn/{i}")
        } else {
            format!("cache/t{}/{i}", i % 100)
        },
        owner: format!("svc-{}", i % 50),
        size_bytes: 4096 + (i as u64 % 1000),
        pid: (i % 100 == 7).then_some(gone_pid),
        labels,
        ttl_ms: (i % 10 == 3).then_some(60_000),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn fmt_d(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let n = env_usize(
        "WARDEN_BENCH_RESOURCES",
        if benchmarking { 1_000_000 } else { 20_000 },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let limits = RegistryLimits {
        max_tracked: n,
        max_bytes: n * 1024,
    };
    let opts = RegistryOptions::default();
    // A pid that was a process and is not any more.
    let gone_pid = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };

    let mut times = Vec::with_capacity(n);
    // Counted from before the registrations are built: they are the
    // caller's (the API's parsed body), freed by the time it is counted.
    let live_before = LIVE.load(Ordering::Relaxed);
    let held_before = HELD.load(Ordering::Relaxed);
    let regs: Vec<Registration> = (0..n).map(|i| registration(i, gone_pid)).collect();
    let (registry, _) = Registry::open(&dir, limits, opts, NOW).unwrap();
    let mut flush_time = Duration::ZERO;
    let mut compactions = 0;
    for (i, reg) in regs.into_iter().enumerate() {
        let t = Instant::now();
        let h = registry.register(reg, NOW + i as i64);
        times.push(t.elapsed());
        h.unwrap();
        if (i + 1) % FLUSH_EVERY == 0 {
            let t = Instant::now();
            compactions += u32::from(registry.flush().unwrap().compacted);
            flush_time += t.elapsed();
        }
    }
    registry.flush().unwrap();
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    let held = HELD.load(Ordering::Relaxed) - held_before;
    times.sort_unstable();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let per_resource = live as f64 / n as f64;
    let held_per_resource = held as f64 / n as f64;

    // The sweep marks the resources of the gone process; the scan finds
    // them and those idle past their TTL.
    let t = Instant::now();
    let sweep = registry.sweep_orphans(NOW + 2 * n as i64);
    let sweep_time = t.elapsed();
    assert_eq!(
        sweep.orphaned.len(),
        (0..n).filter(|i| i % 100 == 7).count()
    );
    let mut scans: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let report = registry.scan(NOW + n as i64 + 120_000);
            let d = t.elapsed();
            assert_eq!(report.scanned, n);
            assert_eq!(report.orphans, sweep.orphaned.len());
            assert!(report.expired > 0);
            d
        })
        .collect();
    scans.sort_unstable();
    let scan = scans[scans.len() / 2];
    registry.flush().unwrap();
    drop(registry);

    let snapshot = std::fs::metadata(dir.join("snapshot")).map_or(0, |m| m.len());
    let log = std::fs::metadata(dir.join("log")).map_or(0, |m| m.len());
    let t = Instant::now();
    let (registry, report) = Registry::open(&dir, limits, opts, NOW).unwrap();
    let open = t.elapsed();
    assert_eq!(registry.len(), n);

    drop(registry);
    let beside = beside_the_flusher(&dir, n, opts, gone_pid);

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let count = |n: usize| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    println!(
        "\nregistry figures, {} resources (durable, flushed every {} registrations)\n",
        count(n),
        count(FLUSH_EVERY)
    );
    println!("| figure | this run | goal | met/MISSED |");
    println!("| --- | ---: | --- | --- |");
    println!(
        "| register, in process, p50 | {} | ≤ 1 µs | {} |",
        fmt_d(p50),
        verdict(p50 <= Duration::from_micros(1))
    );
    println!("| register, in process, p99 | {} | — | — |", fmt_d(p99));
    println!(
        "| memory per registered resource (heap, counted) | {per_resource:.0} B | ≤ 200 B | {} |",
        verdict(per_resource <= 200.0)
    );
    println!(
        "| the same, with malloc's block overhead (glibc model) | {held_per_resource:.0} B | — | — |"
    );
    println!(
        "| leak scan over {} resources (median of 5) | {} | ≤ 50 ms | {} |",
        count(n),
        fmt_d(scan),
        verdict(scan <= Duration::from_millis(50))
    );
    println!(
        "| orphan sweep over {} resources | {} | — | — |",
        count(n),
        fmt_d(sweep_time)
    );
    println!(
        "| open (restart): snapshot {:.1} MB + log {:.1} MB ({} + {} lines) | {} | — | — |",
        snapshot as f64 / 1e6,
        log as f64 / 1e6,
        count(report.snapshot_records as usize),
        count(report.log_records as usize),
        fmt_d(open)
    );
    println!(
        "| flushes: total time ({} compactions) | {} | — | — |",
        compactions,
        fmt_d(flush_time)
    );
    println!(
        "| register beside the flusher ({} changes, {} flushes, {} compactions): longest wait | {} | — | — |",
        count(beside.changes),
        beside.flushes,
        beside.compactions,
        fmt_d(beside.longest)
    );
    println!(
        "| the same, 99.9th percentile | {} | — | — |",
        fmt_d(beside.p999)
    );
    println!(
        "| the same, the longest flush (log only) and compaction | {} and {} | — | — |",
        fmt_d(beside.longest_flush),
        fmt_d(beside.longest_compaction)
    );
}

/// Changes between two flushes beside the registrations: the daemon's
/// flush each second at 50,000 registrations a second.
const BESIDE_FLUSH_EVERY: usize = 50_000;
/// Changes a second beside the flusher (a registration and a release
/// each): about the batched HTTP figure.
const BESIDE_RATE: f64 = 250_000.0;
/// How long a churned resource stays registered, in registrations.
const CHURN: usize = 100_000;

struct Beside {
    changes: usize,
    flushes: usize,
    compactions: usize,
    longest: Duration,
    p999: Duration,
    longest_flush: Duration,
    longest_compaction: Duration,
}

/// Reopens the registry in `dir` (`n` resources) and churns it, each
/// registration timed, while another thread flushes it every
/// [`BESIDE_FLUSH_EVERY`] changes, until past the first compaction and at
/// least `n / 5` registrations. A compaction comes once the log holds more
/// records than the registry resources.
fn beside_the_flusher(
    dir: &std::path::Path,
    n: usize,
    opts: RegistryOptions,
    gone_pid: u32,
) -> Beside {
    let limits = RegistryLimits {
        max_tracked: n + CHURN,
        max_bytes: (n + CHURN) * 1024,
    };
    let (registry, _) = Registry::open(dir, limits, opts, NOW).unwrap();
    let changes = AtomicUsize::new(0);
    let compacted = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let mut waits = Vec::with_capacity(4 * n);
    let flushes = std::thread::scope(|s| {
        let flusher = s.spawn(|| {
            let mut flushes = Vec::new();
            let mut next = BESIDE_FLUSH_EVERY;
            while !stop.load(Ordering::Acquire) {
                if changes.load(Ordering::Acquire) < next {
                    std::thread::yield_now();
                    continue;
                }
                next += BESIDE_FLUSH_EVERY;
                let t = Instant::now();
                let report = registry.flush().unwrap();
                flushes.push((t.elapsed(), report.compacted));
                if report.compacted {
                    compacted.store(true, Ordering::Release);
                }
            }
            flushes
        });
        // Stops the flusher however this thread ends (a failed unwrap too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let stopping = Stop(&stop);
        let mut live = std::collections::VecDeque::with_capacity(CHURN);
        let mut i = 0;
        let start = Instant::now();
        while i < n / 5 || !compacted.load(Ordering::Acquire) {
            if i % 1000 == 0 {
                // At BESIDE_RATE: faster, the changes waiting for the flusher
                // pass `max_pending` and a registration flushes them itself.
                let due = Duration::from_secs_f64(2.0 * i as f64 / BESIDE_RATE);
                if let Some(ahead) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
            if live.len() == CHURN {
                let old = live.pop_front().unwrap();
                let t = Instant::now();
                let released = registry.release(old);
                waits.push(t.elapsed());
                assert!(released);
                changes.fetch_add(1, Ordering::Release);
            }
            let reg = registration(n + i, gone_pid);
            let t = Instant::now();
            let h = registry.register(reg, NOW + (n + i) as i64);
            waits.push(t.elapsed());
            live.push_back(h.unwrap());
            changes.fetch_add(1, Ordering::Release);
            i += 1;
        }
        drop(stopping);
        flusher.join().unwrap()
    });
    waits.sort_unstable();
    let longest_of = |compaction: bool| {
        flushes
            .iter()
            .filter(|(_, c)| *c == compaction)
            .map(|(d, _)| *d)
            .max()
            .unwrap_or_default()
    };
    Beside {
        changes: changes.load(Ordering::Relaxed),
        flushes: flushes.len(),
        compactions: flushes.iter().filter(|(_, c)| *c).count(),
        longest: *waits.last().unwrap(),
        p999: percentile(&waits, 0.999),
        longest_flush: longest_of(false),
        longest_compaction: longest_of(true),
    }
}
