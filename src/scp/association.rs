//! One association, from the A-ASSOCIATE-RQ to release or abort (PS3.8 §9).
//!
//! Messages are assembled from as many PDUs and PDVs as the peer chooses to split them into;
//! each complete message is answered before the next PDU is read, so a C-STORE's response is
//! never sent before the instance is durable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderASCEReason, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ, DEFAULT_MAX_PDU, Pdu,
    PresentationContextResult, UserVariableItem,
};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info, info_span, warn};

use super::ScpError;
use super::command::{self, Request, status};
use super::contexts::{Negotiated, trim_uid};
use super::index::InstanceIndex;
use super::listener::Service;
use super::wire::{self, PduReader, Received};
use super::{echo, store, tls};
use crate::shutdown::Shutdown;
use crate::spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// The only application context of DICOM.
const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// How a connection's bytes reach the upper layer.
pub(crate) enum Transport {
    Plain,
    /// A TLS handshake comes first (see [`super::tls`]).
    Tls(TlsAcceptor),
}

/// Serves one TCP connection. `permit` is `None` when the association limit is reached; the
/// request is then refused as a transient local-limit rejection.
pub(crate) async fn serve<I: InstanceIndex>(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    svc: Arc<Service<I>>,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: Shutdown,
) {
    let tls = matches!(transport, Transport::Tls(_));
    let span = info_span!("association", %peer, tls, calling_ae = tracing::field::Empty);
    async move {
        match connect(stream, peer, transport, &svc, permit.is_some(), shutdown).await {
            Ok(()) => {}
            Err(ScpError::Io(e)) => debug!(error = %e, "connection closed"),
            Err(e) => warn!(error = %e, "association ended abnormally"),
        }
        drop(permit);
    }
    .instrument(span)
    .await
}

/// Completes the transport (TLS handshake within the ARTIM time), then serves the association.
/// The plain path splits the socket itself, which needs no lock between the halves.
async fn connect<I: InstanceIndex>(
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    svc: &Service<I>,
    have_room: bool,
    shutdown: Shutdown,
) -> Result<(), ScpError> {
    stream.set_nodelay(true)?;
    match transport {
        Transport::Plain => {
            let (rd, wr) = stream.into_split();
            let caller = Caller { peer, cert: None };
            run(rd, wr, caller, svc, have_room, shutdown).await
        }
        Transport::Tls(acceptor) => {
            let artim = Duration::from_secs(svc.cfg.artim_timeout_secs);
            let tls = match timeout(artim, acceptor.accept(stream)).await {
                Err(_) => return Err(ScpError::Timeout("TLS handshake (ARTIM)")),
                Ok(Err(e)) => return Err(ScpError::Handshake(tls::handshake_failure(e))),
                Ok(Ok(tls)) => tls,
            };
            let conn = tls.get_ref().1;
            tls::log_established(conn);
            let cert = conn.peer_certificates().and_then(|c| c.first()).cloned();
            let caller = Caller { peer, cert };
            let (rd, wr) = tokio::io::split(tls);
            run(rd, wr, caller, svc, have_room, shutdown).await
        }
    }
}

/// Who is at the other end: its address and, over TLS, its verified client certificate.
struct Caller {
    peer: SocketAddr,
    cert: Option<CertificateDer<'static>>,
}

async fn run<I, R, W>(
    rd: R,
    mut wr: W,
    caller: Caller,
    svc: &Service<I>,
    have_room: bool,
    shutdown: Shutdown,
) -> Result<(), ScpError>
where
    I: InstanceIndex,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = PduReader::new(
        BufReader::with_capacity(256 << 10, rd),
        svc.cfg.max_pdu_length,
    );
    let artim = Duration::from_secs(svc.cfg.artim_timeout_secs);
    let rq = match timeout(artim, reader.next()).await {
        Err(_) => return Err(ScpError::Timeout("A-ASSOCIATE-RQ (ARTIM)")),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Received::Other(Pdu::AssociationRQ(rq)))) => rq,
        Ok(Ok(_)) => {
            abort(&mut wr, AbortRQServiceProviderReason::UnexpectedPdu).await;
            return Err(ScpError::Protocol(
                "first PDU is not an A-ASSOCIATE-RQ".into(),
            ));
        }
    };
    tracing::Span::current().record("calling_ae", rq.calling_ae_title.trim());
    if let Some(source) = refusal(svc, &rq, &caller, have_room) {
        let result = match source {
            AssociationRJSource::ServiceProviderPresentation(_) => AssociationRJResult::Transient,
            _ => AssociationRJResult::Permanent,
        };
        info!(called_ae = rq.called_ae_title.trim(), reason = %source, "association rejected");
        let rj = Pdu::AssociationRJ(AssociationRJ { result, source });
        wire::write_pdu(&mut wr, &rj).await?;
        let _ = wr.shutdown().await;
        return Ok(());
    }
    let negotiated: Vec<Negotiated> = rq
        .presentation_contexts
        .iter()
        .map(|pc| svc.negotiator.negotiate(pc))
        .collect();
    let peer_max_pdu = rq
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(DEFAULT_MAX_PDU);
    let ac = acceptance(&rq, &negotiated, svc.cfg.max_pdu_length);
    wire::write_pdu(&mut wr, &ac).await?;
    info!(
        contexts_accepted = negotiated.iter().filter(|n| n.accepted()).count(),
        contexts_proposed = negotiated.len(),
        "association accepted"
    );
    let mut assoc = Association {
        svc,
        calling_ae: rq.calling_ae_title.trim().to_string(),
        contexts: negotiated
            .into_iter()
            .filter(|n| n.accepted())
            .map(|n| (n.id, n))
            .collect(),
        peer_max_pdu,
        stored: 0,
        refused: 0,
    };
    let result = assoc.messages(&mut reader, &mut wr, shutdown).await;
    info!(
        stored = assoc.stored,
        refused = assoc.refused,
        "association finished"
    );
    result
}

/// The reason to refuse an association request, or `None` to accept it.
fn refusal<I>(
    svc: &Service<I>,
    rq: &AssociationRQ,
    caller: &Caller,
    have_room: bool,
) -> Option<AssociationRJSource> {
    if rq.protocol_version & 1 == 0 {
        return Some(AssociationRJSource::ServiceProviderASCE(
            AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
        ));
    }
    if trim_uid(&rq.application_context_name) != APPLICATION_CONTEXT {
        return Some(AssociationRJSource::ServiceUser(
            AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
        ));
    }
    if let Err(reason) = svc.live.policy().check(
        &rq.called_ae_title,
        &rq.calling_ae_title,
        caller.peer.ip(),
        caller.cert.as_ref(),
    ) {
        return Some(AssociationRJSource::ServiceUser(reason));
    }
    if !have_room {
        return Some(AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ));
    }
    None
}

/// The A-ASSOCIATE-AC: every proposed context answered, our maximum PDU and implementation.
pub(super) fn acceptance(rq: &AssociationRQ, negotiated: &[Negotiated], max_pdu: u32) -> Pdu {
    Pdu::AssociationAC(AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.to_string(),
        presentation_contexts: negotiated
            .iter()
            .map(|n| PresentationContextResult {
                id: n.id,
                reason: n.reason.clone(),
                transfer_syntax: n.transfer_syntax.clone(),
            })
            .collect(),
        user_variables: vec![
            UserVariableItem::MaxLength(max_pdu),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
        ],
    })
}

/// Sends an A-ABORT; the connection is dropped right after, so a failed write changes nothing.
async fn abort<W: AsyncWrite + Unpin>(wr: &mut W, reason: AbortRQServiceProviderReason) {
    let pdu = Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    };
    let _ = wire::write_pdu(wr, &pdu).await;
    let _ = wr.shutdown().await;
}

/// The longest command set accepted. A command set is a few hundred bytes; a peer sending
/// command fragments without end is not speaking DICOM, and is cut off before it costs memory.
const MAX_COMMAND: usize = 64 << 10;

/// An established association.
struct Association<'a, I> {
    svc: &'a Service<I>,
    calling_ae: String,
    /// Accepted presentation contexts by ID; PDVs on any other ID are a protocol error.
    contexts: HashMap<u8, Negotiated>,
    /// The largest PDU the peer accepts from us (0: no limit).
    peer_max_pdu: u32,
    stored: u64,
    refused: u64,
}

impl<I: InstanceIndex> Association<'_, I> {
    /// Reads and answers messages until release, abort, timeout or shutdown.
    async fn messages<R, W>(
        &mut self,
        reader: &mut PduReader<R>,
        wr: &mut W,
        mut shutdown: Shutdown,
    ) -> Result<(), ScpError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let idle = Duration::from_secs(self.svc.cfg.idle_timeout_secs);
        let mut command: Vec<u8> = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        // A command that announced a dataset, with the context it came on.
        let mut awaiting: Option<(u8, Request)> = None;
        // The awaited dataset has passed `max_dataset_bytes`: its fragments are dropped.
        let mut oversized = false;
        let max_dataset = self.svc.cfg.max_dataset_bytes;
        loop {
            let between_messages = command.is_empty() && awaiting.is_none();
            let next = if between_messages {
                // Shutdown is honoured only here, so a message in flight always completes. The
                // reader is polled first: a message whose bytes have already arrived is in
                // flight too, and is served before the association is closed.
                tokio::select! {
                    biased;
                    r = timeout(idle, reader.next()) => r,
                    _ = shutdown.requested() => {
                        info!("aborting idle association for shutdown");
                        abort(wr, AbortRQServiceProviderReason::ReasonNotSpecified).await;
                        return Ok(());
                    }
                }
            } else {
                timeout(idle, reader.next()).await
            };
            let received = match next {
                Ok(r) => r?,
                Err(_) => {
                    abort(wr, AbortRQServiceProviderReason::ReasonNotSpecified).await;
                    return Err(ScpError::Timeout("next PDU (idle timeout)"));
                }
            };
            let body = match received {
                Received::PData(body) => body,
                Received::Other(Pdu::ReleaseRQ) => {
                    wire::write_pdu(wr, &Pdu::ReleaseRP).await?;
                    let _ = wr.shutdown().await;
                    if !between_messages {
                        warn!("released with a message incomplete; it was discarded");
                    }
                    return Ok(());
                }
                Received::Other(Pdu::AbortRQ { .. }) => {
                    if !between_messages {
                        info!("peer aborted mid-message; the partial instance was discarded");
                    }
                    return Ok(());
                }
                Received::Other(other) => {
                    abort(wr, AbortRQServiceProviderReason::UnexpectedPdu).await;
                    return Err(ScpError::Protocol(format!(
                        "unexpected {}",
                        other.short_description()
                    )));
                }
            };
            for pdv in wire::pdvs(body) {
                let pdv = pdv?;
                if !self.contexts.contains_key(&pdv.context_id) {
                    abort(wr, AbortRQServiceProviderReason::InvalidPduParameter).await;
                    return Err(ScpError::Protocol(format!(
                        "PDV on presentation context {} which was not accepted",
                        pdv.context_id
                    )));
                }
                if pdv.is_command {
                    if awaiting.is_some() {
                        abort(wr, AbortRQServiceProviderReason::UnexpectedPduParameter).await;
                        return Err(ScpError::Protocol(
                            "command fragment while a dataset was expected".into(),
                        ));
                    }
                    if command.len() + pdv.data.len() > MAX_COMMAND {
                        abort(wr, AbortRQServiceProviderReason::InvalidPduParameter).await;
                        return Err(ScpError::Protocol(format!(
                            "command set longer than {MAX_COMMAND} bytes"
                        )));
                    }
                    command.extend_from_slice(pdv.data);
                    if !pdv.is_last {
                        continue;
                    }
                    let req = Request::parse(&command);
                    command.clear();
                    let req = match req {
                        Ok(r) => r,
                        Err(e) => {
                            abort(wr, AbortRQServiceProviderReason::InvalidPduParameter).await;
                            return Err(e);
                        }
                    };
                    if req.has_dataset {
                        awaiting = Some((pdv.context_id, req));
                        data.clear();
                        oversized = false;
                    } else {
                        self.answer_without_dataset(wr, pdv.context_id, &req)
                            .await?;
                    }
                } else {
                    match &awaiting {
                        Some((ctx, _)) if *ctx == pdv.context_id => {}
                        _ => {
                            abort(wr, AbortRQServiceProviderReason::UnexpectedPduParameter).await;
                            return Err(ScpError::Protocol(
                                "dataset fragment without its command".into(),
                            ));
                        }
                    }
                    if !oversized && (data.len() + pdv.data.len()) as u64 > max_dataset {
                        // Read the rest and drop it, so the association can go on; the memory
                        // held so far is given back now.
                        oversized = true;
                        data = Vec::new();
                    }
                    if !oversized {
                        data.extend_from_slice(pdv.data);
                    }
                    if pdv.is_last
                        && let Some((ctx, req)) = awaiting.take()
                    {
                        if oversized {
                            self.refuse_oversized(wr, ctx, &req).await?;
                            continue;
                        }
                        data = self
                            .answer_with_dataset(wr, ctx, &req, std::mem::take(&mut data))
                            .await?;
                        data.clear();
                    }
                }
            }
        }
    }

    async fn answer_without_dataset<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        ctx: u8,
        req: &Request,
    ) -> Result<(), ScpError> {
        let rsp = match req.command_field {
            command::C_ECHO_RQ => echo::respond(req),
            command::C_CANCEL_RQ => return Ok(()),
            _ => req.response(
                status::UNRECOGNIZED_OPERATION,
                Some("unsupported operation"),
            ),
        };
        wire::write_command(wr, ctx, &rsp, self.peer_max_pdu).await
    }

    /// Refuses a dataset that outgrew `max_dataset_bytes` (A700: the sender may retry elsewhere
    /// or after the limit is raised; nothing of it was kept).
    async fn refuse_oversized<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        ctx: u8,
        req: &Request,
    ) -> Result<(), ScpError> {
        let limit = self.svc.cfg.max_dataset_bytes;
        warn!(
            sop_instance_uid = %req.affected_sop_instance,
            limit,
            "C-STORE refused: dataset larger than dicom.max_dataset_bytes"
        );
        self.refused += 1;
        let comment = format!("dataset larger than {limit} bytes");
        let rsp = req.response(status::OUT_OF_RESOURCES, Some(&comment));
        wire::write_command(wr, ctx, &rsp, self.peer_max_pdu).await
    }

    /// Answers a message with a dataset; returns the buffer for reuse.
    async fn answer_with_dataset<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        ctx: u8,
        req: &Request,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, ScpError> {
        let negotiated = self.contexts.get(&ctx);
        let is_store = req.command_field == command::C_STORE_RQ
            && negotiated.is_some_and(|n| self.svc.negotiator.is_storage(&n.abstract_syntax));
        let (rsp, data) = match (is_store, negotiated) {
            (true, Some(n)) => {
                let origin = store::Origin {
                    calling_ae: &self.calling_ae,
                    transfer_syntax: &n.transfer_syntax,
                };
                let (code, rsp, data) = store::handle(self.svc, req, &origin, data).await;
                if code == status::SUCCESS {
                    self.stored += 1;
                } else {
                    self.refused += 1;
                }
                (rsp, data)
            }
            _ => (
                req.response(
                    status::UNRECOGNIZED_OPERATION,
                    Some("unsupported operation"),
                ),
                data,
            ),
        };
        wire::write_command(wr, ctx, &rsp, self.peer_max_pdu).await?;
        Ok(data)
    }
}
