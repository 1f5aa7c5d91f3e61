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
//! # Many requests from one thread
//!
//! [`Client::send`] writes a request and returns a [`Ticket`] at once; the
//! thread waits for the answer later with [`Ticket::wait`], tickets in any
//! order. [`Client::batch`] gathers requests and writes them with one system
//! call. One thread can so keep every request slot ([`MAX_IN_FLIGHT`]) in
//! flight without a thread each; [`Client::request`] is a send followed by a
//! wait. Answers that arrive for tickets not yet waited for are kept for them
//! and hold up no other request.
//!
//! ```no_run
//! # fn f(client: microsocket_std::Client) -> microsocket_std::Result<()> {
//! let mut batch = client.batch();
//! for sensor in ["a", "b", "c"] {
//!     batch.request("READ", [sensor])?;
//! }
//! let readings = client.wait_all(batch.send()?);
//! # Ok(()) }
//! ```
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

use std::io;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use microsocket_core::frame::Decoder;
use microsocket_core::{RequestId, SubscriptionKind};

use crate::rx::RxBuf;
use microsocket_host::{ByteBudget, Members, SubscriptionQueue};
pub use microsocket_host::{ClientConfig, Publication, Values, DEFAULT_CLIENT_SPIN};
use microsocket_host::{Error, Result};
use microsocket_socket::{Address, Stream};
use rustc_hash::FxHashMap as IdMap;

mod chunk;
mod reconnect;
mod state;
mod subscription;
mod ticket;
#[cfg(feature = "tls")]
mod tls;
mod waiting;

use reconnect::prepare;
use state::*;
pub use state::{Client, MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES};
pub use subscription::{Subscriber, Subscription, SubscriptionIter};
pub use ticket::{Batch, Ticket};
use waiting::*;

impl Client {
    /// Connects to an [`Address`] (a UNIX path, an abstract name or TCP).
    ///
    /// # Errors
    /// The connect error.
    pub fn connect(address: &Address) -> Result<Self> {
        Self::connect_with(address, ClientConfig::default())
    }

    /// Connects with a function that opens a stream, called again to reconnect
    /// when [`ClientConfig::reconnect`] is set.
    ///
    /// # Errors
    /// The first connect's error.
    pub fn connect_by(
        config: ClientConfig,
        connect: impl Fn() -> io::Result<Stream> + Send + Sync + 'static,
    ) -> Result<Self> {
        let stream = connect()?;
        Ok(Self::start(stream, config, Some(Arc::new(connect)))?)
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
        let path = path.as_ref().to_path_buf();
        Self::connect_by(config, move || UnixStream::connect(&path).map(Stream::Unix))
    }

    /// Connects to an [`Address`] with these settings.
    ///
    /// # Errors
    /// The connect error.
    pub fn connect_with(address: &Address, config: ClientConfig) -> Result<Self> {
        let address = address.clone();
        Self::connect_by(config, move || address.connect())
    }

    /// Connects to a Linux abstract socket name.
    ///
    /// # Errors
    /// The connect error.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn connect_abstract(name: &[u8]) -> Result<Self> {
        Self::connect_with(&Address::Abstract(name.to_vec()), ClientConfig::default())
    }

    /// Connects over TCP (with `TCP_NODELAY`).
    ///
    /// # Errors
    /// The connect error.
    pub fn connect_tcp(address: impl ToSocketAddrs) -> Result<Self> {
        let addresses: Vec<_> = address.to_socket_addrs()?.collect();
        Self::connect_by(ClientConfig::default(), move || {
            let stream = TcpStream::connect(&addresses[..])?;
            stream.set_nodelay(true)?;
            Ok(Stream::Tcp(stream))
        })
    }

    /// Runs the protocol over a stream the caller connected. Never reconnects
    /// (see [`Client::connect_by`]).
    ///
    /// # Errors
    /// If the socket's write timeout cannot be set.
    pub fn new(stream: impl Into<Stream>, config: ClientConfig) -> io::Result<Self> {
        Self::start(stream.into(), config, None)
    }

    fn start(stream: Stream, config: ClientConfig, connector: Option<Connector>) -> io::Result<Self> {
        prepare(&stream, &config)?;
        let slots = vec![None; MAX_IN_FLIGHT];
        let reader = Reader {
            buf: RxBuf::new(64 << 10, config.max_frame),
            decoder: Decoder::new(config.max_frame),
            timeout: None,
        };
        Ok(Self {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                connector,
                state: Mutex::new(State {
                    stream: Arc::new(stream),
                    generation: 0,
                    reconnecting: false,
                    protocol: Protocol::new(),
                    slots,
                    ticketed: vec![false; MAX_IN_FLIGHT],
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
                    publications: 0,
                    next_key: 0,
                }),
                rx: Mutex::new(reader),
                slot_cvs: (0..MAX_IN_FLIGHT).map(|_| Condvar::new()).collect(),
                progress: AtomicU64::new(0),
                budget: ByteBudget::new(config.max_queued_bytes),
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
    pub fn request<I>(&self, command: impl AsRef<[u8]>, args: I) -> Result<Values>
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
    pub fn request_timeout<I>(&self, command: impl AsRef<[u8]>, args: I, timeout: Option<Duration>) -> Result<Values>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let deadline = timeout.map(|t| Instant::now() + t);
        let id = self.send_request(command.as_ref(), args, Sending::Request)?;
        self.wait_response(id, deadline)
    }

    /// Whether the connection has ended for good.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.lock_state().closed
    }

    /// Whether the connection is up (false while reconnecting and once closed).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        let st = self.inner.lock_state();
        !st.closed && !st.reconnecting
    }

    /// Closes the connection: every waiter wakes with [`Error::Closed`], and a
    /// reconnecting client stops trying.
    pub fn close(&self) {
        let mut st = self.inner.lock_state();
        let _ = st.stream.shutdown(Shutdown::Both);
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
        let kind = if pattern {
            SubscriptionKind::Pattern
        } else {
            SubscriptionKind::Exact
        };
        let mut subscription = self.empty_subscription();
        subscription.add(kind, bytes)?;
        Ok(subscription)
    }

    /// A receiver with no subscription yet.
    fn empty_subscription(&self) -> Subscription {
        let mut st = self.inner.lock_state();
        let key = st.next_key;
        st.next_key += 1;
        st.queues.insert(
            key,
            SubQueue {
                queue: SubscriptionQueue::for_client(&self.inner.config, &self.inner.budget),
                sleeping: 0,
                last: 0,
            },
        );
        Subscription {
            client: self.clone(),
            shared: Arc::new(SubShared {
                key,
                cv: Condvar::new(),
            }),
            members: Members::default(),
            local: std::collections::VecDeque::new(),
            taken: microsocket_host::Taken::default(),
        }
    }

    /// One receiver for several topics and patterns: each publication once, in
    /// the order the server sent them, however many of them it matches (where
    /// one [`Subscription`] per topic would each get their own copy, and a
    /// thread could wait on only one of them).
    ///
    /// ```no_run
    /// # fn f(client: microsocket_std::Client) -> microsocket_std::Result<()> {
    /// let mut stream = client.subscriber().topic("alpha").pattern("sensor.>").subscribe()?;
    /// stream.add_topic("beta")?;
    /// for publication in &mut stream {
    ///     let publication = publication?;
    ///     println!("{:?}", publication.topic_str());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            client: self.clone(),
            wanted: Vec::new(),
        }
    }

    fn send_request<I>(&self, command: &[u8], args: I, sending: Sending) -> Result<RequestId>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let inner = &self.inner;
        let mut st = inner.lock_for_sending()?;
        let State { protocol, pending, .. } = &mut *st;
        let id = protocol.request(command, args, pending)?;
        let slot = usize::from(id.slot());
        st.slots[slot] = Some(id);
        st.ticketed[slot] = sending != Sending::Request;
        if sending == Sending::Batched {
            return Ok(id);
        }
        if st.uncollected == 0 {
            if let Err(e) = inner.flush_pending(st) {
                // The write failed and the connection ended: this request's
                // `Closed` answer is nobody's to collect now.
                take_done(&mut inner.lock_state(), id);
                return Err(e);
            }
        }
        // Otherwise threads are about to collect answers and, as they usually do,
        // send their next requests: the last to collect writes them all at once.
        Ok(id)
    }

    fn wait_response(&self, id: RequestId, deadline: Option<Instant>) -> Result<Values> {
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
                    st.ticketed[slot] = false;
                    st.protocol.cancel(id);
                }
                Err(if st.closed { Error::Closed } else { Error::TimedOut })
            }
        }
    }
}
