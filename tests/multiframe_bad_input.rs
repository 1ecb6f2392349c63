//! Damaged multi-frame files get a clear error that names the file and never a panic, and the
//! series beside them still convert. Real mosaic and enhanced files from ../shared are copied
//! into a temporary folder and damaged there: a CSA header overwritten with garbage (pydicom), an
//! enhanced file cut in half, and an enhanced file whose per-frame groups were removed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::convert::{self, ConvertOptions, ConvertedSeries, SeriesError};

/// Rewrites `path` with pydicom after running `edit` (Python, `ds` is the data set).
fn pydicom_edit(path: &Path, edit: &str) {
    let script = format!(
        "import sys, pydicom\nds = pydicom.dcmread(sys.argv[1])\n{edit}\nds.save_as(sys.argv[1])"
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .arg(path)
        .output()
        .expect("python3 with pydicom is needed (pip install pydicom)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every problem reported, whether a series failed or converted in part.
fn problems(results: &[Result<ConvertedSeries, SeriesError>]) -> Vec<String> {
    results
        .iter()
        .flat_map(|r| match r {
            Ok(s) => s.problems.clone(),
            Err(e) => vec![e.to_string()],
        })
        .collect()
}

fn shapes(results: &[Result<ConvertedSeries, SeriesError>]) -> Vec<Vec<usize>> {
    results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|s| s.volumes.iter().map(|v| v.volume.data.shape().to_vec()))
        .collect()
}

#[test]
fn damaged_mosaic_and_enhanced_files_are_reported_and_spare_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = common::shared_dir().join("dicom");
    let mosaics = common::copy_folder(
        &root.join("siemens-mosaic-orient-axasc35"),
        &tmp.path().join("mosaic"),
    );
    let enhanced = common::copy_folder(
        &root.join("siemens-xa10-enhanced/XA10"),
        &tmp.path().join("xa10"),
    );
    common::copy_folder(&root.join("siemens-xa30-t1"), &tmp.path().join("t1"));

    // 1. Garbage CSA header in the second mosaic: the SV10 signature, then an absurd count.
    pydicom_edit(
        &mosaics[1],
        "ds[0x0029, 0x1010].value = b'SV10\\x04\\x03\\x02\\x01' + b'\\xff' * 64",
    );
    // 2. The third XA10 volume cut in half.
    let len = std::fs::metadata(&enhanced[2]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&enhanced[2])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // 3. The fourth XA10 volume without its plane positions (per-frame and shared).
    pydicom_edit(
        &enhanced[3],
        "for item in ds.PerFrameFunctionalGroupsSequence:\n    del item.PlanePositionSequence",
    );

    let results = convert::convert_paths(
        &convert::read::scan_folder(tmp.path()).unwrap(),
        &ConvertOptions::default(),
    );
    let reported = problems(&results);
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    for (file, what) in [
        (&mosaics[1], "CSA"),
        (&enhanced[2], ""),
        (&enhanced[3], "ImagePositionPatient"),
    ] {
        assert!(
            reported
                .iter()
                .any(|p| p.contains(&name(file)) && p.contains(what)),
            "no error naming {} ({what}) in {reported:?}",
            name(file)
        );
    }
    println!("{}", reported.join("\n"));
    // The intact T1 and the intact parts convert: 1 mosaic volume, 2 XA10 volumes.
    let shapes = shapes(&results);
    assert!(shapes.contains(&vec![128, 128, 96]) || shapes.contains(&vec![96, 128, 128]));
    assert!(shapes.contains(&vec![64, 64, 35]), "{shapes:?}");
    assert!(shapes.contains(&vec![64, 64, 6, 2]), "{shapes:?}");
}
