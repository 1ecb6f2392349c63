//! Typed access to DICOM attributes that tolerates what scanners really write.
//!
//! Private attributes arrive as `UN` in some exports (bytes instead of text or floats), numbers
//! are sometimes padded strings, and any attribute may be missing. Every reader in `convert`
//! goes through these helpers so that a malformed value reads as "absent", never as a panic.

use dicom_core::Tag;
use dicom_core::value::Value;
use dicom_object::InMemDicomObject;

/// The data set type every reader works on.
pub type Object = InMemDicomObject;

/// The attribute's primitive value, when present and not a sequence.
fn primitive(obj: &Object, tag: Tag) -> Option<&dicom_core::PrimitiveValue> {
    match obj.get(tag)?.value() {
        Value::Primitive(p) => Some(p),
        _ => None,
    }
}

/// Text of an attribute, trimmed; None when absent or empty.
pub fn text(obj: &Object, tag: Tag) -> Option<String> {
    let p = primitive(obj, tag)?;
    let s = match p {
        dicom_core::PrimitiveValue::U8(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_str().into_owned(),
    };
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// All values of a multi-valued text attribute (split on `\`), trimmed.
pub fn texts(obj: &Object, tag: Tag) -> Vec<String> {
    text(obj, tag)
        .map(|s| {
            s.split('\\')
                .map(|v| {
                    v.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// All numeric values of an attribute, whether stored as binary numbers, as decimal strings or
/// as undecoded bytes of a private float (`UN` holding FL/FD).
pub fn floats(obj: &Object, tag: Tag) -> Vec<f64> {
    let Some(p) = primitive(obj, tag) else {
        return Vec::new();
    };
    use dicom_core::PrimitiveValue as P;
    match p {
        P::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        P::F64(v) => v.to_vec(),
        P::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        P::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        P::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        P::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        P::I64(v) => v.iter().map(|&x| x as f64).collect(),
        P::U64(v) => v.iter().map(|&x| x as f64).collect(),
        P::U8(bytes) => floats_from_bytes(bytes),
        _ => parse_numbers(&p.to_str()),
    }
}

/// Undecoded bytes: text when it reads as numbers, otherwise little-endian binary floats.
fn floats_from_bytes(bytes: &[u8]) -> Vec<f64> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        let parsed = parse_numbers(s);
        if !parsed.is_empty() {
            return parsed;
        }
    }
    if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
        return bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
    }
    Vec::new()
}

/// Decimal strings separated by `\`; empty when any value fails to parse.
fn parse_numbers(s: &str) -> Vec<f64> {
    let trimmed = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if trimmed.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for part in trimmed.split('\\') {
        match part
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .parse::<f64>()
        {
            Ok(v) => out.push(v),
            Err(_) => return Vec::new(),
        }
    }
    out
}

/// The first numeric value of an attribute.
pub fn float(obj: &Object, tag: Tag) -> Option<f64> {
    floats(obj, tag).first().copied().filter(|v| v.is_finite())
}

/// The first value as an integer.
pub fn int(obj: &Object, tag: Tag) -> Option<i64> {
    float(obj, tag).map(|v| v.round() as i64)
}

/// Exactly `N` numeric values, or None.
pub fn array<const N: usize>(obj: &Object, tag: Tag) -> Option<[f64; N]> {
    let v = floats(obj, tag);
    if v.len() < N || v.iter().take(N).any(|x| !x.is_finite()) {
        return None;
    }
    let mut out = [0.0; N];
    out.copy_from_slice(&v[..N]);
    Some(out)
}

/// One number from each of three single-valued attributes (a vector split over three private
/// tags, as GE and Philips store gradients), or None unless all three are present.
pub fn triple(obj: &Object, tags: [Tag; 3]) -> Option<[f64; 3]> {
    Some([
        float(obj, tags[0])?,
        float(obj, tags[1])?,
        float(obj, tags[2])?,
    ])
}

/// Items of a sequence attribute (empty when absent or not a sequence).
pub fn items(obj: &Object, tag: Tag) -> &[Object] {
    obj.get(tag)
        .and_then(|e| e.value().items())
        .unwrap_or_default()
}

/// The first item of a sequence attribute.
pub fn first_item(obj: &Object, tag: Tag) -> Option<&Object> {
    items(obj, tag).first()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_and_rejects_garbage() {
        assert_eq!(parse_numbers(" 1.5\\-2 \0"), vec![1.5, -2.0]);
        assert!(parse_numbers("1.5\\abc").is_empty());
        assert_eq!(floats_from_bytes(&1.25f32.to_le_bytes()), vec![1.25]);
    }
}
