//! Similarity metrics and their derivatives: Mattes mutual information for the linear stages
//! and local (neighbourhood) cross-correlation for SyN, as antsRegistration uses them.
//!
//! Mattes MI (Mattes et al., IEEE TMI 2003, as in ITK's v4 metric): a joint histogram of
//! `bins` bins (2 of padding at each end) built from a regular subsample of fixed voxels, with
//! a zero-order (box) Parzen window for fixed intensities and a cubic B-spline window for moving
//! intensities, which makes the histogram, and so MI, differentiable in the transform.
//!
//! Local CC: at each voxel the squared correlation of fixed and moving intensities in the
//! (2r+1)³ box around it; its derivative treats only the centre voxel as changing, as ANTs' CC
//! does, which is what makes it cheap (five box sums per evaluation).

use nalgebra::{Matrix3, Vector3};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::RegisterError;
use super::image::{Affine3x4, Image, trilinear_weights};

/// Padding bins at each end of the histogram (ITK keeps 2 so the B-spline window fits).
const PAD: usize = 2;

/// A regular subsample of the fixed image: world points and fixed intensities.
#[derive(Debug, Clone)]
pub struct Samples {
    /// World coordinates (mm) of each sample.
    pub points: Vec<[f32; 3]>,
    /// Fixed intensity at each sample.
    pub values: Vec<f32>,
}

impl Samples {
    /// Every n-th voxel in storage order, n = round(1 / fraction), each moved by a random offset
    /// within its voxel (fixed seed) so that the samples do not sit on the moving grid's
    /// lattice, which would make MI jump as the transform moves (ANTs does the same).
    pub fn regular(fixed: &Image, fraction: f64, seed: u64) -> Self {
        let stride = (1.0 / fraction.clamp(1e-6, 1.0)).round().max(1.0) as usize;
        let g = &fixed.grid;
        let to_world = Affine3x4::from_matrix(&g.affine);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut points = Vec::with_capacity(g.len() / stride + 1);
        let mut values = Vec::with_capacity(g.len() / stride + 1);
        let (nx, ny) = (g.dims[0], g.dims[1]);
        for n in (0..g.len()).step_by(stride) {
            let i = n % nx;
            let j = (n / nx) % ny;
            let k = n / (nx * ny);
            let jitter: [f32; 3] = [
                rng.random_range(-0.4..0.4),
                rng.random_range(-0.4..0.4),
                rng.random_range(-0.4..0.4),
            ];
            let p = [
                i as f32 + jitter[0],
                j as f32 + jitter[1],
                k as f32 + jitter[2],
            ];
            points.push(to_world.apply(p));
            values.push(fixed.sample_linear(p));
        }
        Self { points, values }
    }
}

/// MI value and its derivative with respect to a centred affine `x ↦ A(x − c) + c + t`.
#[derive(Debug, Clone)]
pub struct MiEvaluation {
    /// Mutual information in nats (larger is better).
    pub value: f64,
    /// ∂MI/∂A.
    pub grad_a: Matrix3<f64>,
    /// ∂MI/∂t.
    pub grad_t: Vector3<f64>,
    /// Samples that landed inside the moving image.
    pub valid: usize,
}

/// Mattes MI with fixed bin edges for one pyramid level.
#[derive(Debug, Clone)]
pub struct MattesMi {
    bins: usize,
    fixed_min: f32,
    fixed_bin: f32,
    moving_min: f32,
    moving_bin: f32,
    fixed_bins: Vec<u16>,
}

impl MattesMi {
    /// Bins the fixed samples once; moving bin edges come from the moving image's range.
    pub fn new(bins: usize, samples: &Samples, moving: &Image) -> Result<Self, RegisterError> {
        if bins < 2 * PAD + 2 {
            return Err(RegisterError::BadParameter(format!(
                "Mattes MI needs at least {} bins",
                2 * PAD + 2
            )));
        }
        let (fmin, fmax) = range(&samples.values);
        let (mmin, mmax) = range(&moving.data);
        let usable = (bins - 2 * PAD) as f32;
        let fixed_bin = ((fmax - fmin) / usable).max(f32::MIN_POSITIVE);
        let moving_bin = ((mmax - mmin) / usable).max(f32::MIN_POSITIVE);
        let top = (bins - PAD - 1) as f32;
        let fixed_bins = samples
            .values
            .iter()
            .map(|v| {
                ((v - fmin) / fixed_bin + PAD as f32)
                    .floor()
                    .clamp(PAD as f32, top) as u16
            })
            .collect();
        Ok(Self {
            bins,
            fixed_min: fmin,
            fixed_bin,
            moving_min: mmin,
            moving_bin,
            fixed_bins,
        })
    }

    /// Lower edge of the fixed intensity range (for diagnostics).
    pub fn fixed_range(&self) -> (f32, f32) {
        (
            self.fixed_min,
            self.fixed_min + self.fixed_bin * (self.bins - 2 * PAD) as f32,
        )
    }

    /// MI and its derivative for the transform `fixed world → moving world` given as
    /// `transform`, with `centre` the centre of the parameterisation. `moving_grad` is the
    /// moving image's world-space gradient (three planes on its grid).
    pub fn evaluate(
        &self,
        samples: &Samples,
        moving: &Image,
        moving_grad: &[Vec<f32>; 3],
        transform: &Affine3x4,
        centre: &Vector3<f64>,
    ) -> Result<MiEvaluation, RegisterError> {
        let to_index = Affine3x4::from_matrix(&moving.grid.world_to_index()?);
        let dims = moving.grid.dims;
        let b = self.bins;
        let top = (b - PAD) as f32 - 1e-4;
        // Pass 1: the moving value, its bin term and gradient at each sample.
        let looked: Vec<Option<(f32, [f32; 3])>> = samples
            .points
            .par_iter()
            .map(|p| {
                let q = transform.apply(*p);
                let (idx, w) = trilinear_weights(&dims, to_index.apply(q))?;
                let mut m = 0.0;
                let mut g = [0f32; 3];
                for n in 0..8 {
                    m += w[n] * moving.data[idx[n]];
                    for c in 0..3 {
                        g[c] += w[n] * moving_grad[c][idx[n]];
                    }
                }
                let term =
                    ((m - self.moving_min) / self.moving_bin + PAD as f32).clamp(PAD as f32, top);
                Some((term, g))
            })
            .collect();
        let joint = looked
            .par_iter()
            .enumerate()
            .fold(
                || vec![0f64; b * b],
                |mut h, (s, l)| {
                    if let Some((term, _)) = l {
                        let row = self.fixed_bins[s] as usize * b;
                        let base = term.floor() as isize;
                        for j in base - 1..=base + 2 {
                            if j >= 0 && (j as usize) < b {
                                h[row + j as usize] += bspline3(j as f32 - term) as f64;
                            }
                        }
                    }
                    h
                },
            )
            .reduce(
                || vec![0f64; b * b],
                |mut a, h| {
                    a.iter_mut().zip(h).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let total: f64 = joint.iter().sum();
        let valid = looked.iter().filter(|l| l.is_some()).count();
        if total <= 0.0 || valid < 16 {
            return Err(RegisterError::NoOverlap);
        }
        let p: Vec<f64> = joint.iter().map(|v| v / total).collect();
        let mut pf = vec![0f64; b];
        let mut pm = vec![0f64; b];
        for i in 0..b {
            for j in 0..b {
                pf[i] += p[i * b + j];
                pm[j] += p[i * b + j];
            }
        }
        let mut value = 0.0;
        let mut log_ratio = vec![0f64; b * b];
        for i in 0..b {
            for j in 0..b {
                let pij = p[i * b + j];
                if pij > 1e-16 && pm[j] > 1e-16 && pf[i] > 1e-16 {
                    value += pij * (pij / (pf[i] * pm[j])).ln();
                    log_ratio[i * b + j] = (pij / pm[j]).ln();
                }
            }
        }
        // Pass 2: dMI/dμ = Σ_ij dp_ij/dμ · log(p_ij / pm_j); each sample's share is a scalar
        // times the moving gradient, then spread over A and t.
        let scale = -1.0 / (total * self.moving_bin as f64);
        let (grad_a, grad_t) = looked
            .par_iter()
            .enumerate()
            .fold(
                || (Matrix3::<f64>::zeros(), Vector3::<f64>::zeros()),
                |(mut ga, mut gt), (s, l)| {
                    if let Some((term, g)) = l {
                        let row = self.fixed_bins[s] as usize * b;
                        let base = term.floor() as isize;
                        let mut c = 0.0f64;
                        for j in base - 1..=base + 2 {
                            if j >= 0 && (j as usize) < b {
                                c += bspline3_derivative(j as f32 - term) as f64
                                    * log_ratio[row + j as usize];
                            }
                        }
                        // d bspline(j − term)/d term = −bspline'(j − term)
                        let c = c * scale;
                        let w = Vector3::new(g[0] as f64, g[1] as f64, g[2] as f64) * c;
                        let x = samples.points[s];
                        let r = Vector3::new(
                            x[0] as f64 - centre.x,
                            x[1] as f64 - centre.y,
                            x[2] as f64 - centre.z,
                        );
                        ga += w * r.transpose();
                        gt += w;
                    }
                    (ga, gt)
                },
            )
            .reduce(
                || (Matrix3::zeros(), Vector3::zeros()),
                |(a1, t1), (a2, t2)| (a1 + a2, t1 + t2),
            );
        Ok(MiEvaluation {
            value,
            grad_a,
            grad_t,
            valid,
        })
    }
}

fn range(v: &[f32]) -> (f32, f32) {
    v.iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Cubic B-spline kernel.
#[inline]
fn bspline3(x: f32) -> f32 {
    let a = x.abs();
    if a < 1.0 {
        (4.0 - 6.0 * a * a + 3.0 * a * a * a) / 6.0
    } else if a < 2.0 {
        let t = 2.0 - a;
        t * t * t / 6.0
    } else {
        0.0
    }
}

/// Derivative of [`bspline3`].
#[inline]
fn bspline3_derivative(x: f32) -> f32 {
    let a = x.abs();
    if a < 1.0 {
        -2.0 * x + 1.5 * x * a
    } else if a < 2.0 {
        let t = 2.0 - a;
        -0.5 * t * t * x.signum()
    } else {
        0.0
    }
}

/// Local CC over a grid and its pointwise derivatives with respect to each image's intensity.
#[derive(Debug, Clone)]
pub struct CcEvaluation {
    /// Mean local squared correlation over voxels where both windows vary (0..1, larger is
    /// better).
    pub value: f64,
    /// ∂CC/∂fixed(x), per voxel.
    pub d_fixed: Vec<f32>,
    /// ∂CC/∂moving(x), per voxel.
    pub d_moving: Vec<f32>,
}

/// Local CC of two images on the same grid with a (2r+1)³ window (truncated at the border).
pub fn local_cc(fixed: &[f32], moving: &[f32], dims: &[usize; 3], radius: usize) -> CcEvaluation {
    let n = fixed.len();
    let mut tmp = vec![0f32; n];
    let sum = |src: &[f32], tmp: &mut Vec<f32>| box_sum(src, dims, radius, tmp);
    let sf = sum(fixed, &mut tmp);
    let sm = sum(moving, &mut tmp);
    let product = |a: &[f32], b: &[f32]| -> Vec<f32> {
        a.par_iter().zip(b.par_iter()).map(|(x, y)| x * y).collect()
    };
    let sff = sum(&product(fixed, fixed), &mut tmp);
    let smm = sum(&product(moving, moving), &mut tmp);
    let sfm = sum(&product(fixed, moving), &mut tmp);
    drop(tmp);
    let counts = window_counts(dims, radius);
    let (nx, ny) = (dims[0], dims[1]);
    let mut d_fixed = vec![0f32; n];
    let mut d_moving = vec![0f32; n];
    let (total, used) = d_fixed
        .par_chunks_mut(nx)
        .zip(d_moving.par_chunks_mut(nx))
        .enumerate()
        .map(|(row, (df, dm))| {
            let j = row % ny;
            let k = row / ny;
            let mut total = 0.0f64;
            let mut used = 0usize;
            for i in 0..nx {
                let at = row * nx + i;
                let count = counts[0][i] * counts[1][j] * counts[2][k];
                let mf = sf[at] / count;
                let mm = sm[at] / count;
                let vff = sff[at] - mf * sf[at];
                let vmm = smm[at] - mm * sm[at];
                let vfm = sfm[at] - mf * sm[at];
                if vff > 1e-5 && vmm > 1e-5 {
                    let denom = vff * vmm;
                    total += (vfm * vfm / denom) as f64;
                    used += 1;
                    let fc = fixed[at] - mf;
                    let mc = moving[at] - mm;
                    let common = 2.0 * vfm / denom;
                    dm[i] = common * (fc - vfm / vmm * mc);
                    df[i] = common * (mc - vfm / vff * fc);
                }
            }
            (total, used)
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    CcEvaluation {
        value: if used > 0 { total / used as f64 } else { 0.0 },
        d_fixed,
        d_moving,
    }
}

/// Window sizes along each axis after truncation at the border.
fn window_counts(dims: &[usize; 3], r: usize) -> [Vec<f32>; 3] {
    let per_axis = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|c| {
                let lo = c.saturating_sub(r);
                let hi = (c + r).min(n - 1);
                (hi - lo + 1) as f32
            })
            .collect()
    };
    [per_axis(dims[0]), per_axis(dims[1]), per_axis(dims[2])]
}

/// Separable box sum of width 2r+1, truncated at the border. Direct sums (no running
/// add/subtract), so that f32 cancellation does not build up along a line.
fn box_sum(src: &[f32], dims: &[usize; 3], r: usize, tmp: &mut Vec<f32>) -> Vec<f32> {
    let (nx, ny, nz) = (dims[0], dims[1], dims[2]);
    let slab = nx * ny;
    let mut out = vec![0f32; src.len()];
    // i: rows.
    tmp.par_chunks_mut(nx)
        .zip(src.par_chunks(nx))
        .for_each(|(o, row)| {
            for (i, v) in o.iter_mut().enumerate() {
                let lo = i.saturating_sub(r);
                let hi = (i + r).min(nx - 1);
                *v = row[lo..=hi].iter().sum();
            }
        });
    // j: rows of a slab.
    out.par_chunks_mut(slab)
        .zip(tmp.par_chunks(slab))
        .for_each(|(o, s)| {
            for j in 0..ny {
                let lo = j.saturating_sub(r);
                let hi = (j + r).min(ny - 1);
                let dst = &mut o[j * nx..(j + 1) * nx];
                dst.fill(0.0);
                for jj in lo..=hi {
                    for (a, b) in dst.iter_mut().zip(&s[jj * nx..(jj + 1) * nx]) {
                        *a += b;
                    }
                }
            }
        });
    // k: whole slabs.
    tmp.par_chunks_mut(slab).enumerate().for_each(|(k, o)| {
        let lo = k.saturating_sub(r);
        let hi = (k + r).min(nz - 1);
        o.fill(0.0);
        for kk in lo..=hi {
            for (a, b) in o.iter_mut().zip(&out[kk * slab..(kk + 1) * slab]) {
                *a += b;
            }
        }
    });
    std::mem::swap(&mut out, tmp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bspline_derivative_matches_finite_difference() {
        for x in [-1.7f32, -0.6, -0.1, 0.3, 0.9, 1.2, 1.9] {
            let h = 1e-3;
            let fd = (bspline3(x + h) - bspline3(x - h)) / (2.0 * h);
            assert!((fd - bspline3_derivative(x)).abs() < 1e-3, "{x}");
        }
    }

    #[test]
    fn box_sum_matches_brute_force() {
        let dims = [7, 6, 5];
        let src: Vec<f32> = (0..7 * 6 * 5).map(|v| ((v * 37) % 11) as f32).collect();
        let mut tmp = vec![0f32; src.len()];
        let got = box_sum(&src, &dims, 2, &mut tmp);
        for k in 0..5usize {
            for j in 0..6usize {
                for i in 0..7usize {
                    let mut s = 0.0;
                    for kk in k.saturating_sub(2)..=(k + 2).min(4) {
                        for jj in j.saturating_sub(2)..=(j + 2).min(5) {
                            for ii in i.saturating_sub(2)..=(i + 2).min(6) {
                                s += src[ii + 7 * (jj + 6 * kk)];
                            }
                        }
                    }
                    assert!((got[i + 7 * (j + 6 * k)] - s).abs() < 1e-3);
                }
            }
        }
    }
}
