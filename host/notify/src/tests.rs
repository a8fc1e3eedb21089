use super::*;

fn parse(yaml: &str) -> Result<NotifierConfig, String> {
    serde_norway::from_str(yaml).map_err(|e| e.to_string())
}

fn build_err(config: &NotifierConfig) -> String {
    build(config).unwrap_err().to_string()
}

#[test]
fn log_config_parses() {
    assert_eq!(parse("type: log").unwrap(), NotifierConfig::Log {});
    assert_eq!(build(&NotifierConfig::Log {}).unwrap().describe(), "log");
}

#[test]
fn webhook_config_parses_with_defaults() {
    let config = parse("type: webhook\nurl: http://127.0.0.1:8080/hook").unwrap();
    let NotifierConfig::Webhook(w) = &config else {
        panic!("not a webhook: {config:?}");
    };
    assert_eq!(w.url, "http://127.0.0.1:8080/hook");
    assert_eq!(w.timeout.0, Duration::from_secs(5));
    assert_eq!(w.retries, 3);
    assert_eq!(w.backoff.0, Duration::from_millis(500));
    assert!(w.headers.is_empty());
    assert_eq!(
        build(&config).unwrap().describe(),
        "webhook http://127.0.0.1:8080/hook"
    );

    let config = parse(
        "type: webhook\nurl: http://alerts.internal/in\ntimeout: 2s\nretries: 0\n\
             backoff: 1s\nheaders:\n  Authorization: Bearer abc",
    )
    .unwrap();
    let NotifierConfig::Webhook(w) = &config else {
        panic!("not a webhook: {config:?}");
    };
    assert_eq!(w.timeout.0, Duration::from_secs(2));
    assert_eq!(w.retries, 0);
    assert_eq!(w.headers["Authorization"], Secret("Bearer abc".into()));
    build(&config).unwrap();
}

#[test]
fn alertmanager_config_parses_with_defaults() {
    let config = parse("type: alertmanager\nurl: http://127.0.0.1:9093").unwrap();
    let NotifierConfig::Alertmanager(a) = &config else {
        panic!("not alertmanager: {config:?}");
    };
    assert_eq!(a.timeout.0, Duration::from_secs(5));
    assert_eq!(a.retries, 3);
    assert_eq!(a.backoff.0, Duration::from_millis(500));
    assert_eq!(a.resend_ends_after.0, Duration::from_secs(300));
    assert_eq!(
        build(&config).unwrap().describe(),
        "alertmanager http://127.0.0.1:9093/api/v2/alerts"
    );
}

#[test]
fn unknown_fields_are_rejected() {
    let e = parse("type: webhook\nurl: http://h/\nretry: 3").unwrap_err();
    assert!(e.contains("retry"), "{e}");
    let e = parse("type: alertmanager\nurl: http://h/\nheaders: {}").unwrap_err();
    assert!(e.contains("headers"), "{e}");
    assert!(parse("type: log\nurl: http://h/").is_err());
    assert!(parse("type: email").is_err());
}

#[test]
fn bad_urls_are_rejected_naming_the_field() {
    let webhook = |url: &str| {
        NotifierConfig::Webhook(WebhookConfig {
            url: url.to_owned(),
            timeout: default_timeout(),
            retries: 3,
            backoff: default_backoff(),
            headers: BTreeMap::new(),
            authorization: None,
        })
    };
    let e = build_err(&webhook("https://hooks.example.com/x"));
    assert!(e.starts_with("url: "), "{e}");
    assert!(e.contains("TLS is not built in"), "{e}");

    for garbage in [
        "not a url",
        "hooks.example.com/x",
        "http://",
        "http:///path",
        "http://host:99999/",
        "http://host:0/",
        "http://host:port/",
        "http://user:pw@host/",
        "ftp://host/",
        "http://ho st/",
        "http://[::1/",
    ] {
        let e = build_err(&webhook(garbage));
        assert!(e.starts_with("url: "), "{garbage}: {e}");
    }
    for fine in [
        "http://localhost",
        "http://127.0.0.1:8080/a/b?c=d",
        "http://[::1]:9093/",
        "HTTP://Host.Internal/x",
    ] {
        build(&webhook(fine)).unwrap();
    }

    let e = build_err(&NotifierConfig::Alertmanager(AlertmanagerConfig {
        url: "https://am:9093".to_owned(),
        timeout: default_timeout(),
        retries: 3,
        backoff: default_backoff(),
        resend_ends_after: default_resend_ends_after(),
        authorization: None,
    }));
    assert!(e.starts_with("url: ") && e.contains("TLS"), "{e}");
}

#[test]
fn other_bad_settings_name_their_field() {
    let config = parse("type: webhook\nurl: http://h/\ntimeout: 0s").unwrap();
    assert!(build_err(&config).starts_with("timeout: "));
    let config = parse("type: webhook\nurl: http://h/\nheaders:\n  'Bad Name': x").unwrap();
    assert!(build_err(&config).starts_with("headers.Bad Name: "));
    let config = parse("type: alertmanager\nurl: http://h/api/v2/alerts").unwrap();
    assert!(build_err(&config).starts_with("url: "));
    let config = parse("type: alertmanager\nurl: http://h\nresend_ends_after: 0s").unwrap();
    assert!(build_err(&config).starts_with("resend_ends_after: "));
}

#[test]
fn schema_names_the_types() {
    let schema = serde_json::to_string(&schemars::schema_for!(NotifierConfig)).unwrap();
    for word in ["webhook", "alertmanager", "resend_ends_after", "Duration"] {
        assert!(schema.contains(word), "{word} missing from {schema}");
    }
}

#[test]
fn fingerprint_is_prometheus_fnv() {
    // The empty label set hashes to the FNV-1a offset basis.
    assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
    let a = BTreeMap::from([("alertname".to_owned(), "x".to_owned())]);
    let b = BTreeMap::from([("alertname".to_owned(), "y".to_owned())]);
    assert_ne!(fingerprint(&a), fingerprint(&b));
    assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
}

#[test]
fn backoff_doubles_jitters_and_caps() {
    let headers = BTreeMap::new();
    let post = JsonPost::new(PostSettings {
        target: "t".to_owned(),
        url: "http://127.0.0.1/".to_owned(),
        headers: &headers,
        timeout: Duration::from_secs(1),
        retries: 3,
        backoff: Duration::from_millis(1000),
        authorization: None,
    })
    .unwrap();
    for _ in 0..50 {
        let first = post.delay(0);
        assert!((800..=1200).contains(&first.as_millis()), "{first:?}");
        let third = post.delay(2);
        assert!((3200..=4800).contains(&third.as_millis()), "{third:?}");
        assert!(post.delay(40) <= MAX_BACKOFF);
        assert!(post.delay(40) >= MAX_BACKOFF.mul_f64(0.8));
    }
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
}

#[test]
fn secrets_never_show_in_debug_redacted_copies_or_errors() {
    let config = parse(
            "type: webhook\nurl: http://h/\nheaders:\n  X-Api-Key: k3y-SECRET\nauthorization:\n  credentials: cr3d-SECRET",
        )
        .unwrap();
    build(&config).unwrap();
    let shown = [
        format!("{config:?}"),
        format!("{:?}", build(&config).unwrap()),
        serde_json::to_string(&config.redacted()).unwrap(),
    ];
    for text in &shown {
        assert!(!text.contains("SECRET"), "{text}");
    }
    assert!(shown[2].contains("X-Api-Key") && shown[2].contains(REDACTED));
    // The real values are still what is sent and compared.
    assert!(
        serde_json::to_string(&config)
            .unwrap()
            .contains("k3y-SECRET")
    );

    let e = build_err(&parse("type: webhook\nurl: http://admin:pa55w0rd@h/x").unwrap());
    assert!(e.contains("credentials") && !e.contains("pa55w0rd"), "{e}");
    assert_eq!(shown_url("http://u:p@h:1/a@b"), "http://<redacted>@h:1/a@b");
    assert_eq!(shown_url("http://h/a@b"), "http://h/a@b");
}

#[test]
fn credentials_come_from_a_file_read_on_every_delivery() {
    let dir = std::env::temp_dir().join(format!("warden-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "one\n").unwrap();
    let mut config =
        parse("type: alertmanager\nurl: http://h:9093\nauthorization:\n  credentials_file: token")
            .unwrap();
    config.resolve_paths(&dir);
    let NotifierConfig::Alertmanager(a) = &config else {
        panic!()
    };
    let auth = a.authorization.as_ref().unwrap();
    assert_eq!(auth.credentials_file.as_deref(), Some(file.as_path()));
    build(&config).unwrap();
    assert_eq!(auth.value().unwrap(), "Bearer one");
    std::fs::write(&file, "two").unwrap();
    assert_eq!(auth.value().unwrap(), "Bearer two");
    std::fs::remove_file(&file).unwrap();
    let e = build_err(&config);
    assert!(e.starts_with("authorization.credentials_file: "), "{e}");
    let both = parse(
        "type: webhook\nurl: http://h/\nauthorization: {credentials: a, credentials_file: b}",
    )
    .unwrap();
    assert!(build_err(&both).starts_with("authorization: "));
    std::fs::remove_dir_all(&dir).unwrap();
}
