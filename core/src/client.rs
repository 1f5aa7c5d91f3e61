//! The client side of a connection: requests, their responses, subscriptions and
//! publications.

use crate::buffers::{RxBuffer, TxBuffer};
use crate::error::{RequestError, SubscribeError, UnsubscribeError};
use crate::frame::{encode_parts, encode_slices, Args, Decoded, Frame, FrameSink, Sigil};
use crate::requests::{RequestId, RequestTable, Resolved};
use crate::subscriptions::{Matches, SubscriptionId, SubscriptionKind, SubscriptionSet};

/// Something that happened on a client connection.
#[derive(Debug, Clone)]
#[must_use]
pub enum ClientEvent<'a> {
    /// A request succeeded.
    Response {
        /// The request.
        id: RequestId,
        /// Its values, borrowed from the receive buffer.
        values: Args<'a>,
    },
    /// A request failed.
    Failure {
        /// The request.
        id: RequestId,
        /// The server's message.
        message: &'a [u8],
        /// Further details, if any.
        details: Args<'a>,
    },
    /// A request's response was larger than this client accepts and was discarded.
    ResponseTooLarge {
        /// The request, which is no longer pending.
        id: RequestId,
    },
    /// A publication matching at least one local subscription.
    Publication {
        /// The topic.
        topic: &'a [u8],
        /// The published values.
        values: Args<'a>,
        /// The local subscriptions it matches (at least one).
        subscriptions: Matches<'a>,
    },
}

/// What a frame did to the client, borrowing the frame but not the client:
/// a publication's matches, which borrow the subscription table, are built
/// once the table is no longer borrowed mutably.
#[derive(Debug, Clone)]
enum Handled<'a> {
    Event(ClientEvent<'a>),
    Publication {
        topic: &'a [u8],
        values: Args<'a>,
        exact: Option<SubscriptionId>,
    },
}

/// The client's protocol state without buffers: pending requests (at most
/// `INFLIGHT`) and subscriptions (at most `SUBS`, whose strings total at most
/// `SUB_BYTES`).
///
/// For drivers that own their buffers (a growable buffer in an async runtime):
/// decode frames with [`crate::frame::Decoder`], pass them to
/// [`ClientProtocol::handle_frame`], and give commands a [`FrameSink`] to encode
/// into. [`Client`] bundles it with fixed buffers.
#[derive(Debug, Clone)]
pub struct ClientProtocol<const INFLIGHT: usize = 64, const SUBS: usize = 16, const SUB_BYTES: usize = 1024> {
    requests: RequestTable<INFLIGHT>,
    subscriptions: SubscriptionSet<SUBS, SUB_BYTES>,
}

impl<const INFLIGHT: usize, const SUBS: usize, const SUB_BYTES: usize> Default
    for ClientProtocol<INFLIGHT, SUBS, SUB_BYTES>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const INFLIGHT: usize, const SUBS: usize, const SUB_BYTES: usize> ClientProtocol<INFLIGHT, SUBS, SUB_BYTES> {
    /// A client with nothing pending and no subscriptions.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            requests: RequestTable::new(),
            subscriptions: SubscriptionSet::new(),
        }
    }

    // ---- getters ----

    /// Requests pending, including cancelled ones whose tag awaits a late answer.
    #[must_use]
    pub const fn requests_in_flight(&self) -> usize {
        self.requests.in_use()
    }

    /// Requests given up on ([`ClientProtocol::cancel`]) whose late answer has
    /// not come: their tags stay reserved. When they are all that is in
    /// flight and the table is full, the server has stopped answering.
    #[must_use]
    pub const fn requests_abandoned(&self) -> usize {
        self.requests.cancelled()
    }

    /// The most requests that can be in flight.
    #[must_use]
    pub const fn max_in_flight(&self) -> usize {
        self.requests.capacity()
    }

    /// Whether `id` is still waiting for its answer.
    #[must_use]
    pub fn is_pending(&self, id: RequestId) -> bool {
        self.requests.is_pending(id)
    }

    /// The subscription table.
    #[must_use]
    pub const fn subscriptions(&self) -> &SubscriptionSet<SUBS, SUB_BYTES> {
        &self.subscriptions
    }

    // ---- commands ----

    /// Encodes a request into `sink` and records it as pending.
    ///
    /// An empty `command` is the no-op barrier of the protocol (see
    /// [`ClientProtocol::barrier`]).
    ///
    /// # Errors
    /// [`RequestError::InflightFull`] when every slot is taken,
    /// [`RequestError::Encode`] when the frame cannot be encoded or `sink` lacks
    /// room. Nothing changes on error.
    pub fn request<I, S>(&mut self, command: &[u8], args: I, sink: &mut S) -> Result<RequestId, RequestError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
        S: FrameSink + ?Sized,
    {
        let (slot, tag) = self.requests.peek_free()?;
        encode_parts(Sigil::Request, &[tag.as_bytes(), command], args, sink)?;
        Ok(self.requests.take(slot))
    }

    /// Sends the empty command. Its response proves that every frame sent before
    /// it (subscriptions in particular) has taken effect on a microsocket server.
    ///
    /// # Errors
    /// As [`ClientProtocol::request`].
    pub fn barrier<S: FrameSink + ?Sized>(&mut self, sink: &mut S) -> Result<RequestId, RequestError> {
        let (slot, tag) = self.requests.peek_free()?;
        encode_slices(Sigil::Request, &[tag.as_bytes(), b""], sink)?;
        Ok(self.requests.take(slot))
    }

    /// Stops waiting for a request. Its tag stays reserved until the late answer
    /// arrives (then dropped silently) or the connection ends. Returns whether it
    /// was pending.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        self.requests.cancel(id)
    }

    /// Subscribes to an exact topic. A second subscription to the same topic shares
    /// the first's wire subscription (the table counts references) and sends nothing.
    ///
    /// # Errors
    /// A full table or sink; nothing changes on error.
    pub fn subscribe<S: FrameSink + ?Sized>(
        &mut self,
        topic: &[u8],
        sink: &mut S,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.add_subscription(SubscriptionKind::Exact, topic, sink)
    }

    /// Subscribes to every topic matching `pattern` (a microsocket extension; an
    /// IPC::MicroSocket 0.03 server ignores it).
    ///
    /// # Errors
    /// [`SubscribeError::InvalidPattern`], or a full table or sink; nothing changes
    /// on error.
    pub fn subscribe_pattern<S: FrameSink + ?Sized>(
        &mut self,
        pattern: &[u8],
        sink: &mut S,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.add_subscription(SubscriptionKind::Pattern, pattern, sink)
    }

    fn add_subscription<S: FrameSink + ?Sized>(
        &mut self,
        kind: SubscriptionKind,
        bytes: &[u8],
        sink: &mut S,
    ) -> Result<SubscriptionId, SubscribeError> {
        let slot = self.subscriptions.slot_for(kind, bytes)?;
        if slot.is_err() {
            let sigil = match kind {
                SubscriptionKind::Exact => Sigil::Subscribe,
                SubscriptionKind::Pattern => Sigil::PatternSubscribe,
            };
            encode_slices(sigil, &[bytes], sink)?;
        }
        Ok(self.subscriptions.insert_at(kind, bytes, slot).id)
    }

    /// Drops one reference to a subscription, sending `-` when it was the last.
    /// Returns whether `-` was sent.
    ///
    /// `-` removes the server's exact and pattern subscriptions made with the same
    /// string alike, so when the table still holds the other kind with this string
    /// (an exact topic `a.*` and the pattern `a.*`), the other is subscribed again
    /// right after the `-`, in the same write.
    ///
    /// # Errors
    /// [`UnsubscribeError::UnknownSubscription`] for an id not in the table,
    /// [`UnsubscribeError::Encode`] when the sink lacks room (nothing changes).
    pub fn unsubscribe<S: FrameSink + ?Sized>(
        &mut self,
        id: SubscriptionId,
        sink: &mut S,
    ) -> Result<bool, UnsubscribeError> {
        let refs = self
            .subscriptions
            .refs(id)
            .ok_or(UnsubscribeError::UnknownSubscription)?;
        if refs == 1 {
            let (kind, bytes) = self
                .subscriptions
                .get(id)
                .ok_or(UnsubscribeError::UnknownSubscription)?;
            let (other, other_sigil) = match kind {
                SubscriptionKind::Exact => (SubscriptionKind::Pattern, Sigil::PatternSubscribe),
                SubscriptionKind::Pattern => (SubscriptionKind::Exact, Sigil::Subscribe),
            };
            let keep_other = self.subscriptions.iter().any(|(_, k, b)| k == other && b == bytes);
            if keep_other {
                let frame_len = crate::frame::encoded_len([bytes])?;
                let required = 2 * frame_len;
                let available = sink.available();
                if required > available {
                    return Err(crate::error::EncodeError::BufferTooSmall { required, available }.into());
                }
                encode_slices(Sigil::Unsubscribe, &[bytes], sink)?;
                encode_slices(other_sigil, &[bytes], sink)?;
            } else {
                encode_slices(Sigil::Unsubscribe, &[bytes], sink)?;
            }
        }
        Ok(self.subscriptions.release(id) == Some(true))
    }

    /// Encodes every subscription again, as after reconnecting. Returns how many.
    ///
    /// # Errors
    /// [`crate::error::EncodeError`] when the sink fills; the subscriptions before the
    /// failing one were written.
    pub fn resubscribe<S: FrameSink + ?Sized>(&self, sink: &mut S) -> Result<usize, crate::error::EncodeError> {
        let mut n = 0;
        for (_, kind, bytes) in self.subscriptions.iter() {
            let sigil = match kind {
                SubscriptionKind::Exact => Sigil::Subscribe,
                SubscriptionKind::Pattern => Sigil::PatternSubscribe,
            };
            encode_slices(sigil, &[bytes], sink)?;
            n += 1;
        }
        Ok(n)
    }

    /// Encodes every subscription again, each followed by its own barrier (the
    /// empty command), as after reconnecting: the answer to each barrier says
    /// whether the server took that subscription (a microsocket server answers
    /// `#` "subscription refused" when it did not; see the protocol). Calls
    /// `confirm` with each subscription and the barrier that confirms it.
    /// Returns how many subscriptions were sent.
    ///
    /// # Errors
    /// [`RequestError::InflightFull`] when the barriers do not fit the request
    /// table, [`RequestError::Encode`] when the sink fills; the subscriptions
    /// and barriers before the failing one were written and recorded.
    pub fn resubscribe_confirmed<S: FrameSink + ?Sized>(
        &mut self,
        sink: &mut S,
        mut confirm: impl FnMut(SubscriptionId, RequestId),
    ) -> Result<usize, RequestError> {
        let mut n = 0;
        for (id, kind, bytes) in self.subscriptions.iter() {
            let sigil = match kind {
                SubscriptionKind::Exact => Sigil::Subscribe,
                SubscriptionKind::Pattern => Sigil::PatternSubscribe,
            };
            let (slot, tag) = self.requests.peek_free()?;
            encode_slices(sigil, &[bytes], sink)?;
            encode_slices(Sigil::Request, &[tag.as_bytes(), b""], sink)?;
            confirm(id, self.requests.take(slot));
            n += 1;
        }
        Ok(n)
    }

    // ---- inputs ----

    /// Handles one received frame. Returns the event it makes, if any: strays
    /// (unknown tags, publications nobody here subscribed to, unknown sigils,
    /// messages only a server takes) make none.
    pub fn handle_frame<'a>(&'a mut self, frame: Frame<'a>) -> Option<ClientEvent<'a>> {
        let handled = self.handle(frame)?;
        Some(self.event(handled))
    }

    /// Handles a frame the decoder reported as too large ([`Decoded::Oversized`]):
    /// a response or failure whose tag was read fails the pending request it
    /// answers with [`ClientEvent::ResponseTooLarge`]; anything else (an oversized
    /// publication, say) is dropped.
    pub fn handle_oversized_frame(&mut self, sigil: u8, tag: Option<&[u8]>) -> Option<ClientEvent<'static>> {
        match Sigil::from_byte(sigil)? {
            Sigil::Response | Sigil::Failure => self.oversized_answer(tag),
            _ => None,
        }
    }

    /// Fails the request an oversized response or failure answers.
    fn oversized_answer(&mut self, tag: Option<&[u8]>) -> Option<ClientEvent<'static>> {
        match self.requests.resolve(tag?) {
            Resolved::Pending(id) => Some(ClientEvent::ResponseTooLarge { id }),
            Resolved::Cancelled | Resolved::Stray => None,
        }
    }

    /// The connection ended: every pending request is dropped (their ids stop
    /// being pending) and the subscriptions are kept for
    /// [`ClientProtocol::resubscribe`]. Returns how many requests were pending.
    pub fn handle_eof(&mut self) -> usize {
        self.requests.clear()
    }

    // The fixed-buffer [`Client`] hands out events that borrow its receive
    // buffer from inside its decode loop, which the borrow checker accepts only
    // if the frame's effect is recorded without borrowing the client for the
    // event's lifetime: `handle` parses the frame once and records its effect,
    // `event` then borrows the subscription table for a publication's matches.
    fn handle<'a>(&mut self, frame: Frame<'a>) -> Option<Handled<'a>> {
        // What `Message::parse` reads, only as far as a client needs: every
        // message a client takes has a first argument.
        let sigil = frame.sigil()?;
        let (first, rest) = frame.args().split_first()?;
        let (tag, event) = match sigil {
            Sigil::Publication => {
                // A publication (the bulk of what a subscriber receives) changes
                // no state: look its topic up once.
                let mut matches = self.subscriptions.matches(first);
                let exact = matches.exact();
                let matched = matches.next().is_some();
                return matched.then_some(Handled::Publication {
                    topic: first,
                    values: rest,
                    exact,
                });
            }
            Sigil::Response => (first, Ok(rest)),
            Sigil::Failure => match rest.clone().split_first() {
                Some((message, details)) => (first, Err((message, details))),
                None => (first, Err((&b""[..], rest))),
            },
            _ => return None,
        };
        let Resolved::Pending(id) = self.requests.resolve(tag) else {
            return None;
        };
        Some(Handled::Event(match event {
            Ok(values) => ClientEvent::Response { id, values },
            Err((message, details)) => ClientEvent::Failure { id, message, details },
        }))
    }

    fn event<'a>(&'a self, handled: Handled<'a>) -> ClientEvent<'a> {
        match handled {
            Handled::Event(event) => event,
            Handled::Publication { topic, values, exact } => ClientEvent::Publication {
                topic,
                values,
                subscriptions: self.subscriptions.matches_from(exact, topic),
            },
        }
    }
}

/// A client connection with its own fixed buffers: the no-allocation way to run
/// [`ClientProtocol`].
///
/// `RX` bytes receive (and bound the largest frame accepted), `TX` bytes hold
/// frames awaiting the transport; see [`ClientProtocol`] for the others.
///
/// # The contract
/// 1. Read from the transport into [`Client::rx_buf`], then [`Client::commit_rx`].
/// 2. Call [`Client::poll_event`] until it returns `None`.
/// 3. Issue commands ([`Client::request`], [`Client::subscribe`], ...).
/// 4. Write what [`Client::poll_transmit`] holds; report it with
///    [`Client::advance_transmit`].
///
/// See the crate documentation for the whole loop.
#[derive(Debug, Clone)]
pub struct Client<
    const RX: usize = 4096,
    const TX: usize = 4096,
    const INFLIGHT: usize = 64,
    const SUBS: usize = 16,
    const SUB_BYTES: usize = 1024,
> {
    protocol: ClientProtocol<INFLIGHT, SUBS, SUB_BYTES>,
    rx: RxBuffer<RX>,
    tx: TxBuffer<TX>,
}

impl<const RX: usize, const TX: usize, const INFLIGHT: usize, const SUBS: usize, const SUB_BYTES: usize> Default
    for Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const RX: usize, const TX: usize, const INFLIGHT: usize, const SUBS: usize, const SUB_BYTES: usize>
    Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES>
{
    /// A client accepting frames up to `RX` bytes.
    #[must_use]
    pub const fn new() -> Self {
        Self::with_max_frame(RX)
    }

    /// A client accepting frames up to `max_frame` bytes (at most `RX`).
    #[must_use]
    pub const fn with_max_frame(max_frame: usize) -> Self {
        Self {
            protocol: ClientProtocol::new(),
            rx: RxBuffer::new(max_frame),
            tx: TxBuffer::new(),
        }
    }

    /// The protocol state: pending requests and subscriptions.
    #[must_use]
    pub const fn protocol(&self) -> &ClientProtocol<INFLIGHT, SUBS, SUB_BYTES> {
        &self.protocol
    }

    /// Free space to read received bytes into. Empty only while a complete frame
    /// waits in the buffer: call [`Client::poll_event`] first.
    pub fn rx_buf(&mut self) -> &mut [u8] {
        self.rx.free()
    }

    /// Records that `n` bytes were read into [`Client::rx_buf`].
    pub fn commit_rx(&mut self, n: usize) {
        self.rx.commit(n);
    }

    /// The transport reached end of stream: a partial frame is dropped and every
    /// pending request stops being pending. Returns how many were pending.
    pub fn handle_eof(&mut self) -> usize {
        self.rx.eof();
        self.protocol.handle_eof()
    }

    /// The next event from the bytes received, or `None` when more bytes are needed.
    /// Call after every [`Client::commit_rx`] until it returns `None`.
    pub fn poll_event(&mut self) -> Option<ClientEvent<'_>> {
        // Disjoint borrows: the event borrows the receive buffer, and the
        // protocol state only once the frame's effect is recorded.
        let RxBuffer {
            buf,
            start,
            end,
            decoder,
        } = &mut self.rx;
        let buf: &[u8] = buf;
        loop {
            let handled = match decoder.decode_within(buf.get(*start..*end).unwrap_or_default(), RX) {
                Decoded::NeedMore => return None,
                Decoded::Skipped { consumed } => {
                    *start += consumed;
                    None
                }
                Decoded::Oversized { sigil, tag, consumed } => {
                    *start += consumed;
                    self.protocol.handle_oversized_frame(sigil, tag).map(Handled::Event)
                }
                Decoded::Frame { frame, consumed } => {
                    *start += consumed;
                    self.protocol.handle(frame)
                }
            };
            if let Some(handled) = handled {
                return Some(self.protocol.event(handled));
            }
        }
    }

    /// Bytes waiting to be written to the transport, if any.
    #[must_use]
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        self.tx.pending()
    }

    /// Records that the transport took the first `n` bytes of
    /// [`Client::poll_transmit`].
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance(n);
    }

    /// Queues a request. See [`ClientProtocol::request`].
    ///
    /// # Errors
    /// As [`ClientProtocol::request`]; `Encode(BufferTooSmall)` means: write what
    /// [`Client::poll_transmit`] holds, then retry.
    pub fn request<I>(&mut self, command: &[u8], args: I) -> Result<RequestId, RequestError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.protocol.request(command, args, &mut self.tx)
    }

    /// Queues the empty-command barrier. See [`ClientProtocol::barrier`].
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn barrier(&mut self) -> Result<RequestId, RequestError> {
        self.protocol.barrier(&mut self.tx)
    }

    /// See [`ClientProtocol::cancel`].
    pub fn cancel(&mut self, id: RequestId) -> bool {
        self.protocol.cancel(id)
    }

    /// Queues a subscription. See [`ClientProtocol::subscribe`].
    ///
    /// # Errors
    /// As [`ClientProtocol::subscribe`].
    pub fn subscribe(&mut self, topic: &[u8]) -> Result<SubscriptionId, SubscribeError> {
        self.protocol.subscribe(topic, &mut self.tx)
    }

    /// Queues a pattern subscription. See [`ClientProtocol::subscribe_pattern`].
    ///
    /// # Errors
    /// As [`ClientProtocol::subscribe_pattern`].
    pub fn subscribe_pattern(&mut self, pattern: &[u8]) -> Result<SubscriptionId, SubscribeError> {
        self.protocol.subscribe_pattern(pattern, &mut self.tx)
    }

    /// See [`ClientProtocol::unsubscribe`].
    ///
    /// # Errors
    /// As [`ClientProtocol::unsubscribe`].
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<bool, UnsubscribeError> {
        self.protocol.unsubscribe(id, &mut self.tx)
    }

    /// Clears the buffers and queues every subscription again, for a new
    /// connection. Pending requests were dropped by [`Client::handle_eof`].
    ///
    /// # Errors
    /// When the subscriptions do not fit `TX` at once.
    pub fn reconnected(&mut self) -> Result<usize, crate::error::EncodeError> {
        self.rx.eof();
        self.tx.clear();
        self.protocol.handle_eof();
        self.protocol.resubscribe(&mut self.tx)
    }
}
