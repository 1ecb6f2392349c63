//! `brainaged migrate`: apply database migrations and exit.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::serve::open_database;
use brainaged::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `BRAINAGED__SECTION__KEY` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (db, _cluster) = open_database(&config).await?;
        db.close().await;
        println!("migrations applied");
        Ok(ExitCode::SUCCESS)
    })
}
