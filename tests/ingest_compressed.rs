//! Compressed transfer syntaxes end to end: a real MR series compressed by DCMTK (JPEG
//! lossless .57/.70, JPEG baseline .50, JPEG-LS .80, RLE .5, deflate .1.99) and by pydicom with
//! pylibjpeg-openjpeg (JPEG 2000 .90/.91), sent by DCMTK storescu proposing each file's own
//! transfer syntax. The stored file keeps that transfer syntax and decodes (dicom-pixeldata) to
//! exactly the pixels the file sent decodes to, and so to the original pixels (lossless) or to
//! an image of the same geometry (lossy). JPEG-LS near-lossless (.81) is checked on unsigned
//! data against its error bound.

mod ingest_support;

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_pixeldata::PixelDecoder;
use ingest_support::{AE_TITLE, TestScp, run, shared_dicom, text};

/// Files of the series to compress: enough to exercise several instances per association.
const FILES: usize = 3;

/// pydicom + pylibjpeg-openjpeg: JPEG 2000 lossless (`lossless`) or lossy at 10:1.
const J2K: &str = r#"
import sys, pydicom
from pydicom.uid import JPEG2000Lossless, JPEG2000
src, dst, lossless = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
ds = pydicom.dcmread(src)
if lossless:
    ds.compress(JPEG2000Lossless)
else:
    ds.compress(JPEG2000, j2k_cr=[10])
ds.save_as(dst, enforce_file_format=True)
"#;

struct Case {
    ts: &'static str,
    lossless: bool,
}

const CASES: [Case; 8] = [
    Case {
        ts: "1.2.840.10008.1.2.4.70",
        lossless: true,
    },
    Case {
        ts: "1.2.840.10008.1.2.4.57",
        lossless: true,
    },
    Case {
        ts: "1.2.840.10008.1.2.4.80",
        lossless: true,
    },
    Case {
        ts: "1.2.840.10008.1.2.5",
        lossless: true,
    },
    Case {
        ts: "1.2.840.10008.1.2.1.99",
        lossless: true,
    },
    Case {
        ts: "1.2.840.10008.1.2.4.90",
        lossless: true,
    },
    Case {
        ts: "1.2.840.10008.1.2.4.91",
        lossless: false,
    },
    Case {
        ts: "1.2.840.10008.1.2.4.50",
        lossless: false,
    },
];

/// Compresses `src` into `dst` in transfer syntax `ts` with the reference tool for it.
async fn compress(ts: &str, src: &Path, dst: &Path) {
    let (program, args): (&str, Vec<&std::ffi::OsStr>) = match ts {
        "1.2.840.10008.1.2.4.70" => ("/usr/bin/dcmcjpeg", vec!["+e1".as_ref()]),
        "1.2.840.10008.1.2.4.57" => ("/usr/bin/dcmcjpeg", vec!["+el".as_ref()]),
        // DCMTK rescales 16-bit data to 8 bits for baseline JPEG.
        "1.2.840.10008.1.2.4.50" => ("/usr/bin/dcmcjpeg", vec!["+eb".as_ref()]),
        "1.2.840.10008.1.2.4.80" => ("/usr/bin/dcmcjpls", vec!["+el".as_ref()]),
        "1.2.840.10008.1.2.5" => ("/usr/bin/dcmcrle", vec![]),
        "1.2.840.10008.1.2.1.99" => ("/usr/bin/dcmconv", vec!["+td".as_ref()]),
        "1.2.840.10008.1.2.4.90" => ("python3", vec!["-c".as_ref(), J2K.as_ref()]),
        "1.2.840.10008.1.2.4.91" => ("python3", vec!["-c".as_ref(), J2K.as_ref()]),
        other => panic!("no compressor for {other}"),
    };
    let mut args = args;
    args.push(src.as_os_str());
    args.push(dst.as_os_str());
    if program == "python3" {
        args.push(if ts.ends_with(".90") {
            "1".as_ref()
        } else {
            "0".as_ref()
        });
    }
    let out = run(program, &args).await;
    assert!(out.status.success(), "{program} for {ts}: {}", text(&out));
}

/// A DCMTK association profile with one MR context in `ts` only.
fn storescu_profile(ts: &str) -> String {
    format!(
        "[[TransferSyntaxes]]\n[Sent]\nTransferSyntax1 = {ts}\n\n\
         [[PresentationContexts]]\n[Contexts]\n\
         PresentationContext1 = 1.2.840.10008.5.1.4.1.1.4\\Sent\n\n\
         [[Profiles]]\n[Send]\nPresentationContexts = Contexts\n"
    )
}

/// storescu sends every file of `dir` with the association profile `Send` of `profile`.
async fn send_with_profile(profile: &Path, port: &str, dir: &Path) -> std::process::Output {
    run(
        "/usr/bin/storescu",
        &[
            "-v".as_ref(),
            "-aet".as_ref(),
            "STORESCU".as_ref(),
            "-aec".as_ref(),
            AE_TITLE.as_ref(),
            "-xf".as_ref(),
            profile.as_os_str(),
            "Send".as_ref(),
            "+sd".as_ref(),
            "127.0.0.1".as_ref(),
            port.as_ref(),
            dir.as_os_str(),
        ],
    )
    .await
}

fn meta_ts(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string()
}

fn sop_instance(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_string()
}

/// Decoded samples, rows, columns and bits allocated.
fn decode(path: &Path) -> (Vec<u8>, u32, u32, u16) {
    let obj = dicom_object::open_file(path).unwrap();
    let px = obj
        .decode_pixel_data()
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    (
        px.data().to_vec(),
        px.rows(),
        px.columns(),
        px.bits_allocated(),
    )
}

fn mean_abs_diff_i16(a: &[u8], b: &[u8]) -> f64 {
    let a = a
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64);
    let b = b
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64);
    let (sum, n) = a
        .zip(b)
        .fold((0.0, 0usize), |(s, n), (x, y)| (s + (x - y).abs(), n + 1));
    sum / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_series_are_stored_as_sent_and_decode() {
    let series = shared_dicom().join("ge-t1-mprage");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&series)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sources.sort();
    sources.truncate(FILES);
    let work = tempfile::tempdir().unwrap();
    let scp = TestScp::start().await;

    // Each case re-sends the same SOP instances in another syntax: the spool must replace the
    // file and the index row each time.
    for case in &CASES {
        let dir = work.path().join(case.ts);
        std::fs::create_dir(&dir).unwrap();
        for (i, src) in sources.iter().enumerate() {
            compress(case.ts, src, &dir.join(format!("{i}.dcm"))).await;
        }
        // storescu's own options pair every compressed syntax with the uncompressed ones in one
        // context (and we prefer explicit VR LE), so an association profile proposes exactly
        // the files' syntax.
        let profile = work.path().join(format!("{}.cfg", case.ts));
        std::fs::write(&profile, storescu_profile(case.ts)).unwrap();
        let out = send_with_profile(&profile, &scp.port(), &dir).await;
        let log = text(&out);
        assert!(out.status.success(), "storescu for {}: {log}", case.ts);
        let acked = log
            .lines()
            .filter(|l| l.starts_with("I: Received Store Response (Success)"))
            .count();
        assert_eq!(acked, FILES, "{log}");

        let index = scp.index().await;
        for (i, src) in sources.iter().enumerate() {
            // DCMTK gives lossy results new SOP Instance UIDs, so look up the sent file's UID.
            let sent = dir.join(format!("{i}.dcm"));
            let (stored, indexed_ts) = &index[&sop_instance(&sent)];
            assert_eq!(indexed_ts, case.ts);
            assert_eq!(meta_ts(stored), case.ts, "{}", stored.display());
            let (want, rows, cols, bits) = decode(src);
            let (got, got_rows, got_cols, got_bits) = decode(stored);
            assert_eq!((got_rows, got_cols), (rows, cols), "{}", case.ts);
            // Whatever the syntax, lossy included: the stored file decodes to exactly what the
            // file that was sent decodes to.
            let (sent_px, sent_rows, sent_cols, sent_bits) = decode(&sent);
            assert_eq!(
                (got_rows, got_cols, got_bits),
                (sent_rows, sent_cols, sent_bits),
                "{}: stored geometry differs from the file sent",
                case.ts
            );
            assert!(
                got == sent_px,
                "{}: stored pixels decode differently from the file sent ({})",
                case.ts,
                stored.display()
            );
            if case.lossless {
                assert_eq!(got_bits, bits, "{}", case.ts);
                assert!(
                    got == want,
                    "{}: decoded pixels differ from the original",
                    case.ts
                );
            } else if got_bits == bits {
                let diff = mean_abs_diff_i16(&got, &want);
                assert!(diff < 5.0, "{}: lossy error {diff} too large", case.ts);
            }
        }
    }
    scp.stop().await;
}

/// JPEG-LS near-lossless (.81) needs unsigned samples (DCMTK refuses the signed GE series), so
/// it uses the Siemens Skyra EPI (12 bits stored, unsigned). `dcmcjpls +en` bounds each sample's
/// error by its default NEAR of 2: the stored file must decode within that bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_ls_near_lossless_is_stored_as_sent_and_decodes_within_its_bound() {
    const NEAR_LOSSLESS: &str = "1.2.840.10008.1.2.4.81";
    let mut sources: Vec<PathBuf> = walkdir::WalkDir::new(shared_dicom().join("siemens-skyra-epi"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    sources.sort();
    sources.truncate(FILES);
    assert_eq!(sources.len(), FILES, "siemens-skyra-epi files");
    let work = tempfile::tempdir().unwrap();
    let scp = TestScp::start().await;
    let dir = work.path().join("near");
    std::fs::create_dir(&dir).unwrap();
    for (i, src) in sources.iter().enumerate() {
        let dst = dir.join(format!("{i}.dcm"));
        let out = run(
            "/usr/bin/dcmcjpls",
            &["+en".as_ref(), src.as_os_str(), dst.as_os_str()],
        )
        .await;
        assert!(out.status.success(), "dcmcjpls +en: {}", text(&out));
        assert_eq!(meta_ts(&dst), NEAR_LOSSLESS);
    }
    let profile = work.path().join("near.cfg");
    std::fs::write(&profile, storescu_profile(NEAR_LOSSLESS)).unwrap();
    let out = send_with_profile(&profile, &scp.port(), &dir).await;
    let log = text(&out);
    assert!(out.status.success(), "storescu: {log}");
    let index = scp.index().await;
    let mut worst = 0i32;
    for (i, src) in sources.iter().enumerate() {
        let sent = dir.join(format!("{i}.dcm"));
        let (stored, indexed_ts) = &index[&sop_instance(&sent)];
        assert_eq!(indexed_ts, NEAR_LOSSLESS);
        assert_eq!(meta_ts(stored), NEAR_LOSSLESS);
        let (want, rows, cols, bits) = decode(src);
        let (got, got_rows, got_cols, got_bits) = decode(stored);
        assert_eq!((got_rows, got_cols, got_bits), (rows, cols, bits));
        assert!(
            got == decode(&sent).0,
            "stored pixels decode differently from the file sent ({})",
            stored.display()
        );
        assert_eq!(bits, 16);
        let samples = |b: &[u8]| -> Vec<i32> {
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
                .collect()
        };
        for (g, w) in samples(&got).iter().zip(samples(&want)) {
            worst = worst.max((g - w).abs());
        }
    }
    assert!(worst <= 2, "near-lossless error {worst} exceeds NEAR = 2");
    scp.stop().await;
}
