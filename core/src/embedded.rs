//! Blocking drivers over [`embedded_io`] 0.6 (feature `embedded-io`): a client and a
//! server connection over any `T: embedded_io::Read + embedded_io::Write`, such as a
//! UART, a USB CDC endpoint or a socket.
//!
//! Both drivers wrap the buffer-owning machines ([`crate::Client`] and
//! [`crate::ServerConnection`]) and own the transport, so they need no allocator: all
//! storage is fixed by const generics.
//!
//! # Client
//!
//! [`BlockingClient::call`] writes a request, reads until its answer arrives and
//! hands the values to a closure, borrowed from the receive buffer (no copy);
//! [`BlockingClient::request`] copies them into a buffer the caller gives instead.
//! A failure from the server is [`Error::Failed`], with the message copied into
//! fixed storage.
//!
//! Publications that arrive while the client waits for an answer are not lost: they
//! go to a fixed queue of `QUEUE` bytes, from which [`BlockingClient::next_publication`]
//! takes them first, or to a handler given to [`BlockingClient::call_with`]. When the
//! queue is full, further publications are counted and the next
//! [`BlockingClient::next_publication`] reports them as [`Error::PublicationsLost`].
//!
//! [`BlockingClient::subscribe`] returns once the server has the subscription: it
//! sends the empty-command barrier after `+` and waits for its answer (see
//! `docs/PROTOCOL.md`), so no publication made afterwards is missed.
//!
//! ```
//! # #[cfg(unix)] {
//! # use std::os::unix::net::UnixStream;
//! # struct Io(UnixStream);
//! # impl embedded_io::ErrorType for Io { type Error = std::io::Error; }
//! # impl embedded_io::Read for Io {
//! #     fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> { std::io::Read::read(&mut self.0, b) }
//! # }
//! # impl embedded_io::Write for Io {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { std::io::Write::write(&mut self.0, b) }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! use microsocket_core::embedded::{BlockingClient, BlockingServer, Error};
//! use microsocket_core::ServerEvent;
//!
//! let (a, b) = UnixStream::pair().unwrap();
//! // A server connection in another thread: ECHO answers with its arguments.
//! let server = std::thread::spawn(move || {
//!     let mut server: BlockingServer<Io> = BlockingServer::new(Io(b));
//!     server.run(&mut |event, outbox| match event {
//!         ServerEvent::Request { tag, command: b"ECHO", args } => outbox.respond(tag, args).map(drop),
//!         ServerEvent::Request { tag, .. } => outbox.fail(tag, b"no such command", [b""; 0]).map(drop),
//!         _ => Ok(()),
//!     })
//! });
//!
//! let mut client: BlockingClient<Io> = BlockingClient::new(Io(a));
//! let n = client.call(b"ECHO", [&b"hi"[..], b"there"], |values| values.count()).unwrap();
//! assert_eq!(n, 2);
//! match client.call(b"NOPE", [b""; 0], |_| ()) {
//!     Err(Error::Failed(failure)) => assert_eq!(failure.message(), b"no such command"),
//!     other => panic!("{other:?}"),
//! }
//! drop(client);
//! server.join().unwrap().unwrap();
//! # }
//! ```
//!
//! # Server
//!
//! [`BlockingServer`] runs one connection. [`BlockingServer::poll`] reads once and
//! hands every complete event to a handler, a closure
//! `FnMut(ServerEvent<'_>, &mut Outbox<'_, ..>) -> Result<(), EncodeError>` that
//! answers requests and may publish through the [`Outbox`]; subscriptions,
//! unsubscriptions, the empty command and malformed frames are handled by the
//! machine and shown to the handler for information. [`BlockingServer::run`] polls
//! until the client closes the connection. Before each event the driver writes out
//! what earlier events queued, so each event has the whole transmit buffer.
//!
//! # Blocking and flow control
//!
//! Each driver either writes or reads at a time. Over a transport with flow
//! control (a socket, a pipe, a UART with hardware handshake), a peer that writes
//! much while this side writes too can leave both blocked on full buffers: a
//! client that sends a request while the server still writes the skipped rest of
//! an oversized answer or a burst of publications, for instance. Keep the
//! transport's buffering larger than what one side sends unprompted, or use the
//! machines directly with non-blocking I/O (see the `hand_loop` example).
//!
//! # Transport errors
//!
//! A read or write that fails with [`embedded_io::ErrorKind::Interrupted`] is
//! retried; any other transport error is returned as [`Error::Io`]. A read of zero
//! bytes is the end of the stream ([`Error::ConnectionClosed`]), and so is a write
//! that takes no bytes or fails with [`embedded_io::ErrorKind::BrokenPipe`].

use core::fmt;

use embedded_io::{Error as _, ErrorKind, Read, Write};

use crate::frame::{encode_to_slice, encoded_len, Args, Decoded, Decoder, SliceSink};
use crate::{
    encode_publication, Client, ClientEvent, EncodeError, Matches, Message, Outbox, Polled, RequestError, RequestId,
    ServerConnection, ServerEvent, ServerLimits, Sigil, SubscribeError, SubscriptionId, UnsubscribeError,
    UNENCODABLE_RESPONSE,
};

/// How many bytes of a server's failure message [`ServerFailure`] keeps.
pub const FAILURE_MESSAGE_CAPACITY: usize = 64;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A request's failure as the server reported it: its message, copied into fixed
/// storage (the first [`FAILURE_MESSAGE_CAPACITY`] bytes).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerFailure {
    message: heapless::Vec<u8, FAILURE_MESSAGE_CAPACITY>,
    truncated: bool,
}

impl ServerFailure {
    fn new(message: &[u8]) -> Self {
        let kept = &message[..message.len().min(FAILURE_MESSAGE_CAPACITY)];
        let mut stored = heapless::Vec::new();
        // `kept` is at most the capacity, so this cannot fail.
        let _ = stored.extend_from_slice(kept);
        Self {
            message: stored,
            truncated: kept.len() < message.len(),
        }
    }

    /// The server's message (its first [`FAILURE_MESSAGE_CAPACITY`] bytes).
    #[must_use]
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Whether the message was longer than [`FAILURE_MESSAGE_CAPACITY`] and was cut.
    #[must_use]
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Debug for ServerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFailure")
            .field("message", &crate::ByteStr(&self.message))
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl fmt::Display for ServerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.message.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// An error of a blocking driver, over the transport's error type `E`.
///
/// [`Error::Io`] and [`Error::ConnectionClosed`] end the connection. The others
/// leave the driver usable: a failed request is answered, a refused command changed
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The transport failed.
    Io(E),
    /// The peer closed the connection (a read returned no bytes, or a write took
    /// none or found the pipe broken). Pending requests were dropped; a client keeps its subscriptions.
    ConnectionClosed,
    /// The server failed the request.
    Failed(ServerFailure),
    /// The response was larger than the receive buffer (`RX`) and was skipped.
    ResponseTooLarge,
    /// The request could not be queued (too many in flight, or larger than `TX`).
    Request(RequestError),
    /// The subscription could not be made.
    Subscribe(SubscribeError),
    /// The unsubscription could not be made.
    Unsubscribe(UnsubscribeError),
    /// A frame could not be encoded: a publication larger than `TX`, or values that
    /// do not fit the buffer given to [`BlockingClient::request`].
    Encode(EncodeError),
    /// The publication queue was full and this many publications were dropped since
    /// the last report. Reported once by [`BlockingClient::next_publication`];
    /// the next call carries on.
    PublicationsLost {
        /// How many were dropped.
        count: u32,
    },
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "transport error: {e:?}"),
            Self::ConnectionClosed => f.write_str("connection closed"),
            Self::Failed(failure) => write!(f, "request failed: {failure}"),
            Self::ResponseTooLarge => f.write_str("response larger than the receive buffer"),
            Self::Request(e) => write!(f, "{e}"),
            Self::Subscribe(e) => write!(f, "{e}"),
            Self::Unsubscribe(e) => write!(f, "{e}"),
            Self::Encode(e) => write!(f, "{e}"),
            Self::PublicationsLost { count } => write!(f, "{count} publications lost: the queue was full"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Request(e) => Some(e),
            Self::Subscribe(e) => Some(e),
            Self::Unsubscribe(e) => Some(e),
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<RequestError> for Error<E> {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
    }
}

impl<E> From<SubscribeError> for Error<E> {
    fn from(e: SubscribeError) -> Self {
        Self::Subscribe(e)
    }
}

impl<E> From<UnsubscribeError> for Error<E> {
    fn from(e: UnsubscribeError) -> Self {
        Self::Unsubscribe(e)
    }
}

impl<E> From<EncodeError> for Error<E> {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

// ---------------------------------------------------------------------------
// Transport helpers
// ---------------------------------------------------------------------------

/// Reads once into `buf`, retrying interrupted reads. `Ok(0)` is the end of stream.
fn read_some<T: Read>(transport: &mut T, buf: &mut [u8]) -> Result<usize, Error<T::Error>> {
    loop {
        match transport.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

/// Writes out everything the machine queued, then flushes the transport if anything
/// was written. Returns early from the enclosing function on error.
macro_rules! flush_machine {
    ($machine:expr, $transport:expr) => {{
        let mut wrote = false;
        while let Some(bytes) = $machine.poll_transmit() {
            match $transport.write(bytes) {
                Ok(0) => return Err(Error::ConnectionClosed),
                Ok(n) => {
                    $machine.advance_transmit(n);
                    wrote = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Err(Error::ConnectionClosed),
                Err(e) => return Err(Error::Io(e)),
            }
        }
        if wrote {
            $transport.flush().map_err(Error::Io)?;
        }
        Ok(())
    }};
}

// ---------------------------------------------------------------------------
// Publication queue
// ---------------------------------------------------------------------------

/// Publications received while waiting for something else, kept as publication
/// frames in `N` bytes, oldest first.
#[derive(Debug, Clone)]
struct PublicationQueue<const N: usize> {
    buf: [u8; N],
    start: usize,
    end: usize,
    queued: usize,
    lost: u32,
}

impl<const N: usize> PublicationQueue<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            start: 0,
            end: 0,
            queued: 0,
            lost: 0,
        }
    }

    /// Appends a publication, or counts it as lost when it does not fit.
    fn push(&mut self, topic: &[u8], values: Args<'_>) -> bool {
        let Ok(needed) = encoded_len(core::iter::once(topic).chain(values.clone())) else {
            self.lost = self.lost.saturating_add(1);
            return false;
        };
        if needed > N - (self.end - self.start) {
            self.lost = self.lost.saturating_add(1);
            return false;
        }
        if self.end + needed > N {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match encode_publication(topic, values, &mut SliceSink::new(&mut self.buf[self.end..])) {
            Ok(n) => {
                self.end += n;
                self.queued += 1;
                true
            }
            Err(_) => {
                self.lost = self.lost.saturating_add(1);
                false
            }
        }
    }

    /// The oldest publication: its topic, values and size in the queue.
    fn front(&self) -> Option<(&[u8], Args<'_>, usize)> {
        if self.queued == 0 {
            return None;
        }
        // The queue holds whole frames this queue encoded, so the first decodes.
        match Decoder::new(N).decode(&self.buf[self.start..self.end]) {
            Decoded::Frame { frame, consumed } => match Message::parse(&frame) {
                Message::Publication { topic, values } => Some((topic, values, consumed)),
                _ => None,
            },
            _ => None,
        }
    }

    fn pop(&mut self, consumed: usize) {
        self.start = (self.start + consumed).min(self.end);
        self.queued = self.queued.saturating_sub(1);
        if self.queued == 0 {
            self.start = 0;
            self.end = 0;
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.queued = 0;
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// A publication delivered by a [`BlockingClient`], borrowing its storage.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Publication<'a> {
    /// The topic.
    pub topic: &'a [u8],
    /// The published values.
    pub values: Args<'a>,
    /// The local subscriptions it matches (at least one).
    pub subscriptions: Matches<'a>,
}

/// A blocking microsocket client over an [`embedded_io`] transport, in fixed
/// storage.
///
/// - `RX`: the receive buffer, and the largest frame accepted;
/// - `TX`: the transmit buffer, and the largest request that can be sent;
/// - `QUEUE`: bytes for publications that arrive while waiting for an answer;
/// - `INFLIGHT`, `SUBS`, `SUB_BYTES`: as [`crate::Client`] (requests pending at
///   once, subscriptions, bytes of their topics).
///
/// Requests are sequential: each call returns when its answer has arrived.
#[derive(Debug)]
pub struct BlockingClient<
    T,
    const RX: usize = 1024,
    const TX: usize = 1024,
    const QUEUE: usize = 1024,
    const INFLIGHT: usize = 4,
    const SUBS: usize = 8,
    const SUB_BYTES: usize = 256,
> {
    transport: T,
    client: Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES>,
    queue: PublicationQueue<QUEUE>,
}

/// What [`BlockingClient::wait`] found for the request it waits for.
enum Answer<R> {
    Values(R),
    Failed(ServerFailure),
    TooLarge,
}

impl<
        T: Read + Write,
        const RX: usize,
        const TX: usize,
        const QUEUE: usize,
        const INFLIGHT: usize,
        const SUBS: usize,
        const SUB_BYTES: usize,
    > BlockingClient<T, RX, TX, QUEUE, INFLIGHT, SUBS, SUB_BYTES>
{
    /// A client over `transport`, with nothing pending and no subscriptions.
    pub const fn new(transport: T) -> Self {
        Self {
            transport,
            client: Client::new(),
            queue: PublicationQueue::new(),
        }
    }

    /// The machine: pending requests and subscriptions.
    pub const fn client(&self) -> &Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES> {
        &self.client
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// How many publications wait in the queue.
    #[must_use]
    pub const fn queued_publications(&self) -> usize {
        self.queue.queued
    }

    /// How many publications were dropped because the queue was full and not yet
    /// reported by [`BlockingClient::next_publication`].
    #[must_use]
    pub const fn lost_publications(&self) -> u32 {
        self.queue.lost
    }

    /// Sends a request and blocks until its answer; `on_values` gets the response's
    /// values, borrowed from the receive buffer. Publications that arrive meanwhile
    /// are queued for [`BlockingClient::next_publication`].
    ///
    /// # Errors
    /// [`Error::Failed`] if the server failed the request, [`Error::ResponseTooLarge`]
    /// if its answer exceeds `RX`, [`Error::Request`] if it cannot be sent,
    /// [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub fn call<I, R>(
        &mut self,
        command: &[u8],
        args: I,
        on_values: impl FnOnce(Args<'_>) -> R,
    ) -> Result<R, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let id = self.send_request(command, args)?;
        self.finish(id, None, on_values)
    }

    /// As [`BlockingClient::call`], but publications that arrive meanwhile go to
    /// `on_publication` (the queue is left alone).
    ///
    /// # Errors
    /// As [`BlockingClient::call`].
    pub fn call_with<I, R>(
        &mut self,
        command: &[u8],
        args: I,
        on_publication: &mut dyn FnMut(Publication<'_>),
        on_values: impl FnOnce(Args<'_>) -> R,
    ) -> Result<R, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let id = self.send_request(command, args)?;
        self.finish(id, Some(on_publication), on_values)
    }

    /// Sends a request, blocks until its answer, and copies the values into `buf`
    /// (with their length prefixes: 4 bytes each, plus 2). Returns them, borrowed
    /// from `buf`.
    ///
    /// # Errors
    /// As [`BlockingClient::call`], and [`Error::Encode`] when the values do not fit
    /// `buf` (the request is answered and gone).
    pub fn request<'b, I>(&mut self, command: &[u8], args: I, buf: &'b mut [u8]) -> Result<Args<'b>, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let n = self.call(command, args, |values| {
            encode_to_slice(Sigil::Response, values, &mut *buf)
        })??;
        let buf: &'b [u8] = buf;
        // `buf[..n]` is one whole frame just encoded, so it decodes.
        Ok(match Decoder::new(n).decode(&buf[..n]) {
            Decoded::Frame { frame, .. } => frame.args(),
            _ => Args::empty(),
        })
    }

    /// Sends the empty-command barrier and blocks until its answer: every frame
    /// sent before it has then taken effect on the server. An answer of either kind
    /// counts (an IPC::MicroSocket 0.03 server may fail the empty command).
    ///
    /// # Errors
    /// As [`BlockingClient::call`], except [`Error::Failed`].
    pub fn barrier(&mut self) -> Result<(), Error<T::Error>> {
        self.flush()?;
        let id = self.client.barrier()?;
        match self.finish(id, None, |_| ()) {
            Ok(()) | Err(Error::Failed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Subscribes to an exact topic and blocks until the server has the
    /// subscription (see [`BlockingClient::barrier`]).
    ///
    /// # Errors
    /// [`Error::Subscribe`] if the table is full (nothing sent), or as
    /// [`BlockingClient::barrier`].
    pub fn subscribe(&mut self, topic: &[u8]) -> Result<SubscriptionId, Error<T::Error>> {
        self.flush()?;
        let id = self.client.subscribe(topic)?;
        self.barrier()?;
        Ok(id)
    }

    /// Subscribes to a topic pattern and blocks until the server has it. An
    /// IPC::MicroSocket 0.03 server ignores pattern subscriptions.
    ///
    /// # Errors
    /// [`Error::Subscribe`] for an invalid pattern or a full table (nothing sent),
    /// or as [`BlockingClient::barrier`].
    pub fn subscribe_pattern(&mut self, pattern: &[u8]) -> Result<SubscriptionId, Error<T::Error>> {
        self.flush()?;
        let id = self.client.subscribe_pattern(pattern)?;
        self.barrier()?;
        Ok(id)
    }

    /// Drops a subscription, sending `-` when it was the last reference to its
    /// string, and blocks until the server has dropped it. Queued publications that
    /// no subscription matches any more are not delivered.
    ///
    /// # Errors
    /// [`Error::Unsubscribe`] for an unknown id, or as [`BlockingClient::barrier`].
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), Error<T::Error>> {
        self.flush()?;
        if self.client.unsubscribe(id)? {
            self.barrier()?;
        }
        Ok(())
    }

    /// Blocks until a publication is available and hands it to `on_publication`:
    /// queued ones first, oldest first, then ones read from the transport.
    ///
    /// # Errors
    /// [`Error::PublicationsLost`] once after the queue overflowed (call again to
    /// carry on), [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub fn next_publication<R>(
        &mut self,
        on_publication: impl FnOnce(Publication<'_>) -> R,
    ) -> Result<R, Error<T::Error>> {
        if self.queue.lost > 0 {
            let count = core::mem::take(&mut self.queue.lost);
            return Err(Error::PublicationsLost { count });
        }
        let on_publication = match self.try_queued(on_publication) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        self.flush()?;
        loop {
            match self.client.poll_event() {
                Some(ClientEvent::Publication {
                    topic,
                    values,
                    subscriptions,
                }) => {
                    return Ok(on_publication(Publication {
                        topic,
                        values,
                        subscriptions,
                    }))
                }
                // Answers to requests nobody waits for any more.
                Some(_) => {}
                None => self.fill()?,
            }
        }
    }

    /// Hands the oldest queued publication to `on_publication` without reading the
    /// transport; `None` when the queue is empty.
    pub fn try_next_publication<R>(&mut self, on_publication: impl FnOnce(Publication<'_>) -> R) -> Option<R> {
        self.try_queued(on_publication).ok()
    }

    /// Drops queued publications that no subscription matches any more; returns
    /// whether one is left to deliver.
    fn queue_ready(&mut self) -> bool {
        loop {
            let Some((topic, _, consumed)) = self.queue.front() else {
                return false;
            };
            if self.client.protocol().subscriptions().contains_match(topic) {
                return true;
            }
            // Unsubscribed since it arrived.
            self.queue.pop(consumed);
        }
    }

    /// Delivers the oldest deliverable queued publication, or gives the handler
    /// back when there is none.
    fn try_queued<R, F: FnOnce(Publication<'_>) -> R>(&mut self, on_publication: F) -> Result<R, F> {
        if !self.queue_ready() {
            return Err(on_publication);
        }
        let Some((topic, values, consumed)) = self.queue.front() else {
            return Err(on_publication);
        };
        let subscriptions = self.client.protocol().subscriptions().matches(topic);
        let r = on_publication(Publication {
            topic,
            values,
            subscriptions,
        });
        self.queue.pop(consumed);
        Ok(r)
    }

    /// Writes out everything queued for the transport.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub fn flush(&mut self) -> Result<(), Error<T::Error>> {
        flush_machine!(self.client, self.transport)
    }

    fn send_request<I>(&mut self, command: &[u8], args: I) -> Result<RequestId, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.flush()?;
        Ok(self.client.request(command, args)?)
    }

    /// Writes the request out and waits for its answer. When the connection closes,
    /// every pending request is dropped; on another transport error the request is
    /// cancelled, so that a late answer is dropped.
    fn finish<R>(
        &mut self,
        id: RequestId,
        on_publication: Option<&mut dyn FnMut(Publication<'_>)>,
        on_values: impl FnOnce(Args<'_>) -> R,
    ) -> Result<R, Error<T::Error>> {
        let answer = match self.flush() {
            Ok(()) => self.wait(id, on_publication, on_values),
            Err(e) => Err(e),
        };
        match answer {
            Ok(Answer::Values(r)) => Ok(r),
            Ok(Answer::Failed(failure)) => Err(Error::Failed(failure)),
            Ok(Answer::TooLarge) => Err(Error::ResponseTooLarge),
            Err(Error::ConnectionClosed) => {
                self.client.handle_eof();
                Err(Error::ConnectionClosed)
            }
            Err(e) => {
                self.client.cancel(id);
                Err(e)
            }
        }
    }

    fn wait<R>(
        &mut self,
        id: RequestId,
        mut on_publication: Option<&mut dyn FnMut(Publication<'_>)>,
        on_values: impl FnOnce(Args<'_>) -> R,
    ) -> Result<Answer<R>, Error<T::Error>> {
        loop {
            match self.client.poll_event() {
                Some(ClientEvent::Response { id: got, values }) if got == id => {
                    return Ok(Answer::Values(on_values(values)));
                }
                Some(ClientEvent::Failure { id: got, message, .. }) if got == id => {
                    return Ok(Answer::Failed(ServerFailure::new(message)));
                }
                Some(ClientEvent::ResponseTooLarge { id: got }) if got == id => return Ok(Answer::TooLarge),
                Some(ClientEvent::Publication {
                    topic,
                    values,
                    subscriptions,
                }) => match on_publication.as_mut() {
                    Some(handler) => handler(Publication {
                        topic,
                        values,
                        subscriptions,
                    }),
                    None => {
                        self.queue.push(topic, values);
                    }
                },
                // Answers to earlier requests abandoned after an error.
                Some(_) => {}
                None => self.fill()?,
            }
        }
    }

    /// Blocks for one read from the transport.
    fn fill(&mut self) -> Result<(), Error<T::Error>> {
        let n = read_some(&mut self.transport, self.client.rx_buf())?;
        if n == 0 {
            self.client.handle_eof();
            return Err(Error::ConnectionClosed);
        }
        self.client.commit_rx(n);
        Ok(())
    }

    /// Replaces the transport after the old one failed: pending requests are
    /// dropped, queued publications kept, and every subscription is sent again and
    /// confirmed with a barrier. Returns the old transport.
    ///
    /// # Errors
    /// [`Error::Encode`] when the subscriptions do not fit `TX` at once, or as
    /// [`BlockingClient::barrier`] on the new transport.
    pub fn reconnect(&mut self, transport: T) -> Result<T, Error<T::Error>> {
        let old = core::mem::replace(&mut self.transport, transport);
        let resubscribed = self.client.reconnected()?;
        if resubscribed > 0 {
            self.barrier()?;
        }
        Ok(old)
    }

    /// Drops every queued publication.
    pub fn clear_queue(&mut self) {
        self.queue.clear();
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A blocking microsocket server connection over an [`embedded_io`] transport, in
/// fixed storage: `RX` and `TX` bytes of buffers (`RX` bounds the largest frame
/// accepted), at most `SUBS` subscriptions whose strings total `SUB_BYTES`.
#[derive(Debug)]
pub struct BlockingServer<
    T,
    const RX: usize = 1024,
    const TX: usize = 1024,
    const SUBS: usize = 8,
    const SUB_BYTES: usize = 256,
> {
    transport: T,
    connection: ServerConnection<RX, TX, SUBS, SUB_BYTES>,
}

impl<T: Read + Write, const RX: usize, const TX: usize, const SUBS: usize, const SUB_BYTES: usize>
    BlockingServer<T, RX, TX, SUBS, SUB_BYTES>
{
    /// A connection over `transport` with the default limits.
    pub const fn new(transport: T) -> Self {
        Self::with_limits(transport, ServerLimits { max_in_flight: 256 })
    }

    /// A connection over `transport` with these limits.
    pub const fn with_limits(transport: T, limits: ServerLimits) -> Self {
        Self {
            transport,
            connection: ServerConnection::new(limits),
        }
    }

    /// The machine: subscriptions and requests in flight.
    pub const fn connection(&self) -> &ServerConnection<RX, TX, SUBS, SUB_BYTES> {
        &self.connection
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// Hands every event already received to `handler`; if there was none, blocks
    /// for one read first. Writes out the answers. Returns how many events were
    /// handled (zero when the read completed no frame).
    ///
    /// The handler answers a [`ServerEvent::Request`] through the [`Outbox`] (now or
    /// later through [`BlockingServer::outbox`]) and may publish. If it returns an
    /// error while handling a request, the driver fails that request with
    /// [`UNENCODABLE_RESPONSE`]; so return an error only when the answer could not be
    /// encoded.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] at the end of the stream (the machine has dropped
    /// the connection's subscriptions), [`Error::Io`] from the transport,
    /// [`Error::Encode`] when the handler fails on an event other than a request.
    pub fn poll<H>(&mut self, handler: &mut H) -> Result<usize, Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        let (mut handled, _) = self.dispatch(handler)?;
        if handled == 0 {
            self.fill()?;
            handled = self.dispatch(handler)?.0;
        }
        self.flush()?;
        Ok(handled)
    }

    /// Polls until at least one request has been handed to `handler`.
    ///
    /// # Errors
    /// As [`BlockingServer::poll`].
    pub fn serve_one<H>(&mut self, handler: &mut H) -> Result<(), Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        loop {
            let (_, requests) = self.dispatch(handler)?;
            if requests > 0 {
                return self.flush();
            }
            self.flush()?;
            self.fill()?;
        }
    }

    /// Polls until the client closes the connection, then returns `Ok(())`.
    ///
    /// # Errors
    /// As [`BlockingServer::poll`], except [`Error::ConnectionClosed`].
    pub fn run<H>(&mut self, handler: &mut H) -> Result<(), Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        loop {
            match self.poll(handler) {
                Ok(_) => {}
                Err(Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes on `topic` if the client subscribes to it, and writes it out.
    /// Returns whether it was sent.
    ///
    /// # Errors
    /// [`Error::Encode`] when the publication does not fit `TX`, or from the
    /// transport.
    pub fn publish<I>(&mut self, topic: &[u8], values: I) -> Result<bool, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.flush()?;
        let sent = self.connection.outbox().publish(topic, values)?;
        self.flush()?;
        Ok(sent)
    }

    /// Answers and publications outside of a handler (for example the response to
    /// a request answered later). Call [`BlockingServer::flush`] afterwards.
    pub fn outbox(&mut self) -> Outbox<'_, TX, SUBS, SUB_BYTES> {
        self.connection.outbox()
    }

    /// Writes out everything queued for the transport.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub fn flush(&mut self) -> Result<(), Error<T::Error>> {
        flush_machine!(self.connection, self.transport)
    }

    /// Hands every complete event to `handler`. Returns (events, requests).
    fn dispatch<H>(&mut self, handler: &mut H) -> Result<(usize, usize), Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        let (mut events, mut requests) = (0, 0);
        loop {
            // An empty transmit buffer for each event: the machine's own answers and
            // the handler's fit whenever they fit `TX` at all.
            self.flush()?;
            let Some(Polled { event, mut outbox }) = self.connection.poll_event() else {
                return Ok((events, requests));
            };
            events += 1;
            let tag = match event {
                ServerEvent::Request { tag, .. } => {
                    requests += 1;
                    Some(tag)
                }
                _ => None,
            };
            if let Err(e) = handler(event, &mut outbox) {
                match tag {
                    // If even this does not fit, the client learns nothing; it
                    // cannot be helped without a larger `TX`.
                    Some(tag) => {
                        let _ = outbox.fail(tag, UNENCODABLE_RESPONSE, [b""; 0]);
                    }
                    None => return Err(Error::Encode(e)),
                }
            }
        }
    }

    /// Blocks for one read from the transport.
    fn fill(&mut self) -> Result<(), Error<T::Error>> {
        let n = read_some(&mut self.transport, self.connection.rx_buf())?;
        if n == 0 {
            self.connection.handle_eof();
            return Err(Error::ConnectionClosed);
        }
        self.connection.commit_rx(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use std::collections::VecDeque;
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::{self, JoinHandle};
    use std::time::Instant;
    use std::vec::Vec;

    const TIMEOUT: Duration = Duration::from_secs(5);

    // ---- an in-memory, serial-like byte pipe ----

    #[derive(Debug, Default)]
    struct Chan {
        state: Mutex<(VecDeque<u8>, bool)>,
        ready: Condvar,
    }

    /// One end of a bounded byte pipe: writes take at most what fits, reads block
    /// (for at most [`TIMEOUT`]) until bytes arrive or the other end is dropped.
    #[derive(Debug)]
    struct PipeEnd {
        rx: Arc<Chan>,
        tx: Arc<Chan>,
        capacity: usize,
    }

    fn pipe(capacity: usize) -> (PipeEnd, PipeEnd) {
        let (a, b) = (Arc::new(Chan::default()), Arc::new(Chan::default()));
        (
            PipeEnd {
                rx: a.clone(),
                tx: b.clone(),
                capacity,
            },
            PipeEnd { rx: b, tx: a, capacity },
        )
    }

    impl Drop for PipeEnd {
        fn drop(&mut self) {
            for chan in [&self.rx, &self.tx] {
                chan.state.lock().unwrap().1 = true;
                chan.ready.notify_all();
            }
        }
    }

    impl embedded_io::ErrorType for PipeEnd {
        type Error = ErrorKind;
    }

    impl Read for PipeEnd {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            let deadline = Instant::now() + TIMEOUT;
            let mut state = self.rx.state.lock().unwrap();
            while state.0.is_empty() && !state.1 {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .ok_or(ErrorKind::TimedOut)?;
                state = self.rx.ready.wait_timeout(state, left).unwrap().0;
            }
            let n = buf.len().min(state.0.len());
            for (slot, byte) in buf.iter_mut().zip(state.0.drain(..n)) {
                *slot = byte;
            }
            self.rx.ready.notify_all();
            Ok(n)
        }
    }

    impl Write for PipeEnd {
        fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            let deadline = Instant::now() + TIMEOUT;
            let mut state = self.tx.state.lock().unwrap();
            while state.0.len() >= self.capacity && !state.1 {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .ok_or(ErrorKind::TimedOut)?;
                state = self.tx.ready.wait_timeout(state, left).unwrap().0;
            }
            if state.1 {
                return Err(ErrorKind::BrokenPipe);
            }
            let n = buf.len().min(self.capacity - state.0.len());
            state.0.extend(&buf[..n]);
            self.tx.ready.notify_all();
            Ok(n)
        }

        fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    // ---- a UNIX socket as an embedded-io transport ----

    #[derive(Debug)]
    struct Socket(UnixStream);

    fn socket_pair() -> (Socket, Socket) {
        let (a, b) = UnixStream::pair().unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.set_write_timeout(Some(TIMEOUT)).unwrap();
        }
        (Socket(a), Socket(b))
    }

    impl embedded_io::ErrorType for Socket {
        type Error = std::io::Error;
    }

    impl Read for Socket {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::io::Read::read(&mut self.0, buf)
        }
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::io::Write::write(&mut self.0, buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            std::io::Write::flush(&mut self.0)
        }
    }

    // ---- the application under test ----

    type Out<'a> = Outbox<'a, 8192, 8, 256>;
    type Server<T> = BlockingServer<T, 1024, 8192>;

    /// ECHO args; FAIL message; PUB topic values (publishes, then answers);
    /// BIG n (answers with n bytes); a subscription to `retained` gets a value at once.
    fn app(event: ServerEvent<'_>, out: &mut Out<'_>) -> Result<(), EncodeError> {
        match event {
            ServerEvent::Request { tag, command, mut args } => match command {
                b"ECHO" => out.respond(tag, args).map(drop),
                b"FAIL" => out.fail(tag, args.next().unwrap_or(b"failed"), [b""; 0]).map(drop),
                b"PUB" => {
                    let topic = args.next().unwrap_or_default();
                    out.publish(topic, args)?;
                    out.respond(tag, [b""; 0]).map(drop)
                }
                b"BIG" => {
                    let n = core::str::from_utf8(args.next().unwrap_or_default())
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let value = std::vec![b'x'; n];
                    out.respond(tag, [&value[..]]).map(drop)
                }
                _ => out.fail(tag, b"no such command", [b""; 0]).map(drop),
            },
            ServerEvent::Subscribed { topic: b"retained", .. } => out.publish(b"retained", [b"last value"]).map(drop),
            _ => Ok(()),
        }
    }

    fn spawn_server<T>(transport: T) -> JoinHandle<Result<(), Error<T::Error>>>
    where
        T: Read + Write + Send + 'static,
        T::Error: Send,
    {
        thread::spawn(move || {
            let mut server: Server<T> = BlockingServer::new(transport);
            server.run(&mut app)
        })
    }

    fn collect(values: Args<'_>) -> Vec<Vec<u8>> {
        values.map(<[u8]>::to_vec).collect()
    }

    /// A publication's topic and values, copied.
    type Received = (Vec<u8>, Vec<Vec<u8>>);

    fn next_pub<T: Read + Write, const Q: usize>(
        client: &mut BlockingClient<T, 1024, 1024, Q>,
    ) -> Result<Received, Error<T::Error>> {
        client.next_publication(|p| (p.topic.to_vec(), collect(p.values)))
    }

    /// The same scenario over any transport.
    fn requests_and_publications<T: Read + Write>(client_end: T) -> T {
        let mut client: BlockingClient<T> = BlockingClient::new(client_end);

        // Zero-copy call and copying request.
        let echoed = client.call(b"ECHO", [&b"a"[..], b"", b"ccc"], collect).unwrap();
        assert_eq!(echoed, [&b"a"[..], b"", b"ccc"]);
        let mut buf = [0u8; 64];
        let values = client.request(b"ECHO", [b"xyz"], &mut buf).unwrap();
        assert!(values.eq([&b"xyz"[..]]));
        assert!(matches!(
            client.request(b"ECHO", [[7u8; 100]], &mut buf),
            Err(Error::Encode(EncodeError::BufferTooSmall { .. }))
        ));

        // Failures carry the server's message.
        match client.call(b"FAIL", [b"out of paper"], |_| ()) {
            Err(Error::Failed(f)) => {
                assert_eq!(f.message(), b"out of paper");
                assert!(!f.is_truncated());
            }
            other => panic!("{other:?}"),
        }
        let long = [b'm'; 100];
        match client.call(b"FAIL", [long], |_| ()) {
            Err(Error::Failed(f)) => {
                assert_eq!(f.message(), &long[..FAILURE_MESSAGE_CAPACITY]);
                assert!(f.is_truncated());
            }
            other => panic!("{other:?}"),
        }

        // A response larger than RX fails that request only.
        assert!(matches!(
            client.call(b"BIG", [b"5000"], |v| v.count()),
            Err(Error::ResponseTooLarge)
        ));
        assert_eq!(
            client
                .call(b"BIG", [b"500"], |mut v| v.next().map(<[u8]>::len))
                .unwrap(),
            Some(500)
        );

        // Subscribing waits for the server; publications during a call are queued.
        let news = client.subscribe(b"news").unwrap();
        client.call(b"PUB", [&b"news"[..], b"one"], |_| ()).unwrap();
        client.call(b"PUB", [&b"other"[..], b"nobody"], |_| ()).unwrap();
        client.call(b"PUB", [&b"news"[..], b"two", b"2"], |_| ()).unwrap();
        assert_eq!(client.queued_publications(), 2);
        assert_eq!(
            next_pub(&mut client).unwrap(),
            (b"news".to_vec(), std::vec![b"one".to_vec()])
        );
        assert_eq!(
            next_pub(&mut client).unwrap(),
            (b"news".to_vec(), std::vec![b"two".to_vec(), b"2".to_vec()])
        );
        assert_eq!(client.try_next_publication(|_| ()), None);

        // ... or handed to a handler.
        let mut seen = Vec::new();
        client
            .call_with(
                b"PUB",
                [&b"news"[..], b"three"],
                &mut |p| seen.push((p.topic.to_vec(), p.subscriptions.count())),
                |_| (),
            )
            .unwrap();
        assert_eq!(seen, [(b"news".to_vec(), 1)]);
        assert_eq!(client.queued_publications(), 0);

        // Patterns, and subscription-time publications.
        let _ = client.subscribe_pattern(b"sensor.>").unwrap();
        client
            .call(b"PUB", [&b"sensor.kitchen.temp"[..], b"21"], |_| ())
            .unwrap();
        let (topic, values) = next_pub(&mut client).unwrap();
        assert_eq!(
            (&topic[..], &values[..]),
            (&b"sensor.kitchen.temp"[..], &[b"21".to_vec()][..])
        );
        assert!(matches!(
            client.subscribe_pattern(b"a.>.b"),
            Err(Error::Subscribe(SubscribeError::InvalidPattern(_)))
        ));
        let _ = client.subscribe(b"retained").unwrap();
        assert_eq!(
            next_pub(&mut client).unwrap(),
            (b"retained".to_vec(), std::vec![b"last value".to_vec()])
        );

        // Unsubscribing stops publications, even ones already queued.
        client.call(b"PUB", [&b"news"[..], b"queued"], |_| ()).unwrap();
        assert_eq!(client.queued_publications(), 1);
        client.unsubscribe(news).unwrap();
        assert_eq!(client.try_next_publication(|_| ()), None);
        client.call(b"PUB", [&b"news"[..], b"late"], |_| ()).unwrap();
        assert_eq!(client.queued_publications(), 0);
        assert!(matches!(
            client.unsubscribe(news),
            Err(Error::Unsubscribe(UnsubscribeError::UnknownSubscription))
        ));
        client.into_inner()
    }

    #[test]
    fn requests_and_publications_over_a_pipe() {
        // Room for the whole oversized response: a blocking client that sends its
        // next request while the server still writes the last one's answer would
        // otherwise wait on a full pipe as the server does (see the module docs).
        let (client_end, server_end) = pipe(8192);
        let server = spawn_server(server_end);
        let client_end = requests_and_publications(client_end);
        drop(client_end);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn requests_and_publications_over_a_unix_socket_pair() {
        let (client_end, server_end) = socket_pair();
        let server = spawn_server(server_end);
        let client_end = requests_and_publications(client_end);
        drop(client_end);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_full_queue_reports_lost_publications() {
        let (client_end, server_end) = socket_pair();
        let server = spawn_server(server_end);
        let mut client: BlockingClient<Socket, 1024, 1024, 64> = BlockingClient::new(client_end);
        let _ = client.subscribe(b"t").unwrap();
        for i in 0..5u8 {
            client.call(b"PUB", [&b"t"[..], &[i; 20]], |_| ()).unwrap();
        }
        // Each publication takes 2 + 5 + 24 = 31 bytes: two fit in 64.
        assert_eq!(client.queued_publications(), 2);
        assert_eq!(client.lost_publications(), 3);
        assert!(matches!(
            next_pub(&mut client),
            Err(Error::PublicationsLost { count: 3 })
        ));
        assert_eq!(next_pub(&mut client).unwrap().1, [std::vec![0u8; 20]]);
        assert_eq!(next_pub(&mut client).unwrap().1, [std::vec![1u8; 20]]);
        assert_eq!(client.lost_publications(), 0);
        drop(client);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn next_publication_blocks_until_the_server_publishes() {
        let (client_end, server_end) = pipe(8);
        let server = thread::spawn(move || {
            let mut server: Server<PipeEnd> = BlockingServer::new(server_end);
            let mut subscribed = false;
            while !subscribed {
                server.poll(&mut |event, _| {
                    subscribed |= matches!(event, ServerEvent::Subscribed { topic: b"tick", .. });
                    Ok(())
                })?;
            }
            assert!(!server.publish(b"tock", [b"nobody listens"])?);
            for i in 0..3u8 {
                assert!(server.publish(b"tick", [[i]])?);
            }
            server.run(&mut app)
        });
        let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
        let _ = client.subscribe(b"tick").unwrap();
        for i in 0..3u8 {
            assert_eq!(
                next_pub(&mut client).unwrap(),
                (b"tick".to_vec(), std::vec![std::vec![i]])
            );
        }
        drop(client);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn closing_the_connection_is_a_typed_error_on_both_sides() {
        let (client_end, server_end) = pipe(64);
        let server = thread::spawn(move || {
            let mut server: Server<PipeEnd> = BlockingServer::new(server_end);
            server.serve_one(&mut app).unwrap();
            // The server hangs up after one request.
        });
        let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
        client.call(b"ECHO", [b"1"], |_| ()).unwrap();
        server.join().unwrap();
        assert_eq!(client.call(b"ECHO", [b"2"], |_| ()), Err(Error::ConnectionClosed));
        assert_eq!(client.client().protocol().requests_in_flight(), 0);

        // A server whose client hangs up mid-frame sees the end of the stream.
        let (mut raw, server_end) = pipe(64);
        let mut server: Server<PipeEnd> = BlockingServer::new(server_end);
        raw.write_all(b"\x28\x02\x00\x00\x00\x01\x07").unwrap();
        drop(raw);
        assert_eq!(server.poll(&mut app), Ok(0));
        assert_eq!(server.poll(&mut app), Err(Error::ConnectionClosed));
    }

    #[test]
    fn bad_and_unknown_frames_do_not_stop_the_server() {
        let (mut raw, server_end) = socket_pair();
        let server = spawn_server(server_end);
        // An unknown sigil, a request without a command, a response sent the wrong
        // way, then a good request.
        raw.write_all(b"?\x01\x00\x00\x00\x01z").unwrap();
        raw.write_all(b"(\x01\x00\x00\x00\x01\x05").unwrap();
        raw.write_all(b")\x01\x00\x00\x00\x01\x05").unwrap();
        raw.write_all(b"(\x02\x00\x00\x00\x01\x06\x00\x00\x00\x04ECHO").unwrap();
        let mut client: BlockingClient<Socket> = BlockingClient::new(raw);
        let mut got = [0u8; 64];
        let mut n = 0;
        let want: &[u8] = b"#\x02\x00\x00\x00\x01\x05\x00\x00\x00\x16request has no command)\x01\x00\x00\x00\x01\x06";
        while n < want.len() {
            let read = client.transport_mut().read(&mut got[n..]).unwrap();
            assert!(read > 0);
            n += read;
        }
        assert_eq!(&got[..n], want);
        assert_eq!(
            client.call(b"ECHO", [b"still here"], collect).unwrap(),
            [b"still here".to_vec()]
        );
        drop(client);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_response_too_large_for_the_server_is_failed() {
        let (client_end, server_end) = pipe(64);
        let server = thread::spawn(move || {
            let mut server: BlockingServer<PipeEnd, 256, 128> = BlockingServer::new(server_end);
            server.run(&mut |event, out| match event {
                ServerEvent::Request { tag, .. } => out.respond(tag, [[0u8; 200]]).map(drop),
                _ => Ok(()),
            })
        });
        let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
        match client.call(b"ANY", [b""; 0], |_| ()) {
            Err(Error::Failed(f)) => assert_eq!(f.message(), UNENCODABLE_RESPONSE),
            other => panic!("{other:?}"),
        }
        drop(client);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn requests_larger_than_tx_are_refused_and_change_nothing() {
        let (client_end, server_end) = pipe(64);
        let server = spawn_server(server_end);
        let mut client: BlockingClient<PipeEnd, 1024, 64> = BlockingClient::new(client_end);
        assert!(matches!(
            client.call(b"ECHO", [[0u8; 100]], |_| ()),
            Err(Error::Request(RequestError::Encode(EncodeError::BufferTooSmall { .. })))
        ));
        assert_eq!(client.client().protocol().requests_in_flight(), 0);
        assert_eq!(client.call(b"ECHO", [b"ok"], collect).unwrap(), [b"ok".to_vec()]);
        drop(client);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn reconnecting_resubscribes() {
        let (client_end, server_end) = pipe(64);
        let first = spawn_server(server_end);
        let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
        let _ = client.subscribe(b"news").unwrap();
        let (client_end, server_end) = pipe(64);
        let second = spawn_server(server_end);
        drop(client.reconnect(client_end).unwrap());
        first.join().unwrap().unwrap();
        client.call(b"PUB", [&b"news"[..], b"again"], |_| ()).unwrap();
        assert_eq!(next_pub(&mut client).unwrap().1, [b"again".to_vec()]);
        drop(client);
        second.join().unwrap().unwrap();
    }

    #[test]
    fn errors_display_and_chain() {
        use core::error::Error as _;
        let failed: Error<ErrorKind> = Error::Failed(ServerFailure::new(b"no \xffway"));
        assert_eq!(std::format!("{failed}"), "request failed: no \\xffway");
        let long = Error::<ErrorKind>::Failed(ServerFailure::new(&[b'a'; 70]));
        assert!(std::format!("{long}").ends_with("a..."));
        assert_eq!(
            std::format!("{}", Error::Io(ErrorKind::TimedOut)),
            "transport error: TimedOut"
        );
        let e: Error<ErrorKind> = RequestError::InflightFull.into();
        assert!(e.source().is_some());
        assert!(Error::<ErrorKind>::ConnectionClosed.source().is_none());
        assert_eq!(
            std::format!("{}", Error::<ErrorKind>::PublicationsLost { count: 2 }),
            "2 publications lost: the queue was full"
        );
    }

    #[test]
    fn transport_errors_cancel_the_request() {
        /// Accepts writes, then fails every read.
        #[derive(Debug)]
        struct Broken;
        impl embedded_io::ErrorType for Broken {
            type Error = ErrorKind;
        }
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
                Err(ErrorKind::ConnectionReset)
            }
        }
        impl Write for Broken {
            fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> Result<(), ErrorKind> {
                Ok(())
            }
        }
        let mut client: BlockingClient<Broken, 64, 64, 0, 3> = BlockingClient::new(Broken);
        for _ in 0..3 {
            assert_eq!(
                client.call(b"X", [b""; 0], |_| ()),
                Err(Error::Io(ErrorKind::ConnectionReset))
            );
        }
        // Each slot stays reserved for a late answer, so all three are taken.
        assert_eq!(
            client.call(b"X", [b""; 0], |_| ()),
            Err(Error::Request(RequestError::InflightFull))
        );
    }
}
