//! DIMSE command sets (PS3.7 §9.3, §E): parsing requests and encoding responses.
//!
//! Command sets are always implicit VR little endian: a flat list of group-0000 elements, so both
//! requests and responses are read and written directly.

use dicom_core::Tag;
use dicom_dictionary_std::tags;

use super::ScpError;

/// C-STORE-RQ.
pub(crate) const C_STORE_RQ: u16 = 0x0001;
/// C-ECHO-RQ.
pub(crate) const C_ECHO_RQ: u16 = 0x0030;
/// C-CANCEL-RQ, which has no response.
pub(crate) const C_CANCEL_RQ: u16 = 0x0FFF;
/// CommandDataSetType value meaning "no dataset follows".
const NO_DATASET: u16 = 0x0101;

/// DIMSE status codes we answer with.
pub(crate) mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    pub const DATASET_DOES_NOT_MATCH: u16 = 0xA900;
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

/// The fields of a request that we act on.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class: String,
    pub affected_sop_instance: String,
    pub has_dataset: bool,
}

impl Request {
    /// Parses a complete command set.
    ///
    /// Walked directly rather than through `dicom-object`: a command set is a flat list of
    /// group-0000 elements, this runs once per message on the critical path, and the generic
    /// reader ends every dataset by building an end-of-input error (with a backtrace when
    /// `RUST_BACKTRACE` is set), which cost more than the rest of the parse.
    pub fn parse(bytes: &[u8]) -> Result<Self, ScpError> {
        let mut command_field = None;
        let mut req = Request {
            command_field: 0,
            message_id: 0,
            affected_sop_class: String::new(),
            affected_sop_instance: String::new(),
            has_dataset: false,
        };
        let mut data_set_type = NO_DATASET;
        for element in CommandElements(bytes) {
            let (tag, value) = element?;
            match tag {
                tags::COMMAND_FIELD => command_field = Some(us(tag, value)?),
                tags::MESSAGE_ID => req.message_id = us(tag, value)?,
                tags::COMMAND_DATA_SET_TYPE => data_set_type = us(tag, value)?,
                tags::AFFECTED_SOP_CLASS_UID => req.affected_sop_class = uid_text(value),
                tags::AFFECTED_SOP_INSTANCE_UID => req.affected_sop_instance = uid_text(value),
                _ => {}
            }
        }
        req.command_field = command_field
            .ok_or_else(|| ScpError::Protocol("command set without CommandField".into()))?;
        req.has_dataset = data_set_type != NO_DATASET;
        Ok(req)
    }

    /// The response to this request with the given status. `comment` becomes ErrorComment.
    pub fn response(&self, status: u16, comment: Option<&str>) -> Vec<u8> {
        let mut body = Vec::with_capacity(160);
        if !self.affected_sop_class.is_empty() {
            element(
                &mut body,
                tags::AFFECTED_SOP_CLASS_UID,
                &uid_bytes(&self.affected_sop_class),
            );
        }
        element(
            &mut body,
            tags::COMMAND_FIELD,
            &(self.command_field | 0x8000).to_le_bytes(),
        );
        element(
            &mut body,
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            &self.message_id.to_le_bytes(),
        );
        element(
            &mut body,
            tags::COMMAND_DATA_SET_TYPE,
            &NO_DATASET.to_le_bytes(),
        );
        element(&mut body, tags::STATUS, &status.to_le_bytes());
        if let Some(text) = comment.filter(|_| status != status::SUCCESS) {
            element(&mut body, tags::ERROR_COMMENT, &lo_bytes(text));
        }
        if !self.affected_sop_instance.is_empty() {
            element(
                &mut body,
                tags::AFFECTED_SOP_INSTANCE_UID,
                &uid_bytes(&self.affected_sop_instance),
            );
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        element(
            &mut out,
            tags::COMMAND_GROUP_LENGTH,
            &(body.len() as u32).to_le_bytes(),
        );
        out.extend_from_slice(&body);
        out
    }
}

/// The elements of an implicit VR little endian command set: (tag, value) pairs, or an error
/// for a truncated element or an undefined length (not allowed in a command set).
struct CommandElements<'a>(&'a [u8]);

impl<'a> Iterator for CommandElements<'a> {
    type Item = Result<(Tag, &'a [u8]), ScpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let Some((header, rest)) = self.0.split_first_chunk::<8>() else {
            self.0 = &[];
            return Some(Err(ScpError::Protocol(
                "command set ends inside an element header".into(),
            )));
        };
        let tag = Tag(
            u16::from_le_bytes([header[0], header[1]]),
            u16::from_le_bytes([header[2], header[3]]),
        );
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > rest.len() {
            self.0 = &[];
            return Some(Err(ScpError::Protocol(format!(
                "command element {tag} is longer than the command set"
            ))));
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some(Ok((tag, value)))
    }
}

/// A US value (two bytes, little endian).
fn us(tag: Tag, value: &[u8]) -> Result<u16, ScpError> {
    match value {
        [a, b, ..] => Ok(u16::from_le_bytes([*a, *b])),
        _ => Err(ScpError::Protocol(format!(
            "command element {tag} is not a US value"
        ))),
    }
}

/// A UI value without its padding.
fn uid_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .trim_matches(['\0', ' '])
        .to_string()
}

/// One implicit VR LE element.
fn element(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    out.extend_from_slice(&tag.group().to_le_bytes());
    out.extend_from_slice(&tag.element().to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn uid_bytes(uid: &str) -> Vec<u8> {
    let mut v = uid.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// An LO value: at most 64 printable characters, space-padded to even length.
fn lo_bytes(text: &str) -> Vec<u8> {
    let mut v: Vec<u8> = text
        .bytes()
        .map(|b| {
            if b.is_ascii_graphic() || b == b' ' {
                b
            } else {
                b'?'
            }
        })
        .filter(|b| *b != b'\\')
        .take(64)
        .collect();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::InMemDicomObject;
    use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

    fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
        obj.get(tag)?.to_int::<u16>().ok()
    }

    fn uid(obj: &InMemDicomObject, tag: Tag) -> String {
        obj.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    }

    /// A C-STORE-RQ command set encoded by dicom-object, the reference encoder.
    fn store_rq_from_dicom_object() -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::AFFECTED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.4\0"),
            ),
            DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
            DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(513u16)),
            DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
            DataElement::new(
                tags::COMMAND_DATA_SET_TYPE,
                VR::US,
                PrimitiveValue::from(0x0000u16),
            ),
            DataElement::new(
                tags::AFFECTED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.3.4.5\0"),
            ),
            DataElement::new(
                tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
                VR::AE,
                PrimitiveValue::from("MOVER "),
            ),
        ]);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        out
    }

    #[test]
    fn parses_a_command_set_written_by_dicom_object() {
        let req = Request::parse(&store_rq_from_dicom_object()).unwrap();
        assert_eq!(req.command_field, C_STORE_RQ);
        assert_eq!(req.message_id, 513);
        assert_eq!(req.affected_sop_class, "1.2.840.10008.5.1.4.1.1.4");
        assert_eq!(req.affected_sop_instance, "1.2.3.4.5");
        assert!(req.has_dataset);
    }

    #[test]
    fn truncated_or_incomplete_command_sets_are_errors() {
        let bytes = store_rq_from_dicom_object();
        for cut in [3, 8, 20, bytes.len() - 1] {
            assert!(Request::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // No CommandField at all.
        let echo_less = &bytes[..0];
        assert!(Request::parse(echo_less).is_err());
    }

    #[test]
    fn response_round_trips_through_the_parser() {
        let req = Request {
            command_field: C_STORE_RQ,
            message_id: 77,
            affected_sop_class: "1.2.840.10008.5.1.4.1.1.4".into(),
            affected_sop_instance: "1.2.3".into(),
            has_dataset: true,
        };
        let rsp = req.response(status::DATASET_DOES_NOT_MATCH, Some("UID mismatch"));
        let obj =
            InMemDicomObject::read_dataset_with_ts(&rsp[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        assert_eq!(uint(&obj, tags::COMMAND_FIELD), Some(0x8001));
        assert_eq!(uint(&obj, tags::MESSAGE_ID_BEING_RESPONDED_TO), Some(77));
        assert_eq!(uint(&obj, tags::STATUS), Some(0xA900));
        assert_eq!(uid(&obj, tags::AFFECTED_SOP_INSTANCE_UID), "1.2.3");
        let group_len = obj
            .get(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(group_len as usize, rsp.len() - 12);
    }
}
