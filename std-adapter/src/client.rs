//! The blocking client: requests from many threads over one connection, and
//! subscriptions.
//!
//! # Thread model: whoever waits, reads
//!
//! A [`Client`] is a cheap handle (`Clone`, `Send`, `Sync`) to one connection. It
//! starts no thread. Any thread may call [`Client::request`]; the request is
//! encoded into the connection's pending buffer and written, and the thread then
//! waits for its answer:
//!
//! - if no other thread is reading the socket, it becomes the *leader*: it reads,
//!   decodes every complete frame, hands each response to the slot of the thread
//!   that waits for it and each publication to the matching subscription queues,
//!   and stops leading as soon as its own answer is in. While other threads
//!   await answers too, it first polls the socket for up to
//!   [`ClientConfig::spin_before_sleep`], yielding the CPU between tries, so
//!   that the next batch of answers, due within microseconds, needs no wake-up;
//!   a thread awaiting the only answer due, or publications, blocks in `read`
//!   at once;
//! - otherwise it yields the CPU a bounded number of times, which on a busy
//!   connection usually finds its answer in or the leader role free without a
//!   wake-up, then sleeps on its own condition variable until its answer arrives
//!   or the leader role falls free (then one sleeper is woken to take it over).
//!
//! Writes are combined: a thread that finds another one writing leaves its frame
//! in the pending buffer for that writer, and while answers handed out by the
//! leader are still waiting to be collected by their (waking) threads, new
//! requests wait for the last of those threads, which writes them all in one
//! system call. Wake-ups go only to threads that sleep, after the leader has
//! released the lock.
//!
//! A lone thread doing request after request therefore reads its own answers with
//! no thread handoff at all: the round trip costs what a hand-written blocking
//! ping-pong costs, plus a few uncontended locks. With many threads, each response
//! costs at most one wake-up of the thread it belongs to (none when the thread
//! is still yielding), which a dedicated reader thread would cost too, and the
//! system calls are shared.
//!
//! The socket is read only while some thread waits: for a request, or in a
//! [`Subscription`]'s `recv`/`recv_timeout`/iterator (or `try_recv`, which reads
//! what is already there without blocking). Publications that arrive while nobody
//! waits stay in the socket buffer; a server that cannot deliver them applies its
//! slow-consumer policy. When the connection ends (EOF, an error, or
//! [`Client::close`]) the leader marks it closed and wakes every waiter, which gets
//! [`Error::Closed`]: nothing hangs. A server that stops reading but still
//! answers (a microsocket server shutting down gracefully) makes writes fail
//! with `EPIPE`: from then on new requests fail with [`Error::Closed`] at once,
//! while requests already sent get their answers, or [`Error::Closed`] when the
//! server closes the connection.
//!
//! # Timeouts
//!
//! Requests time out after [`ClientConfig::request_timeout`] (25 s unless set;
//! `None` waits forever), or the timeout given to [`Client::request_timeout`]. A
//! timed-out request frees its slot (the tag stays reserved until the late answer,
//! which is dropped). Writes use the same timeout; a write that times out leaves a
//! partial frame on the wire, so it closes the connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{ClientEvent, ClientProtocol, RequestId, SubscriptionId};

use crate::error::{Error, Result};
use crate::hash::IdMap;
use crate::rx::{read_within, RxBuf};
use crate::socket::{Address, Stream};
pub use microsocket_host::{ClientConfig, DEFAULT_CLIENT_SPIN};
use microsocket_host::{Delivery, SubscriptionQueue};
use std::convert::Infallible;

/// Requests one connection can have in flight (one-byte tags, as the original
/// IPC::MicroSocket client).
pub const MAX_IN_FLIGHT: usize = 256;
/// Distinct wire subscriptions (topics and patterns) one client connection can
/// hold.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Total bytes of the topics and patterns of one client connection's subscriptions.
pub const MAX_SUBSCRIPTION_BYTES: usize = 4096;

/// Write buffers larger than this are freed once written rather than kept.
const MAX_KEPT_BUFFER: usize = 1 << 20;

/// How many times a thread whose answer another thread is reading yields the CPU
/// before it sleeps. A wake-up from a condition variable costs a futex call and a
/// cross-CPU context switch; yielding lets the leader and the server run and
/// usually finds the answer in, or the leader role free, first. Bounded, so a
/// slow server costs a waiter at most this many `sched_yield` calls.
const SPIN_YIELDS: u32 = 64;

/// Answers that arrived for one slot and are not yet collected, with their ids.
type Answers = Vec<(RequestId, Result<Vec<Bytes>>)>;

type Protocol = ClientProtocol<MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES>;

/// One publication received on a subscription.
///
/// Its topic and values are views of one buffer shared by the publications
/// received in the same read (up to 64 KiB), so receiving one costs no copy of
/// its bytes; a publication kept alive keeps that buffer alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The topic it was published on.
    pub topic: Bytes,
    /// The published values.
    pub values: Vec<Bytes>,
}

/// A handle to one client connection; clone it to share the connection between
/// threads. See the [module docs](crate::client) for the thread model.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stream: Stream,
    config: ClientConfig,
    state: Mutex<State>,
    /// Held only by the leader.
    rx: Mutex<Reader>,
    /// One condition variable per request slot, used with `state`.
    slot_cvs: Box<[Condvar]>,
    /// Bumped whenever an answer is handed out, the connection closes or the
    /// leader steps down.
    progress: AtomicU64,
}

#[derive(Debug)]
struct Reader {
    buf: RxBuf,
    decoder: Decoder,
    /// The read timeout set on the socket now.
    timeout: Option<Duration>,
}

#[derive(Debug)]
struct SubQueue {
    /// Publications and lag markers, in order.
    queue: SubscriptionQueue<Publication, Infallible>,
    /// Threads sleeping on its condition variable (0 or 1).
    sleeping: u16,
}

#[derive(Debug, Clone)]
enum WaitKey {
    Slot(u16),
    Sub(Arc<SubShared>),
}

impl WaitKey {
    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Slot(a), Self::Slot(b)) => a == b,
            (Self::Sub(a), Self::Sub(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct SubShared {
    key: u64,
    cv: Condvar,
}

#[derive(Debug)]
struct State {
    protocol: Protocol,
    /// The request waiting in each slot. The core frees a slot as soon as its
    /// answer arrives, so answers wait in `done` (per slot, with their ids), not in `slots`.
    slots: Vec<Option<RequestId>>,
    done: Vec<Answers>,
    /// Per slot: threads sleeping on the slot's condition variable (two at most:
    /// one whose answer is in but not yet collected, one whose request reuses the
    /// freed slot).
    sleeping: Vec<u16>,
    /// Encoded frames not yet written, in protocol order.
    pending: Vec<u8>,
    /// The writer's buffer, kept for reuse while nobody writes.
    spare: Vec<u8>,
    /// A thread is writing: it writes whatever `pending` holds before it stops.
    writing: bool,
    /// Stands in for the sleeping flag of a subscription being dropped.
    sub_sleeping_gone: u16,
    /// Wake-ups to send once the lock is released.
    wakes: Vec<WaitKey>,
    /// Answers handed out to `done` and not yet collected by their threads.
    uncollected: usize,
    /// Someone leads (reads the socket).
    reading: bool,
    /// Threads inside [`Inner::wait`] for an answer (not a publication),
    /// leader included.
    awaiting_answers: usize,
    closed: bool,
    /// The server stopped reading (a write failed with `EPIPE`, as when a
    /// server shutting down gracefully shuts its side for reading): nothing
    /// more is written, new requests fail with [`Error::Closed`], and requests
    /// already sent still get the answers the server gives before it closes.
    send_closed: bool,
    /// Threads waiting that could take over reading.
    idle: Vec<WaitKey>,
    /// Local subscription handles by wire subscription.
    handles: IdMap<SubscriptionId, Vec<Arc<SubShared>>>,
    queues: IdMap<u64, SubQueue>,
    next_key: u64,
}

impl Client {
    /// Connects to an [`Address`] (a UNIX path, an abstract name or TCP).
    ///
    /// # Errors
    /// The connect error.
    pub fn connect(address: &Address) -> Result<Self> {
        Self::connect_with(address, ClientConfig::default())
    }

    /// Connects to a UNIX socket file.
    ///
    /// # Errors
    /// The connect error.
    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect_unix_with(path, ClientConfig::default())
    }

    /// Connects to a UNIX socket file with these settings.
    ///
    /// # Errors
    /// The connect error.
    pub fn connect_unix_with(path: impl AsRef<Path>, config: ClientConfig) -> Result<Self> {
        Ok(Self::new(UnixStream::connect(path)?, config)?)
    }

    /// Connects to an [`Address`] with these settings.
    ///
    /// # Errors
    /// The connect error.
    pub fn connect_with(address: &Address, config: ClientConfig) -> Result<Self> {
        Ok(Self::new(address.connect()?, config)?)
    }

    /// Connects to a Linux abstract socket name.
    ///
    /// # Errors
    /// The connect error.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn connect_abstract(name: &[u8]) -> Result<Self> {
        Ok(Self::new(
            crate::socket::connect_abstract(name)?,
            ClientConfig::default(),
        )?)
    }

    /// Connects over TCP (with `TCP_NODELAY`).
    ///
    /// # Errors
    /// The connect error.
    pub fn connect_tcp(address: impl ToSocketAddrs) -> Result<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        Ok(Self::new(stream, ClientConfig::default())?)
    }

    /// Runs the protocol over a stream the caller connected.
    ///
    /// # Errors
    /// If the socket's write timeout cannot be set.
    pub fn new(stream: impl Into<Stream>, config: ClientConfig) -> io::Result<Self> {
        let stream = stream.into();
        stream.set_write_timeout(config.request_timeout)?;
        stream.set_read_timeout(None)?;
        let slots = vec![None; MAX_IN_FLIGHT];
        let reader = Reader {
            buf: RxBuf::new(64 << 10, config.max_frame),
            decoder: Decoder::new(config.max_frame),
            timeout: None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                stream,
                state: Mutex::new(State {
                    protocol: Protocol::new(),
                    slots,
                    done: (0..MAX_IN_FLIGHT).map(|_| Vec::new()).collect(),
                    sleeping: vec![0; MAX_IN_FLIGHT],
                    pending: Vec::new(),
                    spare: Vec::new(),
                    writing: false,
                    sub_sleeping_gone: 0,
                    wakes: Vec::new(),
                    uncollected: 0,
                    reading: false,
                    awaiting_answers: 0,
                    closed: false,
                    send_closed: false,
                    idle: Vec::new(),
                    handles: IdMap::default(),
                    queues: IdMap::default(),
                    next_key: 0,
                }),
                rx: Mutex::new(reader),
                slot_cvs: (0..MAX_IN_FLIGHT).map(|_| Condvar::new()).collect(),
                progress: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// The connection's settings.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends a request and waits for its answer, up to the default timeout.
    ///
    /// # Errors
    /// [`Error::Failed`] if the server failed it, [`Error::TimedOut`],
    /// [`Error::Closed`], [`Error::InflightFull`], [`Error::FrameTooLarge`],
    /// [`Error::Encode`] for arguments a frame cannot carry, [`Error::Io`].
    pub fn request<I>(&self, command: impl AsRef<[u8]>, args: I) -> Result<Vec<Bytes>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.request_timeout(command, args, self.inner.config.request_timeout)
    }

    /// Sends a request and waits for its answer for at most `timeout` (`None`:
    /// forever).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn request_timeout<I>(
        &self,
        command: impl AsRef<[u8]>,
        args: I,
        timeout: Option<Duration>,
    ) -> Result<Vec<Bytes>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let deadline = timeout.map(|t| Instant::now() + t);
        let id = self.send_request(command.as_ref(), args)?;
        self.wait_response(id, deadline)
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.lock_state().closed
    }

    /// Closes the connection: every waiter wakes with [`Error::Closed`].
    pub fn close(&self) {
        let _ = self.inner.stream.shutdown(Shutdown::Both);
        let mut st = self.inner.lock_state();
        self.inner.close_locked(&mut st);
    }

    /// Subscribes to an exact topic; returns once the subscription is active on
    /// the server (a microsocket server has then queued any buffered publications
    /// of the topic, which arrive first).
    ///
    /// # Errors
    /// [`Error::Subscribe`] if the connection's subscription table is full, and as
    /// [`Client::request`] for the barrier request that confirms it.
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<Subscription> {
        self.add_subscription(topic.as_ref(), false)
    }

    /// Subscribes to every topic matching `pattern` (`*` one token, a final `>`
    /// one or more; see the protocol). Returns once the subscription is active.
    ///
    /// # Errors
    /// [`Error::Subscribe`] for a pattern that is not well formed or a full table,
    /// and as [`Client::subscribe`].
    pub fn subscribe_pattern(&self, pattern: impl AsRef<[u8]>) -> Result<Subscription> {
        self.add_subscription(pattern.as_ref(), true)
    }

    fn add_subscription(&self, bytes: &[u8], pattern: bool) -> Result<Subscription> {
        let inner = &self.inner;
        let mut st = inner.lock_state();
        if st.closed || st.send_closed {
            return Err(Error::Closed);
        }
        if st.protocol.requests_in_flight() >= inner.config.max_in_flight {
            return Err(Error::InflightFull);
        }
        let State { protocol, pending, .. } = &mut *st;
        let id = if pattern {
            protocol.subscribe_pattern(bytes, pending)?
        } else {
            protocol.subscribe(bytes, pending)?
        };
        let key = st.next_key;
        st.next_key += 1;
        let shared = Arc::new(SubShared {
            key,
            cv: Condvar::new(),
        });
        st.handles.entry(id).or_default().push(shared.clone());
        st.queues.insert(
            key,
            SubQueue {
                queue: SubscriptionQueue::new(self.inner.config.subscription_capacity),
                sleeping: 0,
            },
        );
        let subscription = Subscription {
            client: self.clone(),
            shared,
            id,
            topic: Bytes::copy_from_slice(bytes),
        };
        let State { protocol, pending, .. } = &mut *st;
        let barrier = match protocol.barrier(pending) {
            Ok(b) => b,
            Err(e) => {
                // The subscribe frame goes out with the next write; dropping
                // `subscription` then unsubscribes.
                drop(st);
                return Err(e.into());
            }
        };
        st.slots[usize::from(barrier.slot())] = Some(barrier);
        inner.flush_pending(st)?;
        let deadline = inner.config.request_timeout.map(|t| Instant::now() + t);
        // An IPC::MicroSocket 0.03 server hands the empty command to its
        // application, which may well fail it: either answer proves the
        // subscription is in place.
        match self.wait_response(barrier, deadline) {
            Ok(_) | Err(Error::Failed { .. }) => Ok(subscription),
            Err(e) => Err(e),
        }
    }

    fn send_request<I>(&self, command: &[u8], args: I) -> Result<RequestId>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let inner = &self.inner;
        let mut st = inner.lock_state();
        if st.closed || st.send_closed {
            return Err(Error::Closed);
        }
        if st.protocol.requests_in_flight() >= inner.config.max_in_flight {
            return Err(Error::InflightFull);
        }
        let State { protocol, pending, .. } = &mut *st;
        let id = protocol.request(command, args, pending)?;
        st.slots[usize::from(id.slot())] = Some(id);
        if st.uncollected == 0 {
            inner.flush_pending(st)?;
        }
        // Otherwise threads are about to collect answers and, as they usually do,
        // send their next requests: the last to collect writes them all at once.
        Ok(id)
    }

    fn wait_response(&self, id: RequestId, deadline: Option<Instant>) -> Result<Vec<Bytes>> {
        let slot = usize::from(id.slot());
        let outcome = self.inner.wait(WaitKey::Slot(id.slot()), deadline, false, |st| {
            match take_done(st, id) {
                Some(result) => Some(result),
                None if st.closed => Some(Err(Error::Closed)),
                None => None,
            }
        });
        match outcome {
            Some(result) => result,
            None => {
                let mut st = self.inner.lock_state();
                if let Some(result) = take_done(&mut st, id) {
                    self.inner.release_and_flush(st);
                    return result;
                }
                if st.slots[slot] == Some(id) {
                    st.slots[slot] = None;
                    st.protocol.cancel(id);
                }
                Err(if st.closed { Error::Closed } else { Error::TimedOut })
            }
        }
    }
}

/// Received bytes shared by the publications cut out of them: one allocation
/// and copy per read rather than one per topic and value. A publication keeps
/// its whole chunk (at most [`CHUNK`] bytes, or one frame) alive while queued.
#[derive(Default)]
struct Chunk {
    bytes: Bytes,
    /// Where `bytes` was copied from (the receive buffer does not move while a
    /// read's frames are handed out).
    from: usize,
}

/// The most bytes copied into one [`Chunk`], unless a single frame is larger.
const CHUNK: usize = 64 << 10;

impl Chunk {
    /// Makes sure the frame at the start of `data` (`len` bytes) lies inside the
    /// chunk, copying it and the frames after it (up to [`CHUNK`] bytes) if not.
    fn cut(&mut self, data: &[u8], len: usize) -> &Self {
        let start = data.as_ptr() as usize;
        let inside = start >= self.from && start + len <= self.from + self.bytes.len();
        if !inside || self.bytes.is_empty() {
            let take = data.len().min(len.max(CHUNK));
            self.bytes = Bytes::copy_from_slice(&data[..take]);
            self.from = start;
        }
        self
    }

    /// `part` (a slice of the frame last given to [`Chunk::cut`]) as a view of
    /// the chunk.
    fn slice(&self, part: &[u8]) -> Bytes {
        let at = (part.as_ptr() as usize).wrapping_sub(self.from);
        if part.is_empty() {
            Bytes::new()
        } else if at <= self.bytes.len() && part.len() <= self.bytes.len() - at {
            self.bytes.slice(at..at + part.len())
        } else {
            Bytes::copy_from_slice(part)
        }
    }
}

/// The per-slot parts of [`State`] answers are handed out through.
struct Slots<'a> {
    slots: &'a mut [Option<RequestId>],
    done: &'a mut [Answers],
    sleeping: &'a mut [u16],
    wakes: &'a mut Vec<WaitKey>,
    uncollected: &'a mut usize,
}

/// Takes the answer for `id` from its slot's list of answers not yet collected.
fn take_done(st: &mut State, id: RequestId) -> Option<Result<Vec<Bytes>>> {
    let list = &mut st.done[usize::from(id.slot())];
    let i = list.iter().position(|(got, _)| *got == id)?;
    st.uncollected = st.uncollected.saturating_sub(1);
    Some(list.swap_remove(i).1)
}

impl State {
    /// How many threads waiting with `key` sleep on its condition variable.
    fn sleeping(&mut self, key: &WaitKey) -> &mut u16 {
        match key {
            WaitKey::Slot(s) => &mut self.sleeping[usize::from(*s)],
            WaitKey::Sub(h) => match self.queues.get_mut(&h.key) {
                Some(q) => &mut q.sleeping,
                None => &mut self.sub_sleeping_gone,
            },
        }
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the frames in `pending`, unless another thread is writing: that
    /// thread then writes them too before it stops (write combining: threads
    /// requesting at once share system calls). The lock is not held while
    /// writing. A failed write closes the connection: part of a frame may be on
    /// the wire. Except `EPIPE`: the server stopped reading, and the connection
    /// stays open for reading the answers it still sends (see `State::send_closed`).
    fn flush_pending<'a>(&'a self, st: MutexGuard<'a, State>) -> Result<()> {
        self.flush_pending_then(st, || {})
    }

    /// As [`Inner::flush_pending`], running `unlocked` once the lock is first
    /// released.
    fn flush_pending_then<'a>(&'a self, mut st: MutexGuard<'a, State>, unlocked: impl FnOnce()) -> Result<()> {
        if st.send_closed {
            st.pending.clear();
        }
        if st.writing || st.pending.is_empty() {
            drop(st);
            unlocked();
            return Ok(());
        }
        st.writing = true;
        let mut buf = std::mem::take(&mut st.spare);
        let mut unlocked = Some(unlocked);
        loop {
            std::mem::swap(&mut buf, &mut st.pending);
            drop(st);
            if let Some(f) = unlocked.take() {
                f();
            }
            let result = (&self.stream).write_all(&buf);
            buf.clear();
            st = self.lock_state();
            if let Err(e) = result {
                st.writing = false;
                st.pending.clear();
                if e.kind() == io::ErrorKind::BrokenPipe {
                    // The server stopped reading but may still answer what it
                    // read: keep reading until it closes (then requests it did not
                    // read fail with `Closed`); write nothing more.
                    st.send_closed = true;
                    return Ok(());
                }
                let _ = self.stream.shutdown(Shutdown::Both);
                self.close_locked(&mut st);
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::TimedOut,
                    io::ErrorKind::ConnectionReset => Error::Closed,
                    _ => Error::Io(e),
                });
            }
            if st.pending.is_empty() || st.closed {
                break;
            }
        }
        st.writing = false;
        if buf.capacity() <= MAX_KEPT_BUFFER {
            st.spare = buf;
        }
        if st.pending.capacity() > MAX_KEPT_BUFFER && st.pending.is_empty() {
            st.pending = Vec::new();
        }
        Ok(())
    }

    /// Marks the connection closed and wakes everyone.
    fn close_locked(&self, st: &mut State) {
        if st.closed {
            return;
        }
        st.closed = true;
        self.progress.fetch_add(1, Ordering::Release);
        st.protocol.handle_eof();
        let State { slots, done, .. } = st;
        for ((slot, done), cv) in slots.iter_mut().zip(done.iter_mut()).zip(self.slot_cvs.iter()) {
            if let Some(id) = slot.take() {
                done.push((id, Err(Error::Closed)));
                st.uncollected += 1;
                cv.notify_all();
            }
        }
        for list in st.handles.values() {
            for h in list {
                h.cv.notify_all();
            }
        }
    }

    /// Owes a wake-up to the thread waiting with `key` if it sleeps (a
    /// notification is a system call even when nobody waits, so it is made only
    /// when needed); it is sent once the state is unlocked.
    fn notify(&self, st: &mut State, key: &WaitKey) {
        if *st.sleeping(key) > 0 {
            st.wakes.push(key.clone());
        }
    }

    fn notify_now(&self, key: &WaitKey) {
        match key {
            // Two threads may wait on one slot: one whose answer is in but not yet
            // collected, and one whose new request reuses the freed slot.
            WaitKey::Slot(s) => self.slot_cvs[usize::from(*s)].notify_all(),
            WaitKey::Sub(h) => h.cv.notify_one(),
        }
    }

    /// Waits until `poll` yields (`Some`) or the deadline passes (`None`), leading
    /// the reads whenever nobody else does. With `nonblocking`, reads only what is
    /// already there and returns `None` if that was not enough.
    fn wait<T>(
        &self,
        key: WaitKey,
        deadline: Option<Instant>,
        nonblocking: bool,
        mut poll: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let for_answer = matches!(key, WaitKey::Slot(_));
        let mut st = self.lock_state();
        st.awaiting_answers += usize::from(for_answer);
        let mut registered = false;
        let mut tried = false;
        let mut spins = 0;
        let result = loop {
            if let Some(v) = poll(&mut st) {
                break Some(v);
            }
            if nonblocking && (tried || st.closed || st.reading) {
                break None;
            }
            // The clock is read only where there is a deadline.
            let now = deadline.map(|_| Instant::now());
            if deadline.zip(now).is_some_and(|(d, now)| now >= d) {
                break None;
            }
            if !st.reading && !st.closed {
                st.reading = true;
                if registered {
                    st.idle.retain(|k| !k.same(&key));
                    registered = false;
                }
                // Several threads awaiting answers means answers are coming
                // back as a stream, the next batch within microseconds: worth
                // polling for. A lone request's answer comes when the server is
                // done with it, and publications whenever they are made.
                let spin = st.awaiting_answers > 1;
                self.release(st);
                st = self.read_once(deadline, now, nonblocking, spin);
                tried = true;
                st.reading = false;
                self.progress.fetch_add(1, Ordering::Release);
                continue;
            }
            if spins < SPIN_YIELDS && matches!(key, WaitKey::Slot(_)) {
                let seen = self.progress.load(Ordering::Acquire);
                self.release(st);
                // Every pass yields at least once and counts, so a wait makes at
                // most SPIN_YIELDS passes however busy the leader is, and none
                // past its deadline.
                loop {
                    spins += 1;
                    std::thread::yield_now();
                    if spins >= SPIN_YIELDS
                        || self.progress.load(Ordering::Acquire) != seen
                        || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        break;
                    }
                }
                st = self.lock_state();
                continue;
            }
            if !registered {
                st.idle.push(key.clone());
                registered = true;
            }
            let cv = match &key {
                WaitKey::Slot(s) => &self.slot_cvs[usize::from(*s)],
                WaitKey::Sub(h) => &h.cv,
            };
            // Wake-ups still owed go out now (under the lock: rare).
            for wake in std::mem::take(&mut st.wakes) {
                self.notify_now(&wake);
            }
            *st.sleeping(&key) += 1;
            st = match deadline {
                Some(d) => {
                    cv.wait_timeout(st, d.saturating_duration_since(now.unwrap_or(d)))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => cv.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            let sleeping = st.sleeping(&key);
            *sleeping = sleeping.saturating_sub(1);
        };
        if registered {
            st.idle.retain(|k| !k.same(&key));
        }
        st.awaiting_answers -= usize::from(for_answer);
        if !st.reading {
            // Someone must take over reading for those still waiting.
            if let Some(next) = st.idle.last().cloned() {
                self.notify(&mut st, &next);
            }
        }
        self.release_and_flush(st);
        result
    }

    /// Unlocks the state, then sends the wake-ups owed (so woken threads do not
    /// find the lock still held).
    fn release(&self, mut st: MutexGuard<'_, State>) {
        if st.wakes.is_empty() {
            return;
        }
        let wakes = std::mem::take(&mut st.wakes);
        drop(st);
        for wake in &wakes {
            self.notify_now(wake);
        }
    }

    /// As [`Inner::release`], but first writes the requests that waited for every
    /// handed-out answer to be collected (see [`Client::request`]'s write
    /// combining).
    fn release_and_flush(&self, mut st: MutexGuard<'_, State>) {
        if st.uncollected == 0 && !st.pending.is_empty() && !st.writing && !st.closed {
            let wakes = std::mem::take(&mut st.wakes);
            let _ = self.flush_pending_then(st, || {
                for wake in &wakes {
                    self.notify_now(wake);
                }
            });
        } else {
            self.release(st);
        }
    }

    /// One read as the leader, then hands out every complete frame. With
    /// `spin`, polls within [`ClientConfig::spin_before_sleep`] before blocking.
    fn read_once(
        &self,
        deadline: Option<Instant>,
        now: Option<Instant>,
        nonblocking: bool,
        spin: bool,
    ) -> MutexGuard<'_, State> {
        let mut rx = self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = &mut *rx;
        let read = if nonblocking {
            let spare = rx.buf.spare();
            rustix::net::recv(&self.stream, spare, rustix::net::RecvFlags::DONTWAIT)
                .map(|(n, _)| n)
                .map_err(io::Error::from)
        } else {
            // Keep the socket's read timeout between a quarter of the time left and
            // all of it: a leader never oversleeps its deadline, and the timeout is
            // rarely changed (a syscall). Without a deadline there is none, so an
            // idle leader sleeps until something arrives.
            let left = deadline
                .zip(now)
                .map(|(d, now)| d.saturating_duration_since(now).max(Duration::from_millis(1)));
            let wanted = match left {
                Some(left) if rx.timeout.is_some_and(|t| t <= left && t >= left / 4) => rx.timeout,
                Some(left) => Some((left / 2).max(Duration::from_millis(1))),
                None => None,
            };
            if wanted != rx.timeout && self.stream.set_read_timeout(wanted).is_ok() {
                rx.timeout = wanted;
            }
            // Poll within the window before blocking: the polling and the
            // blocking read together stay within the time left.
            let window = match (left, rx.timeout) {
                _ if !spin => Duration::ZERO,
                (Some(left), Some(t)) => self.config.spin_before_sleep.min(left.saturating_sub(t)),
                (Some(left), None) => self.config.spin_before_sleep.min(left),
                (None, _) => self.config.spin_before_sleep,
            };
            let spare = rx.buf.spare();
            match read_within(&self.stream, spare, window) {
                Some(read) => read,
                None => (&self.stream).read(spare),
            }
        };
        let mut st = self.lock_state();
        match read {
            Ok(0) => {
                rx.decoder.reset();
                self.close_locked(&mut st);
                return st;
            }
            Ok(n) => rx.buf.commit(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                return st
            }
            Err(_) => {
                let _ = self.stream.shutdown(Shutdown::Both);
                self.close_locked(&mut st);
                return st;
            }
        }
        self.dispatch(rx, &mut st);
        st
    }

    /// Hands every complete frame in the buffer to its waiter.
    fn dispatch(&self, rx: &mut Reader, st: &mut State) {
        let mut chunk = Chunk::default();
        loop {
            let State {
                protocol,
                slots,
                done,
                sleeping,
                handles,
                queues,
                wakes,
                uncollected,
                ..
            } = &mut *st;
            let mut answers = Slots {
                slots,
                done,
                sleeping,
                wakes,
                uncollected,
            };
            let (event, consumed) = match rx.decoder.decode(rx.buf.data()) {
                Decoded::NeedMore => {
                    return;
                }
                Decoded::Skipped { consumed } => (None, consumed),
                Decoded::Oversized { sigil, tag, consumed } => (protocol.handle_oversized_frame(sigil, tag), consumed),
                Decoded::Frame { frame, consumed } => (protocol.handle_frame(frame), consumed),
            };
            match event {
                None => {}
                Some(ClientEvent::Response { id, values }) => {
                    let values = values.map(Bytes::copy_from_slice).collect();
                    self.complete(&mut answers, id, Ok(values));
                }
                Some(ClientEvent::Failure { id, message, details }) => {
                    let error = Error::Failed {
                        message: Bytes::copy_from_slice(message),
                        details: details.map(Bytes::copy_from_slice).collect(),
                    };
                    self.complete(&mut answers, id, Err(error));
                }
                Some(ClientEvent::ResponseTooLarge { id }) => {
                    self.complete(&mut answers, id, Err(Error::FrameTooLarge))
                }
                Some(ClientEvent::Publication {
                    topic,
                    values,
                    subscriptions,
                }) => {
                    let data = rx.buf.data();
                    let chunk = chunk.cut(data, consumed);
                    let mut publication = Some(Publication {
                        topic: chunk.slice(topic),
                        values: values.map(|v| chunk.slice(v)).collect(),
                    });
                    let mut targets = subscriptions
                        .flat_map(|id| handles.get(&id).into_iter().flatten())
                        .peekable();
                    while let Some(h) = targets.next() {
                        let Some(q) = queues.get_mut(&h.key) else { continue };
                        // The last queue takes the publication itself; the others a copy.
                        let last = targets.peek().is_none();
                        let queued = q.queue.push_with(|| {
                            if last { publication.take() } else { publication.clone() }
                                .expect("the publication is taken only by the last queue")
                        });
                        if !queued {
                            continue;
                        }
                        if q.sleeping > 0 {
                            answers.wakes.push(WaitKey::Sub(h.clone()));
                        }
                    }
                }
            }
            rx.buf.consume(consumed);
        }
    }

    fn complete(&self, st: &mut Slots<'_>, id: RequestId, result: Result<Vec<Bytes>>) {
        let i = usize::from(id.slot());
        if let Some(slot) = st.slots.get_mut(i) {
            if *slot == Some(id) {
                *slot = None;
                st.done[i].push((id, result));
                *st.uncollected += 1;
                self.progress.fetch_add(1, Ordering::Release);
                if st.sleeping[i] > 0 {
                    st.wakes.push(WaitKey::Slot(id.slot()));
                }
            }
        }
    }
}

/// A subscription to a topic or pattern: a bounded queue of the publications that
/// match it. Dropping it unsubscribes (the `-` goes out when no other handle of
/// this client shares the same wire subscription).
///
/// If the queue is full (see [`ClientConfig::subscription_capacity`]), further
/// publications are dropped and counted; the next receive at that point returns
/// [`Error::Lagged`] with the count, then receiving carries on.
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    shared: Arc<SubShared>,
    id: SubscriptionId,
    topic: Bytes,
}

impl Subscription {
    /// The topic or pattern subscribed to.
    #[must_use]
    pub fn topic(&self) -> &[u8] {
        &self.topic
    }

    /// Waits for the next publication.
    ///
    /// # Errors
    /// [`Error::Lagged`] where publications were dropped, [`Error::Closed`] once
    /// the connection has ended and the queue is empty.
    pub fn recv(&mut self) -> Result<Publication> {
        self.receive(None, false).unwrap_or(Err(Error::TimedOut))
    }

    /// Waits at most `timeout` for the next publication.
    ///
    /// # Errors
    /// [`Error::TimedOut`], and as [`Subscription::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Publication> {
        self.receive(Some(Instant::now() + timeout), false)
            .unwrap_or(Err(Error::TimedOut))
    }

    /// The next publication if one has arrived, without waiting (it reads what the
    /// socket already holds if no other thread is reading).
    ///
    /// # Errors
    /// As [`Subscription::recv`].
    pub fn try_recv(&mut self) -> Result<Option<Publication>> {
        self.receive(None, true).transpose()
    }

    /// Iterates over publications, waiting for each; ends when the connection
    /// closes. [`Error::Lagged`] comes as an `Err` item.
    pub fn iter(&mut self) -> Iter<'_> {
        Iter { subscription: self }
    }

    fn receive(&mut self, deadline: Option<Instant>, nonblocking: bool) -> Option<Result<Publication>> {
        let key = self.shared.key;
        self.client
            .inner
            .wait(WaitKey::Sub(self.shared.clone()), deadline, nonblocking, |st| {
                let closed = st.closed;
                let q = st.queues.get_mut(&key)?;
                match q.queue.pop() {
                    Some(Delivery::Publication(p)) => Some(Ok(p)),
                    Some(Delivery::Lagged { missed }) => Some(Err(Error::Lagged { missed })),
                    Some(Delivery::Notice(never)) => match never {},
                    None if closed => Some(Err(Error::Closed)),
                    None => None,
                }
            })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let inner = &self.client.inner;
        let mut st = inner.lock_state();
        st.queues.remove(&self.shared.key);
        if let Some(list) = st.handles.get_mut(&self.id) {
            list.retain(|h| !Arc::ptr_eq(h, &self.shared));
            if list.is_empty() {
                st.handles.remove(&self.id);
            }
        }
        st.idle.retain(|k| !k.same(&WaitKey::Sub(self.shared.clone())));
        let State {
            protocol,
            pending,
            closed,
            ..
        } = &mut *st;
        let sent = protocol.unsubscribe(self.id, pending).unwrap_or(false);
        if *closed {
            pending.clear();
        } else if sent {
            let _ = inner.flush_pending(st);
        }
    }
}

/// Publications of a [`Subscription`], waiting for each; see
/// [`Subscription::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    subscription: &'a mut Subscription,
}

impl Iterator for Iter<'_> {
    type Item = Result<Publication>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.subscription.recv() {
            Err(Error::Closed) => None,
            other => Some(other),
        }
    }
}

impl<'a> IntoIterator for &'a mut Subscription {
    type Item = Result<Publication>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunk, CHUNK};

    #[test]
    fn chunk_slices_share_one_copy_and_recut_past_its_end() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 251) as u8).collect();
        let mut chunk = Chunk::default();
        // A 100-byte frame at the start: the chunk copies CHUNK bytes.
        let c = chunk.cut(&data, 100);
        assert_eq!(c.bytes.len(), CHUNK);
        let part = c.slice(&data[10..20]);
        assert_eq!(&part[..], &data[10..20]);
        let first = c.bytes.as_ptr();
        // A later frame inside the chunk reuses it.
        let c = chunk.cut(&data[500..], 100);
        assert_eq!(c.bytes.as_ptr(), first);
        assert_eq!(&c.slice(&data[510..530])[..], &data[510..530]);
        // A frame crossing the chunk's end makes a new chunk from its start.
        let at = CHUNK - 50;
        let c = chunk.cut(&data[at..], 100);
        assert_ne!(c.bytes.as_ptr(), first);
        assert_eq!(&c.slice(&data[at + 60..at + 100])[..], &data[at + 60..at + 100]);
        // A frame larger than CHUNK is copied whole.
        let c = chunk.cut(&data, CHUNK + 5);
        assert_eq!(c.bytes.len(), CHUNK + 5);
        assert_eq!(&c.slice(&data[CHUNK..CHUNK + 5])[..], &data[CHUNK..CHUNK + 5]);
        // Empty parts and parts from elsewhere are handled without the chunk.
        assert!(c.slice(&[]).is_empty());
        let elsewhere = [1u8, 2, 3];
        assert_eq!(&c.slice(&elsewhere)[..], &elsewhere);
    }
}
