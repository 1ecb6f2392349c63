//! One file per subcommand. Each has `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`.

pub mod convert;
pub mod dti;
pub mod migrate;
pub mod models;
pub mod prepare;
pub mod register;
pub mod reindex;
pub mod sample;
pub mod serve;
pub mod status;
