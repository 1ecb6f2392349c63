//! Writing one converted volume as dcm2niix does: `<SeriesNumber>_<SeriesDescription>` names,
//! NIfTI-1 `.nii.gz`, a BIDS-style JSON sidecar and FSL `.bval`/`.bvec` text files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::classify::SeriesClass;
use crate::nifti_io::{self, NiftiError};
use crate::volume::{GradientTable, Volume};

/// Why an output file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Nifti(#[from] NiftiError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Paths of the files written for one volume.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrittenFiles {
    pub nifti: PathBuf,
    pub sidecar: Option<PathBuf>,
    pub bval: Option<PathBuf>,
    pub bvec: Option<PathBuf>,
}

/// A file-name stem safe on every file system; keeps letters, digits and `-_.=+`, replaces
/// anything else (spaces, slashes, non-ASCII) with `_`.
pub fn sanitise(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<SeriesNumber>_<SeriesDescription>`, falling back to the protocol name.
pub fn base_name(volume: &Volume) -> String {
    let number = volume
        .meta
        .series_number
        .map_or_else(|| "0".to_string(), |n| n.to_string());
    let description = volume
        .meta
        .series_description
        .as_deref()
        .or(volume.meta.protocol_name.as_deref())
        .unwrap_or("series");
    format!("{number}_{}", sanitise(description))
}

/// C's `%g`: six significant digits, trailing zeros removed, exponent form below 1e-4 or from 1e6.
pub fn format_g(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            v.to_string()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let rounded: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    let exp = if rounded.abs() >= 10f64.powi(exp + 1) {
        exp + 1
    } else {
        exp
    };
    if !(-4..6).contains(&exp) {
        let s = format!("{v:.5e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = trim_zeros(mantissa);
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (5 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `.bval` text: one line, space-separated.
pub fn bval_text(g: &GradientTable) -> String {
    let mut s = g
        .bvals
        .iter()
        .map(|&b| format_g(b))
        .collect::<Vec<_>>()
        .join(" ");
    s.push('\n');
    s
}

/// `.bvec` text: three lines (x, y, z), one column per volume.
pub fn bvec_text(g: &GradientTable) -> String {
    let mut s = String::new();
    for axis in 0..3 {
        let line: Vec<String> = g.bvecs.iter().map(|v| format_g(v[axis])).collect();
        let _ = writeln!(s, "{}", line.join(" "));
    }
    s
}

/// The sidecar's JSON object.
pub fn sidecar(volume: &Volume, class: SeriesClass) -> Value {
    let m = &volume.meta;
    let mut o = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("Manufacturer", m.manufacturer.clone().map(Value::from));
    put(
        "ManufacturersModelName",
        m.manufacturers_model_name.clone().map(Value::from),
    );
    put(
        "MagneticFieldStrength",
        m.magnetic_field_strength.map(Value::from),
    );
    put(
        "SeriesDescription",
        m.series_description.clone().map(Value::from),
    );
    put("ProtocolName", m.protocol_name.clone().map(Value::from));
    put("SeriesNumber", m.series_number.map(Value::from));
    put(
        "SeriesInstanceUID",
        m.series_instance_uid.clone().map(Value::from),
    );
    put("ImageType", Some(json!(m.image_type)));
    put("RepetitionTime", m.repetition_time.map(Value::from));
    put("EchoTime", m.echo_time.map(Value::from));
    put("InversionTime", m.inversion_time.map(Value::from));
    put("FlipAngle", m.flip_angle.map(Value::from));
    put("SliceThickness", m.slice_thickness.map(Value::from));
    put(
        "PhaseEncodingDirection",
        m.phase_encoding_direction.clone().map(Value::from),
    );
    for (k, v) in &m.extra {
        o.entry(k.clone()).or_insert_with(|| v.clone());
    }
    o.insert("BrainagedClass".into(), Value::from(class.as_str()));
    o.insert("ConversionSoftware".into(), Value::from("brainaged"));
    o.insert(
        "ConversionSoftwareVersion".into(),
        Value::from(env!("CARGO_PKG_VERSION")),
    );
    Value::Object(o)
}

fn write_text(path: &Path, text: &str) -> Result<(), OutputError> {
    std::fs::write(path, text).map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `stem.nii.gz` and, unless `image_only`, the sidecar and gradient files.
pub fn write(
    dir: &Path,
    stem: &str,
    volume: &Volume,
    class: SeriesClass,
    image_only: bool,
) -> Result<WrittenFiles, OutputError> {
    let nifti = dir.join(format!("{stem}.nii.gz"));
    nifti_io::write_volume(&nifti, volume)?;
    let mut files = WrittenFiles {
        nifti,
        sidecar: None,
        bval: None,
        bvec: None,
    };
    if image_only {
        return Ok(files);
    }
    let sidecar_path = dir.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(&sidecar(volume, class)).unwrap_or_default();
    write_text(&sidecar_path, &text)?;
    files.sidecar = Some(sidecar_path);
    if let Some(g) = &volume.gradients {
        let bval = dir.join(format!("{stem}.bval"));
        let bvec = dir.join(format!("{stem}.bvec"));
        write_text(&bval, &bval_text(g))?;
        write_text(&bvec, &bvec_text(g))?;
        files.bval = Some(bval);
        files.bvec = Some(bvec);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_matches_c_printf() {
        // Expected strings are C printf("%g") output.
        assert_eq!(format_g(1000.0), "1000");
        assert_eq!(format_g(0.001), "0.001");
        assert_eq!(format_g(-0.4923551), "-0.492355");
        assert_eq!(format_g(6.16637e-10), "6.16637e-10");
        assert_eq!(format_g(0.57735026), "0.57735");
        assert_eq!(format_g(1234567.0), "1.23457e+06");
        assert_eq!(format_g(-1.0), "-1");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(0.00001), "1e-05");
    }

    #[test]
    fn sanitise_keeps_dcm2niix_style_names() {
        assert_eq!(sanitise("3D Ax T1 MP-RAGE_R22"), "3D_Ax_T1_MP-RAGE_R22");
        assert_eq!(sanitise("EPI PE=AP"), "EPI_PE=AP");
        assert_eq!(sanitise("a/b\\c"), "a_b_c");
    }
}
