//! Siemens CSA headers: the private (0029,1010) image and (0029,1020) series headers.
//!
//! Siemens puts what a mosaic needs to be unpacked (NumberOfImagesInMosaic, SliceNormalVector)
//! and its diffusion encoding (B_value, DiffusionGradientDirection, B_matrix) only here. Two
//! layouts exist: "SV10" (syngo VB13 and later) and the older one without a signature. Both are a
//! list of named elements, each with a list of string items; numbers are decimal text.
//!
//! The headers come from scanners and from anonymisers that sometimes cut them short, so the
//! parser checks every length against the buffer and returns an error instead of panicking.

use std::collections::HashMap;

/// Why a CSA header could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CsaError {
    #[error("CSA header ends at byte {len}, {needed} bytes needed at offset {offset}")]
    Truncated {
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("CSA header claims {count} elements, more than the buffer can hold")]
    TooManyElements { count: u32 },
    #[error("CSA element {name:?} claims {count} items, more than the buffer can hold")]
    TooManyItems { name: String, count: u32 },
    #[error("CSA element {name:?} has an item of negative or oversized length {length}")]
    BadItemLength { name: String, length: i64 },
}

/// One named element of a CSA header with its non-empty items, as text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsaElement {
    /// Value multiplicity Siemens declares (0 for "as many as there are").
    pub vm: i32,
    /// DICOM value representation code, e.g. "FD", "IS", "US".
    pub vr: String,
    /// Items with their NUL padding removed; trailing empty items dropped.
    pub items: Vec<String>,
}

impl CsaElement {
    /// Items parsed as numbers; None when any item is not a number or there is no item.
    pub fn numbers(&self) -> Option<Vec<f64>> {
        if self.items.is_empty() {
            return None;
        }
        self.items
            .iter()
            .map(|item| item.trim().parse::<f64>().ok())
            .collect()
    }

    /// The first item as a number.
    pub fn number(&self) -> Option<f64> {
        self.items.first()?.trim().parse::<f64>().ok()
    }
}

/// A parsed CSA header: element name → element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsaHeader {
    pub elements: HashMap<String, CsaElement>,
}

impl CsaHeader {
    /// Parses either layout from the raw bytes of (0029,1010) or (0029,1020).
    pub fn parse(bytes: &[u8]) -> Result<Self, CsaError> {
        let mut cursor = Cursor { bytes, offset: 0 };
        let old_format = !bytes.starts_with(b"SV10");
        if !old_format {
            cursor.take(8)?; // "SV10" and the 04 03 02 01 marker
        }
        let count = cursor.u32()?;
        cursor.take(4)?; // unused, 77
        // Every element needs at least its 84-byte header: refuse absurd counts up front.
        if count as usize > bytes.len() / 84 + 1 {
            return Err(CsaError::TooManyElements { count });
        }
        let mut elements = HashMap::new();
        let mut first_item_count: Option<i64> = None;
        for _ in 0..count {
            let name = c_string(cursor.take(64)?);
            let vm = cursor.i32()?;
            let vr = c_string(cursor.take(4)?);
            let _syngo_dt = cursor.i32()?;
            let item_count = cursor.i32()?;
            cursor.take(4)?; // 77 or 205
            if item_count < 0 || item_count as usize > cursor.remaining() / 16 + 1 {
                return Err(CsaError::TooManyItems {
                    name,
                    count: item_count.max(0) as u32,
                });
            }
            let first = *first_item_count.get_or_insert(item_count as i64);
            let mut items = Vec::with_capacity(item_count as usize);
            for _ in 0..item_count {
                let x0 = cursor.i32()? as i64;
                let x1 = cursor.i32()? as i64;
                cursor.take(8)?;
                // The old layout stores the item length as x0 minus the first element's item
                // count; SV10 stores it plainly in x1.
                let length = if old_format { x0 - first } else { x1 };
                if length < 0 || length as usize > cursor.remaining() {
                    return Err(CsaError::BadItemLength { name, length });
                }
                let length = length as usize;
                items.push(c_string(cursor.take(length)?));
                cursor.skip_padding(length)?;
            }
            while items
                .last()
                .is_some_and(|item: &String| item.trim().is_empty())
            {
                items.pop();
            }
            elements.insert(name, CsaElement { vm, vr, items });
        }
        Ok(CsaHeader { elements })
    }

    /// The element called `name`.
    pub fn get(&self, name: &str) -> Option<&CsaElement> {
        self.elements.get(name)
    }

    /// First item of `name` as a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.get(name)?.number()
    }

    /// Exactly three numbers (vectors such as SliceNormalVector).
    pub fn vector3(&self, name: &str) -> Option<[f64; 3]> {
        let values = self.get(name)?.numbers()?;
        match values.as_slice() {
            [x, y, z] => Some([*x, *y, *z]),
            _ => None,
        }
    }

    /// Every item of `name` as numbers (MosaicRefAcqTimes, B_matrix).
    pub fn numbers(&self, name: &str) -> Option<Vec<f64>> {
        self.get(name)?.numbers()
    }
}

/// Text up to the first NUL, lossily decoded (Siemens writes Latin-1 at worst).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string()
}

/// Bounds-checked little-endian reader.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CsaError> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(CsaError::Truncated {
                offset: self.offset,
                needed: n,
                len: self.bytes.len(),
            });
        };
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn u32(&mut self) -> Result<u32, CsaError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, CsaError> {
        Ok(self.u32()? as i32)
    }

    /// Items are padded to a multiple of four bytes; the last item may lack its padding.
    fn skip_padding(&mut self, length: usize) -> Result<(), CsaError> {
        let pad = (4 - length % 4) % 4;
        self.offset = (self.offset + pad).min(self.bytes.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an SV10 or old-layout header from (name, vr, items).
    fn build(sv10: bool, elements: &[(&str, &str, &[&str])]) -> Vec<u8> {
        let mut out = Vec::new();
        if sv10 {
            out.extend_from_slice(b"SV10\x04\x03\x02\x01");
        }
        out.extend_from_slice(&(elements.len() as u32).to_le_bytes());
        out.extend_from_slice(&77u32.to_le_bytes());
        let first_count = elements.first().map(|e| e.2.len() as i32).unwrap_or(0);
        for (name, vr, items) in elements {
            let mut field = [0u8; 64];
            field[..name.len()].copy_from_slice(name.as_bytes());
            out.extend_from_slice(&field);
            out.extend_from_slice(&(items.len() as i32).to_le_bytes()); // vm
            let mut vr_field = [0u8; 4];
            vr_field[..vr.len()].copy_from_slice(vr.as_bytes());
            out.extend_from_slice(&vr_field);
            out.extend_from_slice(&3i32.to_le_bytes());
            out.extend_from_slice(&(items.len() as i32).to_le_bytes());
            out.extend_from_slice(&77i32.to_le_bytes());
            for item in *items {
                let data = format!("{item}\0");
                let len = data.len() as i32;
                let x0 = if sv10 { len } else { len + first_count };
                for x in [x0, len, 77, len] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                out.extend_from_slice(data.as_bytes());
                out.resize(out.len() + (4 - data.len() % 4) % 4, 0);
            }
        }
        out
    }

    #[test]
    fn parses_both_layouts() {
        let elements: &[(&str, &str, &[&str])] = &[
            ("NumberOfImagesInMosaic", "US", &["35"]),
            ("SliceNormalVector", "FD", &["0.0", "-0.1", "0.99"]),
            ("Empty", "IS", &[]),
        ];
        for sv10 in [true, false] {
            let csa = CsaHeader::parse(&build(sv10, elements)).unwrap();
            assert_eq!(csa.number("NumberOfImagesInMosaic"), Some(35.0));
            assert_eq!(
                csa.vector3("SliceNormalVector"),
                Some([0.0, -0.1, 0.99]),
                "sv10 = {sv10}"
            );
            assert_eq!(csa.get("Empty").unwrap().items.len(), 0);
            assert_eq!(csa.number("Missing"), None);
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = build(
            true,
            &[
                ("B_value", "IS", &["1000"]),
                ("DiffusionGradientDirection", "FD", &["1", "0", "0"]),
            ],
        );
        for cut in 0..bytes.len() - 4 {
            // Cuts inside the padding of the very last item still parse; all others must fail
            // cleanly.
            let _ = CsaHeader::parse(&bytes[..cut]);
        }
        assert!(CsaHeader::parse(&bytes[..20]).is_err());
        assert!(CsaHeader::parse(&bytes[..bytes.len() - 8]).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut bytes = b"SV10\x04\x03\x02\x01".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0xAB; 200]);
        assert!(matches!(
            CsaHeader::parse(&bytes),
            Err(CsaError::TooManyElements { .. })
        ));
        // A plausible count followed by an element with a huge item count.
        let mut bytes = build(true, &[("X", "IS", &["1"])]);
        let items_at = 8 + 8 + 64 + 4 + 4 + 4;
        bytes[items_at..items_at + 4].copy_from_slice(&1_000_000i32.to_le_bytes());
        assert!(matches!(
            CsaHeader::parse(&bytes),
            Err(CsaError::TooManyItems { .. })
        ));
        // Random bytes never panic.
        let mut state = 0x1234_5678u32;
        for _ in 0..200 {
            let noise: Vec<u8> = (0..300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = CsaHeader::parse(&noise);
            let mut framed = b"SV10\x04\x03\x02\x01\x02\x00\x00\x00\x4d\x00\x00\x00".to_vec();
            framed.extend_from_slice(&noise);
            let _ = CsaHeader::parse(&framed);
        }
    }
}
