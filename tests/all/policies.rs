//! The policies directory: reloads on create, modify, delete and rename; the
//! last good version of a broken file keeps running; rapid edits converge;
//! schedules and state survive reloads of other files and of the policy itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::plugin::{Engine, EngineOptions};
use warden::policy::watch::watch;
use warden::policy::{LiveSet, ParseContext, PluginCache, PolicyDir};
use warden::runtime::{Scheduler, StateKey, StateStore};
use warden::sources::Sources;
use warden::telemetry::Telemetry;

/// A temporary policies directory with a live `PolicyDir` watching it.
pub(crate) struct Env {
    pub dir: tempfile::TempDir,
    pub policies: Arc<PolicyDir>,
    _watch: warden::policy::watch::Watch,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env::with(Arc::new(Sources::default()))
    }

    pub(crate) fn with(sources: Arc<Sources>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        let engine = Engine::new(&EngineOptions {
            cache_dir: Some(dir.path().join("cache")),
        })
        .unwrap();
        let policies = Arc::new(PolicyDir::new(
            &dir.path().join("policies"),
            ParseContext {
                data_dir: dir.path().join("data"),
            },
            PluginCache::new(engine),
            sources,
            Arc::new(Telemetry::default()),
        ));
        policies.reload();
        let w = watch(Arc::clone(&policies)).unwrap();
        Env {
            dir,
            policies,
            _watch: w,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("policies").join(name)
    }

    /// Writes a file whole: a plain write truncates it first, and a reload
    /// that reads it in between sees an empty file (a real error, but not
    /// the one a test waits for).
    pub(crate) fn write(&self, name: &str, text: &str) {
        write_whole(&self.path(name), text);
    }

    /// Waits until `cond` holds for the live set (the watcher reloads on its own).
    pub(crate) fn wait(&self, what: &str, cond: impl Fn(&LiveSet) -> bool) -> Arc<LiveSet> {
        let started = Instant::now();
        loop {
            let set = self.policies.current();
            if cond(&set) {
                return set;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting for: {what}; live set: {:#?}",
                summary(&set)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn summary(set: &LiveSet) -> Vec<(PathBuf, Vec<String>, bool)> {
    set.files
        .values()
        .map(|f| {
            (
                f.path.clone(),
                f.policies.iter().map(|p| p.name().to_owned()).collect(),
                f.error.is_some(),
            )
        })
        .collect()
}

/// Writes `text` to `path` as editors that save safely do: a hidden file
/// in the same directory (the watcher ignores dot files), renamed over it.
pub(crate) fn write_whole(path: &Path, text: &str) {
    let name = path.file_name().unwrap().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.writing"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(crate) fn alert(name: &str, threshold: f64) -> String {
    format!(
        "policies:\n  - name: {name}\n    kind: alert\n    plugin: threshold\n    trigger:\n      interval: 1h\n    config:\n      rules:\n        - {{alert: A, metric: m, condition: gt, threshold: {threshold}}}\n"
    )
}

fn names(set: &LiveSet) -> Vec<String> {
    let mut n: Vec<String> = set.policies().map(|p| p.name().to_owned()).collect();
    n.sort();
    n
}

fn threshold_of(set: &LiveSet, name: &str) -> Option<f64> {
    set.get(name)
        .and_then(|p| p.policy.config["rules"][0]["threshold"].as_f64())
}

#[test]
fn reloads_on_create_modify_delete_and_rename() {
    let env = Env::new();
    env.write("a.yaml", &alert("a", 1.0));
    env.wait("create", |s| names(s) == ["a"]);

    env.write("a.yaml", &alert("a", 2.0));
    env.wait("modify", |s| threshold_of(s, "a") == Some(2.0));

    std::fs::rename(env.path("a.yaml"), env.path("b.yml")).unwrap();
    let set = env.wait("rename", |s| {
        s.files
            .keys()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            == ["b.yml"]
    });
    assert_eq!(names(&set), ["a"]);

    std::fs::remove_file(env.path("b.yml")).unwrap();
    env.wait("delete", |s| s.files.is_empty() && names(s).is_empty());
}

#[test]
fn editor_save_patterns_end_in_the_final_content() {
    let env = Env::new();
    env.write("a.yaml", &alert("a", 1.0));
    env.wait("create", |s| names(s) == ["a"]);
    // vim: write a swap file, write a backup, replace by rename.
    env.write(".a.yaml.swp", "junk that is not yaml: [");
    env.write("a.yaml~", &alert("backup", 9.0));
    env.write(".a.yaml.tmp", &alert("a", 3.0));
    std::fs::rename(env.path(".a.yaml.tmp"), env.path("a.yaml")).unwrap();
    let set = env.wait("write-then-rename", |s| threshold_of(s, "a") == Some(3.0));
    assert_eq!(names(&set), ["a"], "backup and swap files are not policies");
    assert!(set.files.values().all(|f| f.error.is_none()));
}

#[test]
fn broken_yaml_keeps_the_last_good_version_and_says_why() {
    let env = Env::new();
    env.write("a.yaml", &alert("a", 1.0));
    let good = env.wait("create", |s| names(s) == ["a"]);
    let before = Arc::clone(good.get("a").unwrap());

    env.write(
        "a.yaml",
        "policies:\n  - name: a\n    kind: alert\n    plugin: threshold\n    timout: 5s\n",
    );
    let set = env.wait("error reported", |s| {
        s.files.values().any(|f| f.error.is_some())
    });
    let file = set.files.values().next().unwrap();
    let err = &file.error.as_ref().unwrap().errors[0];
    assert_eq!((err.line, err.column), (Some(5), Some(5)), "{err}");
    assert!(err.message.contains("did you mean `timeout`?"), "{err}");
    // The last good version runs on, the very same compiled policy.
    assert!(Arc::ptr_eq(set.get("a").unwrap(), &before));

    // Fixing the file clears the error.
    env.write("a.yaml", &alert("a", 4.0));
    let set = env.wait("fixed", |s| threshold_of(s, "a") == Some(4.0));
    assert!(set.files.values().all(|f| f.error.is_none()));
}

#[test]
fn broken_wasm_keeps_the_last_good_version() {
    let env = Env::new();
    let wasm = env.path("mine.wasm");
    std::fs::copy(warden_plugins::THRESHOLD_COMPONENT, &wasm).unwrap();
    let text = |t: f64| alert("a", t).replace("plugin: threshold", "plugin: ./mine.wasm");
    env.write("a.yaml", &text(1.0));
    env.wait("create", |s| names(s) == ["a"]);

    std::fs::write(&wasm, b"\0asm\x0d\0\x01\0garbage").unwrap();
    env.write("a.yaml", &text(2.0));
    let set = env.wait("error", |s| s.files.values().any(|f| f.error.is_some()));
    let errors = &set
        .files
        .values()
        .next()
        .unwrap()
        .error
        .as_ref()
        .unwrap()
        .errors;
    assert!(
        errors[0]
            .message
            .contains("mine.wasm`: not a valid component"),
        "{}",
        errors[0]
    );
    assert_eq!(
        threshold_of(&set, "a"),
        Some(1.0),
        "the last good version runs on"
    );
}

#[test]
fn a_name_taken_by_another_file_is_refused_there_only() {
    let env = Env::new();
    env.write("a.yaml", &alert("shared", 1.0));
    env.wait("a", |s| names(s) == ["shared"]);
    env.write("b.yaml", &alert("shared", 2.0));
    let set = env.wait("b refused", |s| s.files.values().any(|f| f.error.is_some()));
    let b = set
        .files
        .values()
        .find(|f| f.path.ends_with("b.yaml"))
        .unwrap();
    assert!(
        b.error.as_ref().unwrap().errors[0]
            .message
            .contains("already used by a policy in"),
        "{:?}",
        b.error
    );
    assert_eq!(threshold_of(&set, "shared"), Some(1.0));
}

#[test]
fn a_sha256_pin_is_enforced() {
    let env = Env::new();
    let pinned = |sha: &str| {
        alert("a", 1.0).replace(
            "    plugin: threshold\n",
            &format!("    plugin: threshold\n    sha256: {sha}\n"),
        )
    };
    env.write("a.yaml", &pinned(&"0".repeat(64)));
    let set = env.wait("refused", |s| s.files.values().any(|f| f.error.is_some()));
    let e = &set
        .files
        .values()
        .next()
        .unwrap()
        .error
        .as_ref()
        .unwrap()
        .errors[0];
    assert!(e.message.contains("but the policy pins 0000"), "{e}");

    let real = warden::plugin::Engine::new(&EngineOptions::default())
        .unwrap()
        .load_builtin("threshold", None)
        .unwrap()
        .info()
        .sha256
        .clone();
    env.write("a.yaml", &pinned(&real));
    env.wait("accepted", |s| {
        names(s) == ["a"] && s.files.values().all(|f| f.error.is_none())
    });
}

#[test]
fn a_hundred_rapid_edits_converge_to_the_last_content() {
    let env = Env::new();
    for i in 0..100 {
        env.write("a.yaml", &alert("a", f64::from(i)));
    }
    env.wait("last content", |s| threshold_of(s, "a") == Some(99.0));
    // And it stays there: no late event brings back an older version.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(threshold_of(&env.policies.current(), "a"), Some(99.0));
}

#[test]
fn unchanged_policies_are_neither_recompiled_nor_replaced() {
    let env = Env::new();
    env.write("a.yaml", &alert("a", 1.0));
    env.write("b.yaml", &alert("b", 1.0));
    let set = env.wait("both", |s| names(s) == ["a", "b"]);
    let a = Arc::clone(set.get("a").unwrap());
    env.write("b.yaml", &alert("b", 2.0));
    let set = env.wait("b changed", |s| threshold_of(s, "b") == Some(2.0));
    assert!(
        Arc::ptr_eq(set.get("a").unwrap(), &a),
        "a's file did not change"
    );
    // Rewriting a file with a whitespace-only change keeps the policy too.
    env.write("a.yaml", &format!("{}\n\n", alert("a", 1.0)));
    let set = env.wait("a rewritten", |s| {
        s.files.values().any(|f| {
            f.path.ends_with("a.yaml") && f.loaded_at_ms.is_some_and(|t| t > a.loaded_at_ms - 1)
        }) && s.generation > 2
    });
    assert!(
        Arc::ptr_eq(set.get("a").unwrap(), &a),
        "same spec, same policy"
    );
}

fn path_policy(env: &Env, file: &str) -> StateKey {
    StateKey::policy(&env.path(file), "ticking")
}

#[test]
fn a_policy_on_an_interval_keeps_its_schedule_while_another_file_reloads_100_times() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = Env::new();
    let ticking = "policies:\n  - name: ticking\n    kind: detector\n    plugin: linear-trend\n    trigger:\n      interval: 100ms\n    config: {metric: m, capacity: 1}\n";
    env.write("tick.yaml", ticking);
    env.wait("ticking", |s| names(s) == ["ticking"]);
    let state = Arc::new(StateStore::default());
    let scheduler = Arc::new(Scheduler::new(
        Arc::clone(&state),
        Arc::new(Telemetry::default()),
    ));
    let _guard = rt.enter();
    scheduler.sync(&env.policies.current());
    let mut changes = env.policies.subscribe();
    let s2 = Arc::clone(&scheduler);
    rt.spawn(async move {
        while changes.changed().await.is_ok() {
            let set = changes.borrow_and_update().clone();
            s2.sync(&set);
        }
    });
    let key = path_policy(&env, "tick.yaml");
    let evaluations = || state.get(&key).map_or(0, |s| s.evaluations);
    let wait_for = |what: &str, n: u64| {
        let t = Instant::now();
        while evaluations() < n {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: {:?}",
                state.get(&key)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("the first evaluation", 1);
    // A schedule counts its ticks from when it started: after each reload
    // the tick of the latest evaluation is where it was or further, never
    // back at the start, as it would be had the reload restarted the
    // policy. Late ticks on a loaded machine change nothing here.
    let mut ticks = Vec::new();
    for i in 0..100 {
        env.write("other.yaml", &alert("other", f64::from(i)));
        // Each edit lands as its own reload.
        env.wait("other reloaded", |s| {
            threshold_of(s, "other") == Some(f64::from(i))
        });
        ticks.push(state.get(&key).and_then(|s| s.last_tick));
    }
    assert!(
        ticks.iter().all(Option::is_some) && ticks.windows(2).all(|w| w[0] <= w[1]),
        "the schedule restarted: ticks after each reload {ticks:?}"
    );
    // And it is still running afterwards.
    let after = evaluations();
    wait_for("evaluations after the reloads", after + 3);
    let st = state.get(&key).unwrap();
    assert!(st.last_tick >= *ticks.last().unwrap(), "{st:?}");
    assert_eq!(st.failures, 0, "{st:?}");
    assert!(env.policies.stats().reloads >= 100);
    drop(scheduler);
}

#[test]
fn state_survives_a_reload_of_the_policy_itself() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = Env::new();
    let ticking = |capacity: u32| {
        format!(
            "policies:\n  - name: ticking\n    kind: detector\n    plugin: linear-trend\n    trigger:\n      interval: 50ms\n    config: {{metric: m, capacity: {capacity}}}\n"
        )
    };
    env.write("tick.yaml", &ticking(1));
    env.wait("ticking", |s| names(s) == ["ticking"]);
    let state = Arc::new(StateStore::default());
    let scheduler = Scheduler::new(Arc::clone(&state), Arc::new(Telemetry::default()));
    let _guard = rt.enter();
    scheduler.sync(&env.policies.current());
    let key = path_policy(&env, "tick.yaml");
    let wait_evals = |n: u64| {
        let t = Instant::now();
        while state.get(&key).map_or(0, |s| s.evaluations) < n {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_evals(3);
    state.set_cooldown(&key, 42);
    env.write("tick.yaml", &ticking(2));
    let set = env.wait("new config", |s| {
        s.get("ticking")
            .is_some_and(|p| p.policy.config["capacity"] == 2)
    });
    scheduler.sync(&set);
    let before = state.get(&key).unwrap().evaluations;
    wait_evals(before + 3);
    let st = state.get(&key).unwrap();
    assert!(st.evaluations >= before + 3, "counting went on: {st:?}");
    assert_eq!(
        st.cooldown_until_ms,
        Some(42),
        "a cooldown outlives the edit"
    );

    // Removing the policy drops its state.
    std::fs::remove_file(env.path("tick.yaml")).unwrap();
    let set = env.wait("removed", |s| s.files.is_empty());
    scheduler.sync(&set);
    assert!(state.get(&key).is_none());
    assert_eq!(scheduler.scheduled(), 0);
}

#[test]
fn check_reports_located_errors_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("good.yaml"), alert("good", 1.0)).unwrap();
    std::fs::write(p("bad.yaml"), "policies:\n  - name: bad\n    kind: cleanup\n    plugin: threshold\n    trigger:\n      cron: \"0 0 31 2 *\"\n").unwrap();
    let run = |args: &[&Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("check")
            .args(args)
            .output()
            .unwrap()
    };

    let ok = run(&[&p("good.yaml")]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "ok: 1 policies in 1 files"
    );

    let out = run(&[dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let bad = p("bad.yaml").display().to_string();
    assert!(
        text.contains(&format!(
            "{bad}:4:13: policy `bad`: the shipped plugin `threshold` is a alert plugin"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{bad}:6:13: policy `bad`: the cron expression `0 0 31 2 *` can never fire"
        )),
        "{text}"
    );

    let json = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let bad_file = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("bad.yaml"))
        .unwrap();
    assert_eq!(bad_file["errors"][0]["line"], 4);
}

#[test]
fn check_compiles_plugins_and_links_them_to_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        warden_plugins::BACKOFF_COMPONENT,
        dir.path().join("backoff.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notwasm.wasm"), "hello").unwrap();
    let text = "policies:\n  - name: wrong-world\n    kind: alert\n    plugin: ./backoff.wasm\n  - name: missing\n    kind: alert\n    plugin: ./nope.wasm\n  - name: junk\n    kind: alert\n    plugin: ./notwasm.wasm\n";
    std::fs::write(dir.path().join("p.yaml"), text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("p.yaml:2: policy `wrong-world`: plugin"),
        "{text}"
    );
    assert!(
        text.contains(
            "is a recovery plugin (world `recovery-strategy`), but the policy is of kind `alert`"
        ),
        "{text}"
    );
    assert!(
        text.contains("policy `missing`: plugin") && text.contains("cannot be read"),
        "{text}"
    );
    assert!(
        text.contains("policy `junk`: plugin") && text.contains("not a WebAssembly file"),
        "{text}"
    );
}

#[test]
fn the_default_policy_set_passes_check() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("ok: 8 policies in 5 files"), "{text}");
}

#[test]
fn schema_is_a_json_schema_of_the_format() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("schema")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    let spec = &v["$defs"]["PolicySpec"];
    for field in [
        "name",
        "kind",
        "plugin",
        "sha256",
        "trigger",
        "scope",
        "config",
        "enabled",
        "dry_run",
        "timeout",
        "memory_limit",
        "retries",
        "cooldown",
        "severity",
        "labels",
        "on_failure",
        "quota",
    ] {
        assert!(spec["properties"][field].is_object(), "missing `{field}`");
    }
    assert_eq!(
        spec["additionalProperties"], false,
        "unknown fields are rejected"
    );
}

#[test]
fn alert_state_follows_edits_of_for_and_threshold() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sources = Arc::new(Sources::default());
    let env = Env::with(Arc::clone(&sources));
    let rule = |for_: &str, threshold: u32| {
        format!(
            "policies:\n  - name: hot\n    kind: alert\n    plugin: threshold\n    trigger: manual\n    for: {for_}\n    config:\n      rules:\n        - {{alert: Hot, metric: temp, condition: gt, threshold: {threshold}}}\n"
        )
    };
    let value = |v: f64| {
        sources
            .series
            .record("temp", &[("host", "a")], warden::clock::now_ms(), v)
            .unwrap()
    };
    value(50.0);
    env.write("hot.yaml", &rule("1h", 40));
    env.wait("loaded", |s| names(s) == ["hot"]);
    let state = Arc::new(StateStore::default());
    let scheduler = Scheduler::new(Arc::clone(&state), Arc::new(Telemetry::default()));
    let file = env.path("hot.yaml");
    let run = || {
        let set = env.policies.current();
        let p = Arc::clone(set.get("hot").unwrap());
        let record = rt
            .block_on(scheduler.run_now(&p))
            .expect("the policy is enabled and idle");
        assert!(record.ok, "{record:?}");
        state
            .alerts(&file, "hot")
            .first()
            .map(|a| (a.phase, a.active_since_ms))
    };
    use warden::runtime::alerts::Phase;
    let (phase, since) = run().unwrap();
    assert_eq!(phase, Phase::Pending, "held for less than `for: 1h`");

    // A shorter `for`, already exceeded by the time held: fires at the next
    // evaluation, and the clock did not restart.
    std::thread::sleep(Duration::from_millis(30));
    env.write("hot.yaml", &rule("20ms", 40));
    env.wait("new for", |s| {
        s.get("hot").is_some_and(|p| {
            p.policy
                .spec
                .hold_for
                .is_some_and(|d| d.0 == Duration::from_millis(20))
        })
    });
    assert_eq!(run(), Some((Phase::Firing, since)));

    // A threshold the value no longer crosses: the firing alert resolves.
    env.write("hot.yaml", &rule("20ms", 90));
    env.wait("new threshold", |s| threshold_of_rule(s) == Some(90));
    assert_eq!(run().map(|a| a.0), Some(Phase::Resolved));

    // Crossing again starts over as pending under the current `for`.
    env.write("hot.yaml", &rule("1h", 10));
    env.wait("lower threshold", |s| threshold_of_rule(s) == Some(10));
    assert_eq!(run().map(|a| a.0), Some(Phase::Pending));
}

fn threshold_of_rule(set: &LiveSet) -> Option<u64> {
    set.get("hot")
        .and_then(|p| p.policy.config["rules"][0]["threshold"].as_u64())
}
