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
//! job its successor requeues. A daemon asked to stop (SIGTERM) stops the child too, rather
//! than wait up to an hour for it, and gives the job back ([`Interrupted`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::convert::classify::SeriesClass;
use crate::convert::{self, ConvertOptions, SeriesError, output};
use crate::db::conversions::ConversionRecord;
use crate::shutdown::Shutdown;

/// What to convert, and where to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The series' spool files.
    pub paths: Vec<PathBuf>,
    /// The version's output folder.
    pub out_dir: PathBuf,
    pub options: ConvertOptions,
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

/// The conversion was stopped because the daemon is stopping. The series is not at fault: its
/// job goes back to the queue for the next start.
#[derive(Debug, thiserror::Error)]
#[error("the daemon is stopping: the conversion was stopped before it ended")]
pub struct Interrupted;

/// How the wait for a child ended.
enum Ended {
    Exited(ExitStatus),
    /// It ran past the limit and was killed.
    TimedOut,
    /// The daemon is stopping, and it was killed.
    Interrupted,
}

/// Runs the conversion in this process: what `brainaged convert-job` does. A conversion that
/// fails leaves no output folder: nothing half-written stays on a full disk for a later stage
/// to find.
pub fn convert_here(request: &Request) -> Response {
    let result = convert_and_write(request);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&request.out_dir);
    }
    result.map_err(|e| format!("{e:#}"))
}

/// Runs the conversion in a child process of `program` (the daemon's own binary), stopping it
/// once it has run for `limit`, or at once when `stop` is requested (the error is then
/// [`Interrupted`]).
pub async fn convert_in_child(
    program: PathBuf,
    request: Request,
    limit: Duration,
    stop: Shutdown,
) -> anyhow::Result<Converted> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| run_child(&program, &request, limit, &stop))
    })
    .await?
}

/// How much of the converter's error output is kept: its end, where the reason is.
const SAID_KEPT: usize = 4096;

/// Starts the child, sends the request, waits for the answer. Runs on a thread of its own for
/// the child's whole life: Linux kills the child when the thread that started it ends, which is
/// then only when the daemon dies.
fn run_child(
    program: &Path,
    request: &Request,
    limit: Duration,
    stop: &Shutdown,
) -> anyhow::Result<Converted> {
    let mut running = Running::start(program, serde_json::to_vec(request)?)?;
    let ended =
        wait_within(&mut running.child, limit, stop).context("waiting for the converter")?;
    let (written, answer, said) = running.join()?;
    let status = match ended {
        Ended::Exited(status) => status,
        Ended::Interrupted => return Err(Interrupted.into()),
        Ended::TimedOut => anyhow::bail!(
            "the converter ran past pipeline.job_timeout_secs ({} s) and was stopped",
            limit.as_secs()
        ),
    };
    check_exit(status, &said)?;
    if !said.is_empty() {
        warn!(said = %said, "the converter wrote to its error output");
    }
    written.context("sending the request to the converter")?;
    let answer = answer.context("reading the converter's answer")?;
    let response: Response = serde_json::from_slice(&answer)
        .with_context(|| format!("the converter ({status}) gave no answer it could read"))?;
    response.map_err(anyhow::Error::msg)
}

/// A started converter and the threads that serve its pipes. Each pipe has a thread of its
/// own, so that a child that hangs before it has read the request is still stopped at the
/// limit; the threads end when the child does. Its error output is captured rather than
/// inherited: the reason a converter gives for failing belongs in its job's error, and plain
/// text has no place in a JSON log.
struct Running {
    child: Child,
    writer: JoinHandle<std::io::Result<()>>,
    reader: JoinHandle<std::io::Result<Vec<u8>>>,
    errors: JoinHandle<String>,
}

impl Running {
    fn start(program: &Path, input: Vec<u8>) -> anyhow::Result<Running> {
        let mut command = Command::new(program);
        command
            .arg("convert-job")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tie_to_daemon(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the converter {}", program.display()))?;
        let mut stdin = child.stdin.take().context("the converter's stdin")?;
        let mut stdout = child.stdout.take().context("the converter's stdout")?;
        let mut stderr = child.stderr.take().context("the converter's stderr")?;
        Ok(Running {
            child,
            writer: std::thread::spawn(move || stdin.write_all(&input)),
            reader: std::thread::spawn(move || {
                let mut answer = Vec::new();
                stdout.read_to_end(&mut answer).map(|_| answer)
            }),
            errors: std::thread::spawn(move || tail_of(&mut stderr, SAID_KEPT)),
        })
    }

    /// Once the child has ended: whether the request was sent, the answer, and the end of what
    /// it wrote to its error output.
    #[allow(clippy::type_complexity)]
    fn join(self) -> anyhow::Result<(std::io::Result<()>, std::io::Result<Vec<u8>>, String)> {
        let panicked = |what: &str| anyhow::anyhow!("the converter's {what} thread panicked");
        let written = self.writer.join().map_err(|_| panicked("request"))?;
        let answer = self.reader.join().map_err(|_| panicked("answer"))?;
        let said = self.errors.join().map_err(|_| panicked("error output"))?;
        Ok((written, answer, said))
    }
}

/// Fails when the child was killed or exited with an error, with what it said.
fn check_exit(status: ExitStatus, said: &str) -> anyhow::Result<()> {
    let said = if said.is_empty() {
        String::new()
    } else {
        format!("; it said: {said}")
    };
    if let Some(signal) = status.signal() {
        anyhow::bail!(
            "the converter process was killed by signal {signal} ({}) while converting this \
             series; the daemon went on{said}",
            signal_name(signal)
        );
    }
    if !status.success() {
        anyhow::bail!("the converter failed ({status}){said}");
    }
    Ok(())
}

/// The last `keep` bytes `reader` yields before its end, as trimmed text (a character cut in
/// two at the start shows as U+FFFD).
fn tail_of(reader: &mut impl Read, keep: usize) -> String {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => kept.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if kept.len() > 2 * keep {
            kept.drain(..kept.len() - keep);
        }
    }
    kept.drain(..kept.len().saturating_sub(keep));
    String::from_utf8_lossy(&kept).trim().to_string()
}

/// Waits for the child to exit, killing it once it has run for `limit` or when `stop` is
/// requested.
fn wait_within(child: &mut Child, limit: Duration, stop: &Shutdown) -> std::io::Result<Ended> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::Exited(status));
        }
        let ended = if stop.is_requested() {
            Ended::Interrupted
        } else if Instant::now() >= deadline {
            Ended::TimedOut
        } else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        child.kill()?;
        child.wait()?;
        return Ok(ended);
    }
}

/// What a signal that ends a converter usually means, for the job's error.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL: the out-of-memory killer or an operator",
        libc::SIGSEGV => "SIGSEGV: a crash, likely in a decoder",
        libc::SIGABRT => "SIGABRT: an abort, such as a failed allocation",
        libc::SIGBUS => "SIGBUS: a crash",
        _ => "another signal",
    }
}

/// Makes the child's life the daemon's business. Linux kills the child (SIGKILL) when the
/// thread that started it ends; a parent that died between the fork and that request would not
/// be noticed, so the child then checks that its parent is still the daemon and fails to start
/// otherwise. And the child ignores SIGTERM and SIGINT: systemd's stop sends SIGTERM to every
/// process of the service, and a terminal's Ctrl-C sends SIGINT to the whole process group, so
/// the converter would die of the signal, and its job fail, before the daemon had heard of the
/// stop and could give the job back. The daemon stops the child itself. Last, the child offers
/// itself first to the out-of-memory killer (`oom_score_adj` 1000): when memory runs out, the
/// conversion fails its job and the daemon, and a PostgreSQL beside it, go on.
fn tie_to_daemon(command: &mut Command) {
    let daemon = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid, signal, open, write and close are async-signal-safe and touch no
    // memory of the parent. An ignored disposition survives the exec, as does the OOM score.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != daemon {
                return Err(std::io::Error::other("the daemon is gone"));
            }
            for signal in [libc::SIGTERM, libc::SIGINT] {
                if libc::signal(signal, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Raising one's own score needs no privilege; without /proc the child still runs.
            let score = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if score >= 0 {
                libc::write(score, b"1000".as_ptr().cast(), 4);
                libc::close(score);
            }
            Ok(())
        });
    }
}

/// Converts the request's files and writes each volume under its output folder.
fn convert_and_write(request: &Request) -> anyhow::Result<Converted> {
    fresh_folder(&request.out_dir)
        .with_context(|| format!("making the folder {}", request.out_dir.display()))?;
    let mut converted = Converted::default();
    let mut classes = Vec::new();
    for result in convert::convert_paths(&request.paths, &request.options) {
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
    make_durable(&request.out_dir, &converted.records)?;
    Ok(converted)
}

/// Empties the version's output folder, making it if needed: a job run again after the daemon
/// died must not leave the files of the attempt before beside its own.
fn fresh_folder(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

/// Sends the written files, and the folders that name them, to the disk. The daemon records the
/// conversion once the converter has answered, and later stages read the files a record names;
/// without this a power cut soon after could leave a recorded file empty or missing (a new
/// file's data reaches an ext4 disk up to half a minute after it is written).
fn make_durable(dir: &Path, records: &[ConversionRecord]) -> anyhow::Result<()> {
    for path in records.iter().flat_map(ConversionRecord::files) {
        sync(Path::new(path))?;
    }
    // The version's folder, the series' folder that names it, and the output folder above.
    for folder in dir.ancestors().take(3) {
        if !folder.as_os_str().is_empty() {
            sync(folder)?;
        }
    }
    Ok(())
}

fn sync(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {} to the disk", path.display()))
}

/// The class recorded for the series: diffusion wins over T1w, which wins over other, so that a
/// series with a usable diffusion or T1w volume is scored even if it also had a derived map.
fn series_class(classes: &[SeriesClass]) -> Option<SeriesClass> {
    [SeriesClass::Dwi, SeriesClass::T1w, SeriesClass::Other]
        .into_iter()
        .find(|c| classes.contains(c))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::shutdown;

    /// Runs a stand-in for the converter: a shell script that does `body`.
    fn run(body: &str, limit: Duration, stop: &Shutdown) -> anyhow::Result<Converted> {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("converter");
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let request = Request {
            paths: Vec::new(),
            out_dir: dir.path().join("out"),
            options: ConvertOptions::default(),
        };
        run_child(&program, &request, limit, stop)
    }

    const LONG: Duration = Duration::from_secs(60);
    /// What a converter that converted nothing answers.
    const EMPTY_ANSWER: &str = r#"echo '{"Ok":{"records":[],"class":null,"problems":[]}}'"#;

    #[test]
    fn what_a_failing_converter_says_is_in_its_error() {
        let (_trigger, stop) = shutdown::channel();
        let e = run("echo 'cannot parse the request' >&2; exit 3", LONG, &stop).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(
            text.ends_with("it said: cannot parse the request"),
            "{text}"
        );

        let e = run(
            "echo 'memory allocation failed' >&2; kill -ABRT $$",
            LONG,
            &stop,
        )
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("signal 6 (SIGABRT"), "{text}");
        assert!(
            text.ends_with("it said: memory allocation failed"),
            "{text}"
        );
    }

    #[test]
    fn a_converter_that_says_nothing_fails_without_a_quote() {
        let (_trigger, stop) = shutdown::channel();
        let text = format!("{:#}", run("exit 1", LONG, &stop).unwrap_err());
        assert!(text.ends_with("exit status: 1)"), "{text}");
    }

    #[test]
    fn only_the_end_of_a_long_error_output_is_kept() {
        let said = format!("{}the reason", "x".repeat(10 * SAID_KEPT));
        let kept = tail_of(&mut said.as_bytes(), SAID_KEPT);
        assert_eq!(kept.len(), SAID_KEPT);
        assert!(kept.ends_with("the reason"));
    }

    #[test]
    fn a_stop_ends_the_converter_at_once() {
        let (trigger, stop) = shutdown::channel();
        let started = Instant::now();
        let firing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            trigger.fire();
        });
        let e = run("exec sleep 30", LONG, &stop).unwrap_err();
        firing.join().unwrap();
        assert!(e.is::<Interrupted>(), "{e:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_converter_past_its_limit_is_stopped() {
        let (_trigger, stop) = shutdown::channel();
        let started = Instant::now();
        let e = run("exec sleep 30", Duration::from_millis(300), &stop).unwrap_err();
        assert!(format!("{e:#}").contains("ran past"), "{e:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The out-of-memory killer takes the converter before anything else.
    #[test]
    fn the_converter_is_first_for_the_out_of_memory_killer() {
        let (_trigger, stop) = shutdown::channel();
        let body = "echo \"oom_score_adj $(cat /proc/self/oom_score_adj)\" >&2; exit 1";
        let text = format!("{:#}", run(body, LONG, &stop).unwrap_err());
        assert!(text.ends_with("it said: oom_score_adj 1000"), "{text}");
    }

    /// A job run again after the daemon died starts from an empty folder.
    #[test]
    fn a_conversion_starts_from_an_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("series").join("v1");
        std::fs::create_dir_all(&out_dir).unwrap();
        std::fs::write(out_dir.join("left_by_an_earlier_attempt.nii.gz"), b"half").unwrap();
        let request = Request {
            paths: Vec::new(),
            out_dir: out_dir.clone(),
            options: ConvertOptions::default(),
        };
        let converted = convert_here(&request).expect("nothing to convert is no error");
        assert!(converted.records.is_empty());
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    }

    /// systemd's stop signals every process of the service, and Ctrl-C the whole process
    /// group; the converter must live on until the daemon stops it.
    #[test]
    fn the_converter_ignores_sigterm_and_sigint() {
        let (_trigger, stop) = shutdown::channel();
        let body = format!("kill -TERM $$; kill -INT $$; cat >/dev/null; {EMPTY_ANSWER}");
        let converted = run(&body, LONG, &stop).expect("the converter lived on");
        assert!(converted.records.is_empty());
    }
}
