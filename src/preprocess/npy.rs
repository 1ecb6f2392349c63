//! NumPy `.npy` files (format 1.0, little-endian float32), the form model-input tensors are
//! handed over in: `numpy.load` reads them and so does ONNX tooling, with no NIfTI in between.

use std::io::{Read, Write};
use std::path::Path;

/// Why an `.npy` file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a NumPy 1.x/2.x file or an unsupported header: {why}")]
    Format { path: String, why: String },
    #[error("shape {shape:?} needs {want} values, got {got}")]
    Length {
        shape: Vec<usize>,
        want: usize,
        got: usize,
    },
}

/// A dense float32 array in C order (last axis fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `array` to `path` as `<f4`, C order.
pub fn write_npy(path: &Path, array: &NpyArray) -> Result<(), NpyError> {
    let want: usize = array.shape.iter().product();
    if want != array.data.len() {
        return Err(NpyError::Length {
            shape: array.shape.clone(),
            want,
            got: array.data.len(),
        });
    }
    let dims: Vec<String> = array.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // The whole preamble (magic, version, length, header, newline) is padded to 64 bytes.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(unpadded + 64 + 4 * array.data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in &array.data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let io = |source| NpyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads a little-endian `<f4` or `<f8` `.npy` file (either order) into a C-order f32 array.
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let p = path.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| NpyError::Io {
            path: p.clone(),
            source,
        })?;
    let bad = |why: &str| NpyError::Format {
        path: p.clone(),
        why: why.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("no magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let width = if header.contains("'<f4'") {
        4
    } else if header.contains("'<f8'") {
        8
    } else {
        return Err(bad("only <f4 and <f8 are read"));
    };
    let fortran = header.contains("'fortran_order': True");
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_text
        .trim()
        .trim_start_matches('(')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    if body.len() < count * width {
        return Err(bad("truncated data"));
    }
    let mut data: Vec<f32> = body[..count * width]
        .chunks_exact(width)
        .map(|c| match c.len() {
            4 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            _ => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32,
        })
        .collect();
    if fortran {
        data = fortran_to_c(&shape, &data);
    }
    Ok(NpyArray { shape, data })
}

fn fortran_to_c(shape: &[usize], data: &[f32]) -> Vec<f32> {
    let n = shape.len();
    let mut out = vec![0.0; data.len()];
    let mut idx = vec![0usize; n];
    for (f_pos, v) in data.iter().enumerate() {
        let mut rest = f_pos;
        for a in 0..n {
            idx[a] = rest % shape[a];
            rest /= shape[a];
        }
        let mut c_pos = 0;
        for a in 0..n {
            c_pos = c_pos * shape[a] + idx[a];
        }
        out[c_pos] = *v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let a = NpyArray {
            shape: vec![1, 2, 3],
            data: vec![0.5, 1.0, -2.0, 3.25, 4.0, 5.0],
        };
        write_npy(&path, &a).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0);
        assert_eq!(read_npy(&path).unwrap(), a);
    }
}
