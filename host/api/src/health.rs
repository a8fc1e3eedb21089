//! `/health`: how the machine and Warden are doing, overall and per
//! subsystem, each scored 0–100. The overall score is the lowest subsystem's,
//! so one failing part is never averaged away. `status` is `ok` from 80,
//! `degraded` from 50, `critical` below. The answer is always 200 while the
//! daemon serves: a probe that restarts Warden on `critical` would stop the
//! cleanup that is to fix it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use warden_policy::schema::PressureLevel;
use warden_runtime::StateKey;
use warden_runtime::alerts::Phase;

/// One subsystem's health.
#[derive(Debug, Serialize)]
pub struct Subsystem {
    /// 0–100.
    pub score: u8,
    /// `ok`, `degraded` or `critical`.
    pub status: &'static str,
    /// Why the score is what it is.
    pub detail: String,
}

/// The answer of `/health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, `degraded` or `critical`.
    pub status: &'static str,
    /// The lowest subsystem score.
    pub score: u8,
    /// By name: `policies`, `alerts`, `cleanup`, `memory`, `metrics`,
    /// `state`, `notifications`, `recovery`.
    pub subsystems: std::collections::BTreeMap<&'static str, Subsystem>,
    /// Policy files loaded.
    pub files: usize,
    /// Policies loaded.
    pub policies: usize,
    /// Files whose current content does not load.
    pub files_with_errors: usize,
}

fn status(score: u8) -> &'static str {
    match score {
        80.. => "ok",
        50..80 => "degraded",
        _ => "critical",
    }
}

fn sub(score: f64, detail: String) -> Subsystem {
    let score = score.clamp(0.0, 100.0).round() as u8;
    Subsystem {
        score,
        status: status(score),
        detail,
    }
}

/// Computes the health now.
pub fn assess(s: &AppState) -> Health {
    let mut subsystems = std::collections::BTreeMap::new();
    let set = s.policies.current();
    let files_with_errors = set.files.values().filter(|f| f.error.is_some()).count();
    let policies = set.policies().count();
    let failing = set
        .policies()
        .filter(|p| {
            s.state
                .get(&StateKey::policy(&p.file, p.name()))
                .and_then(|st| st.last)
                .is_some_and(|l| !l.ok)
        })
        .count();
    let units = (set.files.len() + policies).max(1);
    subsystems.insert(
        "policies",
        sub(
            100.0 * (1.0 - (files_with_errors + failing) as f64 / units as f64),
            format!(
                "{files_with_errors} of {} files do not load; {failing} of {policies} policies failed their latest evaluation",
                set.files.len()
            ),
        ),
    );

    let alerts = s.state.all_alerts();
    let firing = |sev: &str| {
        alerts
            .iter()
            .filter(|(_, _, a)| a.phase == Phase::Firing && a.severity == sev)
            .count()
    };
    let (critical, warning, info) = (firing("critical"), firing("warning"), firing("info"));
    let score = if critical > 0 {
        30.0
    } else if warning > 0 {
        70.0
    } else if info > 0 {
        90.0
    } else {
        100.0
    };
    subsystems.insert(
        "alerts",
        sub(
            score,
            format!("firing: {critical} critical, {warning} warning, {info} info"),
        ),
    );

    // The last 20 runs: the share of attempted deletions that succeeded, and
    // runs stopped by their cap count as half a success.
    let recent = s.state.cleanup_history(None, 20);
    let (mut ok, mut failed, mut capped) = (0usize, 0usize, 0usize);
    for r in &recent {
        let [acted, _, _, _, f] = r.counts();
        ok += acted;
        failed += f;
        capped += usize::from(r.cap_exceeded.is_some());
    }
    let attempted = ok + failed;
    let mut score = if attempted == 0 {
        100.0
    } else {
        100.0 * ok as f64 / attempted as f64
    };
    if !recent.is_empty() {
        score -= 50.0 * capped as f64 / recent.len() as f64;
    }
    subsystems.insert(
        "cleanup",
        sub(
            score,
            format!(
                "last {} runs: {ok} acted on (deleted, released or signalled), {failed} failed, {capped} stopped by their cap",
                recent.len()
            ),
        ),
    );

    let reading = s.pressure.reading();
    let score = match reading.level {
        None => 100.0,
        Some(PressureLevel::Standard) => 70.0,
        Some(PressureLevel::Critical) => 40.0,
        Some(PressureLevel::Emergency) => 10.0,
    };
    subsystems.insert(
        "memory",
        sub(
            score,
            if reading.at_ms == 0 {
                "not measured yet".into()
            } else {
                format!(
                    "pressure {:.1}%, level {}",
                    reading.percent,
                    reading
                        .level
                        .map_or("normal".into(), |l| format!("{l:?}").to_lowercase())
                )
            },
        ),
    );

    if let Some(p) = &s.metrics {
        let st = p.metrics().stats();
        let capacity = p.metrics().queue_capacity().max(1) as f64;
        let fill = st.queue_size as f64 / capacity;
        let mut score = 100.0 * (1.0 - fill);
        // Batches not being written (a full disk) is critical: records are
        // being dropped, or soon will be.
        let failing = match &st.write_failing {
            Some(f) => {
                score = score.min(30.0);
                format!(
                    "; batch files cannot be written since {} ms since the epoch ({})",
                    f.since_ms, f.error
                )
            }
            None => String::new(),
        };
        if !st.is_running {
            score = 0.0;
        }
        subsystems.insert(
            "metrics",
            sub(
                score,
                format!(
                    "queue {:.0}% full; {} dropped, {} write errors since start; {} series{failing}",
                    100.0 * fill,
                    st.dropped,
                    st.write_errors,
                    st.series
                ),
            ),
        );
    }

    subsystems.insert(
        "state",
        match s.state.save_failure() {
            None => sub(100.0, "alert state and cleanup history are saved".into()),
            Some(f) => sub(
                30.0,
                format!(
                    "`{}` cannot be saved since {} ms since the epoch ({} failures): {}",
                    f.file, f.since_ms, f.failures, f.error
                ),
            ),
        },
    );

    let n = s.scheduler.context().dispatcher.counts();
    subsystems.insert(
        "notifications",
        sub(
            if n.recent == 0 {
                100.0
            } else {
                100.0 * n.recent_delivered as f64 / n.recent as f64
            },
            format!(
                "{} of the last {} batches delivered; since start {} delivered, {} failed after retries, {} dropped",
                n.recent_delivered, n.recent, n.delivered, n.failed, n.dropped
            ),
        ),
    );

    let r = s.recovery.health();
    subsystems.insert("recovery", sub(r.score, r.detail));

    let score = subsystems.values().map(|x| x.score).min().unwrap_or(100);
    Health {
        status: status(score),
        score,
        subsystems,
        files: set.files.len(),
        policies,
        files_with_errors,
    }
}

pub(super) async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(assess(&s))
}
