//! The per-voxel IWLS solve of [`super::dti`], four voxels at a time.
//!
//! Every step (the log of the signal, the normal equations, the 7 × 7 Cholesky solve, the
//! exponential of the prediction for the new weights) is the same arithmetic for every voxel,
//! so voxels are fitted in groups of four, one per 64-bit lane of an AVX2 register
//! ([`avx2`], chosen at run time). The portable copy here, over `[f64; 4]` lanes, runs on other
//! CPUs and is the reference the AVX2 copy is tested against.

use super::dti::Tensor6;
use super::lane_math::{exp, ln};

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Voxels fitted together.
pub const LANES: usize = 4;

/// One value per voxel of a group.
pub type Lanes = [f64; LANES];

/// Index of element (r, c), r ≥ c, in a packed lower triangle of a 7 × 7 matrix.
const fn packed(r: usize, c: usize) -> usize {
    r * (r + 1) / 2 + c
}

/// The solver with what all voxels share precomputed: design rows and their outer products
/// (the normal matrix is Σ wᵢ² aᵢaᵢᵀ, so each voxel only scales and sums them).
pub struct Fitter {
    rows: Vec<[f64; 7]>,
    outer: Vec<[f64; 28]>,
    iterations: usize,
    /// Whether the CPU has AVX2 and FMA, so that [`avx2::fit`] may run.
    avx2: bool,
}

/// Per-thread scratch space: weights and log-signals of one group, per volume.
#[derive(Default)]
pub struct Scratch {
    w: Vec<Lanes>,
    y: Vec<Lanes>,
}

/// A fitted voxel: (ln S0, tensor), or `None` when the signal is all zero or the normal
/// equations are singular.
pub type VoxelFit = Option<(f64, Tensor6)>;

impl Fitter {
    /// A fitter for design rows (MRtrix's negated b-matrix) and MRtrix's `-iter` count.
    pub fn new(rows: Vec<[f64; 7]>, iterations: usize) -> Self {
        let outer = rows
            .iter()
            .map(|row| {
                let mut o = [0.0; 28];
                for r in 0..7 {
                    for c in 0..=r {
                        o[packed(r, c)] = row[r] * row[c];
                    }
                }
                o
            })
            .collect();
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Fitter {
            rows,
            outer,
            iterations,
            avx2,
        }
    }

    /// Number of volumes (design rows).
    pub fn volumes(&self) -> usize {
        self.rows.len()
    }

    /// Fits four voxels; `signal[t]` holds volume `t` of each. A lane whose signal is all zero
    /// (padding included) comes back `None`.
    pub fn fit(&self, signal: &[Lanes], scratch: &mut Scratch) -> [VoxelFit; LANES] {
        scratch.w.resize(self.rows.len(), [0.0; LANES]);
        scratch.y.resize(self.rows.len(), [0.0; LANES]);
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is true only when the CPU reported AVX2 and FMA support.
            return unsafe { avx2::fit(&self.rows, &self.outer, self.iterations, signal, scratch) };
        }
        self.fit_lanes(signal, scratch)
    }

    /// The portable copy, for CPUs without AVX2 and FMA (and to check the other against).
    fn fit_lanes(&self, signal: &[Lanes], scratch: &mut Scratch) -> [VoxelFit; LANES] {
        let (w, y) = (&mut scratch.w[..], &mut scratch.y[..]);
        let mut ok = floor_and_log(signal, w, y);
        let mut x = [[0.0; LANES]; 7];
        for it in 0..=self.iterations {
            let (mut ata, aty) = self.normal_equations(w, y);
            x = cholesky_solve(&mut ata, aty, &mut ok);
            // MRtrix reweights only when -iter > 1, and the weights after the last solve are
            // never used, so they are not computed.
            if self.iterations > 1 && it < self.iterations {
                self.reweight(&x, w);
            }
        }
        std::array::from_fn(|l| {
            let v: [f64; 7] = std::array::from_fn(|c| x[c][l]);
            (ok[l] && v.iter().all(|e| e.is_finite()))
                .then(|| (v[0], [v[1], v[2], v[3], v[4], v[5], v[6]]))
        })
    }

    /// Σ wᵢ² aᵢaᵢᵀ (packed) and Σ wᵢ² yᵢ aᵢ per lane, summed over the volumes in order.
    fn normal_equations(&self, w: &[Lanes], y: &[Lanes]) -> ([Lanes; 28], [Lanes; 7]) {
        let mut ata = [[0.0; 28]; LANES];
        let mut aty = [[0.0; 7]; LANES];
        for l in 0..LANES {
            for (((row, outer), wi), yi) in self.rows.iter().zip(&self.outer).zip(w).zip(y) {
                let w2 = wi[l] * wi[l];
                for (a, &o) in ata[l].iter_mut().zip(outer) {
                    *a += w2 * o;
                }
                let wy = w2 * yi[l];
                for (a, &r) in aty[l].iter_mut().zip(row) {
                    *a += wy * r;
                }
            }
        }
        (
            std::array::from_fn(|k| std::array::from_fn(|l| ata[l][k])),
            std::array::from_fn(|k| std::array::from_fn(|l| aty[l][k])),
        )
    }

    /// New weights `w = exp(A x)`, the predicted signal of the current solution.
    fn reweight(&self, x: &[Lanes; 7], w: &mut [Lanes]) {
        for (wi, row) in w.iter_mut().zip(&self.rows) {
            let mut pred = [0.0; LANES];
            for (c, &a) in row.iter().enumerate() {
                for l in 0..LANES {
                    pred[l] += a * x[c][l];
                }
            }
            for l in 0..LANES {
                wi[l] = exp(pred[l]);
            }
        }
    }
}

/// The first weights (the signal, raised to `1e-6 × max` where smaller or not finite) and the
/// log-signal; returns which lanes have a positive maximum. Other lanes get a signal of 1
/// everywhere, so that their arithmetic stays finite and harmless.
fn floor_and_log(signal: &[Lanes], w: &mut [Lanes], y: &mut [Lanes]) -> [bool; LANES] {
    let mut max = [f64::NEG_INFINITY; LANES];
    for s in signal {
        for l in 0..LANES {
            max[l] = if s[l] > max[l] { s[l] } else { max[l] };
        }
    }
    let valid: [bool; LANES] = std::array::from_fn(|l| max[l] > 0.0);
    let small: Lanes = std::array::from_fn(|l| 1.0e-6 * max[l]);
    for ((s, wi), yi) in signal.iter().zip(w.iter_mut()).zip(y.iter_mut()) {
        for l in 0..LANES {
            let v = if !s[l].is_finite() || s[l] < small[l] {
                small[l]
            } else {
                s[l]
            };
            wi[l] = if valid[l] { v } else { 1.0 };
            yi[l] = ln(wi[l]);
        }
    }
    valid
}

/// Solves `A x = b` per lane for symmetric positive definite 7 × 7 `A` given as packed lower
/// triangles (overwritten by their Cholesky factors). A lane whose `A` is not positive definite
/// is cleared in `ok` and carries on with a pivot of 1, so the other lanes are unaffected.
fn cholesky_solve(a: &mut [Lanes; 28], mut b: [Lanes; 7], ok: &mut [bool; LANES]) -> [Lanes; 7] {
    for j in 0..7 {
        let mut d = a[packed(j, j)];
        for k in 0..j {
            for l in 0..LANES {
                d[l] -= a[packed(j, k)][l] * a[packed(j, k)][l];
            }
        }
        for l in 0..LANES {
            let bad = d[l].is_nan() || d[l] <= 0.0;
            ok[l] &= !bad;
            d[l] = if bad { 1.0 } else { d[l].sqrt() };
        }
        a[packed(j, j)] = d;
        for i in j + 1..7 {
            let mut v = a[packed(i, j)];
            for k in 0..j {
                for l in 0..LANES {
                    v[l] -= a[packed(i, k)][l] * a[packed(j, k)][l];
                }
            }
            for l in 0..LANES {
                v[l] /= d[l];
            }
            a[packed(i, j)] = v;
        }
    }
    for i in 0..7 {
        for k in 0..i {
            for l in 0..LANES {
                b[i][l] -= a[packed(i, k)][l] * b[k][l];
            }
        }
        for l in 0..LANES {
            b[i][l] /= a[packed(i, i)][l];
        }
    }
    for i in (0..7).rev() {
        for k in i + 1..7 {
            for l in 0..LANES {
                b[i][l] -= a[packed(k, i)][l] * b[k][l];
            }
        }
        for l in 0..LANES {
            b[i][l] /= a[packed(i, i)][l];
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::dti;

    /// A 30-direction b=1000 scheme plus two b=0, as MRtrix's negated b-matrix rows.
    fn rows() -> Vec<[f64; 7]> {
        let mut bvecs = vec![[0.0; 3]; 2];
        for i in 0..30 {
            // Points spread on the sphere (golden-angle spiral).
            let z = 1.0 - (2.0 * i as f64 + 1.0) / 30.0;
            let r = (1.0 - z * z).sqrt();
            let phi = i as f64 * 2.399_963_229_728_653;
            bvecs.push([r * phi.cos(), r * phi.sin(), z]);
        }
        let bvals: Vec<f64> = (0..32).map(|t| if t < 2 { 0.0 } else { 1000.0 }).collect();
        dti::rows(&dti::design_matrix(&bvals, &bvecs))
    }

    /// The copy the CPU runs (AVX2 where available) agrees with the portable copy on noisy
    /// voxels and on degenerate ones (no signal, NaN, infinity, negative values).
    #[test]
    fn dispatched_fit_agrees_with_the_portable_one() {
        let fitter = Fitter::new(rows(), 2);
        let mut state = 12345u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut compared = 0;
        for group in 0..200 {
            let mut signal = vec![[0.0; LANES]; fitter.volumes()];
            for l in 0..LANES {
                let s0 = 200.0 + 2000.0 * uniform();
                let adc = 0.3e-3 + 2.5e-3 * uniform();
                for (t, s) in signal.iter_mut().enumerate() {
                    let b = if t < 2 { 0.0 } else { 1000.0 };
                    let aniso = 1.0 + 0.6 * (t as f64 * (1.0 + l as f64)).sin() * uniform();
                    s[l] = s0 * (-b * adc * aniso).exp() * (1.0 + 0.1 * (uniform() - 0.5));
                }
            }
            match group % 5 {
                1 => signal.iter_mut().for_each(|s| s[1] = 0.0),
                2 => signal[7][2] = f64::NAN,
                3 => signal[3][3] = f64::INFINITY,
                4 => signal[5][0] = -40.0,
                _ => {}
            }
            let mut scratch = Scratch::default();
            let fast = fitter.fit(&signal, &mut scratch);
            let portable = fitter.fit_lanes(&signal, &mut scratch);
            for (a, b) in fast.iter().zip(&portable) {
                match (a, b) {
                    (Some((s0a, da)), Some((s0b, db))) => {
                        let scale = da.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                        assert!((s0a - s0b).abs() < 1e-10, "{s0a} vs {s0b}");
                        for (x, y) in da.iter().zip(db) {
                            assert!((x - y).abs() <= 1e-10 * scale, "{da:?} vs {db:?}");
                        }
                        compared += 1;
                    }
                    (None, None) => {}
                    _ => panic!("one copy fitted, the other did not: {a:?} vs {b:?}"),
                }
            }
            if group % 5 == 1 {
                assert!(fast[1].is_none());
            }
        }
        assert!(compared > 700, "{compared}");
    }
}
