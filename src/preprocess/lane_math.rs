//! `exp` and `ln` written without branches or calls, so that a loop over a few lanes of them
//! compiles to vector instructions (the tensor fit takes one of each per volume, voxel and
//! iteration, and the C library's scalar versions were a large part of its time).
//!
//! Both are accurate to a few units in the last place, like the C library's: the reduction
//! constants are split so that the products with the exponent are exact, and the polynomials
//! are truncated where the next term is below 1e-16 of the result.

/// ln 2 split into a part whose product with any exponent below 2²⁰ is exact, and the rest.
pub(crate) const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
pub(crate) const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// 1.5 · 2⁵²: adding it rounds to an integer (to nearest even), which then sits in the low
/// bits of the sum's representation.
pub(crate) const SHIFT: f64 = 6_755_399_441_055_744.0;

/// Bits of a double whose mantissa field holds an integer `e` as `2⁵² + e`.
pub(crate) const TWO_52_BITS: u64 = 0x4330_0000_0000_0000;

/// 1/k! for k = 0..=12: exp's Taylor series on |r| ≤ ln2/2, where 0.35¹³/13! < 2e-16.
pub(crate) const EXP_COEFFS: [f64; 13] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
];

/// eˣ. Arguments are clamped to [-708, 709] (the normal range), NaN stays NaN.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let x = x.clamp(-708.0, 709.0);
    let t = x * std::f64::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = EXP_COEFFS[12];
    for c in EXP_COEFFS[..12].iter().rev() {
        p = p * r + c;
    }
    // 2ⁿ from the integer n held in t's low bits: n + 1023 is the biased exponent.
    let n_bits = t.to_bits().wrapping_sub(SHIFT.to_bits());
    let scale = f64::from_bits(n_bits.wrapping_add(1023) << 52);
    p * scale
}

/// 1/(2k+1) for k = 0..=9: the series of ln m = 2 atanh f with |f| ≤ 0.1716, where the first
/// term left out is below 3e-17 of the sum.
pub(crate) const LN_COEFFS: [f64; 10] = [
    1.0,
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
];

/// ln x for positive, finite, normal x (the fit's signals are floored above zero first).
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    // The biased exponent as a double, without an integer-to-float conversion.
    let biased = f64::from_bits(TWO_52_BITS | (bits >> 52)) - f64::from_bits(TWO_52_BITS);
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // m in [√½, √2) keeps |f| small.
    let high = m > std::f64::consts::SQRT_2;
    let m = if high { m * 0.5 } else { m };
    let e = biased - 1023.0 + if high { 1.0 } else { 0.0 };
    let f = (m - 1.0) / (m + 1.0);
    let f2 = f * f;
    let mut p = LN_COEFFS[9];
    for c in LN_COEFFS[..9].iter().rev() {
        p = p * f2 + c;
    }
    e * LN2_HI + (2.0 * f * p + e * LN2_LO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error against the C library over the fit's range, on a dense irregular sweep.
    #[test]
    fn exp_matches_the_c_library() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -700.0 + 1400.0 * (i as f64 * 0.618_033_988_749_895).fract();
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max(((ours - libm) / libm).abs());
        }
        assert!(worst < 1e-15, "max relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f64::NAN).is_nan());
        assert!(exp(-1e6) > 0.0 && exp(1e6).is_finite());
    }

    #[test]
    fn ln_matches_the_c_library() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            // Signals of every magnitude the fit sees: 1e-40 to 1e12.
            let x = 10f64.powf(-40.0 + 52.0 * (i as f64 * 0.618_033_988_749_895).fract());
            let (ours, libm) = (ln(x), x.ln());
            let scale = libm.abs().max(1.0);
            worst = worst.max(((ours - libm) / scale).abs());
        }
        assert!(worst < 1e-15, "max error {worst:e}");
        assert_eq!(ln(1.0), 0.0);
        for x in [
            2.0,
            0.5,
            1.0 + 1e-12,
            1.0 - 1e-12,
            // Either side of the reduction's switch point.
            std::f64::consts::SQRT_2,
            f64::from_bits(std::f64::consts::SQRT_2.to_bits() + 1),
            65_535.0,
        ] {
            assert!(((ln(x) - x.ln()) / x.ln()).abs() < 1e-14, "{x}");
        }
    }
}
