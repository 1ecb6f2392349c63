//! Proves the Siemens CSA header parser reads every element of real headers exactly as nibabel's
//! reference reader (`nibabel.nicom.csareader`) does, for the image (0029,1010) and series
//! (0029,1020) headers of every Siemens mosaic file in the development set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::convert::csa::CsaHeader;
use dicom_core::Tag;

fn shared_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// nibabel's view of one CSA header: element name → non-empty items as text.
const NIBABEL_DUMP: &str = r#"
import json, sys, warnings
warnings.simplefilter("ignore")
import pydicom
from nibabel.nicom import csareader
out = {}
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for tag in ((0x29, 0x1010), (0x29, 0x1020)):
        if tag not in ds:
            continue
        header = csareader.read(ds[tag].value)
        items = {}
        for name, element in header["tags"].items():
            values = [v for v in element["items"] if not isinstance(v, bytes)]
            while values and str(values[-1]).strip() == "":
                values.pop()
            items[name] = [repr(v) if isinstance(v, float) else str(v) for v in values]
        out[f"{path}|{tag[1]:04x}"] = items
print(json.dumps(out))
"#;

#[test]
fn csa_headers_match_nibabel() {
    let dicom = shared_dir().join("dicom");
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&dicom).sort_by_file_name() {
        let entry = entry.unwrap();
        let name = entry.path().to_string_lossy().to_string();
        if entry.file_type().is_file() && name.contains("siemens-") && !name.ends_with(".txt") {
            files.push(entry.path().to_path_buf());
        }
    }
    assert!(
        !files.is_empty(),
        "no Siemens files under {}",
        dicom.display()
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(NIBABEL_DUMP)
        .args(&files)
        .output()
        .expect("python3 with pydicom and nibabel is required");
    assert!(
        output.status.success(),
        "nibabel dump failed (pip install nibabel pydicom): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: BTreeMap<String, BTreeMap<String, Vec<String>>> =
        serde_json::from_slice(&output.stdout).unwrap();

    let mut headers = 0;
    let mut elements = 0;
    for file in &files {
        let obj = dicom_object::open_file(file).unwrap();
        for element in [0x1010u16, 0x1020] {
            let key = format!("{}|{element:04x}", file.display());
            let Some(raw) = obj.get(Tag(0x0029, element)) else {
                assert!(
                    !reference.contains_key(&key),
                    "{key}: nibabel found a header"
                );
                continue;
            };
            let ours = CsaHeader::parse(&raw.to_bytes().unwrap()).unwrap();
            let theirs = &reference[&key];
            assert_eq!(ours.elements.len(), theirs.len(), "{key}: element count");
            for (name, items) in theirs {
                let mine = &ours
                    .get(name)
                    .unwrap_or_else(|| panic!("{key}: {name}"))
                    .items;
                assert_eq!(
                    mine.len(),
                    items.len(),
                    "{key}: {name}: {mine:?} vs {items:?}"
                );
                for (a, b) in mine.iter().zip(items) {
                    let same = match (a.trim().parse::<f64>(), b.parse::<f64>()) {
                        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                        _ => a.trim() == b.trim(),
                    };
                    assert!(same, "{key}: {name}: ours {a:?}, nibabel {b:?}");
                }
                elements += 1;
            }
            headers += 1;
        }
    }
    println!("{headers} CSA headers, {elements} elements identical to nibabel");
    assert!(headers >= 40, "only {headers} CSA headers found");
}

#[test]
fn mosaic_counts_agree_with_siemens_private_tag() {
    // NumberOfImagesInMosaic in the CSA header and (0019,100A) are written independently by the
    // scanner; both must agree for every mosaic.
    let dicom = shared_dir().join("dicom");
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(&dicom) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(obj) = dicom_object::open_file(entry.path()) else {
            continue;
        };
        if !brainaged::convert::mosaic::is_mosaic(&obj) {
            continue;
        }
        let csa = brainaged::convert::mosaic::csa_image_header(&obj)
            .unwrap()
            .unwrap();
        let private = obj
            .get(Tag(0x0019, 0x100A))
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(csa.number("NumberOfImagesInMosaic"), Some(private as f64));
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} mosaics");
}
