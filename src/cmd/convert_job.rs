//! `brainaged convert-job` (hidden): the child process in which the daemon's job worker
//! converts one series, so that a decoder's crash or the out-of-memory killer ends this process
//! and not the daemon. It reads the request as JSON on stdin and writes the answer as JSON on
//! stdout; see `brainaged::tracker::convert_job`.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use brainaged::tracker::convert_job::{self, Request};

pub fn run() -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the request")?;
    let request: Request = serde_json::from_slice(&input).context("parsing the request")?;
    let response = convert_job::convert_here(&request);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &response)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
