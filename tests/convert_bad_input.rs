//! Bad input gets a clear per-series error and never a panic; good series beside it still
//! convert. Inputs are real files from ../shared copied into a temporary folder and damaged
//! there: a truncated file, a compressed file its decoder panics on, a slice missing in the
//! middle, one slice with another orientation, a length far past the end of its file, and
//! folders holding only non-image objects or garbage.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::convert::{self, ConvertOptions, SeriesError};

/// The file of `files` whose InstanceNumber is `n` (read with pydicom, as an outside view).
fn file_with_instance(dir: &Path, n: i64) -> PathBuf {
    let script = "import sys, glob, os, pydicom\n\
                  for f in sorted(glob.glob(os.path.join(sys.argv[1], '*'))):\n\
                  \x20   ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)\n\
                  \x20   if int(ds.get('InstanceNumber', -1)) == int(sys.argv[2]):\n\
                  \x20       print(f); break";
    PathBuf::from(pydicom(script, &[dir.as_os_str(), n.to_string().as_ref()]).trim())
}

/// The shape a folder holding one intact 4-D series must convert to, read with pydicom as an
/// outside view: [Columns, Rows, distinct slice positions, files per position].
fn series_shape(dir: &Path) -> Vec<usize> {
    let script = "import sys, glob, os, pydicom\n\
                  ds = [pydicom.dcmread(f, stop_before_pixels=True)\n\
                  \x20     for f in sorted(glob.glob(os.path.join(sys.argv[1], '*')))]\n\
                  positions = {tuple(round(float(v), 3) for v in d.ImagePositionPatient) for d in ds}\n\
                  assert len(ds) % len(positions) == 0\n\
                  print(ds[0].Columns, ds[0].Rows, len(positions), len(ds) // len(positions))";
    pydicom(script, &[dir.as_os_str()])
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Runs a Python `script` (which uses pydicom) with `args`; returns what it printed.
fn pydicom(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let o = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 with pydicom is needed (pip install pydicom)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run(paths: &[PathBuf]) -> Vec<Result<convert::ConvertedSeries, SeriesError>> {
    convert::convert_paths(paths, &ConvertOptions::default())
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    convert::read::scan_folder(dir).unwrap()
}

/// Two GE DWI series copied under `dir` (r2 and r3); returns the file of r2 to damage.
fn two_series_and_a_victim(dir: &Path) -> PathBuf {
    let root = common::shared_dir().join("dicom");
    common::copy_folder(&root.join("ge-dwi-tensor-r2"), &dir.join("r2"));
    common::copy_folder(&root.join("ge-dwi-tensor-r3"), &dir.join("r3"));
    file_with_instance(&dir.join("r2"), 5)
}

#[test]
fn truncated_file_fails_its_series_and_spares_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = two_series_and_a_victim(tmp.path());
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    only_the_victims_series_fails(tmp.path(), &victim);
    cli_reports_the_victim(tmp.path(), &victim);
}

/// Converts everything under `dir` (from [`two_series_and_a_victim`]): r3 must convert to its
/// full shape and exactly one series fail; returns the errors.
fn only_one_series_fails(dir: &Path) -> Vec<String> {
    let results = run(&all_files(dir));
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "the intact series converts");
    let intact = series_shape(&dir.join("r3"));
    assert_eq!(ok[0].volumes[0].volume.data.shape(), &intact[..]);
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors
}

/// Converts everything under `dir` (from [`two_series_and_a_victim`]): the intact series must
/// convert to its full shape and exactly one series fail, naming `victim`; returns that error.
fn only_the_victims_series_fails(dir: &Path, victim: &Path) -> String {
    let errors = only_one_series_fails(dir);
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(
        errors[0].contains(&*name),
        "error names the file: {}",
        errors[0]
    );
    errors[0].clone()
}

/// `brainaged convert` of `dir` (with backtraces asked for): it converts the intact series,
/// reports `victim`'s and exits 0; returns what it wrote to stderr.
fn cli_reports_the_victim(dir: &Path, victim: &Path) -> String {
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(dir)
        .arg(&out)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "exit {:?}: {stderr}", o.status);
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(stderr.contains(&*name), "{stderr}");
    assert!(out.join("2_Ax_DWI_TENSOR_R3.nii.gz").exists());
    stderr
}

/// Replaces `victim` with its RLE encoding by DCMTK (`dcmcrle`), damaged: the second segment's
/// offset in the RLE header is moved to two bytes after the first's, so that the first segment
/// decodes to far fewer bytes than a plane of the frame. dicom-transfer-syntax-registry 0.10's
/// RLE reader then indexes past them and panics (found by fuzzing `convert_file`).
fn rle_with_a_short_segment(victim: &Path) {
    let encoded = victim.with_extension("rle");
    let o = Command::new("dcmcrle")
        .arg(victim)
        .arg(&encoded)
        .output()
        .expect("DCMTK dcmcrle is needed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut bytes = std::fs::read(&encoded).unwrap();
    std::fs::remove_file(&encoded).unwrap();
    // Pixel Data (12 bytes), the basic offset table's item, then the first fragment's item
    // header (8 bytes) and its 64-byte RLE header: segment count, then segment offsets.
    let at = common::pixel_data_at(&bytes);
    let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let rle_header = at + 20 + word(&bytes, at + 16) as usize + 8;
    assert_eq!(word(&bytes, rle_header), 2, "16-bit data: two segments");
    let first = word(&bytes, rle_header + 4);
    bytes[rle_header + 8..rle_header + 12].copy_from_slice(&(first + 2).to_le_bytes());
    std::fs::write(victim, bytes).unwrap();
}

#[test]
fn a_file_whose_decoder_panics_fails_its_series_and_spares_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = two_series_and_a_victim(tmp.path());
    rle_with_a_short_segment(&victim);
    let error = only_the_victims_series_fails(tmp.path(), &victim);
    assert!(error.contains("the decoder failed"), "{error}");
    let stderr = cli_reports_the_victim(tmp.path(), &victim);
    assert!(!stderr.contains("panicked"), "no panic's trace: {stderr}");
}

#[test]
fn slice_missing_in_the_middle_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t1");
    common::copy_folder(&common::shared_dir().join("dicom/ge-t1-mprage"), &dir);
    std::fs::remove_file(file_with_instance(&dir, 65)).unwrap();
    let results = run(&all_files(&dir));
    assert_eq!(results.len(), 1);
    let err = results[0]
        .as_ref()
        .expect_err("a gap is an error")
        .to_string();
    assert!(
        err.contains("slice gap") && err.contains("missing"),
        "{err}"
    );

    // One image of a 4-D series missing: unequal counts per position.
    let dwi = tmp.path().join("dwi");
    common::copy_folder(&common::shared_dir().join("dicom/ge-dwi-tensor-r2"), &dwi);
    std::fs::remove_file(file_with_instance(&dwi, 8)).unwrap();
    let results = run(&all_files(&dwi));
    let err = results[0].as_ref().expect_err("unequal counts").to_string();
    assert!(err.contains("not equal"), "{err}");

    // The CLI: nothing converted → non-zero exit, message on stderr, no panic.
    let o = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(&dir)
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("slice gap") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// A series whose ImageOrientationPatient has a zero row direction fails with the reason and
/// the other series converts; `brainaged convert` reports it and exits 0. Found by fuzzing
/// `spool_file_converted`: the singular affine made the NIfTI writer's quaternion panic.
#[test]
fn a_series_with_a_degenerate_orientation_fails_and_spares_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    two_series_and_a_victim(tmp.path());
    let o = Command::new("dcmodify")
        .args(["-nb", "-m", "(0020,0037)=0\\0\\0\\0\\1\\0"])
        .args(all_files(&tmp.path().join("r2")))
        .output()
        .expect("DCMTK dcmodify is needed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let errors = only_one_series_fails(tmp.path());
    assert!(
        errors[0].contains("no usable geometry") && errors[0].contains("zero or non-finite"),
        "{}",
        errors[0]
    );

    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(tmp.path())
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {stderr}", o.status);
    assert!(
        stderr.contains("no usable geometry") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(out.join("2_Ax_DWI_TENSOR_R3.nii.gz").exists());
}

#[test]
fn a_slice_with_another_orientation_is_split_off_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t1");
    common::copy_folder(&common::shared_dir().join("dicom/ge-t1-mprage"), &dir);
    let victim = file_with_instance(&dir, 40);
    let script = "import sys, pydicom\n\
                  ds = pydicom.dcmread(sys.argv[1])\n\
                  ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]\n\
                  ds.save_as(sys.argv[1])";
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&victim)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results = run(&all_files(&dir));
    assert_eq!(results.len(), 1);
    let text = match &results[0] {
        Ok(s) => s.problems.join("; "),
        Err(e) => e.to_string(),
    };
    // The 129 remaining slices have a gap where the odd one was.
    assert!(text.contains("slice gap"), "{text}");
    if let Ok(s) = &results[0] {
        // What did convert is the odd slice on its own, never a mixed stack.
        for v in &s.volumes {
            assert_eq!(v.volume.data.shape()[2], 1);
        }
    }
}

/// `file` (explicit VR little endian) with an element that announces 4 GiB and brings 8 bytes
/// inserted before its Pixel Data: dicom-rs allocates and fills what a length announces before
/// it reads the value.
fn insert_long_value(file: &Path) {
    let hostile = common::with_long_value(&std::fs::read(file).unwrap());
    std::fs::write(file, hostile).unwrap();
}

#[test]
fn a_length_past_the_end_of_a_file_is_reported_without_allocating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = two_series_and_a_victim(tmp.path());
    insert_long_value(&victim);

    let options = ConvertOptions::default();
    let reason = "a value of 4294967280 bytes";
    let results = converted_within_bounds(tmp.path(), &victim, reason, &options);
    let intact = series_shape(&tmp.path().join("r3"));
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .any(|ok| ok.volumes[0].volume.data.shape() == &intact[..]),
        "the intact series converts"
    );
}

/// A deflated file's dataset is checked as it inflates: the file's size does not bound the
/// lengths inside it, and dicom-rs inflates as it parses.
#[test]
fn a_length_past_the_end_of_a_deflated_file_is_reported_without_allocating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = two_series_and_a_victim(tmp.path());
    let (meta, plain) = deflated_by_dcmtk(&victim);
    let dataset = common::with_long_value(&plain);
    std::fs::write(&victim, [&meta[..], &deflate(&dataset)].concat()).unwrap();

    let reason = format!(
        "a value of 4294967280 bytes in a dataset of {}",
        dataset.len()
    );
    converted_within_bounds(tmp.path(), &victim, &reason, &ConvertOptions::default());
}

/// A deflated file whose dataset inflates past the dataset limit is refused before dicom-rs
/// inflates it into memory: here a megabyte of deflate stands for a gigabyte of dataset, every
/// length of which fits.
#[test]
fn a_deflated_file_that_inflates_past_the_limit_is_reported_without_holding_it() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = two_series_and_a_victim(tmp.path());
    let (meta, plain) = deflated_by_dcmtk(&victim);
    let at = common::pixel_data_at(&plain);
    const ZEROS: usize = 1 << 30;
    let mut encoder = flate2::write::DeflateEncoder::new(meta, flate2::Compression::best());
    encoder.write_all(&plain[..at]).unwrap();
    encoder.write_all(&[0x09, 0x00, 0x10, 0x10]).unwrap(); // (0009,1010), an OB
    encoder.write_all(b"OB\0\0").unwrap();
    encoder.write_all(&(ZEROS as u32).to_le_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..ZEROS / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.write_all(&plain[at..]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
    std::fs::write(&victim, bomb).unwrap();

    let options = ConvertOptions {
        max_dataset_bytes: 256 << 20,
        ..ConvertOptions::default()
    };
    let reason = "a dataset of more than 268435456 bytes once inflated";
    converted_within_bounds(tmp.path(), &victim, reason, &options);
}

/// A file whose dataset is larger than the limit is refused, and one far larger is refused
/// before it is read.
#[test]
fn a_file_past_the_limit_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = two_series_and_a_victim(tmp.path());
    let plain = std::fs::read(&victim).unwrap();
    let at = common::pixel_data_at(&plain);
    const VALUE: u32 = 2 << 20;
    let header = [
        &[0x09, 0x00, 0x10, 0x10][..],
        b"OB\0\0",
        &VALUE.to_le_bytes(),
    ]
    .concat();
    let zeros = vec![0u8; VALUE as usize];
    std::fs::write(
        &victim,
        [&plain[..at], &header, &zeros, &plain[at..]].concat(),
    )
    .unwrap();
    let size = std::fs::metadata(&victim).unwrap().len();
    for (limit, reason) in [
        (
            1 << 20,
            format!("a file of {size} bytes, larger than the dataset limit"),
        ),
        (3 << 19, "a dataset of more than 1572864 bytes".to_string()),
    ] {
        let options = ConvertOptions {
            max_dataset_bytes: limit,
            ..ConvertOptions::default()
        };
        converted_within_bounds(tmp.path(), &victim, &reason, &options);
    }
}

/// `victim` deflated by DCMTK (`dcmconv +td`): its preamble and meta group as written, and its
/// dataset inflated again. The file made is removed.
fn deflated_by_dcmtk(victim: &Path) -> (Vec<u8>, Vec<u8>) {
    let made = victim.with_extension("deflated");
    let o = Command::new("dcmconv")
        .arg("+td")
        .arg(victim)
        .arg(&made)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deflated = std::fs::read(&made).unwrap();
    std::fs::remove_file(&made).unwrap();
    let (start, ts) = brainaged::dataset_bounds::meta_group(&deflated).unwrap();
    assert_eq!(ts.as_deref(), Some("1.2.840.10008.1.2.1.99"));
    (deflated[..start].to_vec(), inflate(&deflated[start..]))
}

/// Converts every file under `dir`: the test process's peak memory must not grow by what a
/// damaged length announces, and `victim` must be reported unreadable for `reason`.
fn converted_within_bounds(
    dir: &Path,
    victim: &Path,
    reason: &str,
    options: &ConvertOptions,
) -> Vec<Result<convert::ConvertedSeries, SeriesError>> {
    let before = common::peak_rss();
    let results = convert::convert_paths(&all_files(dir), options);
    let grown = common::peak_rss().saturating_sub(before);
    assert!(grown < 512 << 20, "peak memory grew by {grown} bytes");
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains(&name)
            && e.contains("not readable as DICOM")
            && e.contains(reason)),
        "{errors:?}"
    );
    results
}

fn inflate(raw: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(raw)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn deflate(plain: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(plain).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn non_image_objects_and_garbage_are_skipped_or_reported_without_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let philips = common::shared_dir().join("dicom/philips-dwi-classic");
    // DICOMDIR, a presentation state and Philips private objects: no images at all.
    for f in all_files(&philips) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "DICOMDIR" || name.starts_with("PS_") || name.starts_with("XX_") {
            std::fs::copy(&f, tmp.path().join(&name)).unwrap();
        }
    }
    std::fs::write(tmp.path().join("README.txt"), "not DICOM").unwrap();
    let mut garbage = vec![0u8; 128];
    garbage.extend_from_slice(b"DICM");
    garbage.extend_from_slice(&[0xff; 300]);
    std::fs::write(tmp.path().join("broken.dcm"), &garbage).unwrap();
    let results = run(&all_files(tmp.path()));
    assert_eq!(
        results.len(),
        1,
        "only the garbage file is reported: {results:?}"
    );
    let err = results[0].as_ref().err().unwrap().to_string();
    assert!(
        err.contains("broken.dcm") && err.contains("not readable as DICOM"),
        "{err}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(tmp.path())
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "nothing converted: {stderr}");
    assert!(stderr.contains("nothing converted"), "{stderr}");
}

#[test]
fn usage_errors_exit_with_2() {
    let o = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .args(["convert", "/nonexistent/folder", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
