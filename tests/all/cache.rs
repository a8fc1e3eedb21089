//! The compile cache: a plugin is compiled once per engine configuration and
//! loaded from disk afterwards; a damaged entry, or one this install did not
//! write, is replaced, not trusted; a cache directory others may write is
//! refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use warden::plugin::{Engine, EngineOptions, Kind};
use warden_plugins as guests;

/// Options with the cache in `<tmp>/cache` (its key goes beside it).
fn options(tmp: &tempfile::TempDir) -> EngineOptions {
    EngineOptions {
        cache_dir: Some(tmp.path().join("cache")),
    }
}

fn only_entry(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let entries: Vec<_> = fs::read_dir(tmp.path().join("cache"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "one artifact, no temp files left behind");
    entries[0].path()
}

#[test]
fn second_load_comes_from_the_cache_and_behaves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(&dir);
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
    let entry = only_entry(&dir);
    assert!(
        entry
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&a.info().sha256)
    );
    // Private: the directory 0700, the artifact and the key 0600.
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("cache")), 0o700);
    assert_eq!(mode(&entry), 0o600);
    assert_eq!(mode(&dir.path().join("cache.key")), 0o600);
}

#[test]
fn a_damaged_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(&dir);
    Engine::new(&options)
        .unwrap()
        .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
        .unwrap();
    let entry = only_entry(&dir);
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

/// A well-formed artifact that this install did not write — copied from
/// another install (another key), or a bare `Component::serialize` output
/// planted by whoever could write the directory — is native code Warden
/// would run: it is refused and the plugin compiled again.
#[test]
fn an_artifact_not_written_by_this_install_is_not_loaded() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    Engine::new(&options(&theirs))
        .unwrap()
        .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
        .unwrap();
    let foreign = only_entry(&theirs);
    fs::create_dir(ours.path().join("cache")).unwrap();
    let planted = ours.path().join("cache").join(foreign.file_name().unwrap());
    fs::copy(&foreign, &planted).unwrap();
    let engine = Engine::new(&options(&ours)).unwrap();
    let p = engine
        .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
        .unwrap();
    assert!(
        !p.info().from_cache,
        "an artifact MACed by another key was loaded"
    );
    assert_eq!(engine.stats().compiles, 1);

    // The same compiled code, bare (no MAC header): what an older Warden
    // wrote, or what anyone with `Component::serialize` can make.
    let bare = fs::read(&foreign).unwrap()[40..].to_vec();
    fs::write(&planted, bare).unwrap();
    let engine = Engine::new(&options(&ours)).unwrap();
    let p = engine
        .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
        .unwrap();
    assert!(!p.info().from_cache, "an artifact without a MAC was loaded");
    // Rewritten by this install: the next engine loads it.
    let engine = Engine::new(&options(&ours)).unwrap();
    assert!(
        engine
            .load_file(guests::THRESHOLD_COMPONENT.as_ref(), None)
            .unwrap()
            .info()
            .from_cache
    );
}

#[test]
fn a_cache_directory_others_may_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    fs::create_dir(&cache).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    let e = Engine::new(&options(&dir)).unwrap_err().to_string();
    assert!(e.contains("chmod go-w") && e.contains("cache"), "{e}");
}
