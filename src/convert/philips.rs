//! Philips private conventions for classic images.
//!
//! - b-value (2001,1003), gradient (2005,10B0/B1/B2) in the patient frame, and the direction
//!   label (2001,1004): "I" marks the scanner's isotropic (trace/ADC) image, which dcm2niix
//!   removes from the diffusion series and writes separately.
//! - Intensities: dcm2niix applies Philips' "precise floating point" scaling by default, stored
//!   as NIfTI scl_slope/scl_inter over the untouched integers: FP = (PV·RS + RI) / (RS·SS),
//!   with RS/RI the rescale slope/intercept and SS the private scale slope (2005,100E).

use dicom_core::Tag;

use super::attrs::{self, Object};
use super::classic::{diffusion_of, standard_diffusion};
use super::frame::Diffusion;

const B_VALUE: Tag = Tag(0x2001, 0x1003);
const DIRECTION_LABEL: Tag = Tag(0x2001, 0x1004);
const GRADIENT: [Tag; 3] = [
    Tag(0x2005, 0x10B0),
    Tag(0x2005, 0x10B1),
    Tag(0x2005, 0x10B2),
];
const SCALE_SLOPE: Tag = Tag(0x2005, 0x100E);

/// Diffusion of a Philips image, or None when it has no diffusion attributes at all.
pub fn diffusion(obj: &Object) -> Option<Diffusion> {
    let standard = standard_diffusion(obj);
    let bval = attrs::float(obj, B_VALUE).or(standard.as_ref().map(|d| d.bval))?;
    let vec = attrs::triple(obj, GRADIENT).or(standard.and_then(|d| d.bvec_patient));
    let mut d = diffusion_of(bval, vec);
    let isotropic = attrs::text(obj, DIRECTION_LABEL).is_some_and(|l| l.eq_ignore_ascii_case("I"));
    if isotropic && bval > 0.0 {
        d.bvec_patient = None;
        d.derived_isotropic = true;
    }
    Some(d)
}

/// The private scale slope SS, when present and usable.
pub fn scale_slope(obj: &Object) -> Option<f64> {
    attrs::float(obj, SCALE_SLOPE).filter(|s| s.is_finite() && *s != 0.0)
}

/// NIfTI (scl_slope, scl_inter) for Philips precise scaling.
pub fn precise_scaling(rescale: (f64, f64), scale_slope: f64) -> (f64, f64) {
    let (rs, ri) = rescale;
    (1.0 / scale_slope, ri / (rs * scale_slope))
}

#[cfg(test)]
mod tests {
    #[test]
    fn precise_scaling_matches_the_published_formula() {
        // FP = (PV*RS + RI) / (RS*SS) for PV = 100.
        let (rs, ri, ss) = (2.5, -3.0, 0.004);
        let (m, b) = super::precise_scaling((rs, ri), ss);
        let pv = 100.0;
        assert!(((pv * m + b) - (pv * rs + ri) / (rs * ss)).abs() < 1e-9);
    }
}
