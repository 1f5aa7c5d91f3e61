//! Async drivers over [`embedded_io_async`] 0.6 (feature `embedded-io-async`):
//! the client and server-connection operations of the blocking drivers, for
//! Embassy-style firmware and any other executor. No allocator: all storage is
//! fixed by const generics, as for [`BlockingClient`](super::BlockingClient) and
//! [`BlockingServer`](super::BlockingServer), and each step that needs no I/O is
//! the same code as theirs.
//!
//! # Cancellation
//!
//! - Cancel-safe: [`AsyncClient::next_publication`], [`AsyncServer::poll`],
//!   [`AsyncServer::run`] and the `flush` of both, **if the transport's `read` and
//!   `write` are** (as Embassy's UART and TCP drivers are): bytes are taken into
//!   the machine only when a read completes, and the transmit buffer is advanced
//!   only by what a write reports written. A dropped call loses nothing; the
//!   next one carries on.
//! - Not cancel-safe: [`AsyncClient::call`], [`AsyncClient::request`] and the
//!   subscription calls once the request is queued. Dropped while waiting for
//!   the answer, the request keeps its slot (one of `INFLIGHT`) until its
//!   answer comes, and the answer is then dropped; dropped in the middle of
//!   writing, the rest of the frame is written by the next call (it stays in
//!   the transmit buffer). A dropped subscription call may or may not have
//!   reached the server. If answers stop coming (calls given up on a timeout
//!   hold every slot and new ones fail with `Request(InflightFull)`), start
//!   over on a new transport with [`AsyncClient::reconnect`].
//!
//! ```
//! # // Not under Miri, which has no send or recv on UNIX sockets.
//! # #[cfg(all(unix, not(miri)))] {
//! # use std::os::unix::net::UnixStream;
//! # struct Io(UnixStream);
//! # impl embedded_io_async::ErrorType for Io { type Error = std::io::Error; }
//! # impl embedded_io_async::Read for Io {
//! #     async fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> { std::io::Read::read(&mut self.0, b) }
//! # }
//! # impl embedded_io_async::Write for Io {
//! #     async fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { std::io::Write::write(&mut self.0, b) }
//! # }
//! use embassy_futures::block_on;
//! use microsocket_core::embedded::{AsyncClient, AsyncServer};
//! use microsocket_core::ServerEvent;
//!
//! let (a, b) = UnixStream::pair().unwrap();
//! let server = std::thread::spawn(move || {
//!     let mut server: AsyncServer<Io> = AsyncServer::new(Io(b));
//!     block_on(server.run(&mut |event, outbox| match event {
//!         ServerEvent::Request { tag, command: b"ECHO", args } => outbox.respond(tag, args).map(drop),
//!         ServerEvent::Request { tag, .. } => outbox.fail(tag, b"no such command", [b""; 0]).map(drop),
//!         _ => Ok(()),
//!     }))
//! });
//! let mut client: AsyncClient<Io> = AsyncClient::new(Io(a));
//! let n = block_on(client.call(b"ECHO", [&b"hi"[..], b"there"], |values| values.count())).unwrap();
//! assert_eq!(n, 2);
//! drop(client);
//! server.join().unwrap().unwrap();
//! # }
//! ```

use super::client_state::{copied_values, Answer, ClientState, Publication};
use super::error::Error;
use super::server::{dispatch_one, received};

use embedded_io_async::{Error as _, ErrorKind, Read, Write};

use crate::frame::{encode_to_slice, Args};
use crate::{
    Client, EncodeError, Outbox, RequestId, ServerConnection, ServerEvent, ServerLimits, Sigil, SubscriptionId,
};

/// Writes out everything the machine queued, then flushes the transport if
/// anything was written.
async fn flush<T: Write, M: Transmit>(machine: &mut M, transport: &mut T) -> Result<(), Error<T::Error>> {
    let mut wrote = false;
    while let Some(bytes) = machine.pending() {
        match transport.write(bytes).await {
            Ok(0) => return Err(Error::ConnectionClosed),
            Ok(n) => {
                machine.advance(n);
                wrote = true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Err(Error::ConnectionClosed),
            Err(e) => return Err(Error::Io(e)),
        }
    }
    if wrote {
        transport.flush().await.map_err(Error::Io)?;
    }
    Ok(())
}

/// Reads once into `buf`, retrying interrupted reads. `Ok(0)` is the end of stream.
async fn read_some<T: Read>(transport: &mut T, buf: &mut [u8]) -> Result<usize, Error<T::Error>> {
    loop {
        match transport.read(buf).await {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

/// A machine's transmit buffer, as [`flush`] drains it.
trait Transmit {
    fn pending(&self) -> Option<&[u8]>;
    fn advance(&mut self, n: usize);
}

impl<const RX: usize, const TX: usize, const INFLIGHT: usize, const SUBS: usize, const SUB_BYTES: usize> Transmit
    for Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES>
{
    fn pending(&self) -> Option<&[u8]> {
        self.poll_transmit()
    }
    fn advance(&mut self, n: usize) {
        self.advance_transmit(n);
    }
}

impl<const RX: usize, const TX: usize, const SUBS: usize, const SUB_BYTES: usize> Transmit
    for ServerConnection<RX, TX, SUBS, SUB_BYTES>
{
    fn pending(&self) -> Option<&[u8]> {
        self.poll_transmit()
    }
    fn advance(&mut self, n: usize) {
        self.advance_transmit(n);
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// An async microsocket client over an [`embedded_io_async`] transport, in fixed
/// storage: the async twin of [`BlockingClient`](super::BlockingClient), with the
/// same const generics, operations and errors.
#[derive(Debug)]
pub struct AsyncClient<
    T,
    const RX: usize = 1024,
    const TX: usize = 1024,
    const QUEUE: usize = 1024,
    const INFLIGHT: usize = 4,
    const SUBS: usize = 8,
    const SUB_BYTES: usize = 256,
> {
    transport: T,
    state: ClientState<RX, TX, QUEUE, INFLIGHT, SUBS, SUB_BYTES>,
}

impl<
        T: Read + Write,
        const RX: usize,
        const TX: usize,
        const QUEUE: usize,
        const INFLIGHT: usize,
        const SUBS: usize,
        const SUB_BYTES: usize,
    > AsyncClient<T, RX, TX, QUEUE, INFLIGHT, SUBS, SUB_BYTES>
{
    /// A client over `transport`, with nothing pending and no subscriptions.
    pub const fn new(transport: T) -> Self {
        Self {
            transport,
            state: ClientState::new(),
        }
    }

    /// The machine: pending requests and subscriptions.
    pub const fn client(&self) -> &Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES> {
        &self.state.client
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
        self.state.queue.queued
    }

    /// How many publications were dropped because the queue was full and not
    /// yet reported by [`AsyncClient::next_publication`].
    #[must_use]
    pub const fn lost_publications(&self) -> u32 {
        self.state.queue.lost
    }

    /// Hands the oldest queued publication to `on_publication` without reading
    /// the transport; `None` when the queue is empty.
    pub fn try_next_publication<R>(&mut self, on_publication: impl FnOnce(Publication<'_>) -> R) -> Option<R> {
        self.state.try_queued(on_publication).ok()
    }

    /// Replaces the transport (after the old one failed, or when answers
    /// stopped coming): pending requests are dropped and their slots freed,
    /// queued publications kept, and every subscription is sent again and
    /// confirmed with a barrier. Returns the old transport.
    ///
    /// # Errors
    /// As [`BlockingClient::reconnect`](super::BlockingClient::reconnect).
    pub async fn reconnect(&mut self, transport: T) -> Result<T, Error<T::Error>> {
        let old = core::mem::replace(&mut self.transport, transport);
        // Whatever the old transport left: no answer will come on the new one.
        self.state.client.handle_eof();
        let resubscribed = self.state.client.reconnected()?;
        if resubscribed > 0 {
            self.barrier().await?;
        }
        Ok(old)
    }

    /// Sends a request and waits for its answer; `on_values` gets the response's
    /// values, borrowed from the receive buffer. Publications that arrive
    /// meanwhile are queued for [`AsyncClient::next_publication`].
    ///
    /// # Errors
    /// As [`BlockingClient::call`](super::BlockingClient::call).
    pub async fn call<I, R>(
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
        let id = self.send_request(command, args).await?;
        self.finish(id, None, on_values).await
    }

    /// As [`AsyncClient::call`], but publications that arrive meanwhile go to
    /// `on_publication` (the queue is left alone).
    ///
    /// # Errors
    /// As [`AsyncClient::call`].
    pub async fn call_with<I, R>(
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
        let id = self.send_request(command, args).await?;
        self.finish(id, Some(on_publication), on_values).await
    }

    /// Sends a request, waits for its answer, and copies the values into `buf`
    /// (with their length prefixes: 4 bytes each, plus 2). Returns them, borrowed
    /// from `buf`.
    ///
    /// # Errors
    /// As [`BlockingClient::request`](super::BlockingClient::request).
    pub async fn request<'b, I>(
        &mut self,
        command: &[u8],
        args: I,
        buf: &'b mut [u8],
    ) -> Result<Args<'b>, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let n = self
            .call(command, args, |values| {
                encode_to_slice(Sigil::Response, values, &mut *buf)
            })
            .await??;
        Ok(copied_values(buf, n))
    }

    /// Sends the empty-command barrier and waits for its answer (see
    /// [`BlockingClient::barrier`](super::BlockingClient::barrier)).
    ///
    /// # Errors
    /// As [`AsyncClient::call`], except [`Error::Failed`].
    pub async fn barrier(&mut self) -> Result<(), Error<T::Error>> {
        self.flush().await?;
        let id = self.state.client.barrier()?;
        match self.finish(id, None, |_| ()).await {
            Ok(()) | Err(Error::Failed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Subscribes to an exact topic and returns once the server has the
    /// subscription.
    ///
    /// # Errors
    /// As [`BlockingClient::subscribe`](super::BlockingClient::subscribe).
    pub async fn subscribe(&mut self, topic: &[u8]) -> Result<SubscriptionId, Error<T::Error>> {
        self.flush().await?;
        let id = self.state.client.subscribe(topic)?;
        self.barrier().await?;
        Ok(id)
    }

    /// Subscribes to a topic pattern and returns once the server has it.
    ///
    /// # Errors
    /// As [`BlockingClient::subscribe_pattern`](super::BlockingClient::subscribe_pattern).
    pub async fn subscribe_pattern(&mut self, pattern: &[u8]) -> Result<SubscriptionId, Error<T::Error>> {
        self.flush().await?;
        let id = self.state.client.subscribe_pattern(pattern)?;
        self.barrier().await?;
        Ok(id)
    }

    /// Drops a subscription and returns once the server has dropped it.
    ///
    /// # Errors
    /// As [`BlockingClient::unsubscribe`](super::BlockingClient::unsubscribe).
    pub async fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), Error<T::Error>> {
        self.flush().await?;
        if self.state.client.unsubscribe(id)? {
            self.barrier().await?;
        }
        Ok(())
    }

    /// Waits for a publication and hands it to `on_publication`: queued ones
    /// first, oldest first, then ones read from the transport. Cancel-safe.
    ///
    /// # Errors
    /// As [`BlockingClient::next_publication`](super::BlockingClient::next_publication).
    pub async fn next_publication<R>(
        &mut self,
        on_publication: impl FnOnce(Publication<'_>) -> R,
    ) -> Result<R, Error<T::Error>> {
        self.state.take_lost()?;
        let mut on_publication = match self.state.try_queued(on_publication) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        self.flush().await?;
        loop {
            on_publication = match self.state.poll_publication(on_publication) {
                Ok(r) => return Ok(r),
                Err(f) => f,
            };
            self.fill().await?;
        }
    }

    /// Writes out everything queued for the transport. Cancel-safe.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub async fn flush(&mut self) -> Result<(), Error<T::Error>> {
        flush(&mut self.state.client, &mut self.transport).await
    }

    async fn send_request<I>(&mut self, command: &[u8], args: I) -> Result<RequestId, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.flush().await?;
        Ok(self.state.client.request(command, args)?)
    }

    async fn finish<R>(
        &mut self,
        id: RequestId,
        mut on_publication: Option<&mut dyn FnMut(Publication<'_>)>,
        mut on_values: impl FnOnce(Args<'_>) -> R,
    ) -> Result<R, Error<T::Error>> {
        let answer = async {
            self.flush().await?;
            loop {
                on_values = match self.state.poll_answer(id, &mut on_publication, on_values) {
                    Ok(answer) => return Ok::<Answer<R>, Error<T::Error>>(answer),
                    Err(f) => f,
                };
                self.fill().await?;
            }
        }
        .await;
        self.state.settle(id, answer)
    }

    /// Waits for one read from the transport.
    async fn fill(&mut self) -> Result<(), Error<T::Error>> {
        let n = read_some(&mut self.transport, self.state.client.rx_buf()).await?;
        self.state.received(n)
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// An async microsocket server connection over an [`embedded_io_async`]
/// transport, in fixed storage: the async twin of
/// [`BlockingServer`](super::BlockingServer).
#[derive(Debug)]
pub struct AsyncServer<
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
    AsyncServer<T, RX, TX, SUBS, SUB_BYTES>
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

    /// Hands every event already received to `handler`; if there was none,
    /// waits for one read first. Writes out the answers. Returns how many events
    /// were handled. Cancel-safe (see the module's docs).
    ///
    /// # Errors
    /// As [`BlockingServer::poll`](super::BlockingServer::poll).
    pub async fn poll<H>(&mut self, handler: &mut H) -> Result<usize, Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        let mut handled = self.dispatch(handler).await?;
        if handled == 0 {
            self.fill().await?;
            handled = self.dispatch(handler).await?;
        }
        self.flush().await?;
        Ok(handled)
    }

    /// Polls until the client closes the connection, then returns `Ok(())`.
    ///
    /// # Errors
    /// As [`AsyncServer::poll`], except [`Error::ConnectionClosed`].
    pub async fn run<H>(&mut self, handler: &mut H) -> Result<(), Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        loop {
            match self.poll(handler).await {
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
    /// As [`BlockingServer::publish`](super::BlockingServer::publish).
    pub async fn publish<I>(&mut self, topic: &[u8], values: I) -> Result<bool, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.flush().await?;
        let sent = self.connection.outbox().publish(topic, values)?;
        self.flush().await?;
        Ok(sent)
    }

    /// Answers and publications outside of a handler. Call
    /// [`AsyncServer::flush`] afterwards.
    pub fn outbox(&mut self) -> Outbox<'_, TX, SUBS, SUB_BYTES> {
        self.connection.outbox()
    }

    /// Writes out everything queued for the transport. Cancel-safe.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub async fn flush(&mut self) -> Result<(), Error<T::Error>> {
        flush(&mut self.connection, &mut self.transport).await
    }

    /// Hands every complete event to `handler`, writing out before each.
    async fn dispatch<H>(&mut self, handler: &mut H) -> Result<usize, Error<T::Error>>
    where
        H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
    {
        let mut events = 0;
        loop {
            self.flush().await?;
            match dispatch_one(&mut self.connection, handler)? {
                Some(_) => events += 1,
                None => return Ok(events),
            }
        }
    }

    /// Waits for one read from the transport.
    async fn fill(&mut self) -> Result<(), Error<T::Error>> {
        let n = read_some(&mut self.transport, self.connection.rx_buf()).await?;
        received(&mut self.connection, n)
    }
}
