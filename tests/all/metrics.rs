//! The metrics pipeline end to end against the real binary: HTTP push and its
//! refusals, nothing lost on SIGTERM, only whole batch files after kill -9, a
//! restart that refills the store, and a real Prometheus scraping `/metrics`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::metrics::persist::{RecordIn, batch_files, read_batch};

use crate::daemon::{Daemon, free_port};
use crate::http::{agent, get, get_text, post, wait};

/// A daemon with one policy-less directory and `config`.
fn daemon(config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    Daemon::start_in(dir, Some(config))
}

fn samples(metric: &str, from: usize, n: usize) -> Value {
    json!({
        "samples": (from..from + n)
            .map(|i| json!({"metric": metric, "labels": {"shard": (i % 10).to_string()}, "value": i}))
            .collect::<Vec<_>>()
    })
}

/// Every batch file, read and checked; the count of records of `metric`.
fn on_disk(dir: &Path, metric: &str) -> (usize, usize) {
    let files = batch_files(dir).unwrap();
    let mut n = 0;
    for (path, _) in &files {
        let batch = read_batch(path).unwrap_or_else(|e| panic!("{e:#}"));
        n += batch
            .records
            .iter()
            .filter(|r| matches!(r, RecordIn::Gauge(s) if s.metric == metric))
            .count();
    }
    (files.len(), n)
}

const QUIET: &str = "metrics:\n  collect:\n    enabled: false\n";

/// Records of `metric` in each batch file, oldest file first.
fn per_file(dir: &Path, metric: &str) -> Vec<usize> {
    batch_files(dir)
        .unwrap()
        .iter()
        .map(|(path, _)| {
            let batch = read_batch(path).unwrap_or_else(|e| panic!("{e:#}"));
            batch
                .records
                .iter()
                .filter(|r| matches!(r, RecordIn::Gauge(s) if s.metric == metric))
                .count()
        })
        .collect()
}

#[test]
fn sigterm_writes_every_accepted_record_and_a_restart_refills_the_store() {
    // A flush interval of an hour: a batch is written when it is full, and
    // only the shutdown can write the rest.
    let config = format!(
        "{QUIET}  store:\n    max_samples: 5000\n  persist:\n    flush_interval: 1h\n    max_batch_size: 7000\n    max_queue_size: 100000\n"
    );
    let d = daemon(&config);
    let metrics_dir = d.dir.path().join("warden-data/metrics");
    let mut sent = 0;
    let mut push = |rounds: std::ops::Range<usize>| {
        for round in rounds {
            let (status, body) = post(
                &d.addr,
                "/api/v1/metrics",
                &samples("load_test", round * 1000, 1000),
            );
            assert_eq!(status, 200, "{body}");
            sent += body["accepted"].as_u64().unwrap() as usize;
        }
    };
    // Each full batch is waited for on disk before the next is sent, so the
    // writer never has two to group into one file.
    push(0..7);
    wait("the first full batch is written", 20, || {
        per_file(&metrics_dir, "load_test") == [7000]
    });
    push(7..14);
    wait("the second full batch is written", 20, || {
        per_file(&metrics_dir, "load_test") == [7000, 7000]
    });
    push(14..20);
    assert_eq!(sent, 20_000);
    let dir = d.stop();
    let metrics_dir = dir.path().join("warden-data/metrics");
    // The 6,000 that never filled a batch were written by the shutdown, as
    // a third file.
    assert_eq!(per_file(&metrics_dir, "load_test"), [7000, 7000, 6000]);
    assert_eq!(on_disk(&metrics_dir, "load_test"), (3, sent));

    // A restart puts them back in the store.
    let d = Daemon::start_in(dir, Some(&config));
    let agg = get(
        &d.addr,
        "/api/v1/series/aggregate?metric=load_test&window=1h&aggregate=count,max",
    );
    assert_eq!(agg["combined"]["count"], 20_000.0, "{agg}");
    assert_eq!(agg["combined"]["max"], 19_999.0);
    assert_eq!(agg["series"].as_array().unwrap().len(), 10);
    let each = get(
        &d.addr,
        "/api/v1/series/aggregate?metric=load_test&window=1h&aggregate=p50&by=series",
    );
    assert!(each["combined"].is_null(), "{each}");
    assert_eq!(each["series"].as_array().unwrap().len(), 10);
    let range = get(
        &d.addr,
        "/api/v1/series?metric=load_test&match=shard=3&window=1h",
    );
    assert_eq!(
        range["series"][0]["samples"].as_array().unwrap().len(),
        2000
    );
    d.stop();
}

#[test]
fn kill_9_during_heavy_ingest_leaves_only_whole_batches() {
    let config = format!(
        "{QUIET}  persist:\n    flush_interval: 20ms\n    max_batch_size: 2000\n    max_queue_size: 200000\n    compression: zstd\n"
    );
    let mut d = daemon(&config);
    let addr = d.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushers: Vec<_> = (0..2)
        .map(|t| {
            let addr = addr.clone();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let body = samples("heavy", t * 1000, 1000).to_string();
                let a = agent();
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match a
                        .post(&format!("http://{addr}/api/v1/metrics"))
                        .header("content-type", "application/json")
                        .send(body.clone())
                    {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => break,
                    }
                }
                ok
            })
        })
        .collect();
    let metrics_dir = d.dir.path().join("warden-data/metrics");
    // Kill once several batches are on disk, with ingest still going on.
    let t = Instant::now();
    while batch_files(&metrics_dir).map_or(0, |f| f.len()) < 5 {
        assert!(t.elapsed() < Duration::from_secs(30), "no batches written");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    d.signal("-KILL");
    let _ = d.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let accepted: usize = pushers.into_iter().map(|p| p.join().unwrap()).sum();
    assert!(accepted > 0);
    let (files, n) = on_disk(&metrics_dir, "heavy");
    assert!(files >= 5 && n > 0, "{files} files, {n} records");
    // Whatever was cut off mid-write is a hidden temporary, never a batch name.
    for entry in std::fs::read_dir(&metrics_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with("metrics_")
                || (name.starts_with(".metrics_") && name.ends_with(".tmp")),
            "{name}"
        );
    }
    // A restart removes the temporaries and refills from the whole batches.
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    let d = Daemon::start_in(dir, Some(&config));
    let stats = get(&d.addr, "/api/v1/metrics/stats");
    assert_eq!(stats["is_running"], true);
    let agg = get(
        &d.addr,
        "/api/v1/series/aggregate?metric=heavy&window=1h&aggregate=count",
    );
    assert!(agg["combined"]["count"].as_f64().unwrap() > 0.0, "{agg}");
    assert!(
        std::fs::read_dir(&metrics_dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
    d.stop();
}

#[test]
fn every_invalid_record_is_refused_by_field_and_nothing_of_the_batch_is_kept() {
    let d = daemon(QUIET);
    let body = json!({
        "samples": [
            {"metric": "ok_metric", "value": 1},
            {"metric": "9starts_with_digit", "value": 1},
            {"metric": "has-dash", "value": 1},
            {"metric": "warden_policy_evaluations", "value": 1},
            {"metric": "m", "labels": {"__reserved": "x"}, "value": 1},
            {"metric": "m", "labels": {"bad-label": "x"}, "value": 1},
            {"metric": "m", "labels": {"user_id": "42"}, "value": 1},
            {"metric": "c", "type": "counter", "value": -1},
            {"metric": "m", "value": 1, "timestamp_ms": 1},
        ],
        "operations": [
            {"operation_type": "api", "operation_name": "GET /", "duration_ms": -5},
            {"operation_type": "api", "operation_name": "GET /", "duration_ms": 1, "metadata": {"email": "a@b.c"}},
            {"operation_type": "api", "operation_name": "GET /", "duration_ms": 1, "metadata": {"Session-Id": "s"}},
            {"operation_type": "", "operation_name": "GET /", "duration_ms": 1},
            {"operation_type": "api", "operation_name": "GET /", "duration_ms": 1, "metadata": {"blob": "x".repeat(9000)}},
            {"operation_type": "api", "operation_name": "GET /", "duration_ms": 1, "error_message": "e".repeat(5000)},
        ]
    });
    let (status, v) = post(&d.addr, "/api/v1/metrics", &body);
    assert_eq!(status, 400, "{v}");
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "samples[1].metric",
            "samples[2].metric",
            "samples[3].metric",
            "samples[4].labels.__reserved",
            "samples[5].labels.bad-label",
            "samples[6].labels.user_id",
            "samples[7].value",
            "samples[8].timestamp_ms",
            "operations[0].duration_ms",
            "operations[1].metadata.email",
            "operations[2].metadata.Session-Id",
            "operations[3].operation_type",
            "operations[4].metadata",
            "operations[5].error_message",
        ],
        "{v:#}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("nothing in this batch was recorded")
    );
    // NaN cannot be written in JSON; a non-number is a parse error naming the spot.
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"samples": [{"metric": "m", "value": "NaN"}]}),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("line 1 column"),
        "{v}"
    );
    let (status, v) = post(&d.addr, "/api/v1/metrics", &json!({"sample": []}));
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `sample`"),
        "{v}"
    );
    // The valid first record was not kept either.
    let stats = get(&d.addr, "/api/v1/metrics/stats");
    assert_eq!(stats["total_recorded"], 0, "{stats}");
    let q = get(&d.addr, "/api/v1/series?metric=ok_metric");
    assert!(q["series"].as_array().unwrap().is_empty());
    d.stop();
}

#[test]
fn pii_keys_from_the_config_file_replace_the_default_list() {
    let d = daemon(&format!("{QUIET}  pii_keys: [ssn]\n"));
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({
            "samples": [{"metric": "m", "labels": {"SSN": "123"}, "value": 1}],
            "operations": [{"operation_type": "api", "operation_name": "GET /", "duration_ms": 1, "metadata": {"ssn": "123"}}],
        }),
    );
    assert_eq!(status, 400, "{v}");
    let refused: Vec<(&str, &str)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["problem"].as_str().unwrap()))
        .collect();
    assert_eq!(refused.len(), 2, "{v:#}");
    assert_eq!(refused[0].0, "samples[0].labels.SSN");
    assert_eq!(refused[1].0, "operations[0].metadata.ssn");
    assert!(
        refused.iter().all(|(_, p)| p.contains("personal data")),
        "{v:#}"
    );
    // The configured list replaces the default one: `email` is no longer refused.
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({
            "samples": [{"metric": "m", "labels": {"email": "team@example.org"}, "value": 1}],
            "operations": [{"operation_type": "api", "operation_name": "GET /", "duration_ms": 1, "metadata": {"user_id": "7"}}],
        }),
    );
    assert_eq!(status, 200, "{v}");
    d.stop();
}

#[test]
fn the_series_cap_refuses_with_a_clear_error_and_counts() {
    let d = daemon(&format!("{QUIET}  store:\n    max_series: 3\n"));
    let (status, v) = post(&d.addr, "/api/v1/metrics", &samples("capped", 0, 3));
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(&d.addr, "/api/v1/metrics", &samples("capped", 3, 1));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["errors"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("limit of 3 series"),
        "{v}"
    );
    let text = get_text(&d.addr, "/metrics");
    assert!(
        text.contains("warden_metrics_series_refused_total 1"),
        "{text}"
    );
    d.stop();
}

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> &'static str {
    let path = "/usr/bin/prometheus";
    assert!(
        Path::new(path).exists(),
        "this test needs Prometheus at {path}: `apt-get install prometheus` (.ci/run installs it)"
    );
    path
}

impl Prometheus {
    fn scraping(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: warden\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Polls an instant query until `found` accepts its result.
    fn until(&self, query: &str, found: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        let mut last = Value::Null;
        while t.elapsed() < Duration::from_secs(60) {
            let url = format!("http://{}/api/v1/query", self.addr);
            if let Ok(mut r) = agent().get(&url).query("query", query).call()
                && let Ok(v) = r
                    .body_mut()
                    .read_to_string()
                    .map(|t| serde_json::from_str::<Value>(&t).unwrap_or_default())
            {
                if found(&v["data"]["result"]) {
                    return v["data"]["result"].clone();
                }
                last = v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("Prometheus never returned what `{query}` should: {last:#}");
    }
}

#[test]
fn a_real_prometheus_scrapes_metrics_and_answers_queries() {
    let d = daemon("metrics:\n  collect:\n    interval: 1s\n");
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"samples": [
            {"metric": "scrape_probe", "labels": {"site": "lab"}, "value": 42.5},
            {"metric": "jobs_done_total", "type": "counter", "value": 7},
            {"metric": "req_seconds", "type": "histogram", "value": 0.25},
        ]}),
    );
    assert_eq!(status, 200, "{v}");
    let p = Prometheus::scraping(&d.addr);
    let r = p.until("scrape_probe", |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(r[0]["metric"]["site"], "lab");
    assert_eq!(r[0]["metric"]["job"], "warden");
    assert_eq!(r[0]["value"][1], "42.5");
    let r = p.until("jobs_done_total", |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(r[0]["value"][1], "7");
    let r = p.until("req_seconds_count", |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(r[0]["value"][1], "1");
    // Collected series and Warden's own counters arrive the same way.
    p.until("memory_total_bytes > 0", |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    p.until("warden_metrics_recorded_total > 0", |r| {
        r.as_array().is_some_and(|a| a.len() == 1)
    });
    // Prometheus saw every scrape succeed.
    let up = p.until("up{job=\"warden\"}", |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(up[0]["value"][1], "1");
    d.stop();
}

#[test]
fn a_pushed_metric_reaches_a_policy_through_query_series() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        crate::policies::alert("a", 5.0),
    )
    .unwrap();
    let d = Daemon::start_in(dir, Some(QUIET));
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"samples": [{"metric": "m", "labels": {"host": "db1"}, "value": 10}]}),
    );
    assert_eq!(status, 200, "{v}");
    // The ingest worker applies records within milliseconds; run the policy
    // until it sees the value.
    let t = Instant::now();
    loop {
        let (status, record) = post(&d.addr, "/api/v1/policies/a/run", &json!({}));
        // 409: its scheduled run is going; a policy runs once at a time.
        assert!(status == 200 || status == 409, "{status}: {record}");
        if record["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("1 alerts firing")
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{record}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = d.status();
    let alert = &s["policies"][0]["alerts"][0];
    assert_eq!(alert["phase"], "firing", "{s:#}");
    assert!(alert["labels"].to_string().contains("db1"), "{alert}");
    d.stop();
}
