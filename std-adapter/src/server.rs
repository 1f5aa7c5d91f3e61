//! The blocking server: a [`Handler`] answers requests, a [`Publisher`] publishes
//! from any thread, a [`ShutdownHandle`] stops it gracefully.
//!
//! # Thread model
//!
//! A server with N connections runs N + 2 threads:
//!
//! - the **acceptor** (the thread that calls [`Server::run`]), which waits in
//!   `poll` on the listener and a wake-up socket, so shutdown reaches it at once;
//! - one **reader** per connection (stack [`ServerConfig::stack_size`], 256 KiB
//!   of address space by default, mostly never touched), which reads and decodes
//!   the connection's frames in order and calls the [`Handler`] for each request;
//! - one **flusher**, which writes queued publications (and any answer the socket
//!   could not take at once) to every connection, many frames per system call,
//!   and waits in `poll` for sockets that are full.
//!
//! Writes never block a thread that is not the connection's own: every write is
//! non-blocking, and what the socket does not take waits in the connection's
//! queue. A writer takes the unsent bytes out of the queue under the
//! connection's lock and makes its `sendmsg` without it, so publishers and
//! responders never wait for a system call; what they append meanwhile goes out
//! after those bytes, in order. A [`Responder`] encodes its answer
//! straight into the connection's answer buffer and writes it from the answering
//! thread (after the batch of requests it came in, if the reader is handling
//! one), so a request answered inline costs no thread handoff and no allocation.
//! A publication is encoded once; the publishing thread appends its bytes to each
//! subscriber's publication buffer (a lock and a copy per subscriber) and the
//! flusher writes each connection's whole queue in one `sendmsg`. While
//! publications keep coming, the flusher lets them gather for 100 µs between
//! rounds, so that each write, and each wake-up of a subscriber, carries many
//! frames; an isolated publication goes out at once. A subscribed connection's
//! reader waits for requests in `poll` rather than in a blocking `read`, which
//! the subscriber's reading of its publications would otherwise wake each time.
//!
//! # Backpressure
//!
//! Each connection's queue is bounded ([`ServerConfig::max_queued_bytes`]):
//!
//! - responses are never dropped, and they leave after the publications queued
//!   before them (those made while their request was handled among them); while
//!   a connection has more than the bound unsent, its reader stops reading its
//!   requests until the queue drains;
//! - a publication that would exceed the bound is dropped and counted, or the
//!   connection is closed, as [`ServerConfig::slow_consumer`] says. Other
//!   connections are not affected either way.
//!
//! # Shutdown
//!
//! [`ShutdownHandle::shutdown`] (cheap, callable from any thread, and only an
//! atomic store plus a one-byte `write`) wakes the acceptor, which stops
//! accepting, removes the socket file, stops reading every connection, lets
//! requests in flight be answered and queues drain for up to
//! [`ServerConfig::shutdown_timeout`], then closes everything and returns.
//! [`Server::run_until_signal`] does the same on SIGINT or SIGTERM.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{
    encode_publication, Args, EncodeError, ServerEvent, ServerLimits, ServerProtocol, DROPPED_UNANSWERED,
    UNENCODABLE_RESPONSE,
};
pub use microsocket_core::{PatternError, SubscriptionKind};
use microsocket_host::{Admission, Counters, QueueBound, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES};
pub use microsocket_host::{ServerConfig, SlowConsumer, Stats};
use rustix::event::{PollFd, PollFlags};
use rustix::net::SendFlags;

use crate::error::Error;
use crate::rx::{read_within, RxBuf};
use crate::socket::{Address, Listener, PeerCredentials, SocketOptions, Stream};

/// Flags of every socket write: never block, and where the platform allows it
/// never raise SIGPIPE for a peer that went away (elsewhere Rust programs ignore
/// SIGPIPE by default).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT.union(SendFlags::NOSIGNAL);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT;

type Protocol = ServerProtocol<MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES>;

/// The socket-file settings of `config` as [`SocketOptions`].
fn socket_options(config: &ServerConfig) -> SocketOptions {
    let mut options = SocketOptions::new(config.socket_mode);
    options.owner = config.socket_owner;
    options.group = config.socket_group;
    options
}

/// Who a request or subscription comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    /// The connection's id, unique within this server.
    pub connection: u64,
    /// The peer's credentials, on UNIX sockets where the platform tells them.
    pub peer: Option<PeerCredentials>,
}

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

    /// Decides whether a connection may subscribe to a topic or pattern (access
    /// control). Called once per new subscription; refused ones are removed and
    /// receive nothing. Default: accept.
    fn authorize_subscription(&self, context: &RequestContext, kind: SubscriptionKind, topic: &[u8]) -> bool {
        let _ = (context, kind, topic);
        true
    }

    /// Observes a `-` that removed `removed` subscriptions made with `topic`.
    fn unsubscribed(&self, context: &RequestContext, topic: &[u8], removed: usize) {
        let _ = (context, topic, removed);
    }

    /// Observes a new connection.
    fn connected(&self, context: &RequestContext) {
        let _ = context;
    }

    /// Observes a connection that ended.
    fn disconnected(&self, context: &RequestContext) {
        let _ = context;
    }
}

impl<F> Handler for F
where
    F: for<'a> Fn(Request<'a>, Responder) + Send + Sync + 'static,
{
    fn handle(&self, request: Request<'_>, responder: Responder) {
        self(request, responder);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State shared by the acceptor, the readers, the flusher, publishers and
/// responders.
#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    bound: QueueBound,
    hub: Mutex<Hub>,
    flusher: Flusher,
    counters: Counters,
    stopping: AtomicBool,
    /// Reader threads running (see [`ReaderRunning`]). Readers are detached, not
    /// joined: a finished reader's thread is released by the system at once,
    /// whether or not another connection comes.
    readers: AtomicUsize,
    /// The write end of the acceptor's wake-up socket.
    wake: UnixStream,
}

impl Shared {
    /// The counters now, with the bytes queued for all connections.
    fn stats(&self) -> Stats {
        let conns: Vec<Arc<Conn>> = lock(&self.hub).connections().cloned().collect();
        let queued: usize = conns.iter().map(|c| c.lock().queued).sum();
        self.counters.snapshot(queued as u64)
    }
}

/// Counts one reader thread in [`Shared::readers`] while it lives (also if the
/// handler panics on it).
struct ReaderRunning(Arc<Shared>);

impl ReaderRunning {
    fn new(shared: Arc<Shared>) -> Self {
        shared.readers.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for ReaderRunning {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The host layer's hub (connection slots and the subscription registry),
/// under one lock: held around (registry change + backlog queued) and
/// (registry publish + queuing to each subscriber), which makes catch-up on
/// buffered topics atomic.
type Hub = microsocket_host::Hub<Arc<Conn>, Bytes>;

#[derive(Debug)]
struct Conn {
    context: RequestContext,
    /// Its slot in the [`Hub`], which is how the registry names it.
    slot: usize,
    stream: Stream,
    out: Mutex<Out>,
    /// Signalled when the queue drains or the connection dies.
    drained: Condvar,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Out {
    protocol: Protocol,
    /// Encoded answers, whole frames; `answers[answers_sent..]` is unsent. An
    /// answer made while publications wait goes behind them in `pubs` instead
    /// (see [`Out::answer_sink`]).
    answers: Vec<u8>,
    answers_sent: usize,
    /// Encoded publication frames, in order; `pubs[pubs_sent..]` is unsent.
    pubs: Vec<u8>,
    pubs_sent: usize,
    /// Lengths of the publication frames not wholly written; `front_sent` bytes
    /// of the first are on the wire already.
    pub_lens: VecDeque<usize>,
    front_sent: usize,
    /// Unsent bytes, answers and publications.
    queued: usize,
    /// In the flusher's hands.
    scheduled: bool,
    /// A thread is writing bytes it took out of the buffers (without the lock):
    /// others only append, and the writer sends what they appended after it.
    flushing: bool,
    /// An empty buffer with capacity, given to `pubs` while a writer holds its
    /// bytes.
    spare: Vec<u8>,
    /// The reader is handling a batch of frames: answers wait for its end.
    corked: bool,
    dead: bool,
    /// Threads waiting on `drained` (it is signalled only if some wait).
    drain_waiters: usize,
}

impl Out {
    fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            answers: Vec::new(),
            answers_sent: 0,
            pubs: Vec::new(),
            pubs_sent: 0,
            pub_lens: VecDeque::new(),
            front_sent: 0,
            queued: 0,
            scheduled: false,
            flushing: false,
            spare: Vec::new(),
            corked: false,
            dead: false,
            drain_waiters: 0,
        }
    }

    /// Records `n` more publication bytes written.
    fn advance_pubs(&mut self, mut n: usize) {
        self.pubs_sent += n;
        while n > 0 {
            let Some(&len) = self.pub_lens.front() else { break };
            let take = n.min(len - self.front_sent);
            self.front_sent += take;
            n -= take;
            if self.front_sent == len {
                self.pub_lens.pop_front();
                self.front_sent = 0;
            }
        }
    }

    /// Drops written bytes from the front of the buffers when that is cheap or
    /// worthwhile; frees buffers a burst made large.
    fn compact(&mut self) {
        fn tidy(buf: &mut Vec<u8>, sent: &mut usize) {
            if *sent == buf.len() {
                buf.clear();
                *sent = 0;
                if buf.capacity() > KEPT_BUFFER {
                    *buf = Vec::new();
                }
            } else if *sent >= 64 << 10 && *sent * 2 >= buf.len() {
                buf.drain(..*sent);
                *sent = 0;
            }
        }
        tidy(&mut self.answers, &mut self.answers_sent);
        tidy(&mut self.pubs, &mut self.pubs_sent);
    }

    /// Where an answer is encoded: behind publications still unsent (true), or
    /// with the other answers. Publications queued before an answer, those made
    /// while its request was handled among them, leave before it, as the
    /// protocol promises; answers are never dropped, whatever the queue holds.
    fn answer_sink(&mut self) -> (&mut Protocol, &mut Vec<u8>, bool) {
        // While a writer holds taken bytes, anything may still be unsent.
        let behind = self.flushing || self.pubs_sent < self.pubs.len();
        let buf = if behind { &mut self.pubs } else { &mut self.answers };
        (&mut self.protocol, buf, behind)
    }

    /// Encodes one answer frame with `encode` where [`Out::answer_sink`] puts it,
    /// keeping the publication frame lengths in step; returns `encode`'s result
    /// and the bytes added.
    fn encode_answer<T>(&mut self, encode: impl FnOnce(&mut Protocol, &mut Vec<u8>) -> T) -> (T, usize) {
        let (protocol, answers, behind) = self.answer_sink();
        let before = answers.len();
        let result = encode(protocol, answers);
        let added = answers.len() - before;
        if behind && added > 0 {
            self.pub_lens.push_back(added);
        }
        (result, added)
    }

    fn clear(&mut self) {
        self.answers = Vec::new();
        self.answers_sent = 0;
        self.pubs = Vec::new();
        self.pubs_sent = 0;
        self.pub_lens = VecDeque::new();
        self.front_sent = 0;
        self.queued = 0;
        self.spare = Vec::new();
    }
}

/// Output buffers larger than this are freed once drained rather than kept.
const KEPT_BUFFER: usize = 1 << 20;

enum Flushed {
    Drained,
    Blocked,
    Dead,
    /// Another thread is writing; it writes these bytes too.
    Busy,
    /// Everything offered was written but more was queued meanwhile.
    More,
}

/// Connections the acceptor accepts in a row before it looks at the shutdown
/// flag again (while clients keep connecting, `accept` never runs dry).
const ACCEPT_BATCH: usize = 64;

/// How long the acceptor waits before accepting again after `accept` failed
/// for want of file descriptors or memory.
const ACCEPT_BACKOFF: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 50_000_000,
};

/// Writes one writer makes in a row before leaving the rest to the flusher.
const ROUNDS: usize = 4;

impl Conn {
    fn lock(&self) -> MutexGuard<'_, Out> {
        lock(&self.out)
    }

    /// Writes what the socket takes now, without blocking: the rest of a
    /// publication frame partly written, then answers, then publications, in one
    /// `sendmsg`. The bytes are taken out of the buffers and written without the
    /// lock, so publishers and responders only wait for the lock, never for the
    /// system call; what they append meanwhile goes out after them, in order.
    fn flush<'a>(&'a self, mut out: MutexGuard<'a, Out>) -> (MutexGuard<'a, Out>, Flushed) {
        for _ in 0..ROUNDS {
            if out.dead {
                return (out, Flushed::Dead);
            }
            if out.flushing {
                return (out, Flushed::Busy);
            }
            let head = match out.pub_lens.front() {
                Some(&len) if out.front_sent > 0 => len - out.front_sent,
                _ => 0,
            };
            let total = out.pubs.len() - out.pubs_sent + out.answers.len() - out.answers_sent;
            if total == 0 {
                out.compact();
                return (out, Flushed::Drained);
            }
            // Take the bytes out; appends meanwhile go to fresh buffers (answers
            // go behind publications while `flushing`, see `Out::answer_sink`).
            let answers = std::mem::take(&mut out.answers);
            let answers_sent = std::mem::replace(&mut out.answers_sent, 0);
            let spare = std::mem::take(&mut out.spare);
            let mut pubs = std::mem::replace(&mut out.pubs, spare);
            let pubs_sent = std::mem::replace(&mut out.pubs_sent, 0);
            out.flushing = true;
            drop(out);
            let p = pubs_sent;
            let unsent_answers = &answers[answers_sent..];
            let slices = [
                IoSlice::new(&pubs[p..p + head]),
                IoSlice::new(unsent_answers),
                IoSlice::new(&pubs[p + head..]),
            ];
            let slices: &[IoSlice<'_>] = if head == 0 { &slices[1..] } else { &slices };
            let mut control = rustix::net::SendAncillaryBuffer::default();
            let sent = rustix::net::sendmsg(&self.stream, slices, &mut control, SEND_FLAGS);
            out = self.lock();
            out.flushing = false;
            if out.dead {
                return (out, Flushed::Dead);
            }
            let written = match sent {
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => 0,
                Err(_) => {
                    self.kill_locked(&mut out);
                    return (out, Flushed::Dead);
                }
            };
            out.queued = out.queued.saturating_sub(written);
            let a = written.min(head);
            let rest = written - a;
            let b = rest.min(unsent_answers.len());
            let answers_sent = answers_sent + b;
            let pubs_sent = p + a + (rest - b);
            // Frame accounting only: `out.pubs_sent` counts the new buffer.
            let appended_sent = out.pubs_sent;
            out.advance_pubs(a + rest - b);
            out.pubs_sent = appended_sent;
            // Put back what the socket did not take, before what was appended.
            if answers_sent < answers.len() {
                // Nothing was appended to `answers` meanwhile (see above).
                out.answers = answers;
                out.answers_sent = answers_sent;
            } else if out.answers.is_empty() && answers.capacity() <= KEPT_BUFFER {
                out.answers = answers;
                out.answers.clear();
            }
            if pubs_sent < pubs.len() {
                if out.pubs.is_empty() {
                    let fresh = std::mem::replace(&mut out.pubs, pubs);
                    out.pubs_sent = pubs_sent;
                    out.spare = fresh;
                } else {
                    pubs.drain(..pubs_sent);
                    pubs.extend_from_slice(&out.pubs);
                    let appended = std::mem::replace(&mut out.pubs, pubs);
                    out.pubs_sent = 0;
                    out.spare = appended;
                }
                out.spare.clear();
            } else if pubs.capacity() <= KEPT_BUFFER {
                pubs.clear();
                out.spare = pubs;
            }
            if out.spare.capacity() > KEPT_BUFFER {
                out.spare = Vec::new();
            }
            match sent {
                Ok(n) if n == total => {}
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                    out.compact();
                    return (out, Flushed::Blocked);
                }
                _ => {}
            }
        }
        let left = out.pubs.len() - out.pubs_sent + out.answers.len() - out.answers_sent;
        let state = if left == 0 { Flushed::Drained } else { Flushed::More };
        out.compact();
        (out, state)
    }

    fn kill_locked(&self, out: &mut Out) {
        if !out.dead {
            out.dead = true;
            out.clear();
            let _ = self.stream.shutdown(Shutdown::Both);
            self.drained.notify_all();
        }
    }

    /// Accounts for `added` bytes of answers appended to `out.answers`; returns
    /// whether they should be written now (not if the reader has corked the
    /// connection while it handles a batch of frames: then the batch's answers
    /// leave together when it uncorks).
    fn answers_added(out: &mut Out, added: usize) -> bool {
        if out.dead || added == 0 {
            return false;
        }
        out.queued += added;
        !out.corked
    }

    /// Writes what the socket takes now; leaves the rest to the flusher.
    fn flush_answers(self: &Arc<Self>, out: MutexGuard<'_, Out>) {
        let (mut out, flushed) = self.flush(out);
        match flushed {
            Flushed::Drained | Flushed::Dead => self.notify_drained(&out),
            Flushed::Blocked | Flushed::More => self.schedule_locked(&mut out),
            Flushed::Busy => {}
        }
    }

    /// Signals threads waiting for the queue to drain, if any.
    fn notify_drained(&self, out: &Out) {
        if out.drain_waiters > 0 {
            self.drained.notify_all();
        }
    }

    fn schedule_locked(self: &Arc<Self>, out: &mut Out) {
        if !out.scheduled {
            out.scheduled = true;
            self.shared.flusher.push(self.clone());
            self.shared.flusher.wake();
        }
    }

    /// Queues a publication frame, applying the slow-consumer policy. Returns
    /// whether it was queued and whether the connection needs the flusher.
    fn queue_publication(&self, out: &mut Out, frame: &[u8]) -> (bool, bool) {
        if out.dead {
            return (false, false);
        }
        match self.shared.bound.admit(out.queued, frame.len()) {
            Admission::Queue => {}
            Admission::Drop => {
                self.shared.counters.dropped(1);
                return (false, false);
            }
            Admission::Disconnect => {
                self.shared.counters.dropped(1);
                self.shared.counters.slow_consumer_disconnected();
                self.kill_locked(out);
                return (false, false);
            }
        }
        out.queued += frame.len();
        out.pubs.extend_from_slice(frame);
        out.pub_lens.push_back(frame.len());
        let newly = !out.scheduled;
        out.scheduled = true;
        (true, newly)
    }
}

/// How long the flusher lets publications gather between rounds while they keep
/// coming.
const COALESCE: Duration = Duration::from_micros(100);

/// Writes queued frames for every connection; see the module docs.
#[derive(Debug)]
struct Flusher {
    ready: Mutex<Vec<Arc<Conn>>>,
    asleep: AtomicBool,
    stop: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl Flusher {
    fn new() -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Self {
            ready: Mutex::new(Vec::new()),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        })
    }

    fn push(&self, conn: Arc<Conn>) {
        lock(&self.ready).push(conn);
    }

    fn wake(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    fn run(&self) {
        let mut blocked: Vec<Arc<Conn>> = Vec::new();
        let mut batch: Vec<Arc<Conn>> = Vec::new();
        let mut sink = [0u8; 64];
        let mut worked = false;
        loop {
            if worked {
                // Publications keep coming: let them gather for a moment so each
                // write (and each wake-up of a subscriber) carries many frames.
                // An isolated publication finds the flusher asleep and goes out
                // at once.
                std::thread::sleep(COALESCE);
            }
            std::mem::swap(&mut batch, &mut *lock(&self.ready));
            worked = !batch.is_empty();
            for conn in batch.drain(..) {
                let (mut out, flushed) = conn.flush(conn.lock());
                match flushed {
                    Flushed::Blocked => blocked.push(conn.clone()),
                    // A responder is writing: it hands what is left back (or
                    // finds the connection scheduled and leaves it to the next round).
                    Flushed::More | Flushed::Busy => {
                        drop(out);
                        self.push(conn.clone());
                    }
                    Flushed::Drained | Flushed::Dead => {
                        out.scheduled = false;
                        conn.notify_drained(&out);
                    }
                }
            }
            if self.stop.load(Ordering::SeqCst) && lock(&self.ready).is_empty() {
                return;
            }
            self.asleep.store(true, Ordering::SeqCst);
            if !lock(&self.ready).is_empty() {
                self.asleep.store(false, Ordering::SeqCst);
                continue;
            }
            let mut fds = Vec::with_capacity(blocked.len() + 1);
            fds.push(PollFd::new(&self.wake_rx, PollFlags::IN));
            for conn in &blocked {
                fds.push(PollFd::new(&conn.stream, PollFlags::OUT));
            }
            // Blocked sockets whose peer vanished report an error; a timeout also
            // bounds how long a stop request can go unnoticed.
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            };
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
            let ready: Vec<bool> = fds[1..].iter().map(|f| !f.revents().is_empty()).collect();
            drop(fds);
            self.asleep.store(false, Ordering::SeqCst);
            worked = false;
            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            let mut i = 0;
            blocked.retain(|conn| {
                let keep = !ready[i];
                i += 1;
                if !keep {
                    batch.push(conn.clone());
                }
                keep
            });
            // Connections killed meanwhile leave the blocked list too.
            blocked.retain(|conn| {
                let mut out = conn.lock();
                if out.dead {
                    out.scheduled = false;
                    false
                } else {
                    true
                }
            });
            lock(&self.ready).append(&mut batch);
        }
    }
}

/// Answers one request, exactly once: [`Responder::respond`] or
/// [`Responder::fail`]. It may be moved to another thread and used later; answers
/// may leave in any order. Dropped unanswered, it fails the request with
/// "request dropped without an answer", so the client never waits forever.
#[derive(Debug)]
#[must_use = "dropping a Responder fails the request"]
pub struct Responder {
    conn: Arc<Conn>,
    tag: TagBuf,
    answered: bool,
}

/// A request's tag, inline when short (as every microsocket or IPC::MicroSocket
/// client's tags are).
#[derive(Debug, Clone)]
enum TagBuf {
    Inline([u8; 16], u8),
    Heap(Vec<u8>),
}

impl TagBuf {
    fn new(tag: &[u8]) -> Self {
        if tag.len() <= 16 {
            let mut b = [0; 16];
            b[..tag.len()].copy_from_slice(tag);
            Self::Inline(b, tag.len() as u8)
        } else {
            Self::Heap(tag.to_vec())
        }
    }

    fn as_bytes(&self) -> &[u8] {
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
        &self.conn.context
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

    fn fail_inner<I>(&self, message: &[u8], details: I) -> Result<(), Error>
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
    fn answer(
        &self,
        encode: impl FnOnce(&mut Protocol, &mut Vec<u8>) -> Result<usize, EncodeError>,
    ) -> Result<(), Error> {
        let mut out = self.conn.lock();
        if out.dead {
            return Err(Error::Closed);
        }
        let tag = self.tag.as_bytes();
        let (result, added) = out.encode_answer(|protocol, answers| match encode(protocol, answers) {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = protocol.fail(tag, UNENCODABLE_RESPONSE, [b""; 0], answers);
                Err(Error::Encode(e))
            }
        });
        if Conn::answers_added(&mut out, added) {
            self.conn.flush_answers(out);
        }
        result
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.fail_inner(DROPPED_UNANSWERED, [b""; 0]);
        }
    }
}

/// Publishes from any thread; cheap to clone. The cost of a publication grows
/// with the subscriptions it matches, not with the number of connections.
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Publishes `values` on `topic` to every connection subscribed to it (by
    /// exact topic or pattern, once per connection), keeping it if the topic is
    /// buffered. Returns how many connections it was queued for.
    ///
    /// # Errors
    /// [`EncodeError`] if the frame cannot be encoded (more than 254 values, or one
    /// over 4 GiB); nothing is published.
    pub fn publish<I>(&self, topic: impl AsRef<[u8]>, values: I) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let mut frame = Vec::new();
        encode_publication(topic.as_ref(), values, &mut frame)?;
        let frame = Bytes::from(frame);
        let shared = &self.shared;
        let mut wake = false;
        let queued = lock(&shared.hub).publish(topic.as_ref(), &frame, |conn| {
            let mut out = conn.lock();
            let (ok, newly) = conn.queue_publication(&mut out, &frame);
            drop(out);
            if newly {
                shared.flusher.push(conn.clone());
                wake = true;
            }
            ok
        });
        shared.counters.published(queued as u64);
        if wake {
            shared.flusher.wake();
        }
        Ok(queued)
    }

    /// Keeps the last `depth` publications of every topic equal to `selector` (or
    /// matching it, for a pattern); a new subscriber receives them first. `depth` 0
    /// stops keeping them.
    ///
    /// # Errors
    /// [`PatternError`] if `selector` is not a well-formed topic or pattern.
    pub fn set_buffer(&self, selector: impl AsRef<[u8]>, depth: usize) -> Result<(), PatternError> {
        lock(&self.shared.hub).set_buffer(selector.as_ref(), depth)
    }

    /// Whether any connection subscribes to a topic matching `topic`.
    #[must_use]
    pub fn has_subscribers(&self, topic: impl AsRef<[u8]>) -> bool {
        lock(&self.shared.hub).has_subscribers(topic.as_ref())
    }

    /// The server's counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

/// Stops a server gracefully; cheap to clone and to call from any thread.
///
/// [`ShutdownHandle::shutdown`] only stores an atomic flag and writes one byte to a
/// socket the acceptor polls (no allocation, no lock), so it may also be called
/// from a signal handler.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Asks the server to shut down; returns at once.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = (&self.shared.wake).write(&[1]);
    }

    /// Whether shutdown was asked for.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

/// A bound server, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server<H> {
    listener: Listener,
    handler: Arc<H>,
    shared: Arc<Shared>,
    wake_rx: UnixStream,
}

impl<H: Handler> Server<H> {
    /// Binds an [`Address`]: a UNIX path (with the socket-file rules of
    /// [`crate::socket::bind_unix`]), an abstract name, or TCP.
    ///
    /// # Errors
    /// As the bind.
    pub fn bind(address: &Address, handler: H, config: ServerConfig) -> io::Result<Self> {
        let listener = address.bind_with(&socket_options(&config))?;
        Self::from_listener(listener, handler, config)
    }

    /// Binds a UNIX socket file.
    ///
    /// # Errors
    /// As [`crate::socket::bind_unix`].
    pub fn bind_unix(path: impl AsRef<Path>, handler: H, config: ServerConfig) -> io::Result<Self> {
        Self::bind(&Address::Unix(path.as_ref().to_path_buf()), handler, config)
    }

    /// Binds a Linux abstract socket name.
    ///
    /// # Errors
    /// As [`crate::socket::bind_abstract`].
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn bind_abstract(name: &[u8], handler: H, config: ServerConfig) -> io::Result<Self> {
        Self::from_listener(crate::socket::bind_abstract(name)?, handler, config)
    }

    /// Binds TCP.
    ///
    /// # Errors
    /// As [`TcpListener::bind`].
    pub fn bind_tcp(address: impl ToSocketAddrs, handler: H, config: ServerConfig) -> io::Result<Self> {
        Self::from_listener(TcpListener::bind(address)?, handler, config)
    }

    /// Serves a listener the application bound (a [`std::os::unix::net::UnixListener`], a
    /// [`TcpListener`], or a [`Listener`] with its socket-file guard).
    ///
    /// # Errors
    /// If the wake-up socket cannot be made, or a buffered-topic selector in
    /// `config` is not well formed ([`io::ErrorKind::InvalidInput`]).
    pub fn from_listener(listener: impl Into<Listener>, handler: H, config: ServerConfig) -> io::Result<Self> {
        let listener = listener.into();
        listener.set_nonblocking(true)?;
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let mut hub = Hub::new();
        for (selector, depth) in &config.buffers {
            hub.set_buffer(selector, *depth)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let shared = Arc::new(Shared {
            bound: QueueBound::new(&config),
            config,
            hub: Mutex::new(hub),
            flusher: Flusher::new()?,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            readers: AtomicUsize::new(0),
            wake,
        });
        Ok(Self {
            listener,
            handler: Arc::new(handler),
            shared,
            wake_rx,
        })
    }

    /// A handle to publish with.
    #[must_use]
    pub fn publisher(&self) -> Publisher {
        Publisher {
            shared: self.shared.clone(),
        }
    }

    /// A handle to stop the server with.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// The server's counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The address clients can connect to, where it can be told.
    #[must_use]
    pub fn local_address(&self) -> Option<Address> {
        self.listener.local_address()
    }

    /// Runs the server on a new thread; returns a handle to stop and join it.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let shutdown = self.shutdown_handle();
        let publisher = self.publisher();
        let thread = std::thread::Builder::new()
            .name("microsocket-accept".into())
            .spawn(move || self.run())?;
        Ok(RunningServer {
            shutdown,
            publisher,
            thread: Some(thread),
        })
    }

    /// Runs until SIGINT or SIGTERM (or a [`ShutdownHandle`]), then shuts down
    /// gracefully.
    ///
    /// # Errors
    /// If the signal handlers cannot be installed, and as [`Server::run`].
    pub fn run_until_signal(self) -> io::Result<()> {
        let signalled = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // The flag replaces the default action (ending the process); the pipe
            // write wakes the acceptor. Both are signal-safe.
            signal_hook::flag::register(signal, signalled.clone())?;
            signal_hook::low_level::pipe::register(signal, self.shared.wake.try_clone()?)?;
        }
        self.run_inner(Some(signalled))
    }

    /// Accepts and serves connections until shut down, then shuts down gracefully
    /// (see the module docs) and returns.
    ///
    /// # Errors
    /// A fatal error polling the listener or starting the flusher thread.
    pub fn run(self) -> io::Result<()> {
        self.run_inner(None)
    }

    fn run_inner(self, signalled: Option<Arc<AtomicBool>>) -> io::Result<()> {
        let shared = self.shared.clone();
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("microsocket-flush".into())
                .spawn(move || shared.flusher.run())?
        };
        let next_id = AtomicUsize::new(1);
        let mut sink = [0u8; 64];
        let mut backoff = false;
        let result = loop {
            if shared.stopping.load(Ordering::SeqCst) || signalled.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                break Ok(());
            }
            let polled = if backoff {
                // Accepting failed for want of descriptors or memory. The
                // connection stays in the backlog and keeps the listener
                // readable, so wait for shutdown only, a while, then retry.
                let mut fds = [PollFd::new(&self.wake_rx, PollFlags::IN)];
                rustix::event::poll(&mut fds, Some(&ACCEPT_BACKOFF))
            } else {
                let mut fds = [
                    PollFd::new(&self.listener, PollFlags::IN),
                    PollFd::new(&self.wake_rx, PollFlags::IN),
                ];
                rustix::event::poll(&mut fds, None)
            };
            match polled {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => break Err(io::Error::from(e)),
            }
            backoff = false;
            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            // Bounded, so that shutdown is noticed while clients keep connecting;
            // the listener stays readable and `poll` returns at once.
            for _ in 0..ACCEPT_BATCH {
                let stream = match self.listener.accept() {
                    Ok(s) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A signal, or a connection that went away before it was
                    // accepted: the next one may be fine.
                    Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {
                        continue
                    }
                    // Out of descriptors (EMFILE, ENFILE) or memory, and anything
                    // else: back off rather than spin, keep serving what is open.
                    Err(_) => {
                        backoff = true;
                        break;
                    }
                };
                if lock(&shared.hub).len() >= shared.config.max_connections {
                    shared.counters.connection_refused();
                    continue;
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed) as u64;
                self.start_connection(id, stream);
            }
        };
        self.shutdown_connections();
        shared.flusher.stop.store(true, Ordering::SeqCst);
        shared.flusher.asleep.store(true, Ordering::SeqCst);
        shared.flusher.wake();
        let _ = flusher.join();
        drop(self.listener);
        result
    }

    /// Registers a connection and starts its reader thread, detached: the thread
    /// is released when it ends (a handle kept until the next `accept` would
    /// keep its stack mapped until then, without bound while clients keep
    /// connecting).
    fn start_connection(&self, id: u64, stream: Stream) {
        let _ = stream.set_read_timeout(None);
        let context = RequestContext {
            connection: id,
            peer: stream.peer_credentials(),
        };
        let mut conn = None;
        lock(&self.shared.hub).insert_with(|slot| {
            let made = Arc::new(Conn {
                context,
                slot,
                stream,
                out: Mutex::new(Out::new(Protocol::new(ServerLimits {
                    max_in_flight: self.shared.config.max_in_flight,
                }))),
                drained: Condvar::new(),
                shared: self.shared.clone(),
            });
            conn = Some(made.clone());
            made
        });
        let Some(conn) = conn else { return };
        self.shared.counters.connection_opened();
        let handler = self.handler.clone();
        let running = ReaderRunning::new(self.shared.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("microsocket-conn-{id}"))
            .stack_size(self.shared.config.stack_size)
            .spawn({
                let conn = conn.clone();
                move || {
                    let _running = running;
                    serve_connection(&conn, &*handler);
                }
            });
        // Dropping the handle detaches the thread (the count above tracks it).
        if spawned.is_err() {
            let mut out = conn.lock();
            conn.kill_locked(&mut out);
            drop(out);
            lock(&self.shared.hub).remove(conn.slot, []);
            self.shared.counters.connection_closed();
        }
    }

    /// Stops reading every connection, waits for answers and queues to drain,
    /// then closes what is left.
    fn shutdown_connections(&self) {
        let readers_running = || self.shared.readers.load(Ordering::SeqCst) > 0;
        let conns: Vec<Arc<Conn>> = lock(&self.shared.hub).connections().cloned().collect();
        for conn in &conns {
            let _ = conn.stream.shutdown(Shutdown::Read);
        }
        let deadline = Instant::now() + self.shared.config.shutdown_timeout;
        while readers_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        for conn in &conns {
            let mut out = conn.lock();
            conn.kill_locked(&mut out);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while readers_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Readers still running are stuck in handler code; they are left to end on
        // their own (their connections are closed).
    }
}

/// A server running on its own thread, from [`Server::spawn`].
#[derive(Debug)]
pub struct RunningServer {
    shutdown: ShutdownHandle,
    publisher: Publisher,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// A handle to stop the server with.
    #[must_use]
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// A handle to publish with.
    #[must_use]
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Shuts the server down gracefully and waits for it.
    ///
    /// # Errors
    /// The error that stopped the server, if any.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown.shutdown();
        self.join_inner()
    }

    fn join_inner(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        let _ = self.join_inner();
    }
}

/// Reads for which a connection's reader keeps polling before it blocks after
/// a read that brought several frames: a client that keeps requests in flight
/// sends the next batch within microseconds, and an occasional read of one
/// frame among its batches does not mean it stopped.
const BURST_READS: u8 = 8;

/// The reader thread of one connection.
fn serve_connection<H: Handler + ?Sized>(conn: &Arc<Conn>, handler: &H) {
    let shared = &conn.shared;
    let config = &shared.config;
    handler.connected(&conn.context);
    let mut rx = RxBuf::new(16 << 10, config.max_frame);
    let mut decoder = Decoder::new(config.max_frame);
    // Reads left during which the reader polls before it blocks (see
    // `ServerConfig::spin_before_sleep`).
    let mut burst = 0u8;
    'read: loop {
        // Backpressure: stop reading requests while too much is unsent.
        let subscribed = {
            let mut out = conn.lock();
            while out.queued > config.max_queued_bytes && !out.dead {
                out.drain_waiters += 1;
                out = conn
                    .drained
                    .wait_timeout(out, Duration::from_millis(100))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
                out.drain_waiters -= 1;
            }
            if out.dead {
                break 'read;
            }
            !out.protocol.subscriptions().is_empty()
        };
        let spare = rx.spare();
        let window = if burst > 0 {
            config.spin_before_sleep
        } else {
            Duration::ZERO
        };
        let read = match read_within(&conn.stream, spare, window) {
            Some(read) => read,
            None if subscribed => {
                // A thread blocked in `read` is woken each time the peer reads
                // publications and frees send-buffer space (the socket has one wait
                // queue); one waiting in `poll` for input is not.
                let ready = if window.is_zero() {
                    rustix::net::recv(&conn.stream, spare, rustix::net::RecvFlags::DONTWAIT)
                } else {
                    // `read_within` has just found nothing.
                    Err(rustix::io::Errno::AGAIN)
                };
                match ready {
                    Ok((n, _)) => Ok(n),
                    Err(rustix::io::Errno::AGAIN) => {
                        let mut fds = [PollFd::new(&conn.stream, PollFlags::IN)];
                        let _ = rustix::event::poll(&mut fds, None);
                        continue;
                    }
                    Err(e) => Err(io::Error::from(e)),
                }
            }
            None => (&conn.stream).read(spare),
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        rx.commit(n);
        conn.lock().corked = true;
        let mut frames = 0usize;
        loop {
            let (consumed, event) = {
                let mut out = conn.lock();
                // The protocol's own answers (the subscribe barrier's, say) follow
                // publications already queued, a subscription's catch-up among them.
                let (decoded, added) = out.encode_answer(|protocol, answers| match decoder.decode(rx.data()) {
                    Decoded::NeedMore => None,
                    Decoded::Skipped { consumed } => Some((consumed, None)),
                    Decoded::Oversized { sigil, tag, consumed } => {
                        let _ = protocol.handle_oversized(sigil, tag, answers);
                        Some((consumed, None))
                    }
                    Decoded::Frame { frame, consumed } => {
                        // Answers go into a growable buffer, so encoding cannot fail.
                        Some((consumed, protocol.handle_frame(frame, answers).ok().flatten()))
                    }
                });
                let Some((consumed, event)) = decoded else { break };
                frames += 1;
                // Corked: the batch's answers are written when it ends.
                Conn::answers_added(&mut out, added);
                (consumed, event)
            };
            if let Some(event) = event {
                handle_event(conn, handler, event);
            }
            rx.consume(consumed);
        }
        burst = if frames > 1 {
            BURST_READS
        } else {
            burst.saturating_sub(1)
        };
        let mut out = conn.lock();
        out.corked = false;
        if out.answers_sent < out.answers.len() || (out.pubs_sent < out.pubs.len() && !out.scheduled) {
            conn.flush_answers(out);
        }
    }
    // The client stopped sending (or the server is shutting down): let requests
    // in flight be answered and the queue drain, within the drain timeout.
    let deadline = Instant::now() + config.shutdown_timeout;
    {
        let mut out = conn.lock();
        while !out.dead && (out.protocol.requests_in_flight() > 0 || out.queued > 0) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            out.drain_waiters += 1;
            out = conn
                .drained
                .wait_timeout(out, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            out.drain_waiters -= 1;
        }
    }
    {
        let mut hub = lock(&shared.hub);
        let mut out = conn.lock();
        let subscriptions: Vec<(SubscriptionKind, Vec<u8>)> = out
            .protocol
            .subscriptions()
            .iter()
            .map(|(_, kind, bytes)| (kind, bytes.to_vec()))
            .collect();
        hub.remove(conn.slot, subscriptions.iter().map(|(k, b)| (*k, b.as_slice())));
        out.protocol.handle_eof();
        conn.kill_locked(&mut out);
    }
    shared.counters.connection_closed();
    handler.disconnected(&conn.context);
}

fn handle_event<H: Handler + ?Sized>(conn: &Arc<Conn>, handler: &H, event: ServerEvent<'_>) {
    let shared = &conn.shared;
    match event {
        ServerEvent::Request { tag, command, args } => {
            shared.counters.requests(1);
            let responder = Responder {
                conn: conn.clone(),
                tag: TagBuf::new(tag),
                answered: false,
            };
            handler.handle(
                Request {
                    context: &conn.context,
                    command,
                    args,
                },
                responder,
            );
        }
        ServerEvent::Subscribed { topic, kind, new } => {
            if !new {
                return;
            }
            let within_limit = conn.lock().protocol.subscriptions().len() <= shared.config.max_subscriptions;
            if !within_limit || !handler.authorize_subscription(&conn.context, kind, topic) {
                conn.lock().protocol.remove_subscription(kind, topic);
                shared.counters.subscription_refused();
                return;
            }
            let mut hub = lock(&shared.hub);
            // Topics the connection already receives through another subscription
            // are not replayed: a publication reaches a connection once.
            let backlog = hub
                .subscribe(conn.slot, kind, topic)
                .map(|(_, b)| b)
                .unwrap_or_default();
            if !backlog.is_empty() {
                let mut out = conn.lock();
                let mut newly = false;
                for frame in &backlog {
                    newly |= conn.queue_publication(&mut out, frame).1;
                }
                drop(out);
                if newly {
                    shared.flusher.push(conn.clone());
                    shared.flusher.wake();
                }
            }
        }
        ServerEvent::Unsubscribed { topic, removed } => {
            if removed > 0 {
                lock(&shared.hub).unsubscribe(conn.slot, topic);
            }
            handler.unsubscribed(&conn.context, topic, removed);
        }
        _ => {}
    }
}
