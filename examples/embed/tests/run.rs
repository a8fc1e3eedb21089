//! Runs the example as its header says a user does (`cargo run -p
//! example-embed`, the same binary) and checks what it prints: the shipped
//! backoff strategy's decisions for one failing operation.

#[test]
fn the_example_retries_with_growing_backoff_then_opens_the_circuit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_example-embed"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    // `base: 50ms`, doubling, ±20 % jitter, capped at 2s.
    for (n, line) in lines[..4].iter().enumerate() {
        let ms: u64 = line
            .strip_prefix(&format!("attempt {}: RetryAfter(", n + 1))
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("not a retry: {line}"));
        let nominal = 50 << n;
        assert!(
            (nominal * 8 / 10..=nominal * 12 / 10).contains(&ms),
            "{line}: {ms} ms is not {nominal} ms ± 20 %"
        );
    }
    // Four failures in a row: `open_circuit_after: 4`, for the default 30s.
    assert_eq!(lines[4], "attempt 5: OpenCircuit(30000)");
}
