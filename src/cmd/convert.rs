//! `brainaged convert` (not built yet: its issue is open).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`brainaged convert` is not available in this build yet")
}
