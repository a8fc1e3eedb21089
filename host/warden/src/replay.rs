//! `warden replay`: the glue from the command line to the runtime's replay
//! (`warden::runtime::replay`): load the series and failures, compile the
//! policy file against them, run, print each decision as it is made, and say
//! on stderr what was run and how fast.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use warden::plugin::{Engine, EngineOptions};
use warden::runtime::replay::{self, Replay};

/// What the command line asked for.
pub(crate) struct Args {
    pub(crate) policy_file: PathBuf,
    pub(crate) series: Vec<PathBuf>,
    pub(crate) failures: Vec<PathBuf>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) text: bool,
    pub(crate) data_dir: Option<PathBuf>,
}

/// Runs a replay; exit 1 when the policy file or the series are unusable.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.policy_file).map_err(|e| {
        anyhow::anyhow!(
            "failed to read the policy file `{}`: {e}",
            args.policy_file.display()
        )
    })?;
    let (store, series_extent) = match replay::load_sources(&args.series) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("warden: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut failures = Vec::new();
    for f in &args.failures {
        match replay::failures::load(f) {
            Ok(mut r) => failures.append(&mut r),
            Err(e) => {
                eprintln!("warden: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    // Several files merge in time order; equal times keep the files' order.
    failures.sort_by_key(|r| r.at_ms);
    let extent = match (series_extent, replay::failures::extent(&failures)) {
        (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        (e, None) | (None, e) => e,
    };
    let Some((first, last)) = extent else {
        eprintln!("warden: the series and failures given hold no samples and no reports");
        return Ok(ExitCode::from(1));
    };
    let time = |t: &Option<String>, default: i64, what: &str| -> Result<i64, String> {
        t.as_deref().map_or(Ok(default), |t| {
            replay::load::parse_time(t).map_err(|e| format!("--{what}: {e}"))
        })
    };
    let (from, to) = match (time(&args.from, first, "from"), time(&args.to, last, "to")) {
        (Ok(f), Ok(t)) if f <= t => (f, t),
        (Ok(_), Ok(_)) => {
            eprintln!("warden: --from is after --to");
            return Ok(ExitCode::from(1));
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("warden: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("warden-data"));
    let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
    let plugins = warden::policy::PluginCache::new(Engine::new(&EngineOptions::default())?);
    let sources: std::sync::Arc<dyn warden::plugin::DataSource> =
        std::sync::Arc::new(warden::sources::Sources {
            series: store,
            ..Default::default()
        });
    let mut r = match Replay::new(
        &args.policy_file,
        &text,
        &warden::policy::ParseContext { data_dir },
        &plugins,
        &sources,
    ) {
        Ok(r) => r,
        Err(errors) => {
            for e in errors {
                eprintln!("warden: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    for (policy, why) in &r.skipped {
        eprintln!("warden: policy `{policy}` is not replayed: {why}");
    }
    let recovery: Vec<String> = r.recovery_policies().map(str::to_owned).collect();
    if failures.is_empty() {
        for policy in &recovery {
            eprintln!(
                "warden: policy `{policy}` is not replayed: a recovery policy replays over recorded failures; give them with --failures"
            );
        }
    }
    let names: Vec<String> = r
        .policies()
        .filter(|p| !failures.is_empty() || !recovery.iter().any(|r| r == p))
        .map(str::to_owned)
        .collect();
    r.failures(failures);
    if names.is_empty() {
        eprintln!("warden: no policy of this file can be replayed");
        return Ok(ExitCode::from(1));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed_write = None;
    let summary = r.run(from, to, |d| {
        if failed_write.is_some() {
            return;
        }
        let written = if args.text {
            writeln!(out, "{}", d.text())
        } else {
            serde_json::to_writer(&mut out, d)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        };
        if let Err(e) = written {
            failed_write = Some(e);
        }
    });
    match failed_write.map_or_else(|| out.flush(), Err) {
        // A closed pipe (`| head`) ends the output, not the replay's meaning.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "warden: replayed {} from {} to {}: {} evaluations ({} failed), {} decisions in {:.3} s ({:.0}× real time)",
        names.join(", "),
        replay::decision::rfc3339(from),
        replay::decision::rfc3339(to),
        summary.evaluations,
        summary.failures,
        summary.decisions,
        secs,
        summary.simulated_ms as f64 / 1000.0 / secs
    );
    Ok(ExitCode::SUCCESS)
}
