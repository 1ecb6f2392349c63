//! `brainaged status [--json]`: counts of instances, series by state and jobs by state.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::serve::open_database;
use brainaged::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `BRAINAGED__SECTION__KEY` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    let counts = rt.block_on(async {
        let (db, _cluster) = open_database(&config).await?;
        let counts = db.counts().await;
        db.close().await;
        anyhow::Ok(counts?)
    })?;
    if args.json {
        let by_state = |v: &[(String, i64)]| -> serde_json::Map<String, serde_json::Value> {
            v.iter().map(|(k, n)| (k.clone(), (*n).into())).collect()
        };
        let out = serde_json::json!({
            "instances": counts.instances,
            "studies": counts.studies,
            "series": by_state(&counts.series),
            "jobs": by_state(&counts.jobs),
        });
        println!("{out}");
    } else {
        println!("instances  {}", counts.instances);
        println!("studies    {}", counts.studies);
        for (state, n) in &counts.series {
            println!("series     {state:<10} {n}");
        }
        for (state, n) in &counts.jobs {
            println!("jobs       {state:<10} {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
