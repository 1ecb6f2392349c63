//! A hand-driven storage SCU on dicom-ul, for the failure tests: it can split messages over
//! many PDUs, send malformed datasets, and abort half-way, which no command-line peer does.

use std::net::SocketAddr;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::net::TcpStream;

pub const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// One real MR instance: its dataset in explicit VR LE and its UIDs.
pub struct Instance {
    pub dataset: Vec<u8>,
    pub sop_class: String,
    pub sop_instance: String,
}

/// Reads a part-10 file and re-encodes its dataset in explicit VR little endian.
pub fn instance_from(path: &std::path::Path) -> Instance {
    let obj = dicom_object::open_file(path).unwrap();
    let mut dataset = Vec::new();
    obj.write_dataset_with_ts(&mut dataset, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .unwrap();
    Instance {
        dataset,
        sop_class: obj
            .element(tags::SOP_CLASS_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string(),
        sop_instance: obj
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string(),
    }
}

/// The instance in the part-10 file `path` with `edit` applied to its dataset, re-encoded in
/// explicit VR little endian; the UIDs are read after the edit.
pub fn instance_edited(
    path: &std::path::Path,
    edit: impl FnOnce(&mut InMemDicomObject),
) -> Instance {
    let mut obj = dicom_object::open_file(path).unwrap().into_inner();
    edit(&mut obj);
    let mut dataset = Vec::new();
    obj.write_dataset_with_ts(&mut dataset, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .unwrap();
    let uid = |tag| {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    Instance {
        dataset,
        sop_class: uid(tags::SOP_CLASS_UID),
        sop_instance: uid(tags::SOP_INSTANCE_UID),
    }
}

/// An established association with one MR context (explicit VR LE).
pub struct Scu {
    pub assoc: AsyncClientAssociation<TcpStream>,
    pub context_id: u8,
}

impl Scu {
    pub async fn connect(addr: SocketAddr, calling: &str, called: &str) -> Self {
        let assoc = ClientAssociationOptions::new()
            .calling_ae_title(calling)
            .called_ae_title(called)
            .with_presentation_context(MR_IMAGE, vec![EXPLICIT_LE])
            .max_pdu_length(16_384)
            .establish_async(addr)
            .await
            .unwrap();
        let pc = assoc
            .presentation_contexts()
            .iter()
            .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
            .expect("MR context accepted")
            .id;
        Scu {
            assoc,
            context_id: pc,
        }
    }

    /// Sends a command set, split into `command_parts` PDVs (each in its own PDU).
    pub async fn send_command(&mut self, command: &[u8], command_parts: usize) {
        let size = command.len().div_ceil(command_parts.max(1)).max(1);
        let chunks: Vec<&[u8]> = command.chunks(size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            self.send_pdv(PDataValueType::Command, chunk, i + 1 == chunks.len())
                .await;
        }
    }

    /// Sends dataset bytes in PDVs of at most `pdv_size` bytes, two PDVs per PDU where they fit;
    /// `last` marks the final fragment.
    pub async fn send_data(&mut self, data: &[u8], pdv_size: usize, last: bool) {
        let chunks: Vec<&[u8]> = data.chunks(pdv_size.max(1)).collect();
        let mut values = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            values.push(PDataValue {
                presentation_context_id: self.context_id,
                value_type: PDataValueType::Data,
                is_last: last && i + 1 == chunks.len(),
                data: chunk.to_vec(),
            });
            if values.len() == 2 || i + 1 == chunks.len() {
                self.assoc
                    .send(&Pdu::PData {
                        data: std::mem::take(&mut values),
                    })
                    .await
                    .unwrap();
            }
        }
    }

    async fn send_pdv(&mut self, kind: PDataValueType, data: &[u8], is_last: bool) {
        self.assoc
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: self.context_id,
                    value_type: kind,
                    is_last,
                    data: data.to_vec(),
                }],
            })
            .await
            .unwrap();
    }

    /// A whole C-STORE: command (in `command_parts` PDVs), dataset, response.
    pub async fn store(
        &mut self,
        inst: &Instance,
        message_id: u16,
        command_parts: usize,
    ) -> Response {
        let cmd = store_command(&inst.sop_class, &inst.sop_instance, message_id);
        self.send_command(&cmd, command_parts).await;
        self.send_data(&inst.dataset, 4_000, true).await;
        self.response().await
    }

    /// Reads one response command set, however it is split.
    pub async fn response(&mut self) -> Response {
        let mut bytes = Vec::new();
        loop {
            match self.assoc.receive().await.unwrap() {
                Pdu::PData { data } => {
                    for v in data {
                        assert_eq!(v.value_type, PDataValueType::Command);
                        bytes.extend_from_slice(&v.data);
                        if v.is_last {
                            return Response::parse(&bytes);
                        }
                    }
                }
                other => panic!("expected a response, got {other:?}"),
            }
        }
    }
}

/// The fields of a response the tests check.
#[derive(Debug)]
pub struct Response {
    pub command_field: u16,
    pub responding_to: u16,
    pub status: u16,
}

impl Response {
    fn parse(bytes: &[u8]) -> Self {
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        let get = |t: Tag| obj.element(t).unwrap().to_int::<u16>().unwrap();
        Response {
            command_field: get(tags::COMMAND_FIELD),
            responding_to: get(tags::MESSAGE_ID_BEING_RESPONDED_TO),
            status: get(tags::STATUS),
        }
    }
}

/// A C-STORE-RQ command set, encoded by dicom-object (independently of the SCP's encoder).
pub fn store_command(sop_class: &str, sop_instance: &str, message_id: u16) -> Vec<u8> {
    let mut obj = InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(sop_class),
        ),
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16)),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0x0000u16),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop_instance),
        ),
    ]);
    let _ = &mut obj;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .unwrap();
    out
}
