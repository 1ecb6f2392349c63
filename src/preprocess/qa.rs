//! A quality-assurance picture of a model input: the three mid-slices of every channel, side by
//! side, as an 8-bit grey PNG that a person opens to see at a glance whether the brain sits in the
//! box, the right way up, with sensible contrast, before trusting a predicted age.
//!
//! Rows are channels; columns are axial (k mid-slice, anterior up), coronal (j, superior up) and
//! sagittal (i, superior up) views of an RAS-ordered image, left on the left of each view.
//! Each channel is windowed between the 1st and 99th percentiles of its nonzero voxels.

use std::io::Write;
use std::path::Path;

use flate2::Crc;
use flate2::write::ZlibEncoder;

use super::image::Image3;

/// Why the picture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum QaError {
    #[error("writing {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("nothing to draw: no channels or an empty grid")]
    Empty,
}

/// A grey picture, row-major, top row first.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Lays out the mid-slices of each channel (all on the same grid) into one picture.
pub fn mid_slices(channels: &[&Image3]) -> Result<Picture, QaError> {
    let first = channels.first().ok_or(QaError::Empty)?;
    let [ni, nj, nk] = first.dims;
    if ni == 0 || nj == 0 || nk == 0 {
        return Err(QaError::Empty);
    }
    let gap = 2;
    let width = ni + ni + nj + 2 * gap;
    let row_h = nj.max(nk);
    let height = channels.len() * row_h + (channels.len() - 1) * gap;
    let mut pic = Picture {
        width,
        height,
        pixels: vec![0; width * height],
    };
    for (c, img) in channels.iter().enumerate() {
        let (lo, hi) = window(img);
        let grey = |v: f32| -> u8 {
            if hi <= lo {
                return if v > lo { 255 } else { 0 };
            }
            (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
        };
        let top = c * (row_h + gap);
        let (mi, mj, mk) = (ni / 2, nj / 2, nk / 2);
        // Axial: x = i, up = +j.
        for j in 0..nj {
            for i in 0..ni {
                let y = top + (nj - 1 - j);
                pic.pixels[y * width + i] = grey(img.data[img.index(i, j, mk)]);
            }
        }
        // Coronal: x = i, up = +k.
        let x0 = ni + gap;
        for k in 0..nk {
            for i in 0..ni {
                let y = top + (nk - 1 - k);
                pic.pixels[y * width + x0 + i] = grey(img.data[img.index(i, mj, k)]);
            }
        }
        // Sagittal: x = j, up = +k.
        let x0 = 2 * (ni + gap);
        for k in 0..nk {
            for j in 0..nj {
                let y = top + (nk - 1 - k);
                pic.pixels[y * width + x0 + j] = grey(img.data[img.index(mi, j, k)]);
            }
        }
    }
    Ok(pic)
}

/// 1st and 99th percentile of the nonzero voxels (the whole range when there are few).
fn window(img: &Image3) -> (f32, f32) {
    let mut v: Vec<f32> = img
        .data
        .iter()
        .copied()
        .filter(|x| *x != 0.0 && x.is_finite())
        .collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut at = |q: f64| {
        let k = ((v.len() - 1) as f64 * q).round() as usize;
        *v.select_nth_unstable_by(k, f32::total_cmp).1
    };
    let lo = at(0.01).min(0.0);
    (lo, at(0.99))
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// PNG bytes of `pic` (8-bit greyscale, no interlace).
pub fn encode_png(pic: &Picture) -> Result<Vec<u8>, std::io::Error> {
    let mut raw = Vec::with_capacity((pic.width + 1) * pic.height);
    for row in pic.pixels.chunks(pic.width.max(1)) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(pic.width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(pic.height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Writes the mid-slice picture of `channels` to `path`.
pub fn write_qa_png(path: &Path, channels: &[&Image3]) -> Result<(), QaError> {
    let pic = mid_slices(channels)?;
    let io = |source| QaError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = encode_png(&pic).map_err(io)?;
    std::fs::write(path, bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Matrix4;

    #[test]
    fn picture_has_three_views_per_channel() {
        let mut img = Image3::zeros([4, 5, 6], Matrix4::identity());
        let ix = img.index(2, 2, 3);
        img.data[ix] = 1.0;
        let pic = mid_slices(&[&img, &img]).unwrap();
        assert_eq!(pic.width, 4 + 4 + 5 + 4);
        assert_eq!(pic.height, 6 * 2 + 2);
        let png = encode_png(&pic).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
