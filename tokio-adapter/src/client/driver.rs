//! The connection's driver task: reads, writes, hands answers and
//! publications out, and reconnects.

use super::state::*;
use super::subscription::deliver;
use crate::sink::Sink;
use crate::spin::Spin;
use bytes::{Buf, BytesMut};
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{ClientEvent, RequestId, SubscriptionId};
use microsocket_host::Error;
use microsocket_host::ReconnectPolicy;
use microsocket_host::{Publication, Values};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Why a connection's driver loop ended.
pub(super) enum Ended {
    /// Every handle is gone or `close` was called.
    Closed,
    /// The connection failed or the server closed it.
    Lost(io::Error),
}

pub(super) async fn drive<S>(
    shared: Arc<Shared>,
    stream: S,
    connector: Option<Connector<S>>,
    reconnect: Option<ReconnectPolicy>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = Some(stream);
    while let Some(s) = stream.take() {
        let mut conn = Conn::new(s, shared.config.max_frame, shared.config.spin_before_sleep);
        let ended = std::future::poll_fn(|cx| conn.poll(cx, &shared)).await;
        drop(conn);
        let lost = match ended {
            Ended::Closed => None,
            Ended::Lost(e) => Some(e),
        };
        let mut wake = Vec::new();
        let retry = {
            let mut st = shared.lock();
            st.fail_all(&mut wake);
            st.wbuf.clear();
            let retry = lost.is_some() && !st.closing && reconnect.is_some();
            if retry {
                st.link = Link::Reconnecting;
                st.notify_subscriptions(|| Error::Reconnecting, false, &mut wake);
            }
            retry
        };
        wake.drain(..).for_each(Waker::wake);
        match &lost {
            Some(e) => tracing::debug!(error = %e, "microsocket connection lost"),
            None => tracing::debug!("microsocket connection closed"),
        }
        if let (true, Some(policy), Some(connector)) = (retry, reconnect, &connector) {
            stream = reconnect_loop(&shared, policy, connector).await;
            if stream.is_some() {
                let confirmations = {
                    let mut st = shared.lock();
                    let st = &mut *st;
                    st.link = Link::Up;
                    st.send_closed = false;
                    st.drop_link = false;
                    st.wbuf.clear();
                    // Each subscription is made again and confirmed by a barrier
                    // of its own. They fit: every request slot was freed with
                    // the old connection, there are more slots than
                    // subscriptions, and the sink grows.
                    let mut barriers = Vec::new();
                    let _ = st
                        .protocol
                        .resubscribe_confirmed(&mut Sink(&mut st.wbuf), |sub, barrier| barriers.push((sub, barrier)));
                    barriers
                        .into_iter()
                        .map(|(sub, barrier)| (sub, st.table.register(barrier, shared.config.request_timeout, false).0))
                        .collect::<Vec<_>>()
                };
                if !confirmations.is_empty() {
                    tokio::spawn(confirm_resubscriptions(shared.clone(), confirmations));
                }
                tracing::debug!("microsocket connection re-established");
            }
        }
    }
    let mut wake = Vec::new();
    let mut st = shared.lock();
    st.link = Link::Closed;
    st.fail_all(&mut wake);
    st.notify_subscriptions(|| Error::Closed, true, &mut wake);
    drop(st);
    wake.drain(..).for_each(Waker::wake);
}

/// Waits for the barrier after each subscription made again on a new
/// connection, and tells a subscription's streams if the server refused it.
async fn confirm_resubscriptions(shared: Arc<Shared>, confirmations: Vec<(SubscriptionId, Arc<Waiter>)>) {
    for (sub, waiter) in confirmations {
        let answer = std::future::poll_fn(|cx| waiter.poll_result(cx)).await;
        if let Err(Error::SubscriptionRefused { reason }) = microsocket_host::subscription_confirmed(answer) {
            tracing::debug!(reason = %String::from_utf8_lossy(&reason), "microsocket resubscription refused");
            let mut wake = Vec::new();
            shared.lock().notify_refused(sub, &reason, &mut wake);
            wake.drain(..).for_each(Waker::wake);
        }
    }
}

pub(super) async fn reconnect_loop<S>(
    shared: &Arc<Shared>,
    policy: ReconnectPolicy,
    connector: &Connector<S>,
) -> Option<S> {
    let mut attempts = 0u32;
    loop {
        // Sleep, waking early if the client is closed meanwhile.
        let sleep = tokio::time::sleep(policy.delay(attempts));
        tokio::pin!(sleep);
        let closed = std::future::poll_fn(|cx| {
            let mut st = shared.lock();
            if st.closing {
                return Poll::Ready(true);
            }
            st.driver = Some(cx.waker().clone());
            drop(st);
            sleep.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if closed {
            return None;
        }
        match connector().await {
            Ok(s) => return Some(s),
            Err(e) => {
                attempts += 1;
                tracing::debug!(error = %e, attempts, "microsocket reconnect failed");
                if policy.gives_up_after(attempts) {
                    return None;
                }
            }
        }
    }
}

/// What a received frame was, noted before the frame is cut from the buffer.
/// Positions are those the core's walk of the frame gave ([`Args::position`](microsocket_core::Args::position)).
pub(super) enum Got {
    /// An answer whose values (count) start at the position.
    Response(RequestId, usize, usize),
    /// A failure whose message starts at the position and spans the length,
    /// followed by the details (count).
    Failure(RequestId, usize, usize),
    TooLarge(RequestId),
    /// A publication whose values (count) start at the position.
    Publication(usize, usize),
    Nothing,
}

/// One connection's I/O state, owned by the driver task.
pub(super) struct Conn<S> {
    pub(super) stream: S,
    pub(super) rbuf: BytesMut,
    pub(super) out: BytesMut,
    pub(super) decoder: Decoder,
    pub(super) sleep: Pin<Box<Sleep>>,
    pub(super) sleep_at: Option<Instant>,
    pub(super) flush: bool,
    /// Polling before sleep while requests are in flight.
    pub(super) spin: Spin,
    /// Requests are in flight (as of the last look at the state).
    pub(super) awaiting: bool,
    pub(super) wake: Vec<Waker>,
    /// The wire subscriptions the publication being delivered matches.
    pub(super) matched: Vec<SubscriptionId>,
    /// Publications received: numbers each, so a stream that several of the
    /// matched subscriptions feed gets it once.
    pub(super) publications: u64,
    /// The current read buffer growth step.
    pub(super) chunk: usize,
    /// About how large the allocation `rbuf` reads into is (its capacity when
    /// last grown).
    pub(super) allocation: usize,
    /// A write failed with `EPIPE` (see `State::send_closed`).
    pub(super) send_closed: bool,
}

/// Read buffer growth step and the size it shrinks back to.
pub(super) const READ_CHUNK: usize = 8 * 1024;
/// The read buffer growth step while reads keep filling the buffer.
pub(super) const MAX_READ_CHUNK: usize = 64 * 1024;
/// A read buffer larger than this is released once empty.
pub(super) const SHRINK_ABOVE: usize = 256 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn new(stream: S, max_frame: usize, spin: Duration) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            out: BytesMut::new(),
            decoder: Decoder::new(max_frame),
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            sleep_at: None,
            flush: false,
            spin: Spin::new(spin),
            awaiting: false,
            wake: Vec::new(),
            matched: Vec::new(),
            publications: 0,
            chunk: READ_CHUNK,
            allocation: 0,
            send_closed: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, shared: &Shared) -> Poll<Ended> {
        loop {
            let mut progress = false;
            let mut yielded = false;
            {
                let mut guard = shared.lock();
                let st = &mut *guard;
                if !st.table.unstamped.is_empty() {
                    st.table.stamp(Instant::now());
                }
                if std::mem::take(&mut st.drop_link) {
                    return Poll::Ready(Ended::Lost(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the server stopped answering",
                    )));
                }
                // Woken when a first frame is queued or a deadline needs stamping.
                match &st.driver {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.driver = Some(cx.waker().clone()),
                }
                if self.out.is_empty() {
                    if self.send_closed {
                        st.wbuf.clear();
                    }
                    // Once closing, write what is queued (a last `-`, say), then stop.
                    if st.closing && st.wbuf.is_empty() && !self.flush {
                        return Poll::Ready(Ended::Closed);
                    }
                    // Written at once: requests queued while this write is
                    // under way gather for the next one, and the server starts
                    // on these meanwhile.
                    std::mem::swap(&mut self.out, &mut st.wbuf);
                }
                self.awaiting = st.protocol.requests_in_flight() > 0;
                if st.table.next_deadline != self.sleep_at {
                    self.sleep_at = st.table.next_deadline;
                    if let Some(at) = self.sleep_at {
                        self.sleep.as_mut().reset(at);
                    }
                }
            }
            // Write everything queued, in as few writes as the socket allows.
            while !self.out.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.out) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ended::Lost(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        self.out.advance(n);
                        self.flush = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                        // The server stopped reading but may still answer what it
                        // read: write nothing more, read on until it closes.
                        self.out.clear();
                        self.flush = false;
                        self.send_closed = true;
                        shared.lock().send_closed = true;
                        tracing::debug!("microsocket server stopped reading");
                        break;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Ended::Lost(e)),
                    Poll::Pending => break,
                }
            }
            if self.out.is_empty() {
                self.out.clear();
            }
            if self.flush {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.flush = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Ended::Lost(e)),
                    Poll::Pending => {}
                }
            }
            // Read what arrived and hand it out.
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                let more = self.chunk.max(self.rbuf.len());
                self.rbuf.reserve(more);
                self.allocation = self.rbuf.capacity();
            }
            let spare = self.rbuf.capacity() - self.rbuf.len();
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ended::Lost(io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(n)) => {
                    // A read that fills the buffer suggests more is waiting
                    // (a stream of publications): read more at a time.
                    self.chunk = if n == spare {
                        (self.chunk * 2).min(MAX_READ_CHUNK)
                    } else {
                        READ_CHUNK
                    };
                    if self.process(shared) {
                        // Publications were handed to subscription streams: let
                        // their readers take them (while they are still in
                        // cache) before reading more, rather than draining the
                        // socket into ever longer queues.
                        yielded = true;
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Ended::Lost(e)),
                Poll::Pending => {}
            }
            if self.sleep_at.is_some() && self.sleep.as_mut().poll(cx).is_ready() {
                let mut guard = shared.lock();
                let st = &mut *guard;
                st.table.expire(&mut st.protocol, Instant::now(), &mut self.wake);
                self.sleep_at = None;
                drop(guard);
                self.wake.drain(..).for_each(Waker::wake);
                progress = true;
            }
            if progress {
                self.spin.busy();
            }
            if yielded {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if !progress {
                if self.awaiting {
                    self.spin.idle(cx);
                }
                return Poll::Pending;
            }
        }
    }

    /// Decodes every whole frame received and delivers it. Returns whether
    /// publications were handed to subscription streams.
    ///
    /// Publications go straight into their streams' queues: a stream's lock is
    /// taken once per run of publications for it (with the connection's state
    /// locked, the order `notify_subscriptions` also follows) and its reader is
    /// woken once per run.
    pub(super) fn process(&mut self, shared: &Shared) -> bool {
        let mut guard = shared.lock();
        let State {
            protocol, subs, table, ..
        } = &mut *guard;
        let subs = &*subs;
        // The stream being filled, locked.
        let mut current: Option<(&SubQueue, MutexGuard<'_, SubInner>)> = None;
        // The last wire subscription looked up and its local streams.
        let mut last: Option<(SubscriptionId, &[Arc<SubQueue>])> = None;
        let mut delivered = false;
        loop {
            match self.decoder.decode(&self.rbuf) {
                Decoded::NeedMore => break,
                Decoded::Skipped { consumed } => self.rbuf.advance(consumed),
                Decoded::Oversized { sigil, tag, consumed } => {
                    if let Some(ClientEvent::ResponseTooLarge { id }) = protocol.handle_oversized_frame(sigil, tag) {
                        table.complete(id, Err(Error::FrameTooLarge), &mut self.wake);
                    }
                    tracing::warn!("oversized frame from server skipped");
                    self.rbuf.advance(consumed);
                }
                Decoded::Frame { frame, consumed } => {
                    // Note what the frame is, then cut it from the buffer as a
                    // frozen slice the values share.
                    let got = match protocol.handle_frame(frame) {
                        Some(ClientEvent::Response { id, values }) => {
                            Got::Response(id, values.position(), values.len())
                        }
                        Some(ClientEvent::Failure { id, message, details }) => {
                            // The message is the argument right before the details.
                            Got::Failure(id, details.position() - message.len(), message.len())
                        }
                        Some(ClientEvent::ResponseTooLarge { id }) => Got::TooLarge(id),
                        Some(ClientEvent::Publication {
                            values, subscriptions, ..
                        }) => {
                            self.matched.clear();
                            self.matched.extend(subscriptions);
                            Got::Publication(values.position(), values.len())
                        }
                        None => Got::Nothing,
                    };
                    if let Got::Nothing = got {
                        self.rbuf.advance(consumed);
                        continue;
                    }
                    // Answers and publications are slices of the read
                    // buffer, keeping its allocation alive while held; a
                    // small one in a buffer a large frame made large is
                    // copied out instead.
                    let bytes = microsocket_host::cut_frame(&mut self.rbuf, consumed, self.allocation, SHRINK_ABOVE);
                    match got {
                        Got::Response(id, at, len) => {
                            table.complete(id, Ok(Values::at(bytes, at, len)), &mut self.wake)
                        }
                        Got::Failure(id, at, len) => {
                            let argc = usize::from(bytes.get(1).copied().unwrap_or(0));
                            let details = Values::at(bytes.clone(), at + len, argc.saturating_sub(2));
                            let error = Error::Failed {
                                message: bytes.slice(at..at + len),
                                details: details.to_vec(),
                            };
                            table.complete(id, Err(error), &mut self.wake);
                        }
                        Got::TooLarge(id) => table.complete(id, Err(Error::FrameTooLarge), &mut self.wake),
                        Got::Publication(at, len) => {
                            self.publications += 1;
                            // Each stream's publication is made in its queue's
                            // slot (a publication is too large to move cheaply):
                            // the last stream gets the frame itself, the others
                            // clones.
                            let mut frame = Some(bytes);
                            let mut queues = self.matched.iter().flat_map(|&sid| match last {
                                Some((id, queues)) if id == sid => queues,
                                _ => {
                                    let queues = subs.get(&sid).map_or(&[][..], Vec::as_slice);
                                    last = Some((sid, queues));
                                    queues
                                }
                            });
                            let mut next = queues.next();
                            while let Some(queue) = next {
                                next = queues.next();
                                let one = if next.is_some() { frame.clone() } else { frame.take() };
                                let Some(one) = one else { break };
                                let inner = match &mut current {
                                    Some((q, inner)) if std::ptr::eq(*q, &**queue) => inner,
                                    _ => {
                                        if let Some((_, mut inner)) = current.take() {
                                            self.wake.extend(inner.waker.take());
                                        }
                                        &mut current.insert((queue, queue.lock())).1
                                    }
                                };
                                deliver(inner, self.publications, one.len(), || Publication::at(one, at, len));
                                delivered = true;
                            }
                        }
                        Got::Nothing => {}
                    }
                }
            }
        }
        if let Some((_, mut inner)) = current.take() {
            self.wake.extend(inner.waker.take());
        }
        drop(current);
        drop(guard);
        if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf = BytesMut::new();
            self.allocation = 0;
        }
        self.wake.drain(..).for_each(Waker::wake);
        delivered
    }
}
