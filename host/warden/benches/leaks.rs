//! The `leaks` detector against real processes: a labeled leak benchmark.
//!
//! Each scenario is a real process (this binary, started again with
//! `WARDEN_LEAKER` set) that holds descriptors, CLOSE_WAIT sockets, threads
//! or memory, following a schedule of how many it should hold at each
//! 10-second step. Leakers grow, slowly to fast, steadily or in chunks, or
//! under a garbage collector's sawtooth; controls look like leaks and are
//! not: a sawtooth back to its floor, bursts that return, a single step, a
//! service restarted every few minutes that warms up and levels off, a busy
//! but stable level, slow swells that ebb. The schedules are drawn from a
//! seed, so each round differs.
//!
//! The daemon's own collector (`warden_metrics::collect::Collector`, with a
//! process selector per scenario) reads them from `/proc` and netlink every
//! step; the samples are replayed through the real `leaks` plugin and the
//! host's findings lifecycle, with the shipped defaults (`window: 30m`,
//! evaluated each minute). Time is compressed: a 10-second step lasts
//! `10 s / WARDEN_BENCH_SPEEDUP` (default 60), so 45 scenario minutes take
//! 45 seconds; the processes follow the same compressed clock and the
//! samples carry scenario timestamps.
//!
//! A leaker is detected when a finding of its kind is raised for it after
//! its leak began; time to detect is from the start of the leak. A control
//! is a false positive when any finding is raised for it. Goals (seed 001):
//! recall ≥ 95%, false positives ≤ 5%, mean time to detect ≤ 10 minutes.
//!
//! Run: `cargo bench -p warden --bench leaks`. Knobs: `WARDEN_BENCH_SEED`
//! (default 1), `WARDEN_BENCH_ROUNDS` (default 2), `WARDEN_BENCH_SPEEDUP`,
//! `WARDEN_BENCH_CONFIG` (settings added to the detector's `config:`, as
//! YAML: `min_rise: 9m`), `WARDEN_BENCH_SAMPLES` (a folder: each round's samples are kept there,
//! and replayed from there by later runs, to try settings on the same
//! samples).
//! Under `cargo test` it runs one small round as a smoke test, checks that
//! every evaluation ran, and prints figures without judging them.

#[path = "support/scenarios.rs"]
mod scenarios;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scenarios::{Rng, START_MS};
use warden::metrics::Kind as MetricKind;
use warden::metrics::collect::{CollectConfig, Collector, ProcessSelector, ProcessTarget, Sink};
use warden::plugin::{Engine, EngineOptions};
use warden::runtime::findings::Happened;
use warden::runtime::replay::decision::What;
use warden::runtime::replay::{self, Replay};

/// One step of scenario time.
const STEP_MS: i64 = 10_000;
const STEPS_PER_MIN: usize = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

// ---------------------------------------------------------------- the child

/// What a scenario process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Res {
    Fd,
    Socket,
    Thread,
    /// In MiB.
    Memory,
}

impl Res {
    fn name(self) -> &'static str {
        match self {
            Res::Fd => "fd",
            Res::Socket => "socket",
            Res::Thread => "thread",
            Res::Memory => "memory",
        }
    }

    fn parse(s: &str) -> Res {
        match s {
            "fd" => Res::Fd,
            "socket" => Res::Socket,
            "thread" => Res::Thread,
            "memory" => Res::Memory,
            _ => panic!("unknown resource {s}"),
        }
    }

    /// The finding patterns that name a leak of this resource.
    fn patterns(self) -> &'static [&'static str] {
        match self {
            Res::Fd => &["fd-leak"],
            // A leaked socket is a descriptor of type `socket` too.
            Res::Socket => &["close-wait-pileup", "fd-leak"],
            Res::Thread => &["thread-leak"],
            Res::Memory => &["memory-leak"],
        }
    }
}

/// What the process holds now.
struct Held {
    fds: Vec<std::fs::File>,
    listener: Option<std::net::TcpListener>,
    sockets: Vec<std::net::TcpStream>,
    threads: Vec<std::sync::mpsc::Sender<()>>,
    memory: Vec<Vec<u8>>,
}

impl Held {
    fn set(&mut self, res: Res, n: usize) {
        match res {
            Res::Fd => {
                while self.fds.len() < n {
                    self.fds.push(std::fs::File::open("/dev/null").unwrap());
                }
                self.fds.truncate(n);
            }
            Res::Socket => {
                let l = self
                    .listener
                    .get_or_insert_with(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
                while self.sockets.len() < n {
                    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
                    // The server side hangs up at once: the client end,
                    // never closed, sits in CLOSE_WAIT.
                    drop(l.accept().unwrap());
                    self.sockets.push(c);
                }
                self.sockets.truncate(n);
            }
            Res::Thread => {
                while self.threads.len() < n {
                    let (tx, rx) = std::sync::mpsc::channel::<()>();
                    std::thread::Builder::new()
                        .stack_size(64 * 1024)
                        .spawn(move || {
                            let _ = rx.recv();
                        })
                        .unwrap();
                    self.threads.push(tx);
                }
                self.threads.truncate(n);
            }
            Res::Memory => {
                while self.memory.len() < n {
                    // Written, so resident; 1 MiB is above malloc's mmap
                    // threshold, so freeing it returns it to the system.
                    self.memory.push(vec![1u8; 1 << 20]);
                }
                self.memory.truncate(n);
            }
        }
    }
}

/// The scenario process: holds `levels[k]` of its resource at step `k`,
/// then waits to be stopped. Exits if the benchmark is gone.
fn leaker(spec: &str) {
    let (res, rest) = spec.split_once(':').unwrap();
    let (speedup, levels) = rest.split_once(':').unwrap();
    let res = Res::parse(res);
    let step = Duration::from_secs_f64(STEP_MS as f64 / 1000.0 / speedup.parse::<f64>().unwrap());
    let levels: Vec<usize> = levels.split(',').map(|v| v.parse().unwrap()).collect();
    let mut held = Held {
        fds: Vec::new(),
        listener: None,
        sockets: Vec::new(),
        threads: Vec::new(),
        memory: Vec::new(),
    };
    let parent = std::os::unix::process::parent_id();
    let start = Instant::now();
    loop {
        let k = (start.elapsed().as_secs_f64() / step.as_secs_f64()) as usize;
        held.set(res, levels[k.min(levels.len() - 1)]);
        if std::os::unix::process::parent_id() != parent {
            return;
        }
        std::thread::sleep(step / 4);
    }
}

// ------------------------------------------------------------ the scenarios

/// A scenario: a named process and its schedule.
struct Scenario {
    name: String,
    res: Res,
    /// What it is, for the tables: `leak/steady/slow`, `control/sawtooth`…
    shape: String,
    /// The step its leak begins at; `None` for controls.
    onset: Option<usize>,
    /// How many to hold at each step.
    levels: Vec<usize>,
    /// Steps at which the process is killed and started again.
    restarts: Vec<usize>,
}

/// Amplitude of controls, and leak rates per minute (slow, medium, fast).
fn scale(res: Res) -> (f64, [f64; 3]) {
    match res {
        Res::Fd => (40.0, [2.0, 6.0, 20.0]),
        Res::Socket => (20.0, [1.0, 3.0, 10.0]),
        Res::Thread => (20.0, [1.0, 3.0, 10.0]),
        Res::Memory => (96.0, [4.0, 12.0, 24.0]),
    }
}

/// A busy process's own use: a level that wanders around `base` by about `amp`.
fn wander(rng: &mut Rng, steps: usize, amp: f64) -> Vec<f64> {
    let mut x = 0.0;
    (0..steps)
        .map(|_| {
            x += 0.3 * amp * rng.normal() - 0.2 * x;
            x.clamp(-amp, amp)
        })
        .collect()
}

fn scenarios(seed: u64, steps: usize, small: bool) -> Vec<Scenario> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let kinds = [Res::Fd, Res::Socket, Res::Thread, Res::Memory];
    let mins = steps as f64 / STEPS_PER_MIN as f64;
    for res in kinds {
        let (amp, rates) = scale(res);
        let base = amp / 2.0;
        let noise_amp = (amp / 10.0).max(1.0);
        let mut add = |rng: &mut Rng,
                       shape: String,
                       onset: Option<usize>,
                       f: &dyn Fn(&mut Rng, f64) -> f64,
                       restarts: Vec<usize>| {
            let noise = wander(rng, steps, noise_amp);
            let levels = (0..steps)
                .map(|k| {
                    let m = k as f64 / STEPS_PER_MIN as f64;
                    (f(rng, m) + noise[k]).round().max(0.0) as usize
                })
                .collect();
            out.push(Scenario {
                name: format!("lk-{seed}-{}", out.len()),
                res,
                shape,
                onset,
                levels,
                restarts,
            });
        };
        let rate_names = ["slow", "medium", "fast"];
        let rates_run: &[usize] = if small { &[2] } else { &[0, 1, 2] };
        for &ri in rates_run {
            let rate = rates[ri];
            // Steady, from a random onset.
            let on = rng.range(3.0, 10.0);
            add(
                &mut rng,
                format!("leak/steady/{}", rate_names[ri]),
                Some((on * STEPS_PER_MIN as f64) as usize),
                &move |_, m| base + rate * (m - on).max(0.0),
                Vec::new(),
            );
            if small {
                continue;
            }
            // In chunks every few minutes, or under a collector's sawtooth (memory).
            let on = rng.range(3.0, 10.0);
            if res == Res::Memory {
                let period = rng.range(2.0, 5.0);
                add(
                    &mut rng,
                    format!("leak/under-gc/{}", rate_names[ri]),
                    Some((on * STEPS_PER_MIN as f64) as usize),
                    &move |_, m| base + rate * (m - on).max(0.0) + amp * (m / period).fract(),
                    Vec::new(),
                );
            } else {
                let every = rng.range(2.0, 5.0);
                add(
                    &mut rng,
                    format!("leak/chunks/{}", rate_names[ri]),
                    Some((on * STEPS_PER_MIN as f64) as usize),
                    &move |_, m| {
                        let chunks = ((m - on).max(0.0) / every).floor();
                        base + rate * every * chunks
                    },
                    Vec::new(),
                );
            }
        }
        // Controls.
        let period = rng.range(2.0, 6.0);
        add(
            &mut rng,
            "control/sawtooth".into(),
            None,
            &move |_, m| base + amp * (m / period).fract(),
            Vec::new(),
        );
        if small {
            continue;
        }
        let bursts: Vec<(f64, f64)> = {
            let mut at = rng.range(1.0, 6.0);
            let mut v = Vec::new();
            while at < mins {
                let len = rng.range(1.0, 3.0);
                v.push((at, at + len));
                at += len + rng.range(3.0, 8.0);
            }
            v
        };
        add(
            &mut rng,
            "control/bursts".into(),
            None,
            &move |_, m| {
                base + if bursts.iter().any(|(a, b)| m >= *a && m < *b) {
                    amp
                } else {
                    0.0
                }
            },
            Vec::new(),
        );
        let at = rng.range(10.0, mins - 5.0);
        add(
            &mut rng,
            "control/step".into(),
            None,
            &move |_, m| base + if m >= at { amp } else { 0.0 },
            Vec::new(),
        );
        // Restarted every 8–15 minutes; each life warms up and levels off.
        let mut restarts = Vec::new();
        let mut t = rng.range(8.0, 15.0);
        while t < mins {
            restarts.push((t * STEPS_PER_MIN as f64) as usize);
            t += rng.range(8.0, 15.0);
        }
        let tau = rng.range(0.5, 2.0);
        let lives: Vec<f64> = std::iter::once(0.0)
            .chain(restarts.iter().map(|&k| k as f64 / STEPS_PER_MIN as f64))
            .collect();
        add(
            &mut rng,
            "control/restarts".into(),
            None,
            &move |_, m| {
                let born = lives
                    .iter()
                    .rev()
                    .find(|&&b| b <= m)
                    .copied()
                    .unwrap_or(0.0);
                base + amp * (1.0 - (-(m - born) / tau).exp())
            },
            restarts,
        );
        add(
            &mut rng,
            "control/busy".into(),
            None,
            &move |_, _| base,
            Vec::new(),
        );
        // Swells: a slow rise over 3–6 minutes, then back.
        let swells: Vec<(f64, f64)> = {
            let mut at = rng.range(1.0, 8.0);
            let mut v = Vec::new();
            while at < mins {
                let len = rng.range(3.0, 6.0);
                v.push((at, len));
                at += len + rng.range(4.0, 10.0);
            }
            v
        };
        add(
            &mut rng,
            "control/swells".into(),
            None,
            &move |_, m| {
                base + swells
                    .iter()
                    .find(|(a, len)| m >= *a && m < a + len + 1.0)
                    .map_or(0.0, |(a, len)| amp * ((m - a) / len).min(1.0))
            },
            Vec::new(),
        );
    }
    out
}

// ---------------------------------------------------------------- the runner

/// Writes what the collector emits for scenario processes, as JSON lines
/// stamped with scenario time.
struct JsonLines<W: std::io::Write> {
    out: W,
    at_ms: i64,
}

impl<W: std::io::Write> Sink for JsonLines<W> {
    fn put(&mut self, metric: &str, labels: &[(&str, &str)], _: MetricKind, value: f64) {
        if !labels
            .iter()
            .any(|(k, v)| *k == "process" && v.starts_with("lk-"))
        {
            return;
        }
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        writeln!(
            self.out,
            "{}",
            serde_json::json!({"metric": metric, "labels": labels, "timestamp_ms": self.at_ms, "value": value})
        )
        .unwrap();
    }
}

fn spawn(s: &Scenario, from: usize, speedup: f64) -> Child {
    let levels: Vec<String> = s.levels[from..].iter().map(|l| l.to_string()).collect();
    Command::new(std::env::current_exe().unwrap())
        .arg0(&s.name)
        .env(
            "WARDEN_LEAKER",
            format!("{}:{speedup}:{}", s.res.name(), levels.join(",")),
        )
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `list` as real processes for `steps` steps, sampling each step into
/// `file`. Returns how late the sampling ran behind its clock, at most.
fn run_processes(list: &[Scenario], steps: usize, speedup: f64, file: &Path) -> Duration {
    let config = CollectConfig {
        processes: list
            .iter()
            .map(|s| ProcessSelector {
                name: s.name.clone(),
                target: ProcessTarget::ProcessName(s.name.clone()),
            })
            .collect(),
        ..CollectConfig::default()
    };
    let mut collector = Collector::new(&config);
    let mut sink = JsonLines {
        out: std::io::BufWriter::new(std::fs::File::create(file).unwrap()),
        at_ms: START_MS,
    };
    let mut children: Vec<Child> = list.iter().map(|s| spawn(s, 0, speedup)).collect();
    let step = Duration::from_secs_f64(STEP_MS as f64 / 1000.0 / speedup);
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for k in 0..steps {
        for (i, s) in list.iter().enumerate() {
            if s.restarts.contains(&k) {
                let _ = children[i].kill();
                let _ = children[i].wait();
                children[i] = spawn(s, k, speedup);
            }
        }
        // Sample in the middle of the step, when every process has moved to it.
        let due = step * k as u32 + step / 2;
        let now = start.elapsed();
        if now < due {
            std::thread::sleep(due - now);
        } else {
            worst = worst.max(now - due);
        }
        sink.at_ms = START_MS + k as i64 * STEP_MS;
        collector.collect(&mut sink);
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    sink.out.flush().unwrap();
    worst
}

/// First raise per (process, pattern), in steps from the start.
type Raises = BTreeMap<(String, String), usize>;

fn replay_findings(dir: &Path, file: &Path, steps: usize) -> (Raises, u64) {
    let (store, _) = replay::load_sources(&[file.to_path_buf()]).unwrap();
    let plugins = warden::policy::PluginCache::new(Engine::new(&EngineOptions::default()).unwrap());
    let sources: Arc<dyn warden::plugin::DataSource> = Arc::new(warden::sources::Sources {
        series: store,
        ..Default::default()
    });
    // The shipped defaults: only the schedule and bounds are set, unless
    // `WARDEN_BENCH_CONFIG` adds settings (`min_rise: 9m`), to see what one
    // trades.
    let extra = std::env::var("WARDEN_BENCH_CONFIG")
        .map(|c| format!(", {c}"))
        .unwrap_or_default();
    let policy = format!(
        "policies:
  - name: leaks
    kind: detector
    plugin: leaks
    trigger: {{interval: 1m}}
    timeout: 30s
    max_findings: 100000
    config: {{registered: false{extra}}}
"
    );
    let policy = policy.as_str();
    let mut r = Replay::new(
        Path::new("bench.yaml"),
        policy,
        &warden::policy::ParseContext {
            data_dir: dir.to_path_buf(),
        },
        &plugins,
        &sources,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut raises = Raises::new();
    let mut errors = Vec::new();
    let summary = r.run(
        START_MS,
        START_MS + (steps as i64 - 1) * STEP_MS,
        |d| match &d.what {
            What::Finding {
                event,
                pattern,
                labels,
                ..
            } if *event == Happened::Raised => {
                let k = ((d.at_ms - START_MS) / STEP_MS) as usize;
                raises
                    .entry((labels["process"].clone(), pattern.clone()))
                    .or_insert(k);
            }
            What::Error { error } => errors.push(error.clone()),
            _ => {}
        },
    );
    assert!(
        errors.is_empty(),
        "evaluations failed: {:?}",
        &errors[..errors.len().min(3)]
    );
    (raises, summary.evaluations)
}

#[derive(Default)]
struct Tally {
    total: usize,
    hit: usize,
}

fn main() {
    if let Ok(spec) = std::env::var("WARDEN_LEAKER") {
        leaker(&spec);
        return;
    }
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let seed = env_u64("WARDEN_BENCH_SEED", 1);
    let rounds = env_u64("WARDEN_BENCH_ROUNDS", if benchmarking { 2 } else { 1 });
    let speedup = env_u64("WARDEN_BENCH_SPEEDUP", if benchmarking { 60 } else { 120 }) as f64;
    let minutes = if benchmarking { 45 } else { 15 };
    let steps = minutes * STEPS_PER_MIN;
    let dir = tempfile::tempdir().unwrap();

    let mut by_shape: BTreeMap<(String, &str), Tally> = BTreeMap::new();
    let (mut leakers, mut detected, mut controls, mut flagged) = (0, 0, 0, 0);
    let mut delays_min = Vec::new();
    let mut cross = 0;
    for round in 0..rounds {
        let list = scenarios(seed + round, steps, !benchmarking);
        // `WARDEN_BENCH_SAMPLES=DIR` keeps each round's samples there and
        // replays them instead of running the processes again when they are
        // there already: for trying the detector's settings on the same
        // samples. Without it every run records afresh.
        let kept = std::env::var_os("WARDEN_BENCH_SAMPLES")
            .map(|d| Path::new(&d).join(format!("seed{}-{minutes}m.jsonl", seed + round)));
        let file = kept
            .clone()
            .unwrap_or_else(|| dir.path().join(format!("round{round}.jsonl")));
        let t = Instant::now();
        let late = if kept.as_ref().is_some_and(|f| f.exists()) {
            println!(
                "round {round}: replaying the samples kept in {}",
                file.display()
            );
            Duration::ZERO
        } else {
            run_processes(&list, steps, speedup, &file)
        };
        let ran = t.elapsed();
        let t = Instant::now();
        let (raises, evaluations) = replay_findings(dir.path(), &file, steps);
        println!(
            "round {round} (seed {}): {} processes for {minutes} scenario minutes in {:.1} s (sampling at most {} ms late); {evaluations} evaluations replayed in {:.2} s",
            seed + round,
            list.len(),
            ran.as_secs_f64(),
            late.as_millis(),
            t.elapsed().as_secs_f64()
        );
        for s in &list {
            let mine: Vec<(&str, usize)> = raises
                .iter()
                .filter(|((p, _), _)| *p == s.name)
                .map(|((_, pattern), k)| (pattern.as_str(), *k))
                .collect();
            let tally = by_shape.entry((s.shape.clone(), s.res.name())).or_default();
            tally.total += 1;
            match s.onset {
                Some(onset) => {
                    leakers += 1;
                    let first = mine
                        .iter()
                        .filter(|(p, k)| s.res.patterns().contains(p) && *k >= onset)
                        .map(|(_, k)| *k)
                        .min();
                    if let Some(k) = first {
                        detected += 1;
                        tally.hit += 1;
                        delays_min.push((k - onset) as f64 / STEPS_PER_MIN as f64);
                        if std::env::var_os("WARDEN_BENCH_DELAYS").is_some() {
                            println!(
                                "  {} ({} {}): leak from minute {:.1}, found after {:.1}",
                                s.name,
                                s.shape,
                                s.res.name(),
                                onset as f64 / STEPS_PER_MIN as f64,
                                (k - onset) as f64 / STEPS_PER_MIN as f64
                            );
                        }
                    }
                    // Findings of another kind, or before the leak began.
                    cross += mine
                        .iter()
                        .filter(|(p, k)| !s.res.patterns().contains(p) || *k < onset)
                        .count();
                }
                None => {
                    controls += 1;
                    if !mine.is_empty() {
                        println!(
                            "  flagged {} ({} {}): {:?} (minute {})",
                            s.name,
                            s.shape,
                            s.res.name(),
                            mine.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                            mine.iter()
                                .map(|(_, k)| k / STEPS_PER_MIN)
                                .min()
                                .unwrap_or(0)
                        );
                        flagged += 1;
                        tally.hit += 1;
                    }
                }
            }
        }
    }

    println!("\n{:<28} {:>8} {:>10}", "scenario", "resource", "found");
    for ((shape, res), t) in &by_shape {
        println!("{shape:<28} {res:>8} {:>6}/{:<3}", t.hit, t.total);
    }
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    let recall = pct(detected, leakers);
    let fp = pct(flagged, controls);
    let mttd = if delays_min.is_empty() {
        f64::NAN
    } else {
        delays_min.iter().sum::<f64>() / delays_min.len() as f64
    };
    let verdict = |ok: bool| {
        if !benchmarking {
            "not judged: smoke run"
        } else if ok {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "\nleaks: time compressed {speedup}x (a 10 s step lasts {:.0} ms)",
        STEP_MS as f64 / speedup
    );
    println!(
        "recall: {recall:.1}% ({detected}/{leakers} leaking processes)   goal >= 95%   {}",
        verdict(recall >= 95.0)
    );
    println!(
        "false positives: {fp:.1}% ({flagged}/{controls} controls flagged)   goal <= 5%   {}",
        verdict(fp <= 5.0)
    );
    println!(
        "mean time to detect: {mttd:.1} scenario minutes from the leak's start   goal <= 10   {}",
        verdict(mttd <= 10.0)
    );
    println!("findings on leakers of another kind or before the leak: {cross}");
}
