//! T1-weighted, diffusion or other: which later stages a converted volume feeds.
//!
//! The rules are data ([`ClassifyRules`]) with documented defaults, so a site can add its own
//! sequence names without a new build:
//! - `dwi`: original (not DERIVED) diffusion data with at least one b > 0 volume; the scanner's
//!   ADC, TRACEW, FA and colour-FA maps are `other`.
//! - `t1w`: anatomy that is 3D (or 2D with thin contiguous slices), ORIGINAL, not a localiser,
//!   whose sequence name, description or protocol matches a T1 pattern (MPRAGE, tfl, SPGR,
//!   BRAVO, TFE, IR-FSPGR, …) or whose timing is T1-like (short TE, TR below a limit, or an
//!   inversion time).
//! - everything else: `other`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::volume::Volume;

/// The class of a converted volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesClass {
    T1w,
    Dwi,
    Other,
}

impl SeriesClass {
    /// The name used in sidecars, JSON lines and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesClass::T1w => "t1w",
            SeriesClass::Dwi => "dwi",
            SeriesClass::Other => "other",
        }
    }
}

/// Configurable classification rules (a future `[classify]` configuration section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyRules {
    /// Case-insensitive substrings of SequenceName, SeriesDescription or ProtocolName that mark
    /// T1-weighted anatomy.
    pub t1_patterns: Vec<String>,
    /// Substrings that rule T1w out even when a T1 pattern matches (localisers, maps, contrasts
    /// that merely mention T1).
    pub not_t1_patterns: Vec<String>,
    /// Substrings of ImageType or description that mark scanner-derived diffusion maps.
    pub derived_diffusion_patterns: Vec<String>,
    /// Largest echo time (s) of a T1-weighted sequence.
    pub t1_max_echo_time: f64,
    /// Largest repetition time (s) of a T1-weighted gradient echo without inversion.
    pub t1_max_repetition_time: f64,
    /// Thickest slice (mm) of a 2D series still accepted as T1w anatomy.
    pub t1_max_2d_slice_thickness: f64,
    /// Fewest slices of a T1w volume.
    pub t1_min_slices: usize,
}

impl Default for ClassifyRules {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        ClassifyRules {
            t1_patterns: s(&[
                "mprage", "mp-rage", "mp_rage", "tfl", "spgr", "bravo", "tfe", "ir-fspgr",
                "irfspgr", "fspgr", "t1w", "t1 ", "t1_", "_t1", "t1-", "mp2rage", "3d t1",
            ]),
            not_t1_patterns: s(&[
                "localizer",
                "localiser",
                "scout",
                "survey",
                "map",
                "t1rho",
                "post",
            ]),
            derived_diffusion_patterns: s(&[
                "ADC",
                "TRACEW",
                "TRACE",
                "FA",
                "COLFA",
                "EXP",
                "ISOTROPIC",
            ]),
            t1_max_echo_time: 0.015,
            t1_max_repetition_time: 0.05,
            t1_max_2d_slice_thickness: 1.5,
            t1_min_slices: 40,
        }
    }
}

/// Classifies a converted volume.
pub fn classify(volume: &Volume, rules: &ClassifyRules) -> SeriesClass {
    let meta = &volume.meta;
    let derived = meta.image_type.iter().any(|t| t == "DERIVED");
    let derived_map = meta.image_type.iter().any(|t| {
        rules
            .derived_diffusion_patterns
            .iter()
            .any(|p| t.eq_ignore_ascii_case(p))
    });
    if let Some(g) = &volume.gradients
        && g.bvals.iter().any(|&b| b > 0.0)
        && g.bvals.len() > 1
        && !derived
        && !derived_map
    {
        return SeriesClass::Dwi;
    }
    if is_t1w(volume, rules) && !derived && !derived_map {
        return SeriesClass::T1w;
    }
    SeriesClass::Other
}

fn is_t1w(volume: &Volume, rules: &ClassifyRules) -> bool {
    let meta = &volume.meta;
    let shape = volume.data.shape();
    if shape.len() > 3 && shape[3] > 1 || shape.get(2).copied().unwrap_or(1) < rules.t1_min_slices {
        return false;
    }
    let sequence = meta
        .extra
        .get("SequenceName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let names = format!(
        " {} {} {} ",
        sequence,
        meta.series_description.as_deref().unwrap_or(""),
        meta.protocol_name.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    if rules
        .not_t1_patterns
        .iter()
        .any(|p| names.contains(&p.to_ascii_lowercase()))
    {
        return false;
    }
    let three_d = super::meta::is_3d(meta);
    let thin = meta
        .slice_thickness
        .is_some_and(|t| t <= rules.t1_max_2d_slice_thickness);
    if !three_d && !thin {
        return false;
    }
    let named = rules
        .t1_patterns
        .iter()
        .any(|p| names.contains(&p.to_ascii_lowercase()));
    let short_te = meta
        .echo_time
        .is_some_and(|te| te <= rules.t1_max_echo_time);
    let inversion = meta.inversion_time.is_some_and(|ti| ti > 0.0);
    let short_tr = meta
        .repetition_time
        .is_some_and(|tr| tr <= rules.t1_max_repetition_time);
    named && (short_te || meta.echo_time.is_none()) || short_te && (inversion || short_tr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{GradientTable, VolumeMeta, VoxelData};
    use nalgebra::Matrix4;
    use ndarray::ArrayD;

    fn volume(shape: &[usize], meta: VolumeMeta, gradients: Option<GradientTable>) -> Volume {
        Volume {
            data: VoxelData::I16(ArrayD::zeros(shape)),
            affine: Matrix4::identity(),
            meta,
            gradients,
        }
    }

    #[test]
    fn derived_fa_map_is_other_even_with_gradients() {
        let meta = VolumeMeta {
            image_type: vec!["DERIVED".into(), "PRIMARY".into(), "FA".into()],
            ..Default::default()
        };
        let g = GradientTable {
            bvals: vec![0.0, 1000.0],
            bvecs: vec![[0.0; 3], [1.0, 0.0, 0.0]],
        };
        let v = volume(&[4, 4, 4, 2], meta, Some(g));
        assert_eq!(classify(&v, &ClassifyRules::default()), SeriesClass::Other);
    }

    #[test]
    fn localiser_is_never_t1w() {
        let mut meta = VolumeMeta {
            series_description: Some("3D T1 localizer".into()),
            echo_time: Some(0.003),
            ..Default::default()
        };
        meta.extra.insert("MRAcquisitionType".into(), "3D".into());
        let v = volume(&[4, 4, 64], meta, None);
        assert_eq!(classify(&v, &ClassifyRules::default()), SeriesClass::Other);
    }
}
