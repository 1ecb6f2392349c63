//! DIMSE command sets (PS3.7 §9.3, §E): parsing requests and encoding responses.
//!
//! Command sets are always implicit VR little endian. Requests are parsed with `dicom-object`;
//! responses are a handful of fixed elements and are encoded directly.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

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
    pub fn parse(bytes: &[u8]) -> Result<Self, ScpError> {
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| ScpError::Protocol(format!("unreadable command set: {e}")))?;
        let command_field = uint(&obj, tags::COMMAND_FIELD)
            .ok_or_else(|| ScpError::Protocol("command set without CommandField".into()))?;
        Ok(Request {
            command_field,
            message_id: uint(&obj, tags::MESSAGE_ID).unwrap_or(0),
            affected_sop_class: uid(&obj, tags::AFFECTED_SOP_CLASS_UID),
            affected_sop_instance: uid(&obj, tags::AFFECTED_SOP_INSTANCE_UID),
            has_dataset: uint(&obj, tags::COMMAND_DATA_SET_TYPE).unwrap_or(NO_DATASET)
                != NO_DATASET,
        })
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

fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    obj.get(tag)?.to_int::<u16>().ok()
}

fn uid(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
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
