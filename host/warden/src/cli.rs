//! The `warden` command line: argument definitions and the glue from each
//! subcommand to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use warden::plugin::{Engine, EngineOptions};

/// Warden: metrics, resources and the policies that decide about them.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon with the policies in a directory.
    Run {
        /// The policies directory [default: ./policies].
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Where Warden keeps its data [default: ./warden-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The API's address [default: 127.0.0.1:9715].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A YAML file with the same settings; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check policy files (or directories of them): parse, validate, and
    /// compile and link every plugin. Exit 0 if all is well, 1 otherwise.
    Check {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Expands `${data_dir}` in scopes, and holds the daemon's compile
        /// cache, which check uses when the directory exists
        /// [default: ./warden-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of policy files, for editors.
    Schema,
    /// Show the running daemon's policy files and policies.
    Status {
        /// Where the daemon is and how to authenticate.
        #[command(flatten)]
        client: Client,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Ask the running daemon to reload its policies now.
    Reload {
        /// Where the daemon is and how to authenticate.
        #[command(flatten)]
        client: Client,
    },
    /// Run a policy file over recorded series and failures in simulated
    /// time, stepping at each policy's interval, and print every decision:
    /// alert state changes, findings raised and resolved, notifications,
    /// recovery decisions and breaker changes.
    Replay {
        /// The policy file.
        policy_file: PathBuf,
        /// Recorded series: a Warden data directory (its batch files), a CSV
        /// file (`timestamp,value`, one series named after the file) or a
        /// JSON-lines file. Repeat for more.
        #[arg(long = "series", required_unless_present = "failures", num_args = 1..)]
        series: Vec<PathBuf>,
        /// Recorded failures, for recovery policies: a JSON-lines file of
        /// what services sent to the recovery API, each line with its
        /// `timestamp` (a failure report, or `{"outcomes": [...]}`). Repeat
        /// for more.
        #[arg(long = "failures", num_args = 1..)]
        failures: Vec<PathBuf>,
        /// Start of the replay: ISO 8601 or epoch seconds or milliseconds
        /// [default: the oldest sample or failure].
        #[arg(long)]
        from: Option<String>,
        /// End of the replay [default: the newest sample or failure].
        #[arg(long)]
        to: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReplayFormat::Json)]
        format: ReplayFormat,
        /// Expands `${data_dir}` in scopes [default: ./warden-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Work with plugin components.
    Plugin {
        /// What to do with a plugin.
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// How a command reaches the running daemon. The token comes from
/// `--token-file`, else WARDEN_TOKEN, else the file the daemon made in its
/// data directory; never from the command line, where every user of the
/// machine could read it (`/proc/*/cmdline`).
#[derive(Debug, clap::Args)]
pub(crate) struct Client {
    /// The daemon's address.
    #[arg(long, default_value = warden::daemon::DEFAULT_LISTEN)]
    addr: String,
    /// A file holding the API token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The daemon's data directory, where it keeps the token it made
    /// [default: ./warden-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Client {
    /// The token to send, if one is found.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the token file `{}`", path.display()))?;
            let t = text.trim();
            anyhow::ensure!(
                !t.is_empty(),
                "the token file `{}` is empty",
                path.display()
            );
            return Ok(Some(t.to_owned()));
        }
        if let Ok(t) = std::env::var("WARDEN_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(Some(t.trim().to_owned()));
        }
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("warden-data"));
        match std::fs::read_to_string(dir.join(warden::daemon::TOKEN_FILE)) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "failed to read the daemon's token `{}`: {e}; run as the daemon's user, or pass `--token-file`",
                dir.join(warden::daemon::TOKEN_FILE).display()
            )),
        }
    }
}

/// `warden plugin …`
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Show a plugin's kind, world, WIT version, imports, size and hash.
    Inspect {
        /// The `.wasm` file, or `builtin:<name>` for a plugin shipped with Warden.
        file: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Create a plugin crate that builds outside this repository
    /// (`cargo build --release --target wasm32-wasip2`), with a native unit
    /// test, and print the policy that uses it.
    New {
        /// What the plugin decides: cleanup, recovery, alert or detector.
        #[arg(long)]
        kind: warden::plugin::Kind,
        /// The crate's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Where to create it [default: ./NAME].
        dir: Option<PathBuf>,
        /// The `plugins/sdk` folder of a Warden checkout to depend on
        /// [default: the one this warden was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// How `warden replay` prints decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReplayFormat {
    /// One JSON object per line.
    Json,
    /// One line of text per decision.
    Text,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Human,
    /// For programs.
    Json,
}

/// Runs a parsed command line and returns the exit code.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            policies,
            data_dir,
            listen,
            config,
        } => {
            init_logging();
            let mut cfg = match config {
                Some(path) => warden::daemon::DaemonConfig::load(&path)?,
                None => warden::daemon::DaemonConfig::default(),
            };
            if let Some(p) = policies {
                cfg.policies = p;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(warden::daemon::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            paths,
            format,
            data_dir,
        } => check(&paths, format, data_dir),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&warden::policy::schema::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { client, format } => status(&client, format),
        Command::Reload { client } => {
            let token = client.token()?;
            let body: serde_json::Value = daemon_call(
                &client.addr,
                "POST",
                "/api/v1/policies/reload",
                token.as_deref(),
            )?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            let failed = body["failed"].as_array().is_some_and(|f| !f.is_empty());
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Replay {
            policy_file,
            series,
            failures,
            from,
            to,
            format,
            data_dir,
        } => crate::replay::run(&crate::replay::Args {
            policy_file,
            series,
            failures,
            from,
            to,
            text: format == ReplayFormat::Text,
            data_dir,
        }),
        Command::Plugin {
            command: PluginCommand::Inspect { file, format },
        } => inspect(&file, format),
        Command::Plugin {
            command:
                PluginCommand::New {
                    kind,
                    name,
                    dir,
                    sdk,
                },
        } => {
            let made = crate::scaffold::new(kind, &name, dir.as_deref(), sdk.as_deref())?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "created `{}`; build it with:\n\n    cd {} && cargo build --release --target wasm32-wasip2\n\nthe policy that uses it (also in policy.yaml):\n\n{}",
                made.dir.display(),
                made.dir.display(),
                made.policy
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn inspect(file: &str, format: Format) -> anyhow::Result<ExitCode> {
    // Inspection compiles the component but must not write a cache anywhere.
    let engine = Engine::new(&EngineOptions::default())?;
    let loaded = match file.strip_prefix("builtin:") {
        Some(name) => engine.load_builtin(name, None),
        None => engine.load_file(&PathBuf::from(file), None),
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warden: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let info = plugin.info();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(info)?)?,
        Format::Human => {
            writeln!(out, "plugin:      {}", info.name)?;
            writeln!(out, "kind:        {}", info.kind)?;
            writeln!(
                out,
                "world:       warden:policy/{}@{}",
                info.world, info.wit_version
            )?;
            let contract = match info.wit_version.as_str() {
                "0.1.0" => " (a fresh instance per evaluation; no init, no plugin state)",
                "0.2.0" => " (warm instances, init with config checks, plugin state)",
                _ => {
                    " (warm instances, init with config checks, plugin state, windows reduced by the host)"
                }
            };
            writeln!(out, "wit version: {}{contract}", info.wit_version)?;
            writeln!(out, "size:        {} bytes", info.size_bytes)?;
            writeln!(out, "sha256:      {}", info.sha256)?;
            writeln!(out, "imports:")?;
            for i in &info.imports {
                writeln!(out, "  {i}")?;
            }
            writeln!(out, "exports:")?;
            for e in &info.exports {
                writeln!(out, "  {e}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, coloured only on a terminal (journald and files get plain text).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn check(paths: &[PathBuf], format: Format, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("warden-data"));
    let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
    // The daemon's compile cache, when there is one, saves compiling every
    // plugin again; one that cannot be opened (not ours to write) only costs
    // the compiles. As in the daemon, a data directory or cache another user
    // could write is not used: a compiled plugin is native code.
    let trusted =
        |d: &std::path::Path| matches!(warden_core::fsx::check_private_dir(d), Ok(Ok(())));
    let cache = data_dir.join("cache");
    let usable = data_dir.is_dir() && trusted(&data_dir) && (!cache.exists() || trusted(&cache));
    let cached = usable.then(|| {
        Engine::new(&EngineOptions {
            cache_dir: Some(data_dir.join("cache").join("plugins")),
        })
    });
    let engine = match cached {
        Some(Ok(engine)) => engine,
        _ => Engine::new(&EngineOptions::default())?,
    };
    let plugins = warden::policy::PluginCache::new(engine);
    let report =
        warden::policy::check::check(paths, &warden::policy::ParseContext { data_dir }, &plugins);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => {
            let mut errors = 0;
            let mut policies = 0;
            for f in &report.files {
                policies += f.policies.len();
                for e in &f.errors {
                    errors += 1;
                    writeln!(out, "{e}")?;
                }
                for w in &f.warnings {
                    writeln!(out, "warning: {w}")?;
                }
            }
            let files = report.files.len();
            if report.ok {
                writeln!(out, "ok: {policies} policies in {files} files")?;
            } else {
                writeln!(
                    out,
                    "{errors} errors in {files} files ({policies} policies are fine)"
                )?;
            }
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Calls the running daemon's API and returns its JSON answer.
fn daemon_call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{addr}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let bearer = token.map(|t| format!("Bearer {t}"));
    let response = match method {
        "POST" => {
            let mut request = agent.post(&url);
            if let Some(b) = &bearer {
                request = request.header("authorization", b);
            }
            request.send_empty()
        }
        _ => {
            let mut request = agent.get(&url);
            if let Some(b) = &bearer {
                request = request.header("authorization", b);
            }
            request.call()
        }
    }
    .map_err(|e| anyhow::anyhow!("cannot reach warden at {addr} ({e}); is `warden run` running there? (`--addr` sets the address)"))?;
    let status = response.status();
    let text = response
        .into_body()
        .read_to_string()
        .map_err(|e| anyhow::anyhow!("reading the answer of warden at {addr} failed: {e}"))?;
    let body: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("warden at {addr} sent an answer that is not JSON: {e}"))?;
    if !status.is_success() {
        anyhow::bail!(
            "warden at {addr} refused: {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(body)
}

fn status(client: &Client, format: Format) -> anyhow::Result<ExitCode> {
    let token = client.token()?;
    let body = daemon_call(&client.addr, "GET", "/api/v1/policies", token.as_deref())?;
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "policies directory: {}",
        body["directory"].as_str().unwrap_or("?")
    )?;
    let mut failing = false;
    for f in body["files"].as_array().into_iter().flatten() {
        let hash = f["hash"]
            .as_str()
            .map_or("-".to_owned(), |h| h[..12.min(h.len())].to_owned());
        writeln!(
            out,
            "file {}  sha256 {hash}  policies: {}",
            f["path"].as_str().unwrap_or("?"),
            f["policies"].as_array().map_or(0, Vec::len)
        )?;
        if let Some(errors) = f["error"]["errors"].as_array() {
            failing = true;
            for e in errors {
                let line = e["line"]
                    .as_u64()
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  error{line}: {}",
                    e["message"].as_str().unwrap_or("?")
                )?;
            }
        }
    }
    writeln!(
        out,
        "{:<24} {:<9} {:<28} {:>6} {:>6}  last evaluation",
        "POLICY", "KIND", "PLUGIN", "EVALS", "FAILS"
    )?;
    for p in body["policies"].as_array().into_iter().flatten() {
        let st = &p["state"];
        let last = if st["last"].is_null() {
            "never".to_owned()
        } else {
            format!(
                "{} ({} µs)",
                st["last"]["detail"].as_str().unwrap_or(""),
                st["last"]["micros"]
            )
        };
        writeln!(
            out,
            "{:<24} {:<9} {:<28} {:>6} {:>6}  {last}",
            p["name"].as_str().unwrap_or("?"),
            p["kind"].as_str().unwrap_or("?"),
            p["plugin"].as_str().unwrap_or("-"),
            st["evaluations"].as_u64().unwrap_or(0),
            st["failures"].as_u64().unwrap_or(0),
        )?;
    }
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
