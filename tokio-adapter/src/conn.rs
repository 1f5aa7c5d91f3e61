//! One server connection: a single task that reads frames, runs the handler's
//! futures side by side (no task per request), and writes answers and
//! publications in batches.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::ServerEvent;
use microsocket_core::{HANDLER_PANICKED, SERVER_BUSY};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::handler::{Failure, Handler, Reply, ReplyValues, Request, RequestContext};
use crate::hub::{ConnShared, Core, TAIL_CHUNK};
use crate::log::limited;
use crate::sink::Sink;
use crate::spin::{Burst, Spin};
use microsocket_core::frame::{HEADER_LEN, LENGTH_PREFIX_LEN};
use microsocket_host::{LargeFrames, Logged, SubscriptionChange, Values};
use std::ops::Range;

/// Where a request frame's tag starts: after the header and its length prefix.
const TAG_START: usize = HEADER_LEN + LENGTH_PREFIX_LEN;

type Protocol = microsocket_host::ConnectionProtocol;
/// A request's answer, with the bytes its request was charged.
type Answer = (Tag, Result<Reply, Failure>, usize);

/// How often a connection paused for want of memory looks again.
const MEMORY_RECHECK: Duration = Duration::from_millis(10);

/// A request's tag, kept for its answer: inline when short, as every
/// microsocket and IPC::MicroSocket client's tags are, so holding it costs no
/// reference to the receive buffer.
enum Tag {
    Inline { bytes: [u8; 15], len: u8 },
    Shared(Bytes),
}

impl Tag {
    /// The tag at `range` of `frame`.
    fn new(range: Range<usize>, frame: &Bytes) -> Self {
        let tag = frame.get(range.clone()).unwrap_or_default();
        match u8::try_from(tag.len()) {
            Ok(len) if tag.len() <= 15 => {
                let mut bytes = [0; 15];
                bytes[..tag.len()].copy_from_slice(tag);
                Self::Inline { bytes, len }
            }
            _ => Self::Shared(frame.slice(range)),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { bytes, len } => &bytes[..usize::from(*len)],
            Self::Shared(b) => b,
        }
    }
}

/// The handler futures of one connection's requests still running, and a
/// finished one's allocation kept for the next request while the connection
/// is busy (most handlers answer at once, so a batch of requests needs one
/// allocation, not one each).
struct Running<F> {
    inflight: FuturesUnordered<Pin<Box<F>>>,
    spare: Option<Pin<Box<F>>>,
}

/// First read buffer size; it doubles while a frame needs more.
const READ_CHUNK: usize = 4 * 1024;
/// A read buffer larger than this is released once empty (after a large frame).
const SHRINK_ABOVE: usize = 64 * 1024;
/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;

/// Runs one connection until it closes.
pub(crate) async fn serve<S, H>(
    stream: S,
    handler: Arc<H>,
    core: Arc<Core>,
    key: usize,
    shared: Arc<ConnShared>,
    context: RequestContext,
    hung_up: fn(&S) -> bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let span = tracing::debug_span!("connection", id = %shared.id);
    async {
        tracing::debug!(peer = ?context.peer, tls = ?context.tls, "connection opened");
        let handler: &H = &handler;
        handler.connected(&context);
        let mut conn = Conn {
            stream,
            hung_up,
            protocol: microsocket_host::connection_protocol(&core.config),
            decoder: Decoder::new(core.config.max_frame),
            rbuf: BytesMut::new(),
            rbuf_allocation: 0,
            rbuf_charged: 0,
            pause: None,
            out: VecDeque::new(),
            resp: BytesMut::new(),
            done: Vec::new(),
            context: context.clone(),
            shared: &shared,
            core: &core,
            key,
            reading: true,
            held: 0,
            flush: false,
            spin: Spin::new(core.config.spin_before_sleep),
            burst: Burst::default(),
            large: LargeFrames::default(),
            spare: None,
        };
        let mut running = Running {
            inflight: FuturesUnordered::new(),
            spare: None,
        };
        // A handler that panics (making its future or polling it) fails its own
        // request and nothing else: the connection and its other requests carry on.
        let panicked = || {
            core.counters.handler_panicked();
            limited!(warn, "handler panicked; request failed");
            Err(Failure::new(Bytes::from_static(HANDLER_PANICKED)))
        };
        let make = |tag: Tag, request: Request, charged: usize| {
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(request)));
            async move {
                let result = match answer {
                    Ok(future) => match AssertUnwindSafe(future).catch_unwind().await {
                        Ok(result) => result,
                        Err(_) => panicked(),
                    },
                    Err(_) => panicked(),
                };
                (tag, result, charged)
            }
        };
        let result = std::future::poll_fn(|cx| conn.poll(cx, handler, &mut running, &make)).await;
        drop(running);
        match result {
            Ok(()) => {
                let _ = std::future::poll_fn(|cx| Pin::new(&mut conn.stream).poll_shutdown(cx)).await;
                tracing::debug!("connection closed");
            }
            Err(e) => tracing::debug!(error = %e, "connection ended"),
        }
        let subscriptions = conn.protocol.subscriptions();
        core.unregister(key, &shared, subscriptions.iter());
        for (_, topic) in subscriptions.iter() {
            handler.subscription_changed(&context, SubscriptionChange::Unsubscribed { topic });
        }
        handler.disconnected(&context);
    }
    .instrument(span)
    .await;
}

struct Conn<'a, S> {
    stream: S,
    /// Whether the peer has left, asked without reading (false where the
    /// stream cannot tell): a connection paused for memory reads nothing.
    hung_up: fn(&S) -> bool,
    protocol: Protocol,
    decoder: Decoder,
    rbuf: BytesMut,
    /// About how large the allocation `rbuf` reads into is (its capacity when
    /// last grown): a request cut from it keeps it alive while in flight.
    rbuf_allocation: usize,
    /// The part of `rbuf`'s allocation charged to the account.
    rbuf_charged: usize,
    /// Wakes a connection paused for want of memory.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Frames to write, in order, before `resp`.
    out: VecDeque<Bytes>,
    /// Answers encoded since the last publication was queued.
    resp: BytesMut,
    done: Vec<Answer>,
    context: RequestContext,
    shared: &'a ConnShared,
    core: &'a Core,
    key: usize,
    /// False after end of stream or once shutdown began.
    reading: bool,
    /// Bytes taken from the queue or encoded here and not yet written.
    held: usize,
    flush: bool,
    /// Polling before sleep after the connection was busy.
    spin: Spin,
    /// Whether the client keeps several requests in flight (the spin is for those).
    burst: Burst,
    /// A written chunk's buffer, for the queue (see `OutQueue::spare`).
    spare: Option<BytesMut>,
    /// Whether large frames keep coming (a grown receive buffer is kept while they do).
    large: LargeFrames,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<'_, S> {
    fn poll<H, F, M>(
        &mut self,
        cx: &mut Context<'_>,
        handler: &H,
        running: &mut Running<F>,
        make: &M,
    ) -> Poll<io::Result<()>>
    where
        H: Handler,
        F: Future<Output = Answer>,
        M: Fn(Tag, Request, usize) -> F,
    {
        loop {
            let mut progress = false;
            // Requests read or answered: what restarts the polling window, so
            // publications written to a subscriber never do.
            let mut request_progress = false;
            // Answers of the requests that completed.
            while let Poll::Ready(Some(answer)) = running.inflight.poll_next_unpin(cx) {
                self.done.push(answer);
            }
            // Publications queued so far go before those answers: a publication
            // made while handling a request precedes its response.
            {
                let mut queue = self.shared.lock();
                if queue.abort {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "closed by server",
                    )));
                }
                if queue.shutdown && self.reading {
                    self.reading = false;
                    progress = true;
                }
                if !queue.is_empty() {
                    if !self.resp.is_empty() {
                        self.out.push_back(self.resp.split().freeze());
                    }
                    self.held += queue.drain_into(&mut self.out);
                }
                if queue.is_empty() && self.out.is_empty() {
                    // Nothing to write: an idle connection keeps no spare buffer.
                    queue.spare = None;
                    self.spare = None;
                } else if queue.spare.is_none() {
                    queue.spare = self.spare.take();
                }
                match &queue.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => queue.waker = Some(cx.waker().clone()),
                }
            }
            if !self.done.is_empty() {
                let before = self.resp.len();
                // What the requests were charged goes back once for the batch.
                let mut released = 0;
                for (tag, result, charged) in self.done.drain(..) {
                    let start = self.resp.len();
                    encode_answer(&mut self.protocol, tag.as_bytes(), result, &mut self.resp);
                    released += charged;
                    let answer = &self.resp[start..];
                    self.core
                        .show(|monitors, offer| monitors.answer(self.shared.id, answer, offer));
                }
                self.shared.account.release(released);
                self.account(before);
                progress = true;
                request_progress = true;
            }
            let more = if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                READ_CHUNK.max(self.rbuf.len())
            } else {
                0
            };
            if self.reading && !self.shared.bound.is_full(self.held) && self.paused_for_memory(cx, more) {
                if (self.hung_up)(&self.stream) {
                    // As at end of stream, below.
                    self.reading = false;
                    running.inflight.clear();
                    running.spare = None;
                    progress = true;
                }
            } else if self.reading && !self.shared.bound.is_full(self.held) {
                if more > 0 {
                    self.rbuf.reserve(more);
                    self.rbuf_allocation = self.rbuf.capacity();
                    self.charge_receive_buffer();
                }
                let limit = self.shared.account.read_limit(usize::MAX);
                let mut rbuf = bytes::BufMut::limit(&mut self.rbuf, limit);
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut rbuf) {
                    Poll::Ready(Ok(0)) => {
                        // The peer hung up: nobody is left to answer, so the
                        // requests still running are cancelled (their handler
                        // futures dropped) and the connection's slot, buffers
                        // and descriptor go at once, not when they would end.
                        self.reading = false;
                        running.inflight.clear();
                        running.spare = None;
                        progress = true;
                    }
                    Poll::Ready(Ok(_)) => {
                        let frames = self.process(cx, handler, running, make);
                        self.burst.record(frames);
                        progress = true;
                        request_progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            progress |= self.write(cx)?;
            self.shared.held.store(self.held, Ordering::Relaxed);
            self.shared
                .in_flight
                .store(self.protocol.requests_in_flight(), Ordering::Relaxed);
            self.shared
                .subscriptions
                .store(self.protocol.subscriptions().len(), Ordering::Relaxed);
            if !self.reading
                && running.inflight.is_empty()
                && self.done.is_empty()
                && self.out.is_empty()
                && self.resp.is_empty()
                && !self.flush
            {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                if self.reading && self.burst.active() {
                    self.spin.idle(cx);
                }
                // An idle connection keeps no spare allocation, and one whose
                // client does not send batches keeps no buffers while it has
                // nothing to read or write: the next read or answer makes them
                // again (a batching client's would be made again at once).
                running.spare = None;
                if !self.burst.active() {
                    if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
                        self.rbuf = BytesMut::new();
                        self.rbuf_allocation = 0;
                        self.charge_receive_buffer();
                    }
                    if self.resp.is_empty() && self.resp.capacity() > 0 {
                        self.resp = BytesMut::new();
                    }
                }
                return Poll::Pending;
            }
            if request_progress {
                self.spin.busy();
            } else {
                self.spin.progressed();
            }
        }
    }

    /// Counts answer bytes encoded into `resp` since it was `before` long,
    /// and charges them to the connection's account (answers are never
    /// dropped: they are charged whatever the budget says).
    fn account(&mut self, before: usize) {
        let added = self.resp.len().saturating_sub(before);
        self.held += added;
        self.shared.account.charge(added);
    }

    /// Charges the receive buffer's allocation as it is now (it grows while a
    /// frame arrives and is released once empty past `SHRINK_ABOVE`, when
    /// large frames stop coming).
    fn charge_receive_buffer(&mut self) {
        let now = self.rbuf.capacity();
        if now > self.rbuf_charged {
            self.shared.account.charge(now - self.rbuf_charged);
        } else {
            self.shared.account.release(self.rbuf_charged - now);
        }
        self.rbuf_charged = now;
    }

    /// Whether the connection is not to be read for now because memory is
    /// short (see `Account::may_read`), its receive buffer needing `more`
    /// bytes first; if so, a timer wakes it to look again (and to see
    /// whether the peer has left). A new, empty buffer's first chunk is part
    /// of what a connection costs, not growth.
    fn paused_for_memory(&mut self, cx: &mut Context<'_>, more: usize) -> bool {
        let growth = if self.rbuf.is_empty() { 0 } else { more };
        if self.shared.account.may_read(self.rbuf.len(), growth) {
            self.pause = None;
            return false;
        }
        let timer = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(MEMORY_RECHECK)));
        if timer.as_mut().poll(cx).is_ready() {
            timer.as_mut().reset(tokio::time::Instant::now() + MEMORY_RECHECK);
            let _ = timer.as_mut().poll(cx);
        }
        true
    }

    /// Writes as much as the socket takes, in vectored batches. Returns whether
    /// anything was written.
    fn write(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut progress = false;
        while !self.out.is_empty() || !self.resp.is_empty() {
            let mut bufs = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for frame in self.out.iter().take(MAX_IOV) {
                bufs[k] = IoSlice::new(frame);
                k += 1;
            }
            if k < MAX_IOV && !self.resp.is_empty() {
                bufs[k] = IoSlice::new(&self.resp);
                k += 1;
            }
            match Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..k]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.consume(n);
                    self.held = self.held.saturating_sub(n);
                    self.shared.account.release(n);
                    self.flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if self.flush {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Keeps a written chunk of copied publications for the queue's next
    /// chunk, if nothing else holds it.
    fn recycle(&mut self, written: Bytes) {
        if self.spare.is_some() || written.len() < TAIL_CHUNK / 2 {
            return;
        }
        if let Ok(mut buffer) = written.try_into_mut() {
            buffer.clear();
            // The whole allocation is this buffer's alone: taken back whole.
            buffer.reserve(TAIL_CHUNK);
            self.spare = Some(buffer);
        }
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            match self.out.front_mut() {
                Some(front) if n >= front.len() => {
                    n -= front.len();
                    if let Some(written) = self.out.pop_front() {
                        self.recycle(written);
                    }
                }
                Some(front) => {
                    front.advance(n);
                    n = 0;
                }
                None => {
                    self.resp.advance(n.min(self.resp.len()));
                    n = 0;
                }
            }
        }
    }

    /// Handles every whole frame received: requests are polled once and, if
    /// unfinished, become futures in `inflight` (finished ones go to `done`),
    /// subscriptions go to the hub, protocol answers into `resp` (counted in
    /// `held` as they are encoded).
    /// Decodes and handles every whole frame received; returns how many there were.
    fn process<H, F, M>(&mut self, cx: &mut Context<'_>, handler: &H, running: &mut Running<F>, make: &M) -> usize
    where
        H: Handler,
        F: Future<Output = Answer>,
        M: Fn(Tag, Request, usize) -> F,
    {
        // Publications queued for this connection before these frames were
        // read leave before any answer made to them, the server's own (a
        // barrier's, a `#`) included: one order for publications and answers,
        // as on the std server.
        pull_publications(self.shared, &mut self.resp, &mut self.out, &mut self.held);
        self.large.read(self.rbuf.len(), SHRINK_ABOVE);
        // `resp` bytes up to here are counted; a subscription's catch-up moves
        // `resp` into `out`, so what was encoded before it is counted first.
        let mut counted = self.resp.len();
        // Requests handed to the handler, counted once for the read.
        let mut requests = 0;
        let mut frames = 0;
        loop {
            match self.decoder.decode(&self.rbuf) {
                Decoded::NeedMore => break,
                Decoded::Skipped { consumed } => self.rbuf.advance(consumed),
                Decoded::Oversized { sigil, tag, consumed } => {
                    let answered = self.protocol.handle_oversized(sigil, tag, &mut Sink(&mut self.resp));
                    limited!(warn, sigil = %char::from(sigil), ?answered, "oversized frame skipped");
                    self.rbuf.advance(consumed);
                }
                Decoded::Frame { frame, consumed } => {
                    frames += 1;
                    // The sink grows, so the protocol's own answers always fit.
                    let event = self
                        .protocol
                        .handle_frame(frame, &mut Sink(&mut self.resp))
                        .unwrap_or(None);
                    match event {
                        Some(ServerEvent::Request { tag, command, args })
                            if microsocket_host::is_server_command(command) =>
                        {
                            // Answered by the server itself, never by the handler.
                            let caller = microsocket_host::Caller {
                                uid: self.context.peer.map(|p| p.uid),
                                slot: self.key,
                            };
                            let answer = microsocket_host::server_command(command, args, caller, self.core);
                            let sink = &mut Sink(&mut self.resp);
                            let _ = match answer {
                                Ok(values) => self.protocol.respond(tag, values, sink),
                                Err(message) => self.protocol.fail(tag, message, [b""; 0], sink),
                            };
                        }
                        Some(ServerEvent::Request { tag, command, args }) => {
                            tracing::trace!(command = %Logged(command), "request");
                            // Where the parts lie, from the walk the core made:
                            // the tag first, the command just before the arguments.
                            let tag_range = TAG_START..TAG_START + tag.len();
                            let command_range = args.position() - command.len()..args.position();
                            let (args_at, argc) = (args.position(), args.len());
                            // The frame becomes a frozen slice the request owns.
                            // A request keeps the allocation it is a slice of
                            // alive while in flight; a small one in a buffer a
                            // large frame made large is copied out instead, so
                            // held requests keep at most 4 times their own size
                            // (or 64 KiB) each, not the whole receive buffer.
                            let bytes = microsocket_host::cut_frame(
                                &mut self.rbuf,
                                consumed,
                                self.rbuf_allocation,
                                SHRINK_ABOVE,
                            );
                            let request = Request {
                                command: bytes.slice(command_range),
                                args: Values::at(bytes.clone(), args_at, argc),
                                context: self.context.clone(),
                            };
                            // Most handlers answer at once: poll the request
                            // right away and keep only unfinished ones in
                            // `inflight`. (A handler left pending may also wake
                            // this task later, a harmless extra poll.)
                            let tag = Tag::new(tag_range, &bytes);
                            if self.shared.account.is_over() {
                                // Short of memory: refused before the handler
                                // holds anything.
                                self.shared.account.budget().count_shed();
                                let _ = self.protocol.fail(
                                    tag.as_bytes(),
                                    SERVER_BUSY,
                                    [b""; 0],
                                    &mut Sink(&mut self.resp),
                                );
                                self.rbuf_charged = self.rbuf_charged.saturating_sub(consumed);
                                self.shared.account.release(consumed);
                                continue;
                            }
                            requests += 1;
                            self.core.show(|monitors, offer| {
                                let args = microsocket_core::Args::resume(&bytes, args_at, argc as u8);
                                monitors.request(self.shared.id, tag.as_bytes(), &request.command, args, offer);
                            });
                            // The request's bytes leave the receive buffer for
                            // the handler: charged to the request until it is
                            // answered.
                            self.rbuf_charged = self.rbuf_charged.saturating_sub(consumed);
                            let future = make(tag, request, consumed);
                            let mut future = match running.spare.take() {
                                Some(mut spare) => {
                                    spare.set(future);
                                    spare
                                }
                                None => Box::pin(future),
                            };
                            match future.as_mut().poll(cx) {
                                Poll::Ready(answer) => {
                                    self.done.push(answer);
                                    running.spare = Some(future);
                                }
                                Poll::Pending => running.inflight.push(future),
                            }
                            continue;
                        }
                        Some(ServerEvent::Subscribed { topic, kind, new: true }) => {
                            let refusal = microsocket_host::refusal(
                                &self.core.config,
                                self.protocol.subscriptions().len(),
                                &self.shared.account,
                                || handler.authorize_subscription(&self.context, kind, topic),
                            );
                            if let Some(why) = refusal {
                                limited!(info, topic = %Logged(topic), ?kind, "subscription refused");
                                self.protocol.refuse_subscription(kind, topic, why);
                                self.core.counters.subscription_refused();
                            } else {
                                tracing::debug!(topic = %Logged(topic), ?kind, "subscribed");
                                self.core.subscribe(self.key, kind, topic);
                                // The catch-up just queued goes before any answer
                                // to a later frame (the subscribe barrier's, say).
                                let added = self.resp.len() - counted;
                                self.held += added;
                                self.shared.account.charge(added);
                                pull_publications(self.shared, &mut self.resp, &mut self.out, &mut self.held);
                                counted = self.resp.len();
                                handler.subscription_changed(
                                    &self.context,
                                    SubscriptionChange::Subscribed { kind, topic },
                                );
                            }
                        }
                        Some(ServerEvent::Subscribed { new: false, .. }) | None => {}
                        Some(ServerEvent::SubscribeRefused { topic, kind, reason }) => {
                            limited!(info, topic = %Logged(topic), ?kind, %reason, "subscription refused");
                            self.core.counters.subscription_refused();
                        }
                        Some(ServerEvent::Unsubscribed { topic, removed }) => {
                            if removed > 0 {
                                tracing::debug!(topic = %Logged(topic), "unsubscribed");
                                self.core.unsubscribe(self.key, topic);
                                handler.subscription_changed(&self.context, SubscriptionChange::Unsubscribed { topic });
                            }
                        }
                        Some(ServerEvent::Ignored {
                            sigil,
                            reason,
                            answered,
                        }) => {
                            tracing::debug!(sigil = %char::from(sigil), ?reason, answered, "frame ignored");
                        }
                    }
                    self.rbuf.advance(consumed);
                }
            }
        }
        self.account(counted);
        if requests > 0 {
            self.core.counters.requests(requests);
        }
        if self.rbuf.is_empty()
            && self.rbuf.capacity() > SHRINK_ABOVE
            && self
                .large
                .should_shrink(self.rbuf.capacity(), self.shared.account.is_tight())
        {
            self.rbuf = BytesMut::new();
            self.rbuf_allocation = 0;
            self.charge_receive_buffer();
        }
        frames
    }
}

/// Moves publications queued for a connection into `out`, behind the answers
/// encoded so far in `resp`, so answers encoded later follow them.
fn pull_publications(shared: &ConnShared, resp: &mut BytesMut, out: &mut VecDeque<Bytes>, held: &mut usize) {
    let mut queue = shared.lock();
    if !queue.is_empty() {
        if !resp.is_empty() {
            out.push_back(resp.split().freeze());
        }
        *held += queue.drain_into(out);
    }
}

/// Encodes a handler's answer; frames the protocol cannot encode (too many
/// values, say) become a failure so the request is still answered once.
fn encode_answer(protocol: &mut Protocol, tag: &[u8], result: Result<Reply, Failure>, resp: &mut BytesMut) {
    let sink = &mut Sink(resp);
    let encoded = match &result {
        Ok(Reply(ReplyValues::Empty)) => protocol.respond(tag, [&[][..]; 0], sink),
        Ok(Reply(ReplyValues::One(v))) => protocol.respond(tag, [v], sink),
        Ok(Reply(ReplyValues::Many(v))) => protocol.respond(tag, v, sink),
        Ok(Reply(ReplyValues::Values(v))) => protocol.respond(tag, v.iter_slices(), sink),
        Err(f) => protocol.fail(tag, &f.message, &f.details, sink),
    };
    if let Err(e) = encoded {
        limited!(warn, error = %e, "answer cannot be encoded; failing the request instead");
        let _ = protocol.fail(tag, microsocket_core::UNENCODABLE_RESPONSE, [e.to_string()], sink);
    }
}
