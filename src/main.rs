//! The `brainaged` command: a thin CLI over the library. Each subcommand lives in `src/cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "brainaged",
    version,
    about = "Brain-age daemon beside a hospital PACS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: DICOM receiver, series tracker and job workers.
    Serve(cmd::serve::Args),
    /// Apply database migrations and exit.
    Migrate(cmd::migrate::Args),
    /// Check the configuration and the TLS files it names, as `serve` would load them.
    CheckConfig(cmd::check_config::Args),
    /// Print counts of instances, series by state and jobs by state.
    Status(cmd::status::Args),
    /// List the job queue, and run failed jobs again.
    Jobs(cmd::jobs::Args),
    /// Rebuild the database index from the spool.
    Reindex(cmd::reindex::Args),
    /// Convert a folder of DICOM to NIfTI as dcm2niix does.
    Convert(cmd::convert::Args),
    /// Fit diffusion tensors and write FA and MD maps.
    Dti(cmd::dti::Args),
    /// Register one image to another.
    Register(cmd::register::Args),
    /// Make model-input tensors with a named recipe.
    Prepare(cmd::prepare::Args),
    /// List, verify and import model packages.
    Models(cmd::models::Args),
    /// Sample a joint-diffusion model, optionally conditioned on known variables.
    Sample(cmd::sample::Args),
    /// The daemon's converter child: one series, request on stdin, answer on stdout (JSON).
    #[command(hide = true)]
    ConvertJob,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => cmd::serve::run(a),
        Command::Migrate(a) => cmd::migrate::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::CheckConfig(a) => cmd::check_config::run(a),
        Command::Jobs(a) => cmd::jobs::run(a),
        Command::Reindex(a) => cmd::reindex::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Dti(a) => cmd::dti::run(a),
        Command::Register(a) => cmd::register::run(a),
        Command::Prepare(a) => cmd::prepare::run(a),
        Command::Models(a) => cmd::models::run(a),
        Command::Sample(a) => cmd::sample::run(a),
        Command::ConvertJob => cmd::convert_job::run(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("brainaged: {err:#}");
            ExitCode::FAILURE
        }
    }
}
