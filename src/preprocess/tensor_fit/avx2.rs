//! The lane fit of [`super`] written with AVX2 and FMA instructions, one voxel per 64-bit lane.
//!
//! The compiler does not vectorise the portable lane loops well (it picks the 28 packed matrix
//! elements as the vector axis and spends its time transposing), and the normal equations are
//! most of the work, so this copy spells the instructions out. It computes the same steps as
//! the portable copy; fused multiply-adds round once where the portable copy rounds twice, so
//! the two agree to about 1e-15 relative, not bit for bit.

use std::arch::x86_64::*;

use super::{LANES, Lanes, Scratch, VoxelFit, packed};
use crate::preprocess::lane_math::{EXP_COEFFS, LN_COEFFS, LN2_HI, LN2_LO, SHIFT, TWO_52_BITS};

#[inline]
#[target_feature(enable = "avx2,fma")]
fn splat(x: f64) -> __m256d {
    _mm256_set1_pd(x)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load(a: &Lanes) -> __m256d {
    // SAFETY: `a` is four readable f64s; the load has no alignment requirement.
    unsafe { _mm256_loadu_pd(a.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn store(v: __m256d) -> Lanes {
    let mut a = [0.0; LANES];
    // SAFETY: `a` is four writable f64s; the store has no alignment requirement.
    unsafe { _mm256_storeu_pd(a.as_mut_ptr(), v) };
    a
}

/// Lane-wise `if mask { b } else { a }` for a comparison mask.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn select(mask: __m256d, a: __m256d, b: __m256d) -> __m256d {
    _mm256_blendv_pd(a, b, mask)
}

/// [`crate::preprocess::lane_math::exp`] on four lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp(x: __m256d) -> __m256d {
    // NaN in `x` is kept: with one NaN operand, min and max return their second operand.
    let x = _mm256_max_pd(splat(-708.0), _mm256_min_pd(splat(709.0), x));
    let t = _mm256_fmadd_pd(x, splat(std::f64::consts::LOG2_E), splat(SHIFT));
    let n = _mm256_sub_pd(t, splat(SHIFT));
    let r = _mm256_fnmadd_pd(n, splat(LN2_HI), x);
    let r = _mm256_fnmadd_pd(n, splat(LN2_LO), r);
    let mut p = splat(EXP_COEFFS[12]);
    for c in EXP_COEFFS[..12].iter().rev() {
        p = _mm256_fmadd_pd(p, r, splat(*c));
    }
    let n_bits = _mm256_sub_epi64(
        _mm256_castpd_si256(t),
        _mm256_set1_epi64x(SHIFT.to_bits() as i64),
    );
    let scale = _mm256_slli_epi64::<52>(_mm256_add_epi64(n_bits, _mm256_set1_epi64x(1023)));
    _mm256_mul_pd(p, _mm256_castsi256_pd(scale))
}

/// [`crate::preprocess::lane_math::ln`] on four lanes (positive, finite, normal inputs).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn ln(x: __m256d) -> __m256d {
    let bits = _mm256_castpd_si256(x);
    let two52 = _mm256_set1_epi64x(TWO_52_BITS as i64);
    let biased = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(two52, _mm256_srli_epi64::<52>(bits))),
        _mm256_castsi256_pd(two52),
    );
    let mantissa = _mm256_and_si256(bits, _mm256_set1_epi64x(0x000f_ffff_ffff_ffff));
    let m = _mm256_castsi256_pd(_mm256_or_si256(
        mantissa,
        _mm256_set1_epi64x(0x3ff0_0000_0000_0000),
    ));
    let high = _mm256_cmp_pd::<_CMP_GT_OQ>(m, splat(std::f64::consts::SQRT_2));
    let m = select(high, m, _mm256_mul_pd(m, splat(0.5)));
    let e = _mm256_add_pd(
        _mm256_sub_pd(biased, splat(1023.0)),
        _mm256_and_pd(high, splat(1.0)),
    );
    let one = splat(1.0);
    let f = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one));
    let f2 = _mm256_mul_pd(f, f);
    let mut p = splat(LN_COEFFS[9]);
    for c in LN_COEFFS[..9].iter().rev() {
        p = _mm256_fmadd_pd(p, f2, splat(*c));
    }
    let tail = _mm256_fmadd_pd(
        _mm256_mul_pd(splat(2.0), f),
        p,
        _mm256_mul_pd(e, splat(LN2_LO)),
    );
    _mm256_fmadd_pd(e, splat(LN2_HI), tail)
}

/// See [`super::Fitter::fit`]; `rows`/`outer` are the fitter's, `scratch` sized to the volumes.
#[target_feature(enable = "avx2,fma")]
pub(super) fn fit(
    rows: &[[f64; 7]],
    outer: &[[f64; 28]],
    iterations: usize,
    signal: &[Lanes],
    scratch: &mut Scratch,
) -> [VoxelFit; LANES] {
    let Scratch { w, y } = scratch;
    let mut ok = floor_and_log(signal, w, y);
    let mut x = [splat(0.0); 7];
    for it in 0..=iterations {
        let (mut ata, aty) = normal_equations(rows, outer, w, y);
        x = cholesky_solve(&mut ata, aty, &mut ok);
        if iterations > 1 && it < iterations {
            for (wi, row) in w.iter_mut().zip(rows) {
                let mut pred = splat(0.0);
                for (c, &a) in row.iter().enumerate() {
                    pred = _mm256_fmadd_pd(splat(a), x[c], pred);
                }
                *wi = store(exp(pred));
            }
        }
    }
    let ok = _mm256_movemask_pd(ok);
    let x = x.map(|v| store(v));
    std::array::from_fn(|l| {
        let v: [f64; 7] = std::array::from_fn(|c| x[c][l]);
        (ok & (1 << l) != 0 && v.iter().all(|e| e.is_finite()))
            .then(|| (v[0], [v[1], v[2], v[3], v[4], v[5], v[6]]))
    })
}

/// First weights and log-signal, as [`super::floor_and_log`]; the lane mask of valid voxels.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn floor_and_log(signal: &[Lanes], w: &mut [Lanes], y: &mut [Lanes]) -> __m256d {
    let mut max = splat(f64::NEG_INFINITY);
    for s in signal {
        // With a NaN signal, max returns its second operand: NaN is skipped.
        max = _mm256_max_pd(load(s), max);
    }
    let valid = _mm256_cmp_pd::<_CMP_GT_OQ>(max, splat(0.0));
    let small = _mm256_mul_pd(splat(1.0e-6), max);
    let abs_mask = splat(f64::from_bits(0x7fff_ffff_ffff_ffff));
    for ((s, wi), yi) in signal.iter().zip(w.iter_mut()).zip(y.iter_mut()) {
        let s = load(s);
        // |s| not below infinity: infinite or NaN.
        let not_finite =
            _mm256_cmp_pd::<_CMP_NLT_UQ>(_mm256_and_pd(s, abs_mask), splat(f64::INFINITY));
        let floor = _mm256_or_pd(not_finite, _mm256_cmp_pd::<_CMP_LT_OQ>(s, small));
        let v = select(valid, splat(1.0), select(floor, s, small));
        *wi = store(v);
        *yi = store(ln(v));
    }
    valid
}

/// The normal equations, summed in register blocks of seven accumulators so that each
/// multiply-add needs one load, not a load and a store.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn normal_equations(
    rows: &[[f64; 7]],
    outer: &[[f64; 28]],
    w: &[Lanes],
    y: &[Lanes],
) -> ([__m256d; 28], [__m256d; 7]) {
    let mut ata = [splat(0.0); 28];
    for block in 0..4 {
        let mut acc = [splat(0.0); 7];
        for (o, wi) in outer.iter().zip(w) {
            let wi = load(wi);
            let w2 = _mm256_mul_pd(wi, wi);
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_pd(w2, splat(o[7 * block + i]), *a);
            }
        }
        ata[7 * block..7 * block + 7].copy_from_slice(&acc);
    }
    let mut aty = [splat(0.0); 7];
    for ((row, wi), yi) in rows.iter().zip(w).zip(y) {
        let wi = load(wi);
        let wy = _mm256_mul_pd(_mm256_mul_pd(wi, wi), load(yi));
        for (a, &r) in aty.iter_mut().zip(row) {
            *a = _mm256_fmadd_pd(wy, splat(r), *a);
        }
    }
    (ata, aty)
}

/// [`super::cholesky_solve`] on four lanes; `ok` is a lane mask.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn cholesky_solve(a: &mut [__m256d; 28], mut b: [__m256d; 7], ok: &mut __m256d) -> [__m256d; 7] {
    for j in 0..7 {
        let mut d = a[packed(j, j)];
        for k in 0..j {
            d = _mm256_fnmadd_pd(a[packed(j, k)], a[packed(j, k)], d);
        }
        // Not greater than zero, or NaN.
        let bad = _mm256_cmp_pd::<_CMP_NGT_UQ>(d, splat(0.0));
        *ok = _mm256_andnot_pd(bad, *ok);
        let d = select(bad, _mm256_sqrt_pd(d), splat(1.0));
        a[packed(j, j)] = d;
        for i in j + 1..7 {
            let mut v = a[packed(i, j)];
            for k in 0..j {
                v = _mm256_fnmadd_pd(a[packed(i, k)], a[packed(j, k)], v);
            }
            a[packed(i, j)] = _mm256_div_pd(v, d);
        }
    }
    for i in 0..7 {
        for k in 0..i {
            b[i] = _mm256_fnmadd_pd(a[packed(i, k)], b[k], b[i]);
        }
        b[i] = _mm256_div_pd(b[i], a[packed(i, i)]);
    }
    for i in (0..7).rev() {
        for k in i + 1..7 {
            b[i] = _mm256_fnmadd_pd(a[packed(k, i)], b[k], b[i]);
        }
        b[i] = _mm256_div_pd(b[i], a[packed(i, i)]);
    }
    b
}
