//! The `warden` command line: argument definitions and the glue from each
//! subcommand to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::plugin::{Engine, EngineOptions};

/// Warden: metrics, resources and the policies that decide about them.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with plugin components.
    Plugin {
        /// What to do with a plugin.
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// `warden plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a plugin's kind, world, WIT version, imports, size and hash.
    Inspect {
        /// The `.wasm` file, or `builtin:<name>` for a plugin shipped with Warden.
        file: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For programs.
    Json,
}

/// Runs a parsed command line and returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plugin {
            command: PluginCommand::Inspect { file, format },
        } => inspect(&file, format),
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
            writeln!(out, "wit version: {}", info.wit_version)?;
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
