//! C-ECHO (verification): the answer that proves the association and the daemon are alive.

use super::command::{Request, status};

/// The C-ECHO-RSP for `req`, echoing its message ID as MessageIDBeingRespondedTo.
pub(crate) fn respond(req: &Request) -> Vec<u8> {
    req.response(status::SUCCESS, None)
}
