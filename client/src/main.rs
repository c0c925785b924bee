//! coinctl: the command-line client of coinledger. See `coinctl --help` and
//! `coinctl bench --help`.

mod bench;
mod cli;

use std::process::ExitCode;

use clap::Parser;
use tokio::runtime::{Builder, Runtime};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Usage errors exit 2 (clap's convention) before any connection is made.
    if let Some(bench_argv) = bench::bench_argv(&argv) {
        let args = bench::BenchArgs::parse_from(bench_argv);
        // Many concurrent client tasks: use both cores.
        return match runtime(Builder::new_multi_thread()) {
            Ok(rt) => rt.block_on(bench::run(args)),
            Err(code) => code,
        };
    }
    let args = cli::args::Args::parse();
    // One call at a time: a single-threaded runtime is all a CLI needs.
    match runtime(Builder::new_current_thread()) {
        Ok(rt) => rt.block_on(cli::run(args)),
        Err(code) => code,
    }
}

fn runtime(mut builder: Builder) -> Result<Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: INTERNAL: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}
