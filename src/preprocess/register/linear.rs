//! Rigid and affine registration by Mattes MI, multi-resolution, centre-of-mass initialised:
//! the linear stages of `antsRegistrationSyN.sh`.
//!
//! The transform is parameterised around the fixed image's centre of mass c,
//! `x ↦ A(x − c) + c + t`, so rotations and translations are nearly independent. Parameters are
//! scaled by how far they move the fixed image's corners (ITK's "physical shift" scales), so one
//! step length, in millimetres, means the same for an angle and a translation.
//!
//! Optimiser: gradient ascent on MI with an adaptive step. The first step of each level moves
//! the fixed image's corners by at most `gradient_step × 10` voxels of the level's grid (0.1 →
//! one voxel, ITK's default largest step), see [`LinearParams::gradient_step`]. A step that improves MI is kept and the next one is 10 %
//! longer; one that does not is undone and the step halved. ANTs instead fixes its learning rate
//! once per level; the adaptive step reaches the same optimum in far fewer metric evaluations,
//! which is where the time goes. A level ends after its iteration budget, when the step falls
//! below 1/1000 of a voxel, or when the slope of the last `convergence_window` MI values
//! (relative to their mean) is below `convergence_threshold` (ANTs' window test).

use nalgebra::{Matrix3, Rotation3, Vector3};

use super::RegisterError;
use super::image::{Affine3x4, Image};
use super::metric::{MattesMi, Samples};
use super::pyramid::{Schedule, level_image};
use super::transform::AffineTransform;

/// Degrees of freedom of a linear stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearKind {
    /// Rotation and translation (6).
    Rigid,
    /// Full affine (12).
    Affine,
}

/// Settings of one linear stage; [`LinearParams::ants_syn_defaults`] is the reference chain's.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearParams {
    /// Histogram bins of Mattes MI.
    pub bins: usize,
    /// Fraction of fixed voxels sampled (regular sampling).
    pub sampling: f64,
    /// First step of each level: `gradient_step × 10` voxels of the level's grid.
    pub gradient_step: f64,
    /// Iteration budget per level, coarse first.
    pub iterations: Vec<usize>,
    /// Shrink factors and smoothing per level.
    pub schedule: Schedule,
    /// Convergence: relative slope of the MI window below which a level stops.
    pub convergence_threshold: f64,
    /// Convergence: number of recent MI values the slope is fitted to.
    pub convergence_window: usize,
    /// Seed of the sample jitter (fixed so that runs are reproducible).
    pub seed: u64,
}

impl LinearParams {
    /// `antsRegistrationSyN.sh` rigid/affine: MI 32 bins, 25 % regular sampling, step 0.1,
    /// 1000×500×250×100 iterations, shrink 8×4×2×1, smoothing 3×2×1×0 voxels, convergence
    /// 1e-6 over 10 iterations.
    pub fn ants_syn_defaults() -> Self {
        Self {
            bins: 32,
            sampling: 0.25,
            gradient_step: 0.1,
            iterations: vec![1000, 500, 250, 100],
            schedule: Schedule::ants_default(),
            convergence_threshold: 1e-6,
            convergence_window: 10,
            seed: 20_240_601,
        }
    }
}

/// Centre of mass of an image's intensities (world mm); the grid centre for an empty image.
pub fn centre_of_mass(image: &Image) -> Vector3<f64> {
    let d = image.grid.dims;
    let mut sum = [0f64; 4];
    for k in 0..d[2] {
        for j in 0..d[1] {
            for i in 0..d[0] {
                let v = image.data[image.grid.index(i, j, k)].max(0.0) as f64;
                if v > 0.0 {
                    sum[0] += v * i as f64;
                    sum[1] += v * j as f64;
                    sum[2] += v * k as f64;
                    sum[3] += v;
                }
            }
        }
    }
    if sum[3] <= 0.0 {
        return image.grid.world(d[0] / 2, d[1] / 2, d[2] / 2);
    }
    let idx = nalgebra::Vector4::new(sum[0] / sum[3], sum[1] / sum[3], sum[2] / sum[3], 1.0);
    let w = image.grid.affine * idx;
    Vector3::new(w.x, w.y, w.z)
}

/// The translation that lays the moving centre of mass on the fixed one (ANTs'
/// `--initial-moving-transform [F,M,1]`).
pub fn centre_of_mass_init(fixed: &Image, moving: &Image) -> AffineTransform {
    AffineTransform::translation(centre_of_mass(moving) - centre_of_mass(fixed))
}

/// Optimiser state: the centred affine and, for rigid, the angles that generate its rotation.
#[derive(Debug, Clone, Copy)]
struct State {
    a: Matrix3<f64>,
    t: Vector3<f64>,
    angles: Vector3<f64>,
}

/// Registers `moving` to `fixed` starting from `init`; returns the fixed→moving transform.
pub fn register_linear(
    fixed: &Image,
    moving: &Image,
    kind: LinearKind,
    init: &AffineTransform,
    params: &LinearParams,
) -> Result<AffineTransform, RegisterError> {
    let centre = centre_of_mass(fixed);
    let a0 = init.linear();
    let t0 = init.apply(&centre) - centre;
    let mut state = State {
        a: a0,
        t: t0,
        angles: Vector3::zeros(),
    };
    for level in 0..params.schedule.levels() {
        let shrink = params.schedule.shrink[level];
        let sigma = params.schedule.sigma_vox[level];
        let iterations = params.iterations.get(level).copied().unwrap_or(0);
        if iterations == 0 {
            continue;
        }
        let fixed_l = level_image(fixed, shrink, sigma);
        let moving_l = level_image(moving, shrink, sigma);
        state = optimise_level(
            &fixed_l, &moving_l, kind, a0, &centre, state, iterations, params, level,
        )?;
    }
    Ok(AffineTransform::from_centred(&state.a, &centre, &state.t))
}

#[allow(clippy::too_many_arguments)]
fn optimise_level(
    fixed: &Image,
    moving: &Image,
    kind: LinearKind,
    a0: Matrix3<f64>,
    centre: &Vector3<f64>,
    start: State,
    iterations: usize,
    params: &LinearParams,
    level: usize,
) -> Result<State, RegisterError> {
    let samples = Samples::regular(fixed, params.sampling, params.seed + level as u64);
    let mi = MattesMi::new(params.bins, &samples, moving)?;
    let gradient = moving.gradient_world()?;
    let corners: Vec<Vector3<f64>> = fixed.grid.corners().iter().map(|c| c - centre).collect();
    let voxel = fixed
        .grid
        .spacing()
        .iter()
        .cloned()
        .fold(f64::MAX, f64::min);
    let evaluate = |s: &State| {
        let m = AffineTransform::from_centred(&s.a, centre, &s.t);
        mi.evaluate(
            &samples,
            moving,
            &gradient,
            &Affine3x4::from_matrix(&m.matrix),
            centre,
        )
    };
    let mut best = start;
    let mut best_eval = evaluate(&best)?;
    let mut step = params.gradient_step * 10.0 * voxel;
    let min_step = 1e-3 * voxel;
    let mut history: Vec<f64> = vec![best_eval.value];
    for _ in 0..iterations {
        let direction = match kind {
            LinearKind::Affine => affine_direction(&best_eval.grad_a, &best_eval.grad_t, &corners),
            LinearKind::Rigid => {
                rigid_direction(&best, a0, &best_eval.grad_a, &best_eval.grad_t, &corners)
            }
        };
        let Some(direction) = direction else { break };
        let candidate = direction.apply(&best, a0, step);
        match evaluate(&candidate) {
            Ok(e) if e.value > best_eval.value => {
                best = candidate;
                best_eval = e;
                step *= 1.1;
            }
            _ => step *= 0.5,
        }
        history.push(best_eval.value);
        if step < min_step || converged(&history, params) {
            break;
        }
    }
    tracing::debug!(
        level,
        evaluations = history.len(),
        mi = best_eval.value,
        "linear level done"
    );
    Ok(best)
}

/// A unit-length move: the parameter change whose largest corner displacement is 1 mm.
enum Direction {
    Affine(Matrix3<f64>, Vector3<f64>),
    Rigid(Vector3<f64>, Vector3<f64>),
}

impl Direction {
    fn apply(&self, s: &State, a0: Matrix3<f64>, step: f64) -> State {
        match self {
            Direction::Affine(da, dt) => State {
                a: s.a + da * step,
                t: s.t + dt * step,
                angles: s.angles,
            },
            Direction::Rigid(dang, dt) => {
                let angles = s.angles + dang * step;
                State {
                    a: rotation(&angles) * a0,
                    t: s.t + dt * step,
                    angles,
                }
            }
        }
    }
}

fn rotation(angles: &Vector3<f64>) -> Matrix3<f64> {
    Rotation3::from_euler_angles(angles.x, angles.y, angles.z).into_inner()
}

/// Largest displacement of the corners under (da, dt).
fn corner_shift(da: &Matrix3<f64>, dt: &Vector3<f64>, corners: &[Vector3<f64>]) -> f64 {
    corners
        .iter()
        .map(|c| (da * c + dt).norm())
        .fold(0.0, f64::max)
}

fn affine_direction(
    ga: &Matrix3<f64>,
    gt: &Vector3<f64>,
    corners: &[Vector3<f64>],
) -> Option<Direction> {
    // Physical-shift scales: a unit change of A_ij moves a corner by up to max |c_j|.
    let mut reach = [0f64; 3];
    for c in corners {
        for j in 0..3 {
            reach[j] = reach[j].max(c[j].abs());
        }
    }
    let mut da = Matrix3::zeros();
    for i in 0..3 {
        for j in 0..3 {
            let s = reach[j] * reach[j];
            da[(i, j)] = if s > 0.0 { ga[(i, j)] / s } else { 0.0 };
        }
    }
    let dt = *gt;
    let shift = corner_shift(&da, &dt, corners);
    (shift > 0.0 && shift.is_finite()).then(|| Direction::Affine(da / shift, dt / shift))
}

fn rigid_direction(
    s: &State,
    a0: Matrix3<f64>,
    ga: &Matrix3<f64>,
    gt: &Vector3<f64>,
    corners: &[Vector3<f64>],
) -> Option<Direction> {
    let h = 1e-5;
    let mut dang = Vector3::zeros();
    for k in 0..3 {
        let mut e = Vector3::zeros();
        e[k] = h;
        let d = (rotation(&(s.angles + e)) - rotation(&(s.angles - e))) * a0 / (2.0 * h);
        let g = ga.component_mul(&d).sum();
        let reach = corners.iter().map(|c| (d * c).norm()).fold(0.0, f64::max);
        dang[k] = if reach > 0.0 {
            g / (reach * reach)
        } else {
            0.0
        };
    }
    let dt = *gt;
    // Shift of the combined move, by a first-order look at the corners.
    let shift = corners
        .iter()
        .map(|c| {
            let mut v = dt;
            for k in 0..3 {
                let mut e = Vector3::zeros();
                e[k] = h;
                let d = (rotation(&(s.angles + e)) - rotation(&(s.angles - e))) * a0 / (2.0 * h);
                v += d * c * dang[k];
            }
            v.norm()
        })
        .fold(0.0, f64::max);
    (shift > 0.0 && shift.is_finite()).then(|| Direction::Rigid(dang / shift, dt / shift))
}

/// ANTs-style window test: least-squares slope of the last values relative to their mean.
pub(crate) fn converged(history: &[f64], params: &LinearParams) -> bool {
    window_converged(
        history,
        params.convergence_window,
        params.convergence_threshold,
    )
}

/// Slope of a least-squares line through the last `window` values, relative to their mean
/// magnitude, below `threshold`.
pub(crate) fn window_converged(history: &[f64], window: usize, threshold: f64) -> bool {
    if window < 2 || history.len() < window {
        return false;
    }
    let w = &history[history.len() - window..];
    let n = w.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = w.iter().sum::<f64>() / n;
    let mut num = 0.0;
    let mut den = 0.0;
    for (x, y) in w.iter().enumerate() {
        num += (x as f64 - mean_x) * (y - mean_y);
        den += (x as f64 - mean_x).powi(2);
    }
    let slope = num / den;
    let scale = mean_y.abs().max(1e-12);
    (slope / scale).abs() < threshold
}
