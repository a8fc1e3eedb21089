//! The compile cache: a plugin is compiled once per engine configuration and
//! loaded from disk afterwards; a damaged entry is replaced, not trusted.

use std::fs;

use warden::plugin::{Engine, EngineOptions, Kind};
use warden_plugins as guests;

#[test]
fn second_load_comes_from_the_cache_and_behaves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    };
    let first = Engine::new(&options).unwrap();
    let a = first
        .load_file(guests::BACKOFF_COMPONENT.as_ref(), Some(Kind::Recovery))
        .unwrap();
    assert!(!a.info().from_cache);
    assert_eq!((first.stats().compiles, first.stats().cache_hits), (1, 0));

    // A new engine (a restarted daemon) finds the artifact.
    let second = Engine::new(&options).unwrap();
    let b = second
        .load_file(guests::BACKOFF_COMPONENT.as_ref(), Some(Kind::Recovery))
        .unwrap();
    assert!(b.info().from_cache);
    assert_eq!((second.stats().compiles, second.stats().cache_hits), (0, 1));
    assert_eq!(a.info().sha256, b.info().sha256);
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "one artifact, no temp files left behind");
    assert!(
        entries[0]
            .file_name()
            .to_string_lossy()
            .starts_with(&a.info().sha256)
    );
}

#[test]
fn a_damaged_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    };
    Engine::new(&options)
        .unwrap()
        .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
        .unwrap();
    let entry = fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(&entry, b"garbage").unwrap();

    let engine = Engine::new(&options).unwrap();
    let p = engine
        .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
        .unwrap();
    assert!(!p.info().from_cache);
    assert_eq!(engine.stats().compiles, 1);
    assert!(
        fs::read(&entry).unwrap().len() > 1000,
        "the entry was rewritten"
    );
}
