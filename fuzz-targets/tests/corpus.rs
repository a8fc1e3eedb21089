//! Replays every input of every fuzz target's corpus (`fuzz/corpus/<target>/`)
//! and every reproducer of a crash found and fixed
//! (`fuzz/regressions/<target>/`) through the target's code, so that what
//! fuzzing found stays fixed without a fuzzer.

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_corpus_input_and_regression_runs_cleanly() {
    for (target, run) in warden_fuzz_targets::TARGETS {
        let corpus = inputs("corpus", target);
        assert!(
            corpus.len() >= 3,
            "fuzz/corpus/{target}/ has {} inputs; it holds the seeds and what fuzzing kept (`scripts/fuzz.sh` refills it)",
            corpus.len()
        );
        for path in corpus.iter().chain(&inputs("regressions", target)) {
            let bytes = std::fs::read(path).unwrap();
            // A panic names the input through the test's output.
            eprintln!("{target}: {}", path.display());
            run(&bytes);
        }
    }
}

/// The plugin-output harness really lifts: a hand-made result area holding
/// one firing alert comes out as that alert (so the fuzzer's inputs reach
/// the host's conversions, not only wasmtime's refusals).
#[test]
fn the_plugin_output_harness_lifts_a_well_formed_result() {
    let area = seed_alert();
    let alerts = warden_fuzz_targets::lift_alerts(&area).expect("the alert lifts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].name, "hot");
    assert_eq!(alerts[0].value, 1.5);
    // A pointer outside memory is refused, not a crash.
    let mut bad = area.clone();
    bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(warden_fuzz_targets::lift_alerts(&bad).is_none());
}

/// `result<list<alert>, string>` at 1024: ok, one alert at 1040 named by the
/// three bytes at 1100.
fn seed_alert() -> Vec<u8> {
    let mut a = vec![0u8; 79];
    a[4..8].copy_from_slice(&1040u32.to_le_bytes());
    a[8..12].copy_from_slice(&1u32.to_le_bytes());
    let rec = 16;
    a[rec..rec + 4].copy_from_slice(&1100u32.to_le_bytes());
    a[rec + 4..rec + 8].copy_from_slice(&3u32.to_le_bytes());
    a[rec + 8] = 0; // firing
    a[rec + 9] = 1; // warning
    a[rec + 32..rec + 40].copy_from_slice(&1.5f64.to_le_bytes());
    a[76..79].copy_from_slice(b"hot");
    a
}
