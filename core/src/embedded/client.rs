//! The blocking client driver.

use super::client_state::{copied_values, Answer, ClientState, Publication};
use super::error::*;

use embedded_io::{Error as _, ErrorKind, Read, Write};

use crate::frame::{encode_to_slice, Args};
use crate::{Client, RequestId, Sigil, SubscriptionId};

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

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
    > BlockingClient<T, RX, TX, QUEUE, INFLIGHT, SUBS, SUB_BYTES>
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

    /// How many publications were dropped because the queue was full and not yet
    /// reported by [`BlockingClient::next_publication`].
    #[must_use]
    pub const fn lost_publications(&self) -> u32 {
        self.state.queue.lost
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
        Ok(copied_values(buf, n))
    }

    /// Sends the empty-command barrier and blocks until its answer: every frame
    /// sent before it has then taken effect on the server. An answer of either kind
    /// counts (an IPC::MicroSocket 0.03 server may fail the empty command).
    ///
    /// # Errors
    /// As [`BlockingClient::call`], except [`Error::Failed`].
    pub fn barrier(&mut self) -> Result<(), Error<T::Error>> {
        self.flush()?;
        let id = self.state.client.barrier()?;
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
        let id = self.state.client.subscribe(topic)?;
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
        let id = self.state.client.subscribe_pattern(pattern)?;
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
        if self.state.client.unsubscribe(id)? {
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
        self.state.take_lost()?;
        let mut on_publication = match self.state.try_queued(on_publication) {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        self.flush()?;
        loop {
            on_publication = match self.state.poll_publication(on_publication) {
                Ok(r) => return Ok(r),
                Err(f) => f,
            };
            self.fill()?;
        }
    }

    /// Hands the oldest queued publication to `on_publication` without reading the
    /// transport; `None` when the queue is empty.
    pub fn try_next_publication<R>(&mut self, on_publication: impl FnOnce(Publication<'_>) -> R) -> Option<R> {
        self.state.try_queued(on_publication).ok()
    }

    /// Writes out everything queued for the transport.
    ///
    /// # Errors
    /// [`Error::Io`] and [`Error::ConnectionClosed`] from the transport.
    pub fn flush(&mut self) -> Result<(), Error<T::Error>> {
        flush_machine!(self.state.client, self.transport)
    }

    fn send_request<I>(&mut self, command: &[u8], args: I) -> Result<RequestId, Error<T::Error>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.flush()?;
        Ok(self.state.client.request(command, args)?)
    }

    /// Writes the request out and waits for its answer.
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
        self.state.settle(id, answer)
    }

    fn wait<R>(
        &mut self,
        id: RequestId,
        mut on_publication: Option<&mut dyn FnMut(Publication<'_>)>,
        mut on_values: impl FnOnce(Args<'_>) -> R,
    ) -> Result<Answer<R>, Error<T::Error>> {
        loop {
            on_values = match self.state.poll_answer(id, &mut on_publication, on_values) {
                Ok(answer) => return Ok(answer),
                Err(f) => f,
            };
            self.fill()?;
        }
    }

    /// Blocks for one read from the transport.
    fn fill(&mut self) -> Result<(), Error<T::Error>> {
        let n = read_some(&mut self.transport, self.state.client.rx_buf())?;
        self.state.received(n)
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
        // Whatever the old transport left: no answer will come on the new one.
        self.state.client.handle_eof();
        let resubscribed = self.state.client.reconnected()?;
        if resubscribed > 0 {
            self.barrier()?;
        }
        Ok(old)
    }

    /// Drops every queued publication.
    pub fn clear_queue(&mut self) {
        self.state.queue.clear();
    }
}
