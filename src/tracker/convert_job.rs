//! The conversion a job runs, in a process of its own.
//!
//! Decoding runs C and C++ code (CharLS, OpenJPEG) on whatever a modality sent, and a series
//! may need more memory than the machine has. In the daemon's own process a segfault, an abort
//! or the out-of-memory killer would take the DICOM receiver down with the conversion, and the
//! requeued job would do it again at every start. So the worker runs the daemon's own binary
//! (`brainaged convert-job`, hidden) for each job: it reads a [`Request`] as JSON on stdin and
//! writes a [`Response`] as JSON on stdout. A child that dies fails its job with the signal
//! that killed it, and one that runs past `pipeline.job_timeout_secs` (a decoder caught in a
//! loop) is stopped and fails its job; the daemon goes on. The child dies with the daemon
//! (`PR_SET_PDEATHSIG`), so a killed daemon leaves no converter writing into the folder of the
//! job its successor requeues.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::convert::classify::{ClassifyRules, SeriesClass};
use crate::convert::{self, ConvertOptions, SeriesError, output};
use crate::db::conversions::ConversionRecord;

/// What to convert, and where to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The series' spool files.
    pub paths: Vec<PathBuf>,
    /// The version's output folder.
    pub out_dir: PathBuf,
    pub rules: ClassifyRules,
    pub max_dataset_bytes: u64,
}

/// What a conversion came to: the volumes written, the series' class, and what went wrong on
/// the way (a series of the folder that failed, a file left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Converted {
    pub records: Vec<ConversionRecord>,
    pub class: Option<String>,
    pub problems: Vec<String>,
}

/// The child's answer: what it converted, or why it could not (an output it could not write).
pub type Response = Result<Converted, String>;

/// Runs the conversion in this process: what `brainaged convert-job` does.
pub fn convert_here(request: &Request) -> Response {
    convert_and_write(request).map_err(|e| format!("{e:#}"))
}

/// Runs the conversion in a child process of `program` (the daemon's own binary), stopping it
/// once it has run for `limit`.
pub async fn convert_in_child(
    program: PathBuf,
    request: Request,
    limit: Duration,
) -> anyhow::Result<Converted> {
    tokio::task::spawn_blocking(move || run_child(&program, &request, limit)).await?
}

/// Starts the child, sends the request, waits for the answer. Runs on a thread of its own for
/// the child's whole life: Linux kills the child when the thread that started it ends, which is
/// then only when the daemon dies.
fn run_child(program: &Path, request: &Request, limit: Duration) -> anyhow::Result<Converted> {
    let mut command = Command::new(program);
    command
        .arg("convert-job")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    die_with_parent(&mut command);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting the converter {}", program.display()))?;
    // Both pipes are served on threads of their own, so that a child that hangs before it has
    // read the request is still stopped at the limit; they end when it does.
    let mut stdin = child.stdin.take().context("the converter's stdin")?;
    let mut stdout = child.stdout.take().context("the converter's stdout")?;
    let input = serde_json::to_vec(request)?;
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let reader = std::thread::spawn(move || {
        let mut answer = Vec::new();
        stdout.read_to_end(&mut answer).map(|_| answer)
    });
    let status = wait_within(&mut child, limit).context("waiting for the converter")?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the request's writer panicked"))?;
    let answer = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the answer's reader panicked"))?;
    let Some(status) = status else {
        anyhow::bail!(
            "the converter ran past pipeline.job_timeout_secs ({} s) and was stopped",
            limit.as_secs()
        );
    };
    if let Some(signal) = status.signal() {
        anyhow::bail!(
            "the converter process was killed by signal {signal} ({}) while converting this \
             series; the daemon went on",
            signal_name(signal)
        );
    }
    if !status.success() {
        anyhow::bail!("the converter failed ({status}); its message is in the daemon's log");
    }
    written.context("sending the request to the converter")?;
    let answer = answer.context("reading the converter's answer")?;
    let response: Response = serde_json::from_slice(&answer)
        .with_context(|| format!("the converter ({status}) gave no answer it could read"))?;
    response.map_err(anyhow::Error::msg)
}

/// The child's exit status, or None when it was still running at `limit` and was killed.
fn wait_within(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a signal that ends a converter usually means, for the job's error.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL: the out-of-memory killer or an operator",
        libc::SIGSEGV => "SIGSEGV: a crash, likely in a decoder",
        libc::SIGABRT => "SIGABRT: an abort, such as a failed allocation",
        libc::SIGBUS => "SIGBUS: a crash",
        libc::SIGTERM => "SIGTERM",
        _ => "another signal",
    }
}

/// Asks Linux to kill the child (SIGKILL) when the thread that started it ends. A parent that
/// died between the fork and the request would not be noticed, so the child then checks that
/// its parent is still the daemon and fails to start otherwise.
fn die_with_parent(command: &mut Command) {
    let daemon = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != daemon {
                return Err(std::io::Error::other("the daemon is gone"));
            }
            Ok(())
        });
    }
}

/// Converts the request's files and writes each volume under its output folder.
fn convert_and_write(request: &Request) -> anyhow::Result<Converted> {
    std::fs::create_dir_all(&request.out_dir)?;
    let options = ConvertOptions {
        rules: request.rules.clone(),
        max_dataset_bytes: request.max_dataset_bytes,
    };
    let mut converted = Converted::default();
    let mut classes = Vec::new();
    for result in convert::convert_paths(&request.paths, &options) {
        let series = match result {
            Ok(s) => s,
            Err(e @ (SeriesError::Unreadable(_) | SeriesError::Failed { .. })) => {
                converted.problems.push(e.to_string());
                continue;
            }
        };
        converted.problems.extend(series.problems);
        for v in series.volumes {
            let stem = format!("{}{}", output::base_name(&v.volume), v.suffix);
            let files = output::write(&request.out_dir, &stem, &v.volume, v.class, v.image_only)?;
            let text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            converted.records.push(ConversionRecord {
                class: v.class.as_str().to_string(),
                nifti_path: files.nifti.display().to_string(),
                sidecar_path: text(&files.sidecar),
                bval_path: text(&files.bval),
                bvec_path: text(&files.bvec),
            });
            if !v.image_only {
                classes.push(v.class);
            }
        }
    }
    converted.class = series_class(&classes).map(|c| c.as_str().to_string());
    Ok(converted)
}

/// The class recorded for the series: diffusion wins over T1w, which wins over other, so that a
/// series with a usable diffusion or T1w volume is scored even if it also had a derived map.
fn series_class(classes: &[SeriesClass]) -> Option<SeriesClass> {
    [SeriesClass::Dwi, SeriesClass::T1w, SeriesClass::Other]
        .into_iter()
        .find(|c| classes.contains(c))
}
