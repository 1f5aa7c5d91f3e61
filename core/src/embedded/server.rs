//! The blocking server-connection driver.

use super::error::*;

use embedded_io::{Error as _, ErrorKind, Read, Write};

use crate::{EncodeError, Outbox, Polled, ServerConnection, ServerEvent, ServerLimits, UNENCODABLE_RESPONSE};

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
            match dispatch_one(&mut self.connection, handler)? {
                Some(request) => {
                    events += 1;
                    requests += usize::from(request);
                }
                None => return Ok((events, requests)),
            }
        }
    }

    /// Blocks for one read from the transport.
    fn fill(&mut self) -> Result<(), Error<T::Error>> {
        let n = read_some(&mut self.transport, self.connection.rx_buf())?;
        received(&mut self.connection, n)
    }
}

/// Hands the next complete event, if one has been received, to `handler`;
/// returns whether it was a request (`None`: none left). What the blocking
/// and the async driver share.
///
/// # Errors
/// [`Error::Encode`] when the handler fails on an event other than a request
/// (a request it fails on is failed with [`UNENCODABLE_RESPONSE`]).
pub(super) fn dispatch_one<H, E, const RX: usize, const TX: usize, const SUBS: usize, const SUB_BYTES: usize>(
    connection: &mut ServerConnection<RX, TX, SUBS, SUB_BYTES>,
    handler: &mut H,
) -> Result<Option<bool>, Error<E>>
where
    H: FnMut(ServerEvent<'_>, &mut Outbox<'_, TX, SUBS, SUB_BYTES>) -> Result<(), EncodeError>,
{
    let Some(Polled { event, mut outbox }) = connection.poll_event() else {
        return Ok(None);
    };
    let tag = match event {
        ServerEvent::Request { tag, .. } => Some(tag),
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
    Ok(Some(tag.is_some()))
}

/// Takes `n` bytes read from the transport; zero is the end of the stream.
pub(super) fn received<E, const RX: usize, const TX: usize, const SUBS: usize, const SUB_BYTES: usize>(
    connection: &mut ServerConnection<RX, TX, SUBS, SUB_BYTES>,
    n: usize,
) -> Result<(), Error<E>> {
    if n == 0 {
        connection.handle_eof();
        return Err(Error::ConnectionClosed);
    }
    connection.commit_rx(n);
    Ok(())
}
