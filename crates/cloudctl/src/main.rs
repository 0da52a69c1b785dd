//! `cloudctl`: entry point; parses the command line, connects and maps failures to exit codes.

mod cli;
mod client;
mod commands;
mod errors;
mod output;
mod views;
mod wait;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::client::{settings_from, Ctx, EnvVars};

fn main() -> ExitCode {
    // Usage errors exit with 2 from here, help and version with 0.
    let cli = Cli::parse();

    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "cloudctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }

    // Contexts are local files: no server, no runtime.
    let command = match cli.command {
        Command::Config(cmd) => {
            let result = commands::config::run(cmd, &cli.global, &EnvVars::from_process());
            return finish(result, None);
        }
        other => other,
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut endpoint = None;
    let result = runtime.block_on(async {
        let settings = settings_from(&cli.global, &EnvVars::from_process())?;
        endpoint = Some(settings.endpoint.clone());
        let ctx = Ctx::connect(&settings, &cli.global).await?;
        commands::run(&ctx, command).await
    });
    finish(result, endpoint.as_deref())
}

/// The exit code of a run, printing its error; `endpoint` is the one it talked to, if any.
fn finish(result: anyhow::Result<()>, endpoint: Option<&str>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", errors::format_error(&err, endpoint));
            ExitCode::FAILURE
        }
    }
}

/// A reader that went away (`cloudctl … | head`) is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
