//! `brainaged convert INPUT_DIR OUTPUT_DIR [--jobs N] [--json]`: every series under INPUT_DIR
//! to NIfTI + JSON sidecar (+ bval/bvec), named `<SeriesNumber>_<SeriesDescription>[suffix]`.
//!
//! A bad series is reported and the rest still converts; the exit status is non-zero only when
//! nothing converted (1) or the arguments are wrong (2).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use brainaged::convert::output::{self, WrittenFiles};
use brainaged::convert::{self, ConvertOptions, ConvertedSeries, SeriesError};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of DICOM files, searched recursively; other files are skipped.
    pub input: PathBuf,
    /// Folder for the outputs (created when missing).
    pub output: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print one JSON object per output file set instead of the summary table.
    #[arg(long)]
    pub json: bool,
}

/// One written output, for the summary table or a JSON line.
#[derive(serde::Serialize)]
struct Row {
    series_instance_uid: String,
    series_number: Option<i64>,
    class: &'static str,
    nifti: PathBuf,
    sidecar: Option<PathBuf>,
    bval: Option<PathBuf>,
    bvec: Option<PathBuf>,
    #[serde(skip)]
    shape: Vec<usize>,
}

/// What all series came to.
#[derive(Default)]
struct Outcome {
    rows: Vec<Row>,
    errors: Vec<String>,
    used_stems: HashSet<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.input.is_dir() {
        eprintln!(
            "brainaged convert: {} is not a folder",
            args.input.display()
        );
        return Ok(ExitCode::from(2));
    }
    if args.jobs == Some(0) {
        eprintln!("brainaged convert: --jobs must be at least 1");
        return Ok(ExitCode::from(2));
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let files = convert::read::scan_folder(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.jobs {
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting worker threads")?;
    let bar = progress_bar();
    bar.set_message(format!("{} files", files.len()));
    let outcome = Mutex::new(Outcome::default());
    let options = ConvertOptions::default();
    pool.install(|| {
        convert::for_each_series(&files, &options, |result| {
            handle(result, &args.output, &outcome);
            bar.inc(1);
        })
    });
    bar.finish_and_clear();
    let mut outcome = outcome
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    outcome
        .rows
        .sort_by(|a, b| (a.series_number, &a.nifti).cmp(&(b.series_number, &b.nifti)));
    if args.json {
        for row in &outcome.rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        print_table(&outcome.rows);
    }
    for e in &outcome.errors {
        eprintln!("error: {e}");
    }
    if outcome.rows.is_empty() {
        eprintln!("brainaged convert: nothing converted");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A bar on a terminal, nothing otherwise (logs and pipes stay clean).
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {pos} series converted ({msg}) {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

/// Writes one series' volumes; records rows and errors.
fn handle(result: Result<ConvertedSeries, SeriesError>, dir: &Path, outcome: &Mutex<Outcome>) {
    let series = match result {
        Ok(s) => s,
        Err(e) => {
            if let Ok(mut o) = outcome.lock() {
                o.errors.push(e.to_string());
            }
            return;
        }
    };
    for v in &series.volumes {
        let wanted = format!("{}{}", output::base_name(&v.volume), v.suffix);
        let Some(stem) = reserve_stem(outcome, &wanted) else {
            return;
        };
        let written = output::write(dir, &stem, &v.volume, v.class, v.image_only);
        let Ok(mut o) = outcome.lock() else {
            return;
        };
        match written {
            Ok(WrittenFiles {
                nifti,
                sidecar,
                bval,
                bvec,
            }) => o.rows.push(Row {
                series_instance_uid: series.series_instance_uid.clone(),
                series_number: v.volume.meta.series_number,
                class: v.class.as_str(),
                nifti,
                sidecar,
                bval,
                bvec,
                shape: v.volume.data.shape().to_vec(),
            }),
            Err(e) => o.errors.push(format!(
                "series {}: writing {stem}: {e}",
                series.series_instance_uid
            )),
        }
    }
    if let Ok(mut o) = outcome.lock() {
        for p in &series.problems {
            o.errors.push(format!(
                "series {} (partly converted): {p}",
                series.series_instance_uid
            ));
        }
    }
}

/// A stem not yet used in this run: `wanted`, else `wanted` + "a", "b", … "z" as dcm2niix does,
/// then "aa", "ab", … "zz", "aaa", … (every suffix distinct, so this always finds a free stem).
fn reserve_stem(outcome: &Mutex<Outcome>, wanted: &str) -> Option<String> {
    let mut o = outcome.lock().ok()?;
    let mut stem = wanted.to_string();
    let mut n: u64 = 0;
    while o.used_stems.contains(&stem) {
        stem = format!("{wanted}{}", letter_suffix(n));
        n += 1;
    }
    o.used_stems.insert(stem.clone());
    Some(stem)
}

/// The `n`-th clash suffix, counting from 0: "a" … "z", "aa" … "zz", "aaa", … (bijective base 26,
/// as spreadsheet columns are named), so that no two `n` give the same suffix.
fn letter_suffix(n: u64) -> String {
    let mut letters = Vec::new();
    let mut k = n + 1;
    while k > 0 {
        k -= 1;
        letters.push(b'a' + (k % 26) as u8);
        k /= 26;
    }
    letters.iter().rev().map(|&b| char::from(b)).collect()
}

fn print_table(rows: &[Row]) {
    println!(
        "{:>7}  {:<6}  {:<18}  output",
        "series", "class", "dimensions"
    );
    for r in rows {
        let dims = r
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        let name = r
            .nifti
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let number = r.series_number.map_or("-".into(), |n| n.to_string());
        println!("{number:>7}  {:<6}  {dims:<18}  {name}", r.class);
    }
    println!("{} file set(s) written", rows.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clash_suffixes_follow_dcm2niix_then_keep_going() {
        assert_eq!(letter_suffix(0), "a");
        assert_eq!(letter_suffix(25), "z");
        assert_eq!(letter_suffix(26), "aa");
        assert_eq!(letter_suffix(27), "ab");
        assert_eq!(letter_suffix(26 + 26 * 26 - 1), "zz");
        assert_eq!(letter_suffix(26 + 26 * 26), "aaa");
    }

    #[test]
    fn reserve_stem_never_runs_out() {
        let outcome = Mutex::new(Outcome::default());
        // Past the bare stem and its 26 one-letter variants, and past the two-letter ones too.
        let count = 1 + 26 + 26 * 26 + 5;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let stems: Vec<String> = (0..count)
                .map(|_| reserve_stem(&outcome, "3_T1").expect("lock"))
                .collect();
            let _ = tx.send(stems);
        });
        let stems = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("reserve_stem did not terminate");
        assert_eq!(stems.len(), count);
        let distinct: HashSet<&String> = stems.iter().collect();
        assert_eq!(distinct.len(), count, "every reserved stem is distinct");
        assert_eq!(stems[0], "3_T1");
        assert_eq!(stems[1], "3_T1a");
        assert_eq!(stems[26], "3_T1z");
        assert_eq!(stems[27], "3_T1aa");
        assert!(stems.iter().all(|s| s.starts_with("3_T1")));
    }

    #[test]
    fn reserve_stem_skips_a_suffix_already_taken_as_a_stem() {
        let outcome = Mutex::new(Outcome::default());
        assert_eq!(reserve_stem(&outcome, "2_DWIa").as_deref(), Some("2_DWIa"));
        assert_eq!(reserve_stem(&outcome, "2_DWI").as_deref(), Some("2_DWI"));
        assert_eq!(reserve_stem(&outcome, "2_DWI").as_deref(), Some("2_DWIb"));
    }
}
