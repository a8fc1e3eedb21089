//! The `warden` binary: parse the command line, run, map the outcome to an exit
//! code (0 ok, 1 invalid input such as a bad policy or plugin, 2 could not run).

use std::process::ExitCode;

mod cli;
mod replay;
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

// jemalloc rather than glibc's malloc: under API load (one registration per
// request, 4 clients) glibc's malloc and free were 15% of the daemon's CPU,
// and the daemon answered 77% of what the same HTTP stack answers doing
// nothing; with jemalloc 86% (`cargo bench -p warden --bench
// resources_http`). Only the binary chooses: the embeddable library leaves the
// allocator to the application.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options. `background_thread`: freed pages go back to the
/// system within seconds on a thread of jemalloc's own, also while the
/// daemon is idle; without it they are returned only as later allocations
/// come, and an idle daemon keeps its start-up peak (27 MiB resident
/// against 18 MiB with it, as under glibc). One such thread is enough for
/// a daemon of this size.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 48] = b"background_thread:true,max_background_threads:1\0";
