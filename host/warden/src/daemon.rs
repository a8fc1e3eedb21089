//! `warden run`: the daemon. Opens the data directory and the plugin engine,
//! loads the policies directory, keeps it live (file watch, SIGHUP, API), runs
//! the scheduler and serves the API until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;

use warden_api::{AppState, router};
use warden_core::telemetry::Telemetry;
use warden_plugin_host::{Engine, EngineOptions};
use warden_policy::{ParseContext, PluginCache, PolicyDir};
use warden_runtime::recovery::{Options as RecoveryOptions, Recovery};
use warden_runtime::sources::Sources;
use warden_runtime::{Scheduler, StateStore};

/// The default address: loopback only, so nothing is exposed unless asked.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9715";

/// The largest daemon config file read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// How often the quota state is saved: a crash loses at most this much of
/// rates and state changes (levels are recounted from the registry).
const QUOTA_SAVE: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the resource registry's log is written: what a crash may lose.
const REGISTRY_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// Every this many flushes, resources whose owner process is gone are marked
/// orphans (15 s).
const ORPHAN_SWEEP_TICKS: u64 = 15;

/// How the daemon runs. Every field has a default, so no config file is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The policies directory.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// Where Warden keeps its data (compiled plugins, state).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The API's address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Collection, ingest, store and batch files.
    #[serde(default)]
    pub metrics: warden_metrics::MetricsConfig,
    /// Who may change things through the API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Memory pressure levels, for cleanup policies' `on_pressure`.
    #[serde(default)]
    pub pressure: warden_runtime::pressure::PressureConfig,
    /// How much the resource registry holds.
    #[serde(default)]
    pub resources: ResourcesConfig,
    /// How many evaluations run at once.
    #[serde(default)]
    pub evaluations: EvaluationsConfig,
}

/// The `resources:` section: bounds of the registry of resources
/// applications register. Past them, a registration answers `507` with the
/// reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// Resources tracked at once (default 100,000).
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
    /// Bytes of their names, owners and labels (default 256MiB).
    #[serde(default = "default_registry_bytes")]
    pub max_bytes: warden_core::values::ByteSize,
    /// Register, access and release events kept in the audit trail
    /// (default 10,000).
    #[serde(default = "default_audit_events")]
    pub audit_events: usize,
    /// What watched processes hold, read at an interval.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// Requests to owners when a cleanup policy releases their resources.
    #[serde(default)]
    pub requests: RequestsConfig,
}

/// `resources.requests`: how owners listening on
/// `GET /api/v1/resources/events` are asked to release what a cleanup
/// policy decided, before it is released without them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsConfig {
    /// How long the first attempt waits for an answer; each later one
    /// waits twice as long (default 30s).
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: warden_core::values::HumanDuration,
    /// Attempts before the request is reported and the resource released
    /// (default 5).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Requests waiting for one owner; past it a policy's release happens
    /// at once (default 1,000).
    #[serde(default = "default_max_pending_per_owner")]
    pub max_pending_per_owner: usize,
    /// Event streams per owner (default 4).
    #[serde(default = "default_max_subscribers_per_owner")]
    pub max_subscribers_per_owner: usize,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        RequestsConfig {
            ack_timeout: default_ack_timeout(),
            max_attempts: default_max_attempts(),
            max_pending_per_owner: default_max_pending_per_owner(),
            max_subscribers_per_owner: default_max_subscribers_per_owner(),
        }
    }
}

fn default_ack_timeout() -> warden_core::values::HumanDuration {
    warden_core::values::HumanDuration(std::time::Duration::from_millis(
        warden_resources::RequestOptions::DEFAULT_ACK_TIMEOUT_MS,
    ))
}

fn default_max_attempts() -> u32 {
    warden_resources::RequestOptions::DEFAULT_MAX_ATTEMPTS
}

fn default_max_pending_per_owner() -> usize {
    warden_resources::RequestOptions::DEFAULT_MAX_PENDING_PER_OWNER
}

fn default_max_subscribers_per_owner() -> usize {
    warden_resources::RequestOptions::DEFAULT_MAX_SUBSCRIBERS_PER_OWNER
}

impl RequestsConfig {
    /// The registry's options, or which field is out of bounds.
    fn options(&self) -> anyhow::Result<warden_resources::RequestOptions> {
        let timeout = self.ack_timeout.0;
        anyhow::ensure!(
            timeout >= std::time::Duration::from_millis(100)
                && timeout <= std::time::Duration::from_secs(3600),
            "resources.requests.ack_timeout: {} is out of range; use 100ms to 1h",
            self.ack_timeout
        );
        anyhow::ensure!(
            (1..=20).contains(&self.max_attempts),
            "resources.requests.max_attempts: {} is out of range; use 1 to 20",
            self.max_attempts
        );
        anyhow::ensure!(
            (1..=100_000).contains(&self.max_pending_per_owner),
            "resources.requests.max_pending_per_owner: {} is out of range; use 1 to 100000",
            self.max_pending_per_owner
        );
        let most = warden_resources::registry::requests::MAX_SUBSCRIBERS;
        anyhow::ensure!(
            (1..=most).contains(&self.max_subscribers_per_owner),
            "resources.requests.max_subscribers_per_owner: {} is out of range; use 1 to {most}",
            self.max_subscribers_per_owner
        );
        Ok(warden_resources::RequestOptions {
            ack_timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            max_attempts: self.max_attempts,
            max_pending_per_owner: self.max_pending_per_owner,
            max_subscribers_per_owner: self.max_subscribers_per_owner,
        })
    }
}

fn default_audit_events() -> usize {
    warden_resources::RegistryOptions::default().audit_events
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        ResourcesConfig {
            max_tracked: default_max_tracked(),
            max_bytes: default_registry_bytes(),
            audit_events: default_audit_events(),
            discovery: DiscoveryConfig::default(),
            requests: RequestsConfig::default(),
        }
    }
}

/// `resources.discovery`: each descriptor, socket, thread and child of the
/// processes `metrics.collect.processes` watches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Off: no inventories, and plugins asking for those kinds get none.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often (default 30s).
    #[serde(default = "default_discovery_every")]
    pub every: warden_core::values::HumanDuration,
    /// Descriptors, threads or children listed per process, each (default
    /// 100,000); past it the inventory says it was cut.
    #[serde(default = "default_max_per_kind")]
    pub max_per_kind: usize,
    /// The longest a cycle may take (default 2s); processes left are skipped
    /// until the next cycle, and named.
    #[serde(default = "default_max_cycle")]
    pub max_cycle: warden_core::values::HumanDuration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            enabled: true,
            every: default_discovery_every(),
            max_per_kind: default_max_per_kind(),
            max_cycle: default_max_cycle(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_discovery_every() -> warden_core::values::HumanDuration {
    warden_core::values::HumanDuration(std::time::Duration::from_secs(30))
}

fn default_max_per_kind() -> usize {
    warden_resources::discover::Limits::default().max_per_kind
}

fn default_max_cycle() -> warden_core::values::HumanDuration {
    warden_core::values::HumanDuration(warden_resources::discover::Limits::default().max_cycle)
}

fn default_max_tracked() -> usize {
    warden_resources::RegistryLimits::DEFAULT_MAX_TRACKED
}

fn default_registry_bytes() -> warden_core::values::ByteSize {
    warden_core::values::ByteSize(warden_resources::RegistryLimits::DEFAULT_MAX_BYTES as u64)
}

/// The `evaluations:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationsConfig {
    /// Evaluations running at once across all policies (default
    /// [`warden_runtime::scheduler::DEFAULT_MAX_EVALUATIONS`]); each policy
    /// runs at most once at a time. A scheduled evaluation past the bound
    /// waits its turn; a run-now answers `429` with the reason.
    #[serde(default = "default_max_evaluations")]
    pub max_concurrent: usize,
}

impl Default for EvaluationsConfig {
    fn default() -> Self {
        EvaluationsConfig {
            max_concurrent: default_max_evaluations(),
        }
    }
}

fn default_max_evaluations() -> usize {
    warden_runtime::scheduler::DEFAULT_MAX_EVALUATIONS
}

/// The `alerts:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Receivers of the alerts of every policy without its own `notify:`.
    #[serde(default = "default_notifiers")]
    pub notifiers: Vec<warden_notify::NotifierConfig>,
    /// How often firing alerts are repeated to receivers that expire them
    /// (Alertmanager), and resolved ones re-sent while remembered.
    #[serde(default = "default_refresh")]
    pub refresh: warden_core::values::HumanDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            notifiers: default_notifiers(),
            refresh: default_refresh(),
        }
    }
}

fn default_notifiers() -> Vec<warden_notify::NotifierConfig> {
    vec![warden_notify::NotifierConfig::Log {}]
}

fn default_refresh() -> warden_core::values::HumanDuration {
    warden_core::values::HumanDuration(std::time::Duration::from_millis(
        warden_runtime::alerts::DEFAULT_REFRESH_MS,
    ))
}

/// The API's access control and the bounds of its server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The bearer token requests need. Prefer `token_file`, or the
    /// WARDEN_TOKEN environment variable, to keep it out of the file;
    /// without any, the daemon makes one at `<data_dir>/api-token`.
    pub token: Option<warden_notify::Secret>,
    /// A file holding the token (surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// Let reads that show configuration or history (everything under
    /// `/api/v1`) go without the token. `/health` and `/metrics` never need it.
    pub public_reads: bool,
    /// Names the API may be reached by besides the listen address and
    /// `localhost` (the `Host` header is checked against them).
    pub hosts: Vec<String>,
    /// Connections open at once; at the cap a new one closes the oldest idle one.
    pub max_connections: usize,
    /// The longest a request's headers may take (and so the longest a
    /// connection may wait idle for its next request).
    pub header_timeout: warden_core::values::HumanDuration,
    /// The longest a request's body may take.
    pub body_timeout: warden_core::values::HumanDuration,
    /// The longest a response may wait for the client to read it.
    pub write_timeout: warden_core::values::HumanDuration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        let d = warden_api::serve::Limits::default();
        ApiConfig {
            token: None,
            token_file: None,
            public_reads: false,
            hosts: Vec::new(),
            max_connections: d.max_connections,
            header_timeout: warden_core::values::HumanDuration(d.header_timeout),
            body_timeout: warden_core::values::HumanDuration(d.body_timeout),
            write_timeout: warden_core::values::HumanDuration(d.write_timeout),
        }
    }
}

/// Where the daemon keeps the token it makes when none is configured.
pub const TOKEN_FILE: &str = "api-token";

impl ApiConfig {
    /// The configured token: from the file, the config or WARDEN_TOKEN, in
    /// that order; `None` if none is configured.
    pub fn resolve(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("api.token_file: failed to read `{}`", path.display()))?;
            let token = text.trim().to_owned();
            anyhow::ensure!(
                !token.is_empty(),
                "api.token_file: `{}` is empty",
                path.display()
            );
            return Ok(Some(token));
        }
        Ok(self
            .token
            .as_ref()
            .map(|t| t.0.clone())
            .or_else(|| std::env::var("WARDEN_TOKEN").ok())
            .filter(|t| !t.trim().is_empty()))
    }

    /// The server's bounds, checked.
    pub fn limits(&self) -> anyhow::Result<warden_api::serve::Limits> {
        anyhow::ensure!(
            self.max_connections > 0,
            "api.max_connections: must be at least 1"
        );
        for (field, d) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            anyhow::ensure!(!d.0.is_zero(), "api.{field}: must be longer than 0s");
        }
        Ok(warden_api::serve::Limits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout.0,
            body_timeout: self.body_timeout.0,
            write_timeout: self.write_timeout.0,
            ..warden_api::serve::Limits::default()
        })
    }
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("warden-data")
}
fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("a valid address")
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            policies: default_policies(),
            data_dir: default_data_dir(),
            listen: default_listen(),
            metrics: warden_metrics::MetricsConfig::default(),
            api: ApiConfig::default(),
            alerts: AlertsConfig::default(),
            pressure: warden_runtime::pressure::PressureConfig::default(),
            resources: ResourcesConfig::default(),
            evaluations: EvaluationsConfig::default(),
        }
    }
}

impl DaemonConfig {
    /// Reads a daemon config file: a regular file of at most
    /// [`MAX_CONFIG_FILE_BYTES`].
    pub fn load(path: &std::path::Path) -> anyhow::Result<DaemonConfig> {
        let bytes = warden_core::files::read_regular(path, MAX_CONFIG_FILE_BYTES)
            .map_err(|e| anyhow::anyhow!("the config file `{}` {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("the config file `{}` is not UTF-8", path.display()))?;
        let mut config: DaemonConfig = serde_norway::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // A receiver's `credentials_file` is relative to this file.
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        for n in &mut config.alerts.notifiers {
            n.resolve_paths(base);
        }
        Ok(config)
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// The data directory is created 0700 and everything in it 0600; the daemon
/// refuses to start when it, or the plugin cache in it, is owned by another
/// user or writable by its group or others (whoever can write there can
/// plant what Warden loads).
pub async fn run(config: DaemonConfig) -> anyhow::Result<()> {
    warden_core::fsx::ensure_private_dir(&config.data_dir, "data directory")?;
    let data_dir = config.data_dir.canonicalize()?;
    warden_core::fsx::ensure_private_dir(&data_dir.join("cache"), "cache directory")?;
    anyhow::ensure!(
        config.policies.is_dir(),
        "the policies directory `{}` does not exist; create it or pass `--policies DIR`",
        config.policies.display()
    );
    let policies_dir = config.policies.canonicalize()?;
    let configured = config.api.resolve()?;
    anyhow::ensure!(
        configured.is_some() || config.listen.ip().is_loopback(),
        "listening on {} (beyond this machine) needs an API token you give it: set `api.token_file` (or `api.token`, or WARDEN_TOKEN) so that only holders of it can use the daemon",
        config.listen
    );
    let token = match configured {
        Some(t) => t,
        None => {
            // Always a token: one made on first start, kept 0600 for the
            // `warden` commands (run as the same user) to read.
            let path = data_dir.join(TOKEN_FILE);
            let t = warden_core::fsx::load_or_create_token(&path)
                .with_context(|| format!("failed to set up the API token `{}`", path.display()))?;
            tracing::info!(file = %path.display(), "API token (none configured)");
            t
        }
    };
    let token = warden_api::auth::Token::new(&token)
        .ok_or_else(|| anyhow::anyhow!("the API token is empty"))?;
    let limits = config.api.limits()?;
    raise_fd_limit();

    let dispatcher = warden_runtime::dispatch::Dispatcher::new(config.alerts.notifiers.clone())
        .map_err(|e| anyhow::anyhow!("alerts.notifiers: {e}"))?;
    anyhow::ensure!(
        !config.alerts.refresh.0.is_zero(),
        "alerts.refresh: must be longer than 0s"
    );
    let pressure = config
        .pressure
        .thresholds()
        .map_err(|e| anyhow::anyhow!(e))?;
    let state_dir = data_dir.join("state");
    let state = Arc::new(StateStore::open(&state_dir).with_context(|| {
        format!(
            "failed to open the state directory `{}`",
            state_dir.display()
        )
    })?);

    let engine = Engine::new(&EngineOptions {
        cache_dir: Some(data_dir.join("cache").join("plugins")),
    })?;
    let telemetry = Arc::new(Telemetry::default());
    let pipeline = {
        let config = config.metrics.clone();
        let data_dir = data_dir.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                warden_metrics::Pipeline::start(&config, &data_dir)
            })
            .await??,
        )
    };
    anyhow::ensure!(
        config.resources.max_tracked > 0,
        "resources.max_tracked: must be at least 1"
    );
    anyhow::ensure!(
        config.evaluations.max_concurrent > 0,
        "evaluations.max_concurrent: must be at least 1"
    );
    anyhow::ensure!(
        config.resources.audit_events > 0,
        "resources.audit_events: must be at least 1"
    );
    let requests = config.resources.requests.options()?;
    // Registered resources, their handles and the audit trail survive a
    // restart (see `warden_resources::registry::persist`).
    let registry = {
        let dir = data_dir.join("resources");
        let limits = warden_resources::RegistryLimits {
            max_tracked: config.resources.max_tracked,
            max_bytes: usize::try_from(config.resources.max_bytes.0).unwrap_or(usize::MAX),
        };
        let opts = warden_resources::RegistryOptions {
            audit_events: config.resources.audit_events,
            requests,
            ..warden_resources::RegistryOptions::default()
        };
        let (registry, report) = tokio::task::spawn_blocking(move || {
            warden_resources::Registry::open(&dir, limits, opts, warden_core::clock::now_ms())
        })
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(torn) = &report.torn_tail {
            tracing::warn!(%torn, "the resource log was cut short by a crash; the records before the cut were loaded");
        }
        tracing::info!(
            resources = report.resources,
            took_ms = report.elapsed.as_millis() as u64,
            "registered resources loaded"
        );
        Arc::new(registry)
    };
    let discovery = &config.resources.discovery;
    anyhow::ensure!(
        discovery.every.0 >= std::time::Duration::from_secs(1),
        "resources.discovery.every: {} is too often; use 1s or more",
        discovery.every
    );
    anyhow::ensure!(
        discovery.max_per_kind > 0,
        "resources.discovery.max_per_kind: must be at least 1"
    );
    let discovered = Arc::new(warden_resources::discover::Discovered::default());
    let sources = Arc::new(Sources {
        series: Arc::clone(pipeline.store()),
        resources: Arc::clone(&registry),
        discovered: Arc::clone(&discovered),
    });
    let dir = Arc::new(
        PolicyDir::new(
            &policies_dir,
            ParseContext {
                data_dir: data_dir.clone(),
            },
            PluginCache::new(engine),
            sources,
            Arc::clone(&telemetry),
        )
        .with_plugin_states(Arc::clone(&state) as Arc<dyn warden_plugin_host::PluginStateStore>),
    );
    let report = {
        let dir = Arc::clone(&dir);
        tokio::task::spawn_blocking(move || dir.reload()).await?
    };
    let set = dir.current();
    tracing::info!(
        dir = %policies_dir.display(),
        files = set.files.len(),
        policies = set.policies().count(),
        failed = report.failed.len(),
        "policies loaded"
    );

    // Quotas see every registration from here on (the API is not up yet).
    let quotas = Arc::new(warden_runtime::quotas::QuotaService::new(Some(
        state_dir.clone(),
    )));
    registry.set_quotas(Arc::clone(&quotas) as Arc<dyn warden_resources::registry::QuotaHook>);
    let mut cx = warden_runtime::scheduler::Context {
        quotas: Arc::clone(&quotas),
        dispatcher: Arc::new(dispatcher),
        series: Arc::clone(pipeline.store()),
        registry: Arc::clone(&registry),
        discovered: Arc::clone(&discovered),
        refresh_ms: u64::try_from(config.alerts.refresh.0.as_millis()).unwrap_or(u64::MAX),
        gate: Arc::new(warden_runtime::scheduler::Gate::new(
            config.evaluations.max_concurrent,
        )),
        ..warden_runtime::scheduler::Context::new(Arc::clone(&state), Arc::clone(&telemetry))
    };
    let recovery = Arc::new(Recovery::new(RecoveryOptions {
        state_dir: Some(state_dir.clone()),
        events: Some(cx.events.clone()),
        state: Some(Arc::clone(&state)),
        telemetry: Some(Arc::clone(&telemetry)),
        pii: Some(config.metrics.pii()),
        clock: None,
        seed: None,
        transitions: None,
    }));
    recovery.sync(&set);
    cx.recovery = Some(Arc::clone(&recovery));
    let scheduler = Arc::new(Scheduler::with_context(cx.clone()));
    scheduler.sync(&set);
    {
        // The saved state (rates, states, violations) first, then the
        // levels of registered resources as the registry holds them now.
        let now = warden_core::clock::now_ms();
        match quotas.load(now) {
            Ok(said) => tracing::info!("quotas: {said}"),
            Err(e) => {
                tracing::error!(error = %e, "cannot restore the quota state; quotas start afresh")
            }
        }
        quotas.recount(&registry, now);
    }
    {
        // State reaches the disk within QUOTA_SAVE of changing, and at
        // shutdown below.
        let quotas = Arc::clone(&quotas);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(QUOTA_SAVE);
            loop {
                every.tick().await;
                let q = Arc::clone(&quotas);
                let now = warden_core::clock::now_ms();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || q.save(now)).await {
                    tracing::error!(error = %e, "cannot save the quota state; retrying");
                }
            }
        });
    }
    let monitor = Arc::new(warden_runtime::pressure::Monitor::default());
    tokio::spawn(Arc::clone(&monitor).run(pressure, config.pressure.every.0, cx));
    let mut changes = dir.subscribe();
    {
        let scheduler = Arc::clone(&scheduler);
        let recovery = Arc::clone(&recovery);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let set = changes.borrow_and_update().clone();
                recovery.sync(&set);
                scheduler.sync(&set);
            }
        });
    }
    {
        // Breakers, windows and decisions reach the disk within a second of
        // changing, and at shutdown below.
        let recovery = Arc::clone(&recovery);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(warden_runtime::recovery::SAVE_EVERY);
            loop {
                every.tick().await;
                let r = Arc::clone(&recovery);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || r.save(false)).await {
                    tracing::error!(error = %e, "cannot save the recovery state; retrying in a second");
                }
            }
        });
    }
    {
        // The registry's log is written each second (a crash loses at most
        // that), and owners are checked for life every 15 s.
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REGISTRY_FLUSH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                ticks += 1;
                let r = Arc::clone(&registry);
                let sweep = ticks.is_multiple_of(ORPHAN_SWEEP_TICKS);
                let _ = tokio::task::spawn_blocking(move || {
                    if sweep {
                        let swept = r.sweep_orphans(warden_core::clock::now_ms());
                        tracing::debug!(?swept, "orphan sweep");
                    }
                    if let Err(e) = r.flush() {
                        tracing::error!(error = %e, "cannot write the resource log; retrying in a second");
                    }
                })
                .await;
            }
        });
    }
    {
        // Requests to owners are sent again, or reported, when their
        // attempt's wait ends: checked a few times per wait, at least once a
        // second (a check with nothing waiting costs a read lock).
        let registry = Arc::clone(&registry);
        let every = (std::time::Duration::from_millis(requests.ack_timeout_ms) / 4).clamp(
            std::time::Duration::from_millis(25),
            std::time::Duration::from_secs(1),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let reported = registry.retry_requests(warden_core::clock::now_ms());
                if reported > 0 {
                    tracing::warn!(
                        reported,
                        "requests to owners went unanswered after their last attempt; their resources were released (`GET /api/v1/resources/requests`)"
                    );
                }
            }
        });
    }
    if discovery.enabled {
        let limits = warden_resources::discover::Limits {
            max_per_kind: discovery.max_per_kind,
            max_cycle: discovery.max_cycle.0,
        };
        let watched = Arc::clone(pipeline.watched());
        let discovered = Arc::clone(&discovered);
        let every = discovery.every.0;
        tokio::spawn(async move {
            let d = Arc::new(std::sync::Mutex::new(
                warden_resources::discover::Discoverer::new(limits),
            ));
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let targets = watched.current();
                if targets.is_empty() {
                    continue; // nothing watched, or the collector's first cycle is due
                }
                let (d, discovered) = (Arc::clone(&d), Arc::clone(&discovered));
                let _ = tokio::task::spawn_blocking(move || {
                    let _span = tracing::debug_span!("discovery").entered();
                    let snap = d
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .discover(&targets, warden_core::clock::now_ms());
                    tracing::debug!(
                        processes = snap.processes.len(),
                        skipped = snap.skipped.len(),
                        took_us = snap.took_us,
                        "discovery cycle"
                    );
                    discovered.replace(snap);
                })
                .await;
            }
        });
    }
    let _watch = warden_policy::watch::watch(Arc::clone(&dir))
        .context("failed to watch the policies directory")?;

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    {
        let dir = Arc::clone(&dir);
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading policies");
                let dir = Arc::clone(&dir);
                let _ = tokio::task::spawn_blocking(move || dir.reload()).await;
            }
        });
    }

    let kept = Arc::clone(&state);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = router(AppState::new(warden_api::Shared {
        policies: dir,
        state,
        scheduler,
        telemetry,
        pii: config.metrics.pii(),
        metrics: Some(Arc::clone(&pipeline)),
        pressure: monitor,
        access: Arc::new(warden_api::auth::Access {
            token,
            public_reads: config.api.public_reads,
            hosts: warden_api::auth::Hosts {
                listen: Some(config.listen.ip()),
                names: config.api.hosts.clone(),
            },
        }),
        body_timeout: limits.body_timeout,
        heavy: warden_api::heavy::bound(),
        recovery: Arc::clone(&recovery),
        stopping,
    }));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {}; is another warden running? pass `--listen ADDR`",
                config.listen
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, "serving the API");
    let signalled = async move {
        shutdown().await;
        let _ = stop.send(true);
    };
    warden_api::serve::serve(listener, app, limits, Arc::default(), signalled).await;
    // Everything accepted before the signal is written before exit, and
    // findings refreshed since their last save are saved.
    let resources = Arc::clone(&registry);
    tokio::task::spawn_blocking(move || {
        pipeline.shutdown();
        kept.findings().flush();
        if let Err(e) = resources.flush() {
            tracing::error!(error = %e, "cannot write the resource log at shutdown");
        }
    })
    .await?;
    if let Err(e) = tokio::task::spawn_blocking(move || recovery.save(true)).await? {
        tracing::error!(error = %e, "cannot save the recovery state at shutdown");
    }
    let now = warden_core::clock::now_ms();
    if let Err(e) = tokio::task::spawn_blocking(move || quotas.save(now)).await? {
        tracing::error!(error = %e, "cannot save the quota state at shutdown");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard one: the API may hold
/// `api.max_connections` sockets besides the daemon's own files.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return;
    }
    let wanted = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `wanted` is a valid rlimit; raising the soft limit up to the
    // hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        tracing::debug!("could not raise the open-file limit");
    }
}

async fn shutdown() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
