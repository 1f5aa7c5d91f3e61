//! The server side of one connection: requests in, responses and publications out,
//! and that connection's subscriptions.

use crate::buffers::{RxBuffer, TxBuffer};
use crate::error::{EncodeError, SubscribeError};
use crate::frame::{encode_parts, encode_slices, encoded_len, Args, Decoded, Frame, FrameSink, Sigil};
use crate::message::Message;
use crate::subscriptions::{SubscriptionKind, SubscriptionSet, SubscriptionTable};

// Every failure message a server sends on its own, rather than from the
// application, is one of these constants, whichever driver or adapter serves.

/// The failure message for a request without a command.
pub const NO_COMMAND: &[u8] = b"request has no command";
/// The failure message for a request over the connection's in-flight limit.
pub const TOO_MANY_IN_FLIGHT: &[u8] = b"too many requests in flight";
/// The failure message for a request larger than the server accepts.
pub const FRAME_TOO_LARGE: &[u8] = b"frame too large";
/// The failure message for a request whose answer could not be encoded (larger
/// than the connection can send, or the transmit buffer can hold); its detail,
/// where one fits, says why.
pub const UNENCODABLE_RESPONSE: &[u8] = b"response could not be encoded";
/// The failure message for a request the application dropped without answering.
pub const DROPPED_UNANSWERED: &[u8] = b"request dropped without an answer";
/// The failure message that answers a subscription barrier (the empty command
/// right after a `+` or `*`) when that subscription was refused; its detail
/// says why ([`REFUSED_NOT_PERMITTED`], or the connection's limit).
pub const SUBSCRIPTION_REFUSED: &[u8] = b"subscription refused";
/// The detail of [`SUBSCRIPTION_REFUSED`] when the server's access control
/// refused the subscription.
pub const REFUSED_NOT_PERMITTED: &[u8] = b"not permitted";
/// The detail of [`SUBSCRIPTION_REFUSED`] when the connection already has as
/// many subscriptions as it may.
pub const REFUSED_TOO_MANY: &[u8] = b"too many subscriptions";
/// The failure message for a request a server refuses because it is short of
/// memory (its budget is spent, or the peer's user's share of it); also the
/// detail of [`SUBSCRIPTION_REFUSED`] for a subscription refused for that reason.
pub const SERVER_BUSY: &[u8] = b"server busy";
/// The failure message for a request whose handler panicked (the connection and
/// its other requests carry on).
pub const HANDLER_PANICKED: &[u8] = b"handler panicked";

/// Why a frame made no event for the application (it may have been answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum IgnoreReason {
    /// A sigil microsocket does not know.
    UnknownSigil,
    /// A message only a server sends (`)`, `#`, `!`).
    NotForServer,
    /// A known message without the arguments it needs.
    Malformed,
    /// A frame larger than the connection accepts, skipped.
    TooLarge,
    /// A request over the in-flight limit.
    TooManyInFlight,
}

/// Something a client asked of a server connection.
#[derive(Debug, Clone)]
#[must_use]
pub enum ServerEvent<'a> {
    /// A request to answer with [`ServerProtocol::respond`] or
    /// [`ServerProtocol::fail`], exactly once, with the same tag.
    Request {
        /// Echo it unchanged in the answer.
        tag: &'a [u8],
        /// The command (never empty: the empty command is answered by the machine).
        command: &'a [u8],
        /// The command's arguments.
        args: Args<'a>,
    },
    /// A subscription (`+` or `*`) is now in the connection's table.
    Subscribed {
        /// The topic or pattern.
        topic: &'a [u8],
        /// Exact or pattern.
        kind: SubscriptionKind,
        /// False if the connection already had this subscription (no change).
        new: bool,
    },
    /// A subscription could not be made (the protocol has no reply to a
    /// subscription, so this is for logs and counters).
    SubscribeRefused {
        /// The topic or pattern.
        topic: &'a [u8],
        /// Exact or pattern.
        kind: SubscriptionKind,
        /// Why.
        reason: SubscribeError,
    },
    /// `-`: the connection's subscriptions made with this string are gone.
    Unsubscribed {
        /// The topic or pattern.
        topic: &'a [u8],
        /// How many subscriptions were removed (0, 1 or 2).
        removed: usize,
    },
    /// A frame that the application need not act on.
    Ignored {
        /// The frame's first byte.
        sigil: u8,
        /// Why it was ignored.
        reason: IgnoreReason,
        /// Whether the machine answered it with a `#` frame.
        answered: bool,
    },
}

/// Limits of one server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Requests handed to the application and not yet answered; past it, requests
    /// are failed at once with [`TOO_MANY_IN_FLIGHT`].
    pub max_in_flight: usize,
}

impl ServerLimits {
    /// The default limits (256 requests in flight), for `const` contexts.
    pub const DEFAULT: Self = Self { max_in_flight: 256 };
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A server connection's protocol state without buffers: its subscriptions
/// (in the table `T`: by default a [`SubscriptionSet`] of at most 32, whose
/// strings total at most 2,048 bytes) and its requests in flight.
///
/// It answers by itself what the protocol defines: the empty command, requests
/// without a command, requests over the in-flight limit, and oversized requests.
/// [`ServerConnection`] bundles it with fixed buffers.
#[derive(Debug, Clone)]
pub struct ServerProtocol<T = SubscriptionSet<32, 2048>> {
    subscriptions: T,
    in_flight: usize,
    /// `max_in_flight`, stored as its difference (xor) from the default's, so
    /// that a connection with the default limits is all zero bytes and a
    /// machine in a `static` lands in `.bss`.
    max_in_flight_from_default: usize,
    /// Why the subscription in the frame just handled was refused: the next
    /// frame, if it is a barrier, is answered with [`SUBSCRIPTION_REFUSED`].
    refusal: Option<&'static [u8]>,
}

impl<T: Default> Default for ServerProtocol<T> {
    fn default() -> Self {
        Self::with_table(ServerLimits::default(), T::default())
    }
}

impl<const SUBS: usize, const SUB_BYTES: usize> ServerProtocol<SubscriptionSet<SUBS, SUB_BYTES>> {
    /// A connection with no subscriptions and nothing in flight, its table a
    /// [`SubscriptionSet`] of at most `SUBS` subscriptions whose strings total
    /// at most `SUB_BYTES` bytes.
    #[must_use]
    pub const fn new(limits: ServerLimits) -> Self {
        Self::with_table(limits, SubscriptionSet::new())
    }
}

impl<T> ServerProtocol<T> {
    /// A connection with nothing in flight that keeps its subscriptions in
    /// `table` (empty, as a new connection has none).
    #[must_use]
    pub const fn with_table(limits: ServerLimits, table: T) -> Self {
        Self {
            subscriptions: table,
            in_flight: 0,
            max_in_flight_from_default: limits.max_in_flight ^ ServerLimits::DEFAULT.max_in_flight,
            refusal: None,
        }
    }

    /// The connection's subscriptions.
    #[must_use]
    pub const fn subscriptions(&self) -> &T {
        &self.subscriptions
    }

    /// Requests handed out and not yet answered.
    #[must_use]
    pub const fn requests_in_flight(&self) -> usize {
        self.in_flight
    }

    /// The connection's limits.
    #[must_use]
    pub const fn limits(&self) -> ServerLimits {
        ServerLimits {
            max_in_flight: self.max_in_flight_from_default ^ ServerLimits::DEFAULT.max_in_flight,
        }
    }
}

impl<T: SubscriptionTable> ServerProtocol<T> {
    /// Whether the connection has a subscription matching `topic` (for a
    /// [`SubscriptionSet`]: one binary search among exact topics, then its
    /// patterns).
    #[must_use]
    pub fn is_subscribed(&self, topic: &[u8]) -> bool {
        self.subscriptions.contains_match(topic)
    }

    // ---- inputs ----

    /// Handles one received frame, writing any answer the machine gives by itself
    /// into `sink`.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] when that answer does not fit `sink`; nothing
    /// changed, so hand the same frame again once the sink has drained.
    pub fn handle_frame<'a, S: FrameSink + ?Sized>(
        &mut self,
        frame: Frame<'a>,
        sink: &mut S,
    ) -> Result<Option<ServerEvent<'a>>, EncodeError> {
        // The frame is parsed once; the event borrows what the parse found.
        let sigil = frame.sigil_byte();
        let ignored = |reason, answered| ServerEvent::Ignored {
            sigil,
            reason,
            answered,
        };
        // A refusal is reported only by a barrier right after the refused
        // subscription: whatever this frame is, it is no longer pending.
        let refusal = self.refusal.take();
        // The machine's own answer, if any: its sigil and parts, encoded once
        // below whichever case gives it.
        let mut answer: Option<(Sigil, [&[u8]; 3], usize)> = None;
        let event = match Message::parse(&frame) {
            Message::Request { tag, command: b"", .. } => {
                answer = Some(match refusal {
                    Some(why) => (Sigil::Failure, [tag, SUBSCRIPTION_REFUSED, why], 3),
                    None => (Sigil::Response, [tag, b"", b""], 1),
                });
                None
            }
            Message::Request { tag, .. } if self.in_flight >= self.limits().max_in_flight => {
                answer = Some((Sigil::Failure, [tag, TOO_MANY_IN_FLIGHT, b""], 2));
                Some(ignored(IgnoreReason::TooManyInFlight, true))
            }
            Message::Request { tag, command, args } => {
                self.in_flight += 1;
                Some(ServerEvent::Request { tag, command, args })
            }
            Message::Subscribe { topic } => Some(self.subscribe(SubscriptionKind::Exact, topic)),
            Message::PatternSubscribe { pattern } => Some(self.subscribe(SubscriptionKind::Pattern, pattern)),
            Message::Unsubscribe { topic } => Some(ServerEvent::Unsubscribed {
                topic,
                removed: self.subscriptions.remove_string(topic),
            }),
            Message::Malformed {
                sigil: Sigil::Request,
                tag: Some(tag),
            } => {
                answer = Some((Sigil::Failure, [tag, NO_COMMAND, b""], 2));
                Some(ignored(IgnoreReason::Malformed, true))
            }
            Message::Malformed { .. } => Some(ignored(IgnoreReason::Malformed, false)),
            Message::Response { .. } | Message::Failure { .. } | Message::Publication { .. } => {
                Some(ignored(IgnoreReason::NotForServer, false))
            }
            Message::Unknown { .. } => Some(ignored(IgnoreReason::UnknownSigil, false)),
        };
        if let Some((sigil, parts, n)) = answer {
            if let Err(e) = encode_slices(sigil, &parts[..n], sink) {
                // Nothing changed: the same frame is handed again later.
                self.refusal = refusal;
                return Err(e);
            }
        }
        Ok(event)
    }

    /// Handles a frame the decoder reported as too large: a request whose tag was
    /// read is failed with [`FRAME_TOO_LARGE`].
    ///
    /// # Errors
    /// As [`ServerProtocol::handle_frame`].
    pub fn handle_oversized<S: FrameSink + ?Sized>(
        &mut self,
        sigil: u8,
        tag: Option<&[u8]>,
        sink: &mut S,
    ) -> Result<ServerEvent<'static>, EncodeError> {
        let tag = tag.filter(|_| sigil == Sigil::Request.byte());
        if let Some(tag) = tag {
            fail_frame(tag, FRAME_TOO_LARGE, sink)?;
        }
        let answered = tag.is_some();
        Ok(ServerEvent::Ignored {
            sigil,
            reason: IgnoreReason::TooLarge,
            answered,
        })
    }

    /// The connection ended: its subscriptions and requests in flight are dropped.
    pub fn handle_eof(&mut self) {
        self.subscriptions.clear();
        self.in_flight = 0;
    }

    fn subscribe<'a>(&mut self, kind: SubscriptionKind, topic: &'a [u8]) -> ServerEvent<'a> {
        match self.subscriptions.insert(kind, topic) {
            Ok(inserted) => ServerEvent::Subscribed {
                topic,
                kind,
                new: inserted.new,
            },
            Err(reason) => {
                self.refusal = Some(match reason {
                    SubscribeError::SubscriptionsFull => REFUSED_TOO_MANY,
                    SubscribeError::TopicStorageFull => b"no room left to store the topic",
                    SubscribeError::InvalidPattern(_) => b"invalid pattern",
                    SubscribeError::Encode(_) => b"cannot be encoded",
                });
                ServerEvent::SubscribeRefused { topic, kind, reason }
            }
        }
    }

    /// Refuses the subscription that the last frame made (after
    /// [`ServerEvent::Subscribed`], when access control says no): removes it,
    /// and answers the subscriber's barrier, if the next frame is one, with
    /// [`SUBSCRIPTION_REFUSED`] and `why` (for example
    /// [`REFUSED_NOT_PERMITTED`]). Call it before handling the next frame, so
    /// that nothing is ever published under it. Returns whether it was there.
    pub fn refuse_subscription(&mut self, kind: SubscriptionKind, topic: &[u8], why: &'static [u8]) -> bool {
        self.refusal = Some(why);
        self.subscriptions.remove(kind, topic)
    }

    // ---- commands ----

    /// Answers a request with values.
    ///
    /// # Errors
    /// When the frame cannot be encoded into `sink`; the request stays in flight.
    pub fn respond<I, S>(&mut self, tag: &[u8], values: I, sink: &mut S) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
        S: FrameSink + ?Sized,
    {
        self.answered(encode_parts(Sigil::Response, &[tag], values, sink))
    }

    /// Fails a request with a message and optional details.
    ///
    /// # Errors
    /// When the frame cannot be encoded into `sink`; the request stays in flight.
    pub fn fail<I, S>(&mut self, tag: &[u8], message: &[u8], details: I, sink: &mut S) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
        S: FrameSink + ?Sized,
    {
        self.answered(encode_parts(Sigil::Failure, &[tag, message], details, sink))
    }

    /// A request's answer was encoded (or not): one fewer in flight if it was.
    fn answered(&mut self, encoded: Result<usize, EncodeError>) -> Result<usize, EncodeError> {
        if encoded.is_ok() {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        encoded
    }

    /// Encodes a publication if this connection subscribes to `topic`; returns
    /// whether it did.
    ///
    /// # Errors
    /// When the frame cannot be encoded into `sink`; nothing is written.
    pub fn publish<I, S>(&self, topic: &[u8], values: I, sink: &mut S) -> Result<bool, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
        S: FrameSink + ?Sized,
    {
        if !self.is_subscribed(topic) {
            return Ok(false);
        }
        encode_publication(topic, values, sink)?;
        Ok(true)
    }

    /// Removes a subscription the application refused after the fact (for example
    /// in an access-control hook). Returns whether it was there.
    pub fn remove_subscription(&mut self, kind: SubscriptionKind, topic: &[u8]) -> bool {
        self.subscriptions.remove(kind, topic)
    }
}

/// Encodes a publication frame, `!` topic values, whoever subscribes.
///
/// # Errors
/// When the frame cannot be encoded into `sink`; nothing is written.
pub fn encode_publication<I, S>(topic: &[u8], values: I, sink: &mut S) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
    S: FrameSink + ?Sized,
{
    encode_parts(Sigil::Publication, &[topic], values, sink)
}

fn fail_frame<S: FrameSink + ?Sized>(tag: &[u8], message: &[u8], sink: &mut S) -> Result<usize, EncodeError> {
    encode_slices(Sigil::Failure, &[tag, message], sink)
}

/// A server connection with its own fixed buffers: the no-allocation way to run
/// [`ServerProtocol`]. Follows the same contract as [`crate::Client`].
#[derive(Debug, Clone)]
pub struct ServerConnection<
    const RX: usize = 4096,
    const TX: usize = 4096,
    const SUBS: usize = 32,
    const SUB_BYTES: usize = 2048,
> {
    protocol: ServerProtocol<SubscriptionSet<SUBS, SUB_BYTES>>,
    rx: RxBuffer<RX>,
    tx: TxBuffer<TX>,
}

/// An event and the means to answer it, from [`ServerConnection::poll_event`].
#[derive(Debug)]
#[must_use]
pub struct Polled<'a, const TX: usize, const SUBS: usize, const SUB_BYTES: usize> {
    /// What the client asked.
    pub event: ServerEvent<'a>,
    /// Where to answer it.
    pub outbox: Outbox<'a, TX, SUBS, SUB_BYTES>,
}

/// Answers and publications for a [`ServerConnection`], usable while an event
/// borrows its receive buffer.
#[derive(Debug)]
pub struct Outbox<'a, const TX: usize, const SUBS: usize, const SUB_BYTES: usize> {
    protocol: &'a mut ServerProtocol<SubscriptionSet<SUBS, SUB_BYTES>>,
    tx: &'a mut TxBuffer<TX>,
}

impl<const TX: usize, const SUBS: usize, const SUB_BYTES: usize> Outbox<'_, TX, SUBS, SUB_BYTES> {
    /// See [`ServerProtocol::respond`].
    ///
    /// # Errors
    /// As [`ServerProtocol::respond`].
    pub fn respond<I>(&mut self, tag: &[u8], values: I) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.protocol.respond(tag, values, self.tx)
    }

    /// See [`ServerProtocol::fail`].
    ///
    /// # Errors
    /// As [`ServerProtocol::fail`].
    pub fn fail<I>(&mut self, tag: &[u8], message: &[u8], details: I) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.protocol.fail(tag, message, details, self.tx)
    }

    /// See [`ServerProtocol::publish`].
    ///
    /// # Errors
    /// As [`ServerProtocol::publish`].
    pub fn publish<I>(&mut self, topic: &[u8], values: I) -> Result<bool, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.protocol.publish(topic, values, self.tx)
    }

    /// See [`ServerProtocol::remove_subscription`].
    pub fn remove_subscription(&mut self, kind: SubscriptionKind, topic: &[u8]) -> bool {
        self.protocol.remove_subscription(kind, topic)
    }

    /// Refuses the subscription the event just polled made (see
    /// [`ServerProtocol::refuse_subscription`]).
    pub fn refuse_subscription(&mut self, kind: SubscriptionKind, topic: &[u8], why: &'static [u8]) -> bool {
        self.protocol.refuse_subscription(kind, topic, why)
    }
}

impl<const RX: usize, const TX: usize, const SUBS: usize, const SUB_BYTES: usize> Default
    for ServerConnection<RX, TX, SUBS, SUB_BYTES>
{
    fn default() -> Self {
        Self::new(ServerLimits::default())
    }
}

impl<const RX: usize, const TX: usize, const SUBS: usize, const SUB_BYTES: usize>
    ServerConnection<RX, TX, SUBS, SUB_BYTES>
{
    /// A connection accepting frames up to `RX` bytes.
    #[must_use]
    pub const fn new(limits: ServerLimits) -> Self {
        Self::with_max_frame(limits, RX)
    }

    /// A connection accepting frames up to `max_frame` bytes (at most `RX`).
    #[must_use]
    pub const fn with_max_frame(limits: ServerLimits, max_frame: usize) -> Self {
        Self {
            protocol: ServerProtocol::new(limits),
            rx: RxBuffer::new(max_frame),
            tx: TxBuffer::new(),
        }
    }

    /// The protocol state.
    #[must_use]
    pub const fn protocol(&self) -> &ServerProtocol<SubscriptionSet<SUBS, SUB_BYTES>> {
        &self.protocol
    }

    /// Free space to read received bytes into (see [`crate::Client::rx_buf`]).
    pub fn rx_buf(&mut self) -> &mut [u8] {
        self.rx.free()
    }

    /// Records that `n` bytes were read into [`ServerConnection::rx_buf`].
    pub fn commit_rx(&mut self, n: usize) {
        self.rx.commit(n);
    }

    /// The transport reached end of stream: a partial frame, the subscriptions and
    /// the requests in flight are dropped. Returns whether a partial frame was lost.
    pub fn handle_eof(&mut self) -> bool {
        self.protocol.handle_eof();
        self.rx.eof()
    }

    /// The next event, or `None` when more bytes are needed or when the machine's
    /// own answer to the next frame must wait for [`ServerConnection::poll_transmit`]
    /// to drain.
    pub fn poll_event(&mut self) -> Option<Polled<'_, TX, SUBS, SUB_BYTES>> {
        // Disjoint borrows: the event borrows the receive buffer, the outbox the
        // protocol state and the transmit buffer, so the frame is parsed once.
        let RxBuffer {
            buf,
            start,
            end,
            decoder,
        } = &mut self.rx;
        let buf: &[u8] = buf;
        loop {
            let tx_was_empty = self.tx.buf.is_empty();
            let (handled, consumed) = match decoder.decode_within(&buf[*start..*end], RX) {
                Decoded::NeedMore => return None,
                Decoded::Skipped { consumed } => {
                    *start += consumed;
                    continue;
                }
                Decoded::Oversized { sigil, tag, consumed } => (
                    self.protocol.handle_oversized(sigil, tag, &mut self.tx).map(Some),
                    consumed,
                ),
                Decoded::Frame { frame, consumed } => (self.protocol.handle_frame(frame, &mut self.tx), consumed),
            };
            match handled {
                Ok(handled) => {
                    *start += consumed;
                    if let Some(event) = handled {
                        return Some(Polled {
                            event,
                            outbox: Outbox {
                                protocol: &mut self.protocol,
                                tx: &mut self.tx,
                            },
                        });
                    }
                }
                // Decode the same bytes again once the answer fits (after a
                // whole frame the decoder is at a frame boundary already).
                Err(_) if !tx_was_empty => {
                    decoder.reset();
                    return None;
                }
                // It can never fit: drop the answer rather than stall.
                Err(_) => *start += consumed,
            }
        }
    }

    /// Answers and publications, outside of [`ServerConnection::poll_event`] (for
    /// example a response computed later).
    pub fn outbox(&mut self) -> Outbox<'_, TX, SUBS, SUB_BYTES> {
        Outbox {
            protocol: &mut self.protocol,
            tx: &mut self.tx,
        }
    }

    /// Bytes waiting to be written to the transport, if any.
    #[must_use]
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        self.tx.pending()
    }

    /// Records that the transport took the first `n` bytes of
    /// [`ServerConnection::poll_transmit`].
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance(n);
    }

    /// The size of a publication frame, to check it fits before publishing.
    ///
    /// # Errors
    /// As [`crate::frame::encoded_len`].
    pub fn publication_len<I>(topic: &[u8], values: I) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        Ok(encoded_len(values)? + crate::frame::LENGTH_PREFIX_LEN + topic.len())
    }
}
