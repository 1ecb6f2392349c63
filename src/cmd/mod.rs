//! One file per subcommand. Each has `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`,
//! except the hidden `convert-job`, the daemon's converter child, which takes no arguments.

pub mod check_config;
pub mod convert;
pub mod convert_job;
pub mod dti;
pub mod jobs;
pub mod migrate;
pub mod models;
pub mod prepare;
pub mod register;
pub mod reindex;
pub mod sample;
pub mod serve;
pub mod status;
