//! Every development series gets its expected class: T1 MPRAGE/tfl → t1w, raw diffusion →
//! dwi, the scanner's FA map and ADC/trace volumes → other, EPI fMRI and field maps → other.

use std::path::{Path, PathBuf};

use brainaged::convert::classify::SeriesClass;
use brainaged::convert::{self, ConvertOptions};

fn shared_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// (folder, expected class of the main output, expected class of any further outputs)
const EXPECTED: &[(&str, SeriesClass)] = &[
    ("ge-t1-mprage", SeriesClass::T1w),
    ("ge-dwi-tensor-r2", SeriesClass::Dwi),
    ("ge-dwi-tensor-r3", SeriesClass::Dwi),
    ("philips-dwi-bangalore", SeriesClass::Dwi),
    ("philips-dwi-classic", SeriesClass::Dwi),
    ("philips-dwi-vanderbilt", SeriesClass::Dwi),
    ("philips-enhanced", SeriesClass::Other),
    ("siemens-mosaic-dwi-sag", SeriesClass::Dwi),
    ("siemens-mosaic-orient-axasc35", SeriesClass::Other),
    ("siemens-mosaic-orient-axdesc36", SeriesClass::Other),
    ("siemens-mosaic-orient-corasc35", SeriesClass::Other),
    ("siemens-mosaic-orient-cordesc36", SeriesClass::Other),
    ("siemens-mosaic-orient-sagasc35", SeriesClass::Other),
    ("siemens-mosaic-orient-sagdesc36", SeriesClass::Other),
    ("siemens-skyra-epi", SeriesClass::Other),
    ("siemens-xa10-enhanced", SeriesClass::Other),
    ("siemens-xa30-dwi", SeriesClass::Dwi),
    ("siemens-xa30-fa-derived", SeriesClass::Other),
    ("siemens-xa30-t1", SeriesClass::T1w),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    convert::read::scan_folder(dir).unwrap()
}

#[test]
fn every_development_series_gets_its_expected_class() {
    let root = shared_dir().join("dicom");
    let options = ConvertOptions::default();
    let mut failures = Vec::new();
    println!(
        "\n{:<34} {:<40} {:<6} expected",
        "folder", "output", "class"
    );
    for &(folder, expected) in EXPECTED {
        let results = convert::convert_paths(&files(&root.join(folder)), &options);
        let mut any = false;
        for r in &results {
            let series = match r {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("{folder}: {e}"));
                    continue;
                }
            };
            for v in &series.volumes {
                any = true;
                // The ADC/trace sibling of a diffusion series is a derived map.
                let want = if v.image_only {
                    SeriesClass::Other
                } else {
                    expected
                };
                let name = format!("{}{}", convert::output::base_name(&v.volume), v.suffix);
                println!(
                    "{folder:<34} {name:<40} {:<6} {}",
                    v.class.as_str(),
                    want.as_str()
                );
                if v.class != want {
                    failures.push(format!(
                        "{folder} {name}: {} instead of {}",
                        v.class.as_str(),
                        want.as_str()
                    ));
                }
            }
        }
        if !any {
            failures.push(format!("{folder}: nothing converted"));
        }
    }
    assert!(
        failures.is_empty(),
        "misclassified:\n{}",
        failures.join("\n")
    );
}
