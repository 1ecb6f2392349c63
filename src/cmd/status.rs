//! `brainaged status [--json]`: counts of instances, series by state and jobs by state, and
//! when `[dicom.tls]` is set, when the TLS certificate expires.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::serve::open_database;
use brainaged::config::Config;
use brainaged::scp;
use chrono::Utc;

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
    let certificate = config
        .dicom
        .tls
        .as_ref()
        .map(|tls| scp::certificate_expires(&tls.certificate));
    if args.json {
        let by_state = |v: &[(String, i64)]| -> serde_json::Map<String, serde_json::Value> {
            v.iter().map(|(k, n)| (k.clone(), (*n).into())).collect()
        };
        let mut out = serde_json::json!({
            "instances": counts.instances,
            "studies": counts.studies,
            "series": by_state(&counts.series),
            "jobs": by_state(&counts.jobs),
        });
        match &certificate {
            Some(Ok(expires)) => out["tls_certificate_expires"] = expires.to_rfc3339().into(),
            Some(Err(e)) => out["tls_certificate_error"] = e.to_string().into(),
            None => {}
        }
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
        match &certificate {
            Some(Ok(expires)) if *expires < Utc::now() => {
                println!("tls        certificate EXPIRED {expires}")
            }
            Some(Ok(expires)) => println!(
                "tls        certificate expires {expires} (in {} days)",
                (*expires - Utc::now()).num_days()
            ),
            Some(Err(e)) => println!("tls        {e}"),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
