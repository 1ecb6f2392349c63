//! Age-bias correction. Brain-age models regress towards the training mean (the young look old,
//! the old young); each fold ships a linear fit of that bias, applied only when the subject's
//! chronological age is known, and the raw prediction is always kept beside the corrected one.

use super::manifest::{BiasMethod, BiasSpec};

impl BiasSpec {
    /// The corrected prediction for chronological age `age`.
    ///
    /// Smith: the fitted bias `slope·age + intercept` is the expected error at that age
    /// (BRAID fits pred − age on age), so it is subtracted. Cole: the fit is pred on age, so it is
    /// inverted.
    pub fn apply(&self, predicted: f64, age: f64) -> f64 {
        match self.method {
            BiasMethod::Smith => predicted - (self.slope * age + self.intercept),
            BiasMethod::Cole => (predicted - self.intercept) / self.slope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cole_inverts_a_linear_fit() {
        let b = BiasSpec {
            method: BiasMethod::Cole,
            slope: 0.8,
            intercept: 12.0,
        };
        // A model that predicts 0.8·age + 12 is corrected back to age.
        assert!((b.apply(0.8 * 70.0 + 12.0, 70.0) - 70.0).abs() < 1e-9);
    }
}
