//! What the application implements and holds: the handler, a request and its
//! context, and the responder that answers it.

use super::state::*;
use microsocket_core::{Args, EncodeError, DROPPED_UNANSWERED, HANDLER_PANICKED, UNENCODABLE_RESPONSE};
use microsocket_host::Error;
use std::sync::Weak;

/// A request, borrowing the connection's receive buffer: copy what must outlive
/// the call to [`Handler::handle`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Who sent it.
    pub context: &'a RequestContext,
    /// The command (never empty: the server answers the empty command itself).
    pub command: &'a [u8],
    /// The command's arguments.
    pub args: Args<'a>,
}

/// The application side of a server.
///
/// `handle` runs on the connection's reader thread; the connection's next frame is
/// read only after it returns, so a slow request can be answered later from
/// another thread by moving the [`Responder`] there. A closure
/// `Fn(Request<'_>, Responder)` is a handler that accepts every subscription.
pub trait Handler: Send + Sync + 'static {
    /// Answers (now or later) one request through `responder`.
    fn handle(&self, request: Request<'_>, responder: Responder);

    microsocket_host::handler_hooks!();
}

impl<F> Handler for F
where
    F: for<'a> Fn(Request<'a>, Responder) + Send + Sync + 'static,
{
    fn handle(&self, request: Request<'_>, responder: Responder) {
        self(request, responder);
    }
}

/// Answers one request, exactly once: [`Responder::respond`] or
/// [`Responder::fail`]. It may be moved to another thread and used later; answers
/// may leave in any order. Dropped unanswered, it fails the request with
/// "request dropped without an answer", so the client never waits forever.
#[derive(Debug)]
#[must_use = "dropping a Responder fails the request"]
pub struct Responder {
    /// Held weakly: a connection whose peer hung up is released (its slot,
    /// buffers and descriptor) while handlers still hold its responders.
    pub(super) conn: Weak<Conn>,
    pub(super) context: RequestContext,
    pub(super) tag: TagBuf,
    pub(super) answered: bool,
    /// The bytes of the request's arguments, charged to the connection's
    /// account while the request is held (given back when it is answered, or
    /// with the account when the connection goes).
    pub(super) charged: usize,
}

/// A request's tag, inline when short (as every microsocket or IPC::MicroSocket
/// client's tags are).
#[derive(Debug, Clone)]
pub(super) enum TagBuf {
    Inline([u8; 16], u8),
    Heap(Vec<u8>),
}

impl TagBuf {
    pub(super) fn new(tag: &[u8]) -> Self {
        if tag.len() <= 16 {
            let mut b = [0; 16];
            b[..tag.len()].copy_from_slice(tag);
            Self::Inline(b, tag.len() as u8)
        } else {
            Self::Heap(tag.to_vec())
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(b, n) => &b[..usize::from(*n)],
            Self::Heap(v) => v,
        }
    }
}

impl Responder {
    /// The context of the request's connection.
    #[must_use]
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    /// Answers with values (`)`).
    ///
    /// # Errors
    /// [`Error::Encode`] if the values cannot make a frame (more than 254, or one
    /// over 4 GiB): the request is failed instead. [`Error::Closed`] if the
    /// connection has gone (the answer is discarded).
    pub fn respond<I>(mut self, values: I) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.answered = true;
        let tag = self.tag.as_bytes();
        let values = values.into_iter();
        if super::direct::worth_it(values.clone()) {
            if let Some(conn) = self.conn.upgrade() {
                if super::direct::respond(&conn, tag, values.clone(), self.charged).is_some() {
                    return Ok(());
                }
            }
        }
        self.answer(|protocol, answers| protocol.respond(tag, values, answers))
    }

    /// Fails the request (`#`) with a message and optional details.
    ///
    /// # Errors
    /// As [`Responder::respond`].
    pub fn fail<I>(mut self, message: impl AsRef<[u8]>, details: I) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.answered = true;
        self.fail_inner(message.as_ref(), details)
    }

    pub(super) fn fail_inner<I>(&self, message: &[u8], details: I) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let tag = self.tag.as_bytes();
        self.answer(|protocol, answers| protocol.fail(tag, message, details, answers))
    }

    /// Encodes this request's answer with `encode` (falling back to a failure if
    /// it cannot be encoded) and writes what the socket takes now.
    pub(super) fn answer(
        &self,
        encode: impl FnOnce(&mut Protocol, &mut Vec<u8>) -> Result<usize, EncodeError>,
    ) -> Result<(), Error> {
        let Some(conn) = self.conn.upgrade() else {
            return Err(Error::Closed);
        };
        conn.account.release(self.charged);
        let mut out = conn.lock();
        if out.dead {
            return Err(Error::Closed);
        }
        let tag = self.tag.as_bytes();
        // A copy of the answer for the monitors, shown once the lock is let go.
        let mut shown = None;
        let (result, added) = out.encode_answer(|protocol, answers| {
            let start = answers.len();
            let result = match encode(protocol, answers) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = protocol.fail(tag, UNENCODABLE_RESPONSE, [b""; 0], answers);
                    Err(Error::Encode(e))
                }
            };
            if conn.shared.monitors.is_active() {
                shown = Some(answers[start..].to_vec());
            }
            result
        });
        if conn.answers_added(&mut out, added) {
            conn.flush_answers(out);
        } else {
            drop(out);
        }
        if let Some(answer) = shown {
            conn.shared
                .show(|monitors, offer| monitors.answer(conn.context.connection, &answer, offer));
        }
        result
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            // Dropped by a handler unwinding from a panic (on the reader thread
            // or any other): the request fails, the connection carries on.
            let message = if std::thread::panicking() {
                if let Some(conn) = self.conn.upgrade() {
                    conn.shared.counters.handler_panicked();
                }
                HANDLER_PANICKED
            } else {
                DROPPED_UNANSWERED
            };
            let _ = self.fail_inner(message, [b""; 0]);
        }
    }
}
