//! The forward noise schedule: ᾱ(k) = ∏_{s≤k} (1 − β_s) for k = 1..=T, with ᾱ(0) = 1 so that
//! timestep 0 means a clean (known) variable.

use std::path::Path;

use super::spec::{ScheduleKind, ScheduleSpec};

/// ᾱ for every timestep 0..=T.
#[derive(Debug, Clone)]
pub struct Schedule {
    alpha_bar: Vec<f64>,
}

impl Schedule {
    /// Builds the schedule a package declares; `dir` resolves an explicit beta file.
    pub fn from_spec(spec: &ScheduleSpec, dir: &Path) -> Result<Self, String> {
        let t = spec.num_train_steps;
        let betas: Vec<f64> = match spec.kind {
            ScheduleKind::Linear | ScheduleKind::ScaledLinear => {
                let (a, b) = (
                    spec.beta_start.ok_or("beta_start missing")?,
                    spec.beta_end.ok_or("beta_end missing")?,
                );
                let frac = |k: usize| {
                    if t == 1 {
                        0.0
                    } else {
                        k as f64 / (t - 1) as f64
                    }
                };
                if spec.kind == ScheduleKind::Linear {
                    (0..t).map(|k| a + (b - a) * frac(k)).collect()
                } else {
                    let (ra, rb) = (a.sqrt(), b.sqrt());
                    (0..t).map(|k| (ra + (rb - ra) * frac(k)).powi(2)).collect()
                }
            }
            ScheduleKind::File => {
                let file = spec.file.as_deref().ok_or("schedule.file missing")?;
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let betas = text
                    .split_whitespace()
                    .map(|w| {
                        w.parse::<f64>()
                            .map_err(|e| format!("{}: {w}: {e}", path.display()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if betas.len() != t {
                    return Err(format!(
                        "{} has {} betas, num_train_steps is {t}",
                        path.display(),
                        betas.len()
                    ));
                }
                betas
            }
        };
        Self::from_betas(&betas)
    }

    /// From β_1..=β_T.
    pub fn from_betas(betas: &[f64]) -> Result<Self, String> {
        let mut alpha_bar = Vec::with_capacity(betas.len() + 1);
        alpha_bar.push(1.0);
        let mut acc = 1.0;
        for &b in betas {
            if !(b > 0.0 && b < 1.0) {
                return Err(format!("beta {b} is outside (0, 1)"));
            }
            acc *= 1.0 - b;
            alpha_bar.push(acc);
        }
        Ok(Self { alpha_bar })
    }

    /// T.
    pub fn num_train_steps(&self) -> usize {
        self.alpha_bar.len() - 1
    }

    /// ᾱ(k), k in 0..=T.
    pub fn alpha_bar(&self, k: usize) -> f64 {
        self.alpha_bar[k.min(self.alpha_bar.len() - 1)]
    }

    /// The S sampling timesteps from T down, each paired with the one it steps to (the last
    /// pair ends at 0): τ_i = round(i·T/S), i = S..1.
    pub fn sampling_pairs(&self, steps: usize) -> Vec<(usize, usize)> {
        let t = self.num_train_steps();
        let s = steps.clamp(1, t);
        let tau = |i: usize| ((i as f64) * (t as f64) / (s as f64)).round() as usize;
        (1..=s).rev().map(|i| (tau(i), tau(i - 1))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_linear_and_file_schedules() {
        use crate::infer::diffusion::spec::{ScheduleKind, ScheduleSpec};
        let spec = |kind, file: Option<&str>| ScheduleSpec {
            kind,
            num_train_steps: 3,
            beta_start: Some(0.01),
            beta_end: Some(0.04),
            file: file.map(String::from),
        };
        let dir = tempfile::tempdir().unwrap();
        // sqrt-spaced: 0.1, 0.15, 0.2 squared.
        let s = Schedule::from_spec(&spec(ScheduleKind::ScaledLinear, None), dir.path()).unwrap();
        let want = (1.0 - 0.01) * (1.0 - 0.0225) * (1.0 - 0.04);
        assert!((s.alpha_bar(3) - want).abs() < 1e-12);
        std::fs::write(dir.path().join("betas.txt"), "0.1\n0.2\n0.3\n").unwrap();
        let s =
            Schedule::from_spec(&spec(ScheduleKind::File, Some("betas.txt")), dir.path()).unwrap();
        assert!((s.alpha_bar(3) - 0.9 * 0.8 * 0.7).abs() < 1e-12);
        std::fs::write(dir.path().join("betas.txt"), "0.1\n0.2\n").unwrap();
        let err = Schedule::from_spec(&spec(ScheduleKind::File, Some("betas.txt")), dir.path());
        assert!(err.unwrap_err().contains("has 2 betas"));
    }

    #[test]
    fn pairs_cover_t_to_zero() {
        let s = Schedule::from_betas(&vec![0.01; 1000]).unwrap();
        let p = s.sampling_pairs(50);
        assert_eq!(p.len(), 50);
        assert_eq!(p[0].0, 1000);
        assert_eq!(p[49].1, 0);
        assert!(p.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(s.alpha_bar(0), 1.0);
        assert!((s.alpha_bar(2) - 0.99f64 * 0.99).abs() < 1e-12);
    }
}
