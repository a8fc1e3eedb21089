//! The `warden` binary: parse the command line, run, map the outcome to an exit
//! code (0 ok, 1 invalid input such as a bad policy or plugin, 2 could not run).

use std::process::ExitCode;

mod cli;
mod scaffold;

fn main() -> ExitCode {
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(2)
        }
    }
}
