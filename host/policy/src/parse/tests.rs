use super::*;

fn cx() -> ParseContext {
    ParseContext {
        data_dir: PathBuf::from("/var/lib/warden"),
    }
}

fn errors(text: &str) -> Vec<String> {
    parse(Path::new("p.yaml"), text, &cx())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn on_dependents_belongs_to_cleanup_policies_over_registered_resources() {
    let cleanup = |kinds: &str| {
        format!(
            "policies:\n  - name: c\n    kind: cleanup\n    plugin: temp-files\n    on_dependents: cascade\n    scope:\n      kinds: {kinds}\n    config: {{max_age: 1d}}\n"
        )
    };
    let p = parse(Path::new("p.yaml"), &cleanup("[app-object]"), &cx()).unwrap();
    assert_eq!(
        p[0].spec.on_dependents,
        Some(crate::schema::OnDependents::Cascade)
    );
    let e = errors(&cleanup("[]"));
    assert!(
        e[0].starts_with("p.yaml:5:") && e[0].contains("names no kind"),
        "{e:#?}"
    );
    let e = errors(
        "policies:\n  - name: a\n    kind: alert\n    plugin: threshold\n    on_dependents: refuse\n    config: {}\n",
    );
    assert!(e[0].contains("cleanup policies only"), "{e:#?}");
    let e = errors(&cleanup("[app-object]").replace("cascade", "always"));
    assert!(
        e[0].contains("on_dependents") || e[0].contains("cascade"),
        "{e:#?}"
    );
}

#[test]
fn a_good_file_gets_defaults() {
    let text = "policies:\n  - name: tmp\n    kind: cleanup\n    plugin: temp-files\n    scope:\n      paths: [\"${data_dir}/scratch\"]\n    config: {max_age: 7d}\n";
    let p = parse(Path::new("p.yaml"), text, &cx()).unwrap();
    assert_eq!(
        p[0].plugin,
        Some(PluginSource::Builtin("temp-files".into()))
    );
    assert_eq!(
        p[0].trigger,
        Trigger::Interval(HumanDuration(Duration::from_secs(3600)))
    );
    assert_eq!(
        p[0].scope_paths,
        vec![PathBuf::from("/var/lib/warden/scratch")]
    );
    assert_eq!(p[0].config, serde_json::json!({"max_age": "7d"}));
    assert_eq!(p[0].limits, Limits::default());
    assert_eq!(p[0].line, 2);
}

#[test]
fn unknown_fields_are_rejected_with_a_suggestion_and_a_position() {
    let e =
        errors("policies:\n  - name: a\n    kind: alert\n    plugin: threshold\n    timout: 5s\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("p.yaml:5:5: "), "{}", e[0]);
    assert!(e[0].contains("unknown field `timout`"), "{}", e[0]);
    assert!(e[0].ends_with("did you mean `timeout`?"), "{}", e[0]);
    let e = errors("policies:\n  - name: a\n    kind: alrt\n");
    assert!(e[0].contains("did you mean `alert`?"), "{}", e[0]);
}

#[test]
fn runtime_fields_are_checked_where_they_are_written() {
    let text = "policies:
  - name: a
    kind: alert
    plugin: threshold
    notify:
      - {type: log}
      - type: webhook
        url: https://hooks.example/x
    max_concurrent: 4
  - name: b
    kind: cleanup
    plugin: temp-files
    max_concurrent: 0
    run_timeout: 0s
    on_pressure: critical
";
    let e = errors(text);
    let find = |s: &str| {
        e.iter()
            .find(|m| m.contains(s))
            .unwrap_or_else(|| panic!("no `{s}` in {e:#?}"))
    };
    assert!(find("notify[1].url").starts_with("p.yaml:8:"), "{e:#?}");
    assert!(find("TLS is not built into Warden").contains("notify[1].url"));
    assert!(find("`max_concurrent` applies to cleanup").starts_with("p.yaml:9:"));
    assert!(find("between 1 and 64").starts_with("p.yaml:13:"));
    assert!(find("`run_timeout` is 0s").starts_with("p.yaml:14:"));
    assert_eq!(e.len(), 4, "{e:#?}");
    let ok = "policies:\n  - name: b\n    kind: cleanup\n    plugin: temp-files\n    max_concurrent: 8\n    run_timeout: 1m\n    on_pressure: critical\n    config: {max_age: 1d}\n";
    let p = parse(Path::new("p.yaml"), ok, &cx()).unwrap();
    assert_eq!(
        (p[0].max_concurrent, p[0].run_timeout),
        (8, Duration::from_secs(60))
    );
}

#[test]
fn semantic_errors_point_at_their_field() {
    let text = "policies:\n  - name: a\n    kind: alert\n    plugin: threshold\n    trigger:\n      cron: \"0 0 30 2 *\"\n  - name: a\n    kind: cleanup\n    plugin: tmp-files\n    timeout: 5m\n    scope:\n      paths: [relative/dir]\n      signals: [BOOM]\n";
    let e = errors(text);
    let find = |s: &str| {
        e.iter()
            .find(|m| m.contains(s))
            .unwrap_or_else(|| panic!("no `{s}` in {e:#?}"))
    };
    assert!(find("can never fire").starts_with("p.yaml:6:13: policy `a`"));
    assert!(find("used by another policy").starts_with("p.yaml:7:"));
    assert!(find("did you mean `temp-files`?").starts_with("p.yaml:9:"));
    assert!(find("at most 60s").starts_with("p.yaml:10:"));
    assert!(find("must be absolute").starts_with("p.yaml:12:"));
    assert!(find("`BOOM` is not a signal").starts_with("p.yaml:13:"));
}

#[test]
fn scopes_may_not_cover_system_or_warden_directories() {
    let policy = |paths: &str, extra: &str| {
        format!(
            "policies:\n  - name: c\n    kind: cleanup\n    plugin: temp-files\n{extra}    scope:\n      paths: {paths}\n    config: {{max_age: 1d}}\n"
        )
    };
    let e = errors(&policy(
        "[/srv/ok, /etc/app/cache, \"${data_dir}\", \"${data_dir}/state/x\", /lib64/junk]",
        "",
    ));
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].starts_with("p.yaml:6:") && e[0].contains("allow_system_paths"),
        "{e:#?}"
    );
    assert!(e[1].contains("holds Warden's data directory"), "{e:#?}");
    assert!(e[2].contains("own state"), "{e:#?}");
    assert!(e[3].contains("`/lib64`"), "{e:#?}");
    // The policies directory is the file's own.
    let here = std::path::absolute(".").unwrap();
    let e = errors(&policy(&format!("[{}]", here.display()), ""));
    assert!(e[0].contains("policies directory"), "{e:#?}");
    // Allowed: system directories, never Warden's own.
    let ok = policy("[/etc/app/cache]", "    allow_system_paths: true\n");
    let p = parse(Path::new("p.yaml"), &ok, &cx()).unwrap();
    assert!(p[0].protected.allow_system_paths);
    let e = errors(&policy(
        "[\"${data_dir}\"]",
        "    allow_system_paths: true\n",
    ));
    assert!(e[0].contains("data directory"), "{e:#?}");
}

#[test]
fn quotas_become_what_the_engine_enforces() {
    let yaml = "policies:\n  - name: files\n    kind: quota\n    trigger: {interval: 10s}\n    quota:\n      resource: temp-files\n      scope:\n        per_owner: true\n        matchers: [{field: labels.workspace, equals: ci}]\n      soft: 80\n      hard: 100\n      burst: 120\n      grace: 1m\n      burst_allowance: 5m\n      period: hourly\n      actions: [warn, deny, cleanup]\n      cleanup: {policies: [tmp], min_reclaim: 10}\n";
    let p = parse(Path::new("q.yaml"), yaml, &cx()).unwrap();
    let d = p[0].quota.as_ref().unwrap();
    assert_eq!(d.name, "files");
    assert!(d.scope.per_owner);
    assert_eq!(d.scope.matchers.len(), 2, "the kind and the label");
    assert_eq!(d.limits.hard, Some(100));
    assert_eq!(d.limits.burst_allowance_ms, Some(300_000));
    assert_eq!(d.period, Some(warden_quotas::Period::Hourly));
    assert_eq!(d.actions.len(), 3);
    assert!(matches!(
        &d.actions[2],
        warden_quotas::Action::Cleanup {
            min_reclaim: 10,
            ..
        }
    ));
}

#[test]
fn bad_quotas_name_their_field() {
    let q = |body: &str| {
        errors(&format!(
            "policies:\n  - name: q\n    kind: quota\n    quota: {{{body}}}\n"
        ))
    };
    let e = q("resource: temp-files, hard: -5, action: deny");
    assert!(
        e[0].contains("`quota.hard`: a limit cannot be below zero, not -5"),
        "{e:#?}"
    );
    let e = q("resource: temp-files, hard: 10GiB, action: deny");
    assert!(
        e[0].contains("`quota.hard`: `10GiB` is not a count"),
        "{e:#?}"
    );
    let e = q(
        "resource: temp-files, hard: 10, burst: 5, burst_allowance: 1m, period: 1h, action: deny",
    );
    assert!(
        e[0].contains("`quota.burst`: the burst limit (5) is below the hard limit (10)"),
        "{e:#?}"
    );
    let e = q("resource: temp-files, hard: 10, measure: rate, action: deny");
    assert!(
        e[0].contains("`quota.period`: a rate is measured over a period"),
        "{e:#?}"
    );
    let e = q("resource: temp-files, hard: 10, period: fortnightly, action: deny");
    assert!(
        e[0].contains("`quota.period`: `fortnightly` is neither a duration"),
        "{e:#?}"
    );
    let e = q("resource: temp-files, hard: 10, action: cleanup");
    assert!(e[0].contains("needs `cleanup: {policies"), "{e:#?}");
    let e = q("resource: temp-files, hard: 10, scope: {matchers: [{field: colour, equals: red}]}");
    assert!(
        e[0].contains("`quota.scope.matchers[0].field`: `colour` is not"),
        "{e:#?}"
    );
    let e = q("resource: gpus, hard: 10");
    assert!(e[0].contains("unknown variant `gpus`"), "{e:#?}");
}

#[test]
fn kinds_plugins_and_quotas_must_fit_together() {
    let e = errors(
        "policies:\n  - name: q\n    kind: quota\n    plugin: threshold\n  - name: c\n    kind: cleanup\n    plugin: threshold\n",
    );
    assert!(e.iter().any(|m| m.contains("take no `plugin`")), "{e:#?}");
    assert!(
        e.iter().any(|m| m.contains("needs a `quota:` block")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`threshold` is a alert plugin")),
        "{e:#?}"
    );
    let q = "policies:\n  - name: t\n    kind: quota\n    quota: {resource: temp-files, unit: bytes, soft: 9GiB, hard: 8GiB, action: warn}\n";
    let e = errors(q);
    assert!(
        e[0].contains(
            "`quota.soft`: the soft limit (9663676416) is above the hard limit (8589934592)"
        ),
        "{e:#?}"
    );
}

#[test]
fn quotas_over_series_say_what_they_read_and_refuse_what_cannot_apply() {
    let policy =
        |quota: &str| format!("policies:\n  - name: q\n    kind: quota\n    quota: {{{quota}}}\n");
    let ok = parse(
        Path::new("p.yaml"),
        &policy("resource: memory-bytes, scope: {per_owner: true}, series: {labels: {env: prod}}, hard: 1GiB, action: warn"),
        &cx(),
    )
    .unwrap();
    assert_eq!(
        ok[0].quota_source,
        Some(QuotaSource::Series(SeriesSource {
            metric: MEMORY_METRIC.into(),
            labels: vec![("env".into(), "prod".into())],
            owner_label: Some("process".into()),
            max_age_ms: DEFAULT_SERIES_MAX_AGE_MS,
        }))
    );
    assert!(matches!(
        ok[0].quota.as_ref().unwrap().measure,
        warden_quotas::Measure::Observed(warden_quotas::Unit::Bytes)
    ));
    for (quota, expected) in [
        (
            "resource: series, hard: 5, action: warn",
            "`quota.series.metric`: `resource: series` needs the metric",
        ),
        (
            "resource: series, series: {metric: 9x}, hard: 5, action: warn",
            "`9x` is not a metric name",
        ),
        (
            "resource: series, series: {metric: m}, measure: rate, hard: 5, action: warn",
            "`quota.measure`",
        ),
        (
            "resource: series, series: {metric: m}, owner: a, hard: 5, action: warn",
            "`quota.owner`: a quota over series selects its series with `quota.series.labels`",
        ),
        (
            "resource: series, series: {metric: m, owner_label: q}, hard: 5, action: warn",
            "names owners only with `scope.per_owner: true`",
        ),
        (
            "resource: series, series: {metric: m, max_age: 0s}, hard: 5, action: warn",
            "`quota.series.max_age` must be longer",
        ),
        (
            "resource: memory-bytes, series: {metric: m}, hard: 5, action: warn",
            "`memory-bytes` reads `process_resident_memory_bytes`",
        ),
        (
            "resource: memory-bytes, hard: 5, actions: [warn, deny]",
            "`quota.actions`: `deny` refuses registrations",
        ),
        (
            "resource: temp-files, series: {metric: m}, hard: 5, action: warn",
            "`quota.series` belongs to",
        ),
    ] {
        let e = errors(&policy(quota));
        assert!(e.iter().any(|m| m.contains(expected)), "{quota}: {e:#?}");
    }
}

#[test]
fn disk_quotas_say_what_paths_they_walk_and_refuse_what_cannot_apply() {
    let policy =
        |quota: &str| format!("policies:\n  - name: d\n    kind: quota\n    quota: {{{quota}}}\n");
    let ok = parse(
        Path::new("p.yaml"),
        &policy("resource: disk-bytes, disk: {paths: [/var/tmp, '${data_dir}/scratch'], budget: 5000}, scope: {per_owner: true}, hard: 2GiB, action: warn"),
        &cx(),
    )
    .unwrap();
    assert_eq!(
        ok[0].quota_source,
        Some(QuotaSource::Disk(DiskSource {
            paths: vec!["/var/tmp".into(), "/var/lib/warden/scratch".into()],
            budget: 5000,
        }))
    );
    assert!(matches!(
        ok[0].quota.as_ref().unwrap().measure,
        warden_quotas::Measure::Observed(warden_quotas::Unit::Bytes)
    ));
    // Paths one inside the other are each their own owner; a sibling whose
    // name only starts alike is not inside.
    for quota in [
        "resource: disk-bytes, disk: {paths: [/srv, /srv/cache]}, scope: {per_owner: true}, hard: 1GiB, action: warn",
        "resource: disk-bytes, disk: {paths: [/srv, /srvx]}, hard: 1GiB, action: warn",
    ] {
        assert!(
            parse(Path::new("p.yaml"), &policy(quota), &cx()).is_ok(),
            "{quota}"
        );
    }
    let default = parse(
        Path::new("p.yaml"),
        &policy("resource: disk-bytes, disk: {paths: [/srv]}, hard: 1GiB, action: warn"),
        &cx(),
    )
    .unwrap();
    assert!(
        matches!(&default[0].quota_source, Some(QuotaSource::Disk(d)) if d.budget == DEFAULT_DISK_BUDGET)
    );
    for (quota, expected) in [
        (
            "resource: disk-bytes, hard: 5GiB, action: warn",
            "`quota.disk`: `resource: disk-bytes` needs the paths",
        ),
        (
            "resource: disk-bytes, disk: {paths: []}, hard: 5GiB, action: warn",
            "`quota.disk.paths`: give 1 to 64 paths, not 0",
        ),
        (
            "resource: disk-bytes, disk: {paths: [tmp]}, hard: 5GiB, action: warn",
            "`quota.disk.paths[0]`: `tmp` must be absolute",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a, /a/../b]}, hard: 5GiB, action: warn",
            "`quota.disk.paths[1]`: `/a/../b` must not contain `..`",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a, /a]}, hard: 5GiB, action: warn",
            "`quota.disk.paths[1]`: `/a` is given twice",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/srv, /srv/cache]}, hard: 5GiB, action: warn",
            "`quota.disk.paths[1]`: `/srv/cache` and `/srv` (paths[0]) lie one inside the other",
        ),
        (
            "resource: disk-bytes, disk: {paths: [tmp, /srv/cache, /srv]}, hard: 5GiB, action: warn",
            "`quota.disk.paths[2]`: `/srv` and `/srv/cache` (paths[1]) lie one inside the other",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a], budget: 10}, hard: 5GiB, action: warn",
            "`quota.disk.budget`: entries per evaluation, from 100",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a]}, unit: count, hard: 5, action: warn",
            "`quota.unit`: `disk-bytes` measures bytes",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a]}, hard: 5GiB, action: deny",
            "`quota.action`: `deny` refuses registrations, and a disk quota measures",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a]}, measure: rate, hard: 5GiB, action: warn",
            "`quota.measure`: a disk quota reads",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a]}, owner: x, hard: 5GiB, action: warn",
            "`quota.owner`: a disk quota measures `quota.disk.paths`",
        ),
        (
            "resource: temp-files, disk: {paths: [/a]}, hard: 5, action: warn",
            "`quota.disk` belongs to `resource: disk-bytes`",
        ),
        (
            "resource: disk-bytes, disk: {paths: [/a], depth: 3}, hard: 5GiB, action: warn",
            "unknown field `depth`",
        ),
    ] {
        let e = errors(&policy(quota));
        assert!(e.iter().any(|m| m.contains(expected)), "{quota}: {e:#?}");
    }
}

#[test]
fn a_second_document_is_refused_where_it_starts() {
    let e = errors("policies: []\n---\npolicies: []\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("p.yaml:2:1: "), "{}", e[0]);
    assert!(e[0].contains("second YAML document"), "{}", e[0]);
}

#[test]
fn a_config_block_over_its_cap_is_refused() {
    let big = "x".repeat(MAX_CONFIG_BYTES);
    let e = errors(&format!(
        "policies:\n  - name: a\n    kind: alert\n    plugin: threshold\n    config: {{blob: {big}}}\n"
    ));
    assert!(
        e[0].starts_with("p.yaml:5:") && e[0].contains("`config` is"),
        "{e:#?}"
    );
}

#[test]
fn files_that_are_not_policy_text_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin1.yaml");
    std::fs::write(&bad, b"policies: []\n# caf\xe9\n").unwrap();
    let e = read_policy_file(&bad).unwrap_err();
    assert_eq!(e.file, bad);
    assert!(
        e.message.contains("not UTF-8") && e.message.contains("offset 18"),
        "{e}"
    );
    let e = read_policy_file(Path::new("/dev/zero")).unwrap_err();
    assert!(e.message.contains("a character device"), "{e}");
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; MAX_POLICY_FILE_BYTES as usize + 1]).unwrap();
    let e = read_policy_file(&big).unwrap_err();
    assert!(e.message.contains("over the"), "{e}");
}

#[test]
fn syntax_errors_have_a_position() {
    let e = errors("policies:\n  - name: a\n   kind: [\n");
    assert!(e[0].starts_with("p.yaml:"), "{}", e[0]);
    assert!(
        e[0].split(':').nth(1).unwrap().parse::<usize>().is_ok(),
        "{}",
        e[0]
    );
}
