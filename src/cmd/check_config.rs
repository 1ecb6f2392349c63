//! `brainaged check-config [--config FILE]`: loads the configuration as `serve` does and reads
//! every TLS file, touching neither the database nor a port; fails naming what is wrong.
//!
//! The systemd unit runs it before sending SIGHUP, so that `systemctl reload` fails on a broken
//! file at the operator's prompt instead of the daemon refusing the reload in its log only.

use std::path::PathBuf;
use std::process::ExitCode;

use brainaged::config::Config;
use brainaged::scp;
use chrono::Utc;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); `BRAINAGED__SECTION__KEY` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    if let Some(tls) = &config.dicom.tls {
        let expires = scp::check_tls(tls)?;
        if expires < Utc::now() {
            eprintln!("warning: the TLS certificate expired at {expires}");
        }
        println!("TLS certificate valid until {expires}");
    }
    println!("configuration OK");
    Ok(ExitCode::SUCCESS)
}
