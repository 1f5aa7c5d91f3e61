//! Local requests to other buses: a command `@SUBJECT` is sent as a NATS
//! request on `SUBJECT` (`@attic.PING` asks the bus whose prefix is `attic`),
//! and its reply, failure or timeout becomes the local answer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::RequestErrorKind;
use bytes::Bytes;
use microsocket_tokio::{Failure, Handler, Reply, Request, RequestContext, SubscriptionChange, SubscriptionKind};

use crate::failures;
use crate::mapping::{decode, encode_values, subject_tail, Body, Content, MaxPayload};
use crate::stats::Counters;

/// The marker of a command meant for another bus.
pub const REMOTE_MARKER: u8 = b'@';

/// Sends local requests across NATS (made by [`Bridge::remote`](crate::Bridge::remote)).
#[derive(Debug, Clone)]
pub struct Remote {
    nats: async_nats::Client,
    timeout: Duration,
    counters: Arc<Counters>,
    max_payload: MaxPayload,
}

impl Remote {
    pub(crate) fn new(
        nats: async_nats::Client,
        timeout: Duration,
        counters: Arc<Counters>,
        max_payload: MaxPayload,
    ) -> Self {
        Remote {
            nats,
            timeout,
            counters,
            max_payload,
        }
    }

    /// The subject a command names, if it is meant for another bus
    /// (`@attic.PING` → `attic.PING`).
    #[must_use]
    pub fn subject_of(command: &[u8]) -> Option<&[u8]> {
        command.strip_prefix(&[REMOTE_MARKER])
    }

    /// Answers `request` across NATS if its command is `@SUBJECT`; `None`
    /// for any other command.
    pub async fn call(&self, request: &Request) -> Option<Result<Reply, Failure>> {
        let subject = Self::subject_of(&request.command)?;
        Some(self.request(subject, request.args.iter_slices()).await)
    }

    /// Sends a request with `args` on `subject` and waits for its reply, at
    /// most the bridge's request timeout.
    ///
    /// # Errors
    /// The remote bus's failure, or a [`Failure`] of the bridge's own: the
    /// subject is not one NATS can carry, NATS is not connected, nobody
    /// answers on the subject, no reply within the timeout.
    pub async fn request<'a>(
        &self,
        subject: &[u8],
        args: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Result<Reply, Failure> {
        let result = self.send(subject, args).await;
        if result.as_ref().is_err_and(|f| failures::is_bridge_failure(&f.message)) {
            Counters::add(&self.counters.requests_failed, 1);
        }
        result
    }

    async fn send<'a>(&self, subject: &[u8], args: impl Iterator<Item = &'a [u8]> + Clone) -> Result<Reply, Failure> {
        let shown = || Bytes::copy_from_slice(subject);
        let Ok(subject) = subject_tail(subject) else {
            return Err(Failure::new(failures::NOT_A_SUBJECT).with_detail(shown()));
        };
        // NATS's own subjects (JetStream, system, reply inboxes) would be
        // asked with the bridge's credentials on behalf of any local peer.
        if subject.starts_with('$') || subject.starts_with("_INBOX") {
            return Err(Failure::new(failures::NOT_ACROSS).with_detail(shown()));
        }
        if self.nats.connection_state() != State::Connected {
            return Err(Failure::new(failures::NOT_CONNECTED).with_detail(shown()));
        }
        let Body { headers, payload } = encode_values(args).map_err(|e| Failure::new(e.to_string()))?;
        // A request is rare enough to read the limit afresh.
        self.max_payload.refresh(&self.nats);
        if !self.max_payload.fits(payload.len()) {
            return Err(Failure::new(failures::TOO_LARGE).with_detail(shown()));
        }
        let mut request = async_nats::Request::new().payload(payload).timeout(Some(self.timeout));
        if let Some(headers) = headers {
            request = request.headers(headers);
        }
        Counters::add(&self.counters.requests_forwarded, 1);
        let reply = self.nats.send_request(subject.to_owned(), request).await.map_err(|e| {
            let message = match e.kind() {
                RequestErrorKind::TimedOut => failures::TIMED_OUT,
                RequestErrorKind::NoResponders => failures::NO_RESPONDERS,
                RequestErrorKind::Other => failures::NOT_CONNECTED,
            };
            Failure::new(message).with_detail(shown())
        })?;
        match decode(reply.headers.as_ref(), &reply.payload) {
            Ok(Content::Values(values)) => Ok(Reply::values(values)),
            Ok(Content::Failure { message, details }) => Err(Failure { message, details }),
            Err(e) => Err(Failure::new(failures::UNREADABLE).with_detail(e.to_string())),
        }
    }
}

/// A handler that sends `@SUBJECT` commands across NATS and hands every other
/// request, and every subscription hook, to the handler it wraps.
#[derive(Debug)]
pub struct Forwarding<H> {
    remote: Remote,
    inner: H,
}

impl<H> Forwarding<H> {
    /// Wraps `inner`.
    pub fn new(remote: Remote, inner: H) -> Self {
        Forwarding { remote, inner }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

impl<H: Handler> Handler for Forwarding<H> {
    async fn call(&self, request: Request) -> Result<Reply, Failure> {
        match self.remote.call(&request).await {
            Some(answer) => answer,
            None => self.inner.call(request).await,
        }
    }

    fn authorize_subscription(&self, context: &RequestContext, kind: SubscriptionKind, topic: &[u8]) -> bool {
        self.inner.authorize_subscription(context, kind, topic)
    }

    fn subscription_changed(&self, context: &RequestContext, change: SubscriptionChange<'_>) {
        self.inner.subscription_changed(context, change);
    }

    fn connected(&self, context: &RequestContext) {
        self.inner.connected(context);
    }

    fn disconnected(&self, context: &RequestContext) {
        self.inner.disconnected(context);
    }
}
