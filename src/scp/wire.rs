//! PDU framing on the TCP stream (PS3.8 §9.3).
//!
//! P-DATA-TF PDUs carry almost every byte of an association, so their PDVs are split here
//! straight out of a reused buffer; the rare other PDUs are decoded by `dicom_ul::pdu`.

use dicom_ul::pdu::{self, Pdu};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ScpError;

/// PDU type of P-DATA-TF.
const PDATA: u8 = 0x04;
/// Non-data PDUs (association requests with many contexts) are small; anything larger is not
/// DICOM and is refused before we allocate for it.
const MAX_CONTROL_PDU: u32 = 1 << 20;

/// One PDU as read from the wire.
pub(crate) enum Received<'a> {
    /// A P-DATA-TF; iterate its values with [`pdvs`].
    PData(&'a [u8]),
    /// Any other PDU, decoded.
    Other(Pdu),
}

/// One presentation data value of a P-DATA-TF.
pub(crate) struct Pdv<'a> {
    pub context_id: u8,
    pub is_command: bool,
    pub is_last: bool,
    pub data: &'a [u8],
}

/// Reads PDUs, refusing any larger than the maximum we announced.
pub(crate) struct PduReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_pdu: u32,
}

impl<R: AsyncRead + Unpin> PduReader<R> {
    pub fn new(inner: R, max_pdu: u32) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max_pdu,
        }
    }

    /// The next PDU. Not cancel-safe: a cancelled read leaves the stream mid-PDU, so callers
    /// only cancel it when they are about to drop the association.
    pub async fn next(&mut self) -> Result<Received<'_>, ScpError> {
        let mut header = [0u8; 6];
        self.inner.read_exact(&mut header).await?;
        let kind = header[0];
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let limit = if kind == PDATA {
            self.max_pdu
        } else {
            MAX_CONTROL_PDU
        };
        if len > limit {
            return Err(ScpError::Protocol(format!(
                "PDU type {kind:#04x} of {len} bytes exceeds the limit of {limit}"
            )));
        }
        self.buf.clear();
        if kind != PDATA {
            self.buf.extend_from_slice(&header);
        }
        let start = self.buf.len();
        self.buf.resize(start + len as usize, 0);
        self.inner.read_exact(&mut self.buf[start..]).await?;
        if kind == PDATA {
            return Ok(Received::PData(&self.buf));
        }
        match pdu::read_pdu(&self.buf[..], pdu::MAXIMUM_PDU_SIZE, false) {
            Ok(Some(pdu)) => Ok(Received::Other(pdu)),
            Ok(None) => Err(ScpError::Protocol(format!(
                "truncated PDU type {kind:#04x}"
            ))),
            Err(e) => Err(ScpError::Protocol(format!(
                "undecodable PDU type {kind:#04x}: {e}"
            ))),
        }
    }
}

/// The values of a P-DATA-TF body, in order.
pub(crate) fn pdvs(mut body: &[u8]) -> impl Iterator<Item = Result<Pdv<'_>, ScpError>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        if body.len() < 6 {
            body = &[];
            return Some(Err(ScpError::Protocol("truncated PDV header".into())));
        }
        let len = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if len < 2 || len > body.len() - 4 {
            body = &[];
            return Some(Err(ScpError::Protocol(format!(
                "PDV length {len} does not fit its PDU"
            ))));
        }
        let control = body[5];
        let pdv = Pdv {
            context_id: body[4],
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            data: &body[6..4 + len],
        };
        body = &body[4 + len..];
        Some(Ok(pdv))
    })
}

/// Writes a non-data PDU.
pub(crate) async fn write_pdu<W: AsyncWrite + Unpin>(w: &mut W, pdu: &Pdu) -> Result<(), ScpError> {
    let mut buf = Vec::with_capacity(512);
    pdu::write_pdu(&mut buf, pdu).map_err(|e| ScpError::Protocol(format!("encode PDU: {e}")))?;
    w.write_all(&buf).await?;
    // The peer waits for this PDU before it sends anything more, so it must leave now: a TLS
    // stream may hold the last record until flushed. On a plain socket the flush costs nothing.
    w.flush().await?;
    Ok(())
}

/// Writes a command set as P-DATA-TF PDUs, each no larger than the peer's maximum (0: no limit).
pub(crate) async fn write_command<W: AsyncWrite + Unpin>(
    w: &mut W,
    context_id: u8,
    command: &[u8],
    peer_max_pdu: u32,
) -> Result<(), ScpError> {
    // PDU body = PDV header (4-byte length, context ID, control byte) + data.
    let room = match peer_max_pdu {
        0 => command.len().max(1),
        n => (n as usize).saturating_sub(6).max(1),
    };
    let mut out = Vec::with_capacity(command.len() + 12 * (command.len() / room + 1));
    let mut chunks = command.chunks(room).peekable();
    while let Some(chunk) = chunks.next() {
        let control = 0x01 | if chunks.peek().is_none() { 0x02 } else { 0 };
        out.push(PDATA);
        out.push(0);
        out.extend_from_slice(&(chunk.len() as u32 + 6).to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32 + 2).to_be_bytes());
        out.push(context_id);
        out.push(control);
        out.extend_from_slice(chunk);
    }
    w.write_all(&out).await?;
    w.flush().await?; // as in write_pdu: a response must not wait in a TLS buffer
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdvs_split_a_body_with_two_values() {
        let mut body = Vec::new();
        for (ctrl, data) in [(0x03u8, &b"cmd"[..]), (0x00, &b"data1"[..])] {
            body.extend_from_slice(&(data.len() as u32 + 2).to_be_bytes());
            body.push(5);
            body.push(ctrl);
            body.extend_from_slice(data);
        }
        let v: Vec<_> = pdvs(&body).collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].is_command && v[0].is_last && v[0].data == b"cmd");
        assert!(!v[1].is_command && !v[1].is_last && v[1].data == b"data1");
    }

    #[test]
    fn pdv_longer_than_its_pdu_is_an_error() {
        let body = [0, 0, 0, 50, 1, 3, 1, 2];
        assert!(pdvs(&body).next().unwrap().is_err());
    }

    #[tokio::test]
    async fn commands_are_split_to_the_peer_maximum() {
        let mut out = Vec::new();
        let cmd = vec![7u8; 25];
        write_command(&mut out, 3, &cmd, 16).await.unwrap();
        // 25 bytes with 10 bytes of room per PDU: three PDUs, the last one flagged last.
        let mut reader = PduReader::new(&out[..], 1 << 16);
        let mut got = Vec::new();
        let mut lasts = Vec::new();
        for _ in 0..3 {
            match reader.next().await.unwrap() {
                Received::PData(body) => {
                    for p in pdvs(body) {
                        let p = p.unwrap();
                        assert!(p.is_command);
                        assert_eq!(p.context_id, 3);
                        got.extend_from_slice(p.data);
                        lasts.push(p.is_last);
                    }
                }
                Received::Other(_) => panic!("expected P-DATA"),
            }
        }
        assert_eq!(got, cmd);
        assert_eq!(lasts, [false, false, true]);
    }
}
