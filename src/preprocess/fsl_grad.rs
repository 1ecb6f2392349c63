//! FSL-style `.bval`/`.bvec` files, the gradient table format dcm2niix writes and `dwi2tensor`
//! reads through `-fslgrad`.

use std::path::Path;

use crate::volume::GradientTable;

/// Why a gradient table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GradError {
    #[error("reading {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a number: {token:?}")]
    Number { path: String, token: String },
    #[error("{0} b-values but the b-vector file holds {1} numbers (want 3 per volume)")]
    Mismatch(usize, usize),
}

fn read_numbers(path: &Path) -> Result<Vec<Vec<f64>>, GradError> {
    let text = std::fs::read_to_string(path).map_err(|source| GradError::Io {
        path: path.display().to_string(),
        source,
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            line.split_whitespace()
                .map(|t| {
                    t.parse::<f64>().map_err(|_| GradError::Number {
                        path: path.display().to_string(),
                        token: t.to_string(),
                    })
                })
                .collect()
        })
        .collect()
}

/// Reads a `.bval` (one row, or one value a line) and a `.bvec` (three rows, or three columns).
pub fn read_fsl_gradients(bval: &Path, bvec: &Path) -> Result<GradientTable, GradError> {
    let bvals: Vec<f64> = read_numbers(bval)?.into_iter().flatten().collect();
    let rows = read_numbers(bvec)?;
    let n = bvals.len();
    let total: usize = rows.iter().map(Vec::len).sum();
    let bvecs: Vec<[f64; 3]> = if rows.len() == 3 && rows.iter().all(|r| r.len() == n) {
        (0..n)
            .map(|i| [rows[0][i], rows[1][i], rows[2][i]])
            .collect()
    } else if rows.len() == n && rows.iter().all(|r| r.len() == 3) {
        rows.iter().map(|r| [r[0], r[1], r[2]]).collect()
    } else {
        return Err(GradError::Mismatch(n, total));
    };
    Ok(GradientTable { bvals, bvecs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_columns() {
        let dir = tempfile::tempdir().unwrap();
        let bval = dir.path().join("b.bval");
        let bvec = dir.path().join("b.bvec");
        std::fs::write(&bval, "0 1000\n").unwrap();
        std::fs::write(&bvec, "0 1\n0 0\n0 0\n").unwrap();
        let g = read_fsl_gradients(&bval, &bvec).unwrap();
        assert_eq!(g.bvecs, vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]);
        std::fs::write(&bvec, "0 0 0\n1 0 0\n").unwrap();
        assert_eq!(read_fsl_gradients(&bval, &bvec).unwrap(), g);
        std::fs::write(&bvec, "0 0\n").unwrap();
        assert!(read_fsl_gradients(&bval, &bvec).is_err());
    }
}
