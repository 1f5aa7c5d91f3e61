//! The async client: one driver task per connection, any number of cheap handles.
//!
//! Requests encode straight into a shared write buffer under a short lock; the
//! driver task swaps that buffer out and writes it whole, so requests issued while
//! a write is in progress leave together in the next one. Responses are matched to
//! their waiters by tag and handed over as frozen slices of the read buffer.
//!
//! A server that stops reading but still answers (a microsocket server shutting
//! down gracefully) makes writes fail with `EPIPE`: from then on new requests
//! fail with [`Error::Closed`] at once, while requests already sent get their
//! answers, or [`Error::Closed`] when the server closes the connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{ClientEvent, ClientProtocol, RequestId, SubscriptionId, SubscriptionKind};
use microsocket_host::{ClientConfig, Delivery, ReconnectPolicy, SubscriptionQueue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};
use tokio::time::{Instant, Sleep};

use crate::error::Error;
use crate::spin::Spin;
use crate::values::{Publication, Sink, Span, Values};

/// Requests a client can have in flight at most, whatever
/// [`ClientBuilder::max_in_flight`] says (the size of the tag table).
pub const MAX_IN_FLIGHT: usize = 1024;
/// Distinct wire subscriptions (topics and patterns) one client connection holds
/// at most. Local subscriptions to the same topic share one.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Bytes of topic and pattern strings one client connection holds at most.
pub const MAX_SUBSCRIPTION_BYTES: usize = 4096;
type Protocol = ClientProtocol<MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES>;

/// A boxed future that opens a new stream, for reconnecting.
type ConnectFuture<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;
type Connector<S> = Arc<dyn Fn() -> ConnectFuture<S> + Send + Sync>;

/// Settings for a client connection; finish with one of the `connect_*` methods.
///
/// ```no_run
/// # async fn f() -> Result<(), microsocket_tokio::Error> {
/// use std::time::Duration;
/// use microsocket_tokio::{Client, ReconnectPolicy};
///
/// let client = Client::builder()
///     .request_timeout(Some(Duration::from_secs(5)))
///     .reconnect(ReconnectPolicy::default())
///     .connect_unix("/run/app.sock")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// A builder with these settings (the blocking adapter takes the same
    /// [`ClientConfig`]).
    #[must_use]
    pub fn with_config(config: ClientConfig) -> Self {
        Self { config }
    }

    /// The settings so far.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sets [`ClientConfig::request_timeout`], the deadline of each request
    /// (default 25 s); `None` waits forever.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::max_in_flight`] (default 256, at most
    /// [`MAX_IN_FLIGHT`]); past it, requests fail with [`Error::InflightFull`].
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n.clamp(1, MAX_IN_FLIGHT);
        self
    }

    /// Sets [`ClientConfig::max_frame`] (default 16 MiB).
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Sets [`ClientConfig::subscription_capacity`]: publications each
    /// subscription stream queues (default 1024); past it the stream drops new
    /// ones and reports [`Error::Lagged`].
    #[must_use]
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.config.subscription_capacity = n.max(1);
        self
    }

    /// Sets [`ClientConfig::spin_before_sleep`]: how long the connection's
    /// driver keeps polling for answers after a burst of activity (a read, a
    /// write, publications), and only while requests are in flight, before its
    /// runtime thread may sleep (default [`DEFAULT_CLIENT_SPIN`](crate::DEFAULT_CLIENT_SPIN); zero: never).
    /// It yields to other tasks between polls, and from its third turn also
    /// yields the CPU, so a server sharing the CPU still runs.
    #[must_use]
    pub fn spin_before_sleep(mut self, window: Duration) -> Self {
        self.config.spin_before_sleep = window;
        self
    }

    /// Sets [`ClientConfig::reconnect`]: reconnect after the connection is lost,
    /// and subscribe again (only for clients made by a `connect_*` method that
    /// can open the stream again).
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = Some(policy);
        self
    }

    /// Connects to a server on a UNIX socket path.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails.
    pub async fn connect_unix(self, path: impl AsRef<Path>) -> Result<Client, Error> {
        let path: PathBuf = path.as_ref().to_owned();
        self.connect_with(move || {
            let path = path.clone();
            async move { UnixStream::connect(path).await }
        })
        .await
    }

    /// Connects to a server on a Linux abstract socket name.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub async fn connect_abstract(self, name: impl AsRef<[u8]>) -> Result<Client, Error> {
        let name = name.as_ref().to_vec();
        self.connect_with(move || {
            let name = name.clone();
            async move { connect_abstract(&name) }
        })
        .await
    }

    /// Connects to a server over TCP (with `TCP_NODELAY`).
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails.
    pub async fn connect_tcp<A>(self, addr: A) -> Result<Client, Error>
    where
        A: ToSocketAddrs + Clone + Send + Sync + 'static,
    {
        self.connect_with(move || {
            let addr = addr.clone();
            async move {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(stream)
            }
        })
        .await
    }

    /// Connects with a function that opens a stream, called again to reconnect.
    ///
    /// # Errors
    /// [`Error::Io`] if the first connection fails.
    pub async fn connect_with<S, F, Fut>(self, connect: F) -> Result<Client, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<S>> + Send + 'static,
    {
        let stream = connect().await?;
        let connector: Connector<S> = Arc::new(move || Box::pin(connect()));
        Ok(self.start(stream, Some(connector)))
    }

    /// Runs the protocol over a stream the caller opened (a socket, a pipe,
    /// `tokio::io::duplex` to an in-process server). Never reconnects.
    ///
    /// Must be called within a Tokio runtime: it spawns the connection's driver.
    pub fn connect_stream<S>(self, stream: S) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.start(stream, None)
    }

    fn start<S>(self, stream: S, connector: Option<Connector<S>>) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let reconnect = if connector.is_some() {
            self.config.reconnect
        } else {
            None
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                protocol: Protocol::new(),
                wbuf: BytesMut::new(),
                table: Waiters::default(),
                subs: HashMap::new(),
                driver: None,
                link: Link::Up,
                closing: false,
                send_closed: false,
            }),
            config: self.config,
        });
        let driver = shared.clone();
        tokio::spawn(drive(driver, stream, connector, reconnect));
        Client {
            handle: Arc::new(Handle { shared }),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect_abstract(name: &[u8]) -> io::Result<UnixStream> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

/// A connection to a microsocket server: cheap to clone, usable from any number
/// of tasks at once.
///
/// Requests are pipelined: each call to [`Client::request`] queues its frame at
/// once, frames queued while the connection writes leave together, and answers
/// are delivered as they arrive, in any order. The connection closes when the last
/// clone and the last [`Subscription`] are dropped, or on [`Client::close`].
#[derive(Debug, Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

/// Closes the connection when the last client clone goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Client {
    /// Settings for a new connection.
    #[must_use]
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to a UNIX socket path with default settings.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder().connect_unix(path).await
    }

    /// Connects to a Linux abstract socket name with default settings.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub async fn connect_abstract(name: impl AsRef<[u8]>) -> Result<Self, Error> {
        Self::builder().connect_abstract(name).await
    }

    /// Connects over TCP with default settings.
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails.
    pub async fn connect_tcp<A>(addr: A) -> Result<Self, Error>
    where
        A: ToSocketAddrs + Clone + Send + Sync + 'static,
    {
        Self::builder().connect_tcp(addr).await
    }

    /// Runs the protocol over an open stream with default settings (see
    /// [`ClientBuilder::connect_stream`]).
    pub fn new<S>(stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::builder().connect_stream(stream)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Sends a request and returns a future of its answer.
    ///
    /// The frame is queued when this is called (so requests made one after the
    /// other leave in that order even before they are awaited); awaiting waits for
    /// the answer, at most the client's request timeout. Dropping the future
    /// abandons the request: its late answer is discarded.
    ///
    /// The future fails with [`Error::Failed`] when the server says so,
    /// [`Error::TimedOut`], [`Error::Closed`] when the connection ends first,
    /// [`Error::InflightFull`], [`Error::FrameTooLarge`], or [`Error::Encode`]
    /// when the arguments cannot be encoded.
    pub fn request<C, I>(&self, command: C, args: I) -> ResponseFuture
    where
        C: AsRef<[u8]>,
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.request_with_timeout(command, args, self.shared().config.request_timeout)
    }

    /// [`Client::request`] with its own deadline (`None`: wait forever).
    pub fn request_with_timeout<C, I>(&self, command: C, args: I, timeout: Option<Duration>) -> ResponseFuture
    where
        C: AsRef<[u8]>,
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let started = self.shared().start_request(command.as_ref(), args, timeout);
        ResponseFuture {
            handle: self.handle.clone(),
            state: match started {
                Ok(waiter) => FutureState::Waiting(waiter),
                Err(e) => FutureState::Failed(Some(e)),
            },
        }
    }

    /// Subscribes to a topic. Returns once the server has the subscription in
    /// place, so every publication made after this returns is received.
    ///
    /// Several subscriptions to one topic share one wire subscription; the server
    /// is told to drop it (`-`) when the last [`Subscription`] is dropped.
    ///
    /// # Errors
    /// [`Error::Subscribe`] when the connection's subscription table is full,
    /// [`Error::Closed`], [`Error::TimedOut`], [`Error::InflightFull`].
    pub async fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<Subscription, Error> {
        self.subscribe_kind(SubscriptionKind::Exact, topic.as_ref()).await
    }

    /// Subscribes to every topic matching a pattern (`*` one token, final `>` one
    /// or more; a microsocket extension that an IPC::MicroSocket 0.03 server
    /// ignores).
    ///
    /// # Errors
    /// As [`Client::subscribe`], and [`Error::Subscribe`] for a malformed pattern.
    pub async fn subscribe_pattern(&self, pattern: impl AsRef<[u8]>) -> Result<Subscription, Error> {
        self.subscribe_kind(SubscriptionKind::Pattern, pattern.as_ref()).await
    }

    async fn subscribe_kind(&self, kind: SubscriptionKind, topic: &[u8]) -> Result<Subscription, Error> {
        let shared = self.shared();
        let queue = Arc::new(SubQueue {
            inner: Mutex::new(SubInner {
                queue: SubscriptionQueue::new(shared.config.subscription_capacity),
                waker: None,
            }),
        });
        let (id, barrier) = shared.start_subscription(kind, topic, &queue)?;
        let subscription = Subscription {
            client: self.clone(),
            id,
            queue,
            topic: Bytes::copy_from_slice(topic),
            kind,
            local: VecDeque::new(),
            taken: 0,
        };
        let barrier = ResponseFuture {
            handle: self.handle.clone(),
            state: FutureState::Waiting(barrier),
        };
        match barrier.await {
            // An IPC::MicroSocket 0.03 server hands the empty command to its
            // application, which may well fail it: either answer proves the
            // subscription is in place.
            Ok(_) | Err(Error::Failed { .. }) => Ok(subscription),
            Err(e) => Err(e),
        }
    }

    /// Requests in flight on this connection (including abandoned ones whose late
    /// answer is still expected).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.shared().lock().protocol.requests_in_flight()
    }

    /// Whether the connection is up (false while reconnecting and once closed).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.shared().lock().link == Link::Up
    }

    /// Closes the connection now: pending requests fail with [`Error::Closed`],
    /// subscription streams end, later requests fail.
    pub fn close(&self) {
        self.shared().close();
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    config: ClientConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    Reconnecting,
    Closed,
}

#[derive(Debug)]
struct State {
    protocol: Protocol,
    /// Frames queued for the driver to write.
    wbuf: BytesMut,
    /// Who waits for which request.
    table: Waiters,
    /// Local subscription streams of each wire subscription.
    subs: HashMap<SubscriptionId, Vec<Arc<SubQueue>>>,
    /// Wakes the driver when frames are queued to an empty buffer.
    driver: Option<Waker>,
    link: Link,
    /// Every handle is gone or `close` was called.
    closing: bool,
    /// The server stopped reading (a write failed with `EPIPE`, as when a
    /// server shutting down gracefully shuts its side for reading): nothing
    /// more is written, new requests fail with [`Error::Closed`], and requests
    /// already sent still get the answers the server gives before it closes.
    send_closed: bool,
}

/// The pending requests, by tag slot.
#[derive(Debug, Default)]
struct Waiters {
    /// Each tag slot's waiter and the request pending in it, if any.
    by_slot: Vec<Slot>,
    /// Slots whose pending request has a timeout but no deadline yet: the
    /// driver stamps them with one clock reading per round rather than each
    /// request reading the clock (a deadline is thus never early, and late by
    /// at most the time until the driver runs).
    unstamped: Vec<u16>,
    /// The earliest request deadline the driver must watch (may be stale-early).
    next_deadline: Option<Instant>,
}

/// One tag slot. Its waiter is reused by the slot's next request once no
/// future holds it any more, so a request allocates nothing in the steady state.
#[derive(Debug)]
struct Slot {
    waiter: Arc<Waiter>,
    pending: Option<Pending>,
}

/// A request whose answer is still expected.
#[derive(Debug)]
struct Pending {
    id: RequestId,
    timeout: Option<Duration>,
    /// `None` until the driver stamps it (see `Waiters::unstamped`), or for
    /// a request without timeout.
    deadline: Option<Instant>,
}

/// Where one request's answer is left for its future: a lock of its own, so
/// futures polling for their answers never contend for the connection's state.
#[derive(Debug)]
struct Waiter {
    /// The request's tag slot.
    slot: u16,
    inner: Mutex<WaiterInner>,
}

#[derive(Debug, Default)]
struct WaiterInner {
    waker: Option<Waker>,
    result: Option<Result<Values, Error>>,
    /// The result was delivered (it may have been taken since).
    finished: bool,
}

impl Waiter {
    fn new(slot: u16) -> Arc<Self> {
        Arc::new(Self {
            slot,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, WaiterInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leaves the result and collects the future's waker.
    fn finish(&self, result: Result<Values, Error>, wake: &mut Vec<Waker>) {
        let mut inner = self.lock();
        if inner.finished {
            return;
        }
        inner.finished = true;
        inner.result = Some(result);
        if let Some(w) = inner.waker.take() {
            wake.push(w);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state: every
        // update below is a plain field write.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close(&self) {
        let waker = {
            let mut st = self.lock();
            st.closing = true;
            st.driver.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn start_request<I>(&self, command: &[u8], args: I, timeout: Option<Duration>) -> Result<Arc<Waiter>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.link != Link::Up || st.closing || st.send_closed {
            return Err(Error::Closed);
        }
        if st.protocol.requests_in_flight() >= self.config.max_in_flight {
            return Err(Error::InflightFull);
        }
        let was_empty = st.wbuf.is_empty();
        let id = st.protocol.request(command, args, &mut Sink(&mut st.wbuf))?;
        let (waiter, wake) = st.table.register(id, timeout, was_empty);
        let waker = if wake { st.driver.take() } else { None };
        drop(guard);
        drop_then_wake(waker);
        Ok(waiter)
    }

    fn start_subscription(
        &self,
        kind: SubscriptionKind,
        topic: &[u8],
        queue: &Arc<SubQueue>,
    ) -> Result<(SubscriptionId, Arc<Waiter>), Error> {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.link != Link::Up || st.closing || st.send_closed {
            return Err(Error::Closed);
        }
        if st.protocol.requests_in_flight() >= self.config.max_in_flight {
            return Err(Error::InflightFull);
        }
        let was_empty = st.wbuf.is_empty();
        let mut sink = Sink(&mut st.wbuf);
        let id = match kind {
            SubscriptionKind::Exact => st.protocol.subscribe(topic, &mut sink)?,
            SubscriptionKind::Pattern => st.protocol.subscribe_pattern(topic, &mut sink)?,
        };
        st.subs.entry(id).or_default().push(queue.clone());
        // The barrier cannot fail: the in-flight check above left a slot and the
        // sink grows.
        let barrier = st.protocol.barrier(&mut Sink(&mut st.wbuf))?;
        let (waiter, wake) = st.table.register(barrier, self.config.request_timeout, was_empty);
        let waker = if wake { st.driver.take() } else { None };
        drop(guard);
        drop_then_wake(waker);
        Ok((id, waiter))
    }

    fn unsubscribe(&self, id: SubscriptionId, queue: &Arc<SubQueue>) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(list) = st.subs.get_mut(&id) else { return };
        let Some(pos) = list.iter().position(|q| Arc::ptr_eq(q, queue)) else {
            return;
        };
        list.swap_remove(pos);
        if list.is_empty() {
            st.subs.remove(&id);
        }
        let was_empty = st.wbuf.is_empty();
        // Sends `-` when this was the last local subscriber. Errors only for an id
        // the table no longer has, which cannot happen while `subs` holds it.
        let _ = st.protocol.unsubscribe(id, &mut Sink(&mut st.wbuf));
        let waker = if was_empty && !st.wbuf.is_empty() && st.link == Link::Up {
            st.driver.take()
        } else {
            None
        };
        drop(guard);
        drop_then_wake(waker);
    }
}

fn drop_then_wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

impl Waiters {
    /// Records a waiter for a request just encoded. Returns it and whether the
    /// driver must be woken (outside the lock): for the first frame queued, or
    /// to stamp the deadline.
    fn register(&mut self, id: RequestId, timeout: Option<Duration>, was_empty: bool) -> (Arc<Waiter>, bool) {
        let slot = usize::from(id.slot());
        if self.by_slot.len() <= slot {
            let fresh = |i: usize| Slot {
                waiter: Waiter::new(i as u16),
                pending: None,
            };
            let start = self.by_slot.len();
            self.by_slot.extend((start..=slot).map(fresh));
        }
        let entry = &mut self.by_slot[slot];
        // Only this table holds the waiter: nothing else can take a clone
        // without the connection's lock, so it can start over. Otherwise a
        // future not yet dropped still looks at it: give the slot a new one.
        match Arc::get_mut(&mut entry.waiter) {
            Some(waiter) => {
                *waiter
                    .inner
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = WaiterInner::default()
            }
            None => entry.waiter = Waiter::new(id.slot()),
        }
        entry.pending = Some(Pending {
            id,
            timeout,
            deadline: None,
        });
        let mut wake = was_empty;
        if timeout.is_some() {
            wake |= self.unstamped.is_empty();
            self.unstamped.push(id.slot());
        }
        (entry.waiter.clone(), wake)
    }

    /// Gives every request registered since the last call its deadline,
    /// counted from `now`.
    fn stamp(&mut self, now: Instant) {
        for slot in self.unstamped.drain(..) {
            let Some(p) = self.by_slot.get_mut(usize::from(slot)).and_then(|s| s.pending.as_mut()) else {
                continue;
            };
            if let (None, Some(timeout)) = (p.deadline, p.timeout) {
                let deadline = now + timeout;
                p.deadline = Some(deadline);
                if self.next_deadline.map_or(true, |n| deadline < n) {
                    self.next_deadline = Some(deadline);
                }
            }
        }
    }

    /// Completes the pending request `id` (if it still has a waiter).
    fn complete(&mut self, id: RequestId, result: Result<Values, Error>, wake: &mut Vec<Waker>) {
        let Some(entry) = self.by_slot.get_mut(usize::from(id.slot())) else {
            return;
        };
        if entry.pending.as_ref().is_some_and(|p| p.id == id) {
            entry.pending = None;
            entry.waiter.finish(result, wake);
        }
    }

    /// Forgets the pending request of an abandoned future; returns its id if it
    /// was still pending.
    fn abandon(&mut self, waiter: &Arc<Waiter>) -> Option<RequestId> {
        let entry = self.by_slot.get_mut(usize::from(waiter.slot))?;
        if !Arc::ptr_eq(&entry.waiter, waiter) {
            return None;
        }
        entry.pending.take().map(|p| p.id)
    }

    /// Fails every request still waiting (the connection ended).
    fn fail_all(&mut self, wake: &mut Vec<Waker>) {
        self.next_deadline = None;
        self.unstamped.clear();
        for entry in &mut self.by_slot {
            if entry.pending.take().is_some() {
                entry.waiter.finish(Err(Error::Closed), wake);
            }
        }
    }

    /// Times out requests whose deadline passed (cancelling them in `protocol`)
    /// and records the next deadline.
    fn expire(&mut self, protocol: &mut Protocol, now: Instant, wake: &mut Vec<Waker>) {
        let mut next: Option<Instant> = None;
        for entry in &mut self.by_slot {
            let Some(deadline) = entry.pending.as_ref().and_then(|p| p.deadline) else {
                continue;
            };
            if deadline <= now {
                if let Some(p) = entry.pending.take() {
                    protocol.cancel(p.id);
                    entry.waiter.finish(Err(Error::TimedOut), wake);
                }
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.next_deadline = next;
    }
}

impl State {
    /// The connection ended: every pending request fails.
    fn fail_all(&mut self, wake: &mut Vec<Waker>) {
        self.protocol.handle_eof();
        self.table.fail_all(wake);
    }

    fn notify_subscriptions(&mut self, notice: impl Fn() -> Error, end: bool, wake: &mut Vec<Waker>) {
        for queue in self.subs.values().flatten() {
            let mut inner = queue.lock();
            if end {
                inner.queue.end(Some(notice()));
            } else {
                inner.queue.notify(notice());
            }
            if let Some(w) = inner.waker.take() {
                wake.push(w);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Request futures
// ---------------------------------------------------------------------------

/// The answer to a request (see [`Client::request`]): resolves to the response's
/// values or an [`Error`]. Dropping it abandons the request.
#[derive(Debug)]
#[must_use = "the request is sent either way; await the future for its answer"]
pub struct ResponseFuture {
    /// Keeps the connection open while the answer is awaited.
    handle: Arc<Handle>,
    state: FutureState,
}

#[derive(Debug)]
enum FutureState {
    Waiting(Arc<Waiter>),
    Failed(Option<Error>),
    Done,
}

impl Future for ResponseFuture {
    type Output = Result<Values, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &mut self.state {
            FutureState::Waiting(waiter) => {
                let mut inner = waiter.lock();
                match inner.result.take() {
                    Some(result) => {
                        inner.waker = None;
                        result
                    }
                    None => {
                        match &inner.waker {
                            Some(old) if old.will_wake(cx.waker()) => {}
                            _ => inner.waker = Some(cx.waker().clone()),
                        }
                        return Poll::Pending;
                    }
                }
            }
            FutureState::Failed(e) => Err(e.take().unwrap_or(Error::Closed)),
            FutureState::Done => Err(Error::Closed),
        };
        self.state = FutureState::Done;
        Poll::Ready(result)
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        let FutureState::Waiting(waiter) = &self.state else {
            return;
        };
        if waiter.lock().finished {
            return;
        }
        let mut guard = self.handle.shared.lock();
        let st = &mut *guard;
        // Still pending: the tag stays reserved until the late answer.
        if let Some(id) = st.table.abandon(waiter) {
            st.protocol.cancel(id);
        }
    }
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct SubQueue {
    inner: Mutex<SubInner>,
}

impl SubQueue {
    fn lock(&self) -> MutexGuard<'_, SubInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct SubInner {
    /// Publications, lag markers and connection notices, in order.
    queue: SubscriptionQueue<Publication, Error>,
    waker: Option<Waker>,
}

type Entry = Delivery<Publication, Error>;

/// A stream of the publications of one subscription (see [`Client::subscribe`]).
///
/// Yields `Ok(publication)` in the order the server sent them;
/// `Err(Error::Lagged { missed })` where `missed` publications were dropped because the stream
/// was not read fast enough (it goes on); `Err(Error::Reconnecting)` when the
/// connection was lost and is being re-established (it goes on); and
/// `Err(Error::Closed)` followed by the end of the stream when the connection is
/// gone for good. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    id: SubscriptionId,
    queue: Arc<SubQueue>,
    topic: Bytes,
    kind: SubscriptionKind,
    /// Items taken from `queue` in one go, handed out one by one.
    local: VecDeque<Entry>,
    /// Publications taken into `local` that `queue` still counts against its
    /// capacity (they are uncounted at the next take).
    taken: usize,
}

impl Subscription {
    /// The topic or pattern subscribed to.
    #[must_use]
    pub fn topic(&self) -> &Bytes {
        &self.topic
    }

    /// Whether it is an exact or a pattern subscription.
    #[must_use]
    pub fn kind(&self) -> SubscriptionKind {
        self.kind
    }

    /// The client it belongs to.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The next item, as [`Stream::poll_next`] would give it: `None` once the
    /// stream has ended.
    pub async fn next(&mut self) -> Option<Result<Publication, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Result<Publication, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.local.is_empty() {
            // Take everything queued at once: one lock per batch, not per item.
            let mut inner = this.queue.lock();
            inner.queue.release(this.taken);
            if inner.queue.is_empty() {
                this.taken = 0;
                if inner.queue.is_ended() {
                    return Poll::Ready(None);
                }
                match &inner.waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            this.taken = inner.queue.take_all(&mut this.local);
        }
        let entry = this.local.pop_front();
        if this.local.is_empty() && this.taken > 0 {
            // The batch is handed out: the reader has kept up with it, so it
            // stops counting against the capacity now, not at the next poll
            // (a reader that is idle after catching up is not behind).
            this.queue.lock().queue.release(std::mem::take(&mut this.taken));
        }
        Poll::Ready(entry.map(|entry| match entry {
            Delivery::Publication(p) => Ok(p),
            Delivery::Lagged { missed } => Err(Error::Lagged { missed }),
            Delivery::Notice(e) => Err(e),
        }))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client.shared().unsubscribe(self.id, &self.queue);
    }
}

/// Queues a publication for one local subscriber (whose queue is locked), or
/// counts it as missed.
fn deliver(inner: &mut SubInner, publication: Publication) {
    if !inner.queue.push(publication) && !inner.queue.is_ended() {
        tracing::debug!("subscriber fell behind; publication dropped");
    }
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/// Why a connection's driver loop ended.
enum Ended {
    /// Every handle is gone or `close` was called.
    Closed,
    /// The connection failed or the server closed it.
    Lost(io::Error),
}

async fn drive<S>(shared: Arc<Shared>, stream: S, connector: Option<Connector<S>>, reconnect: Option<ReconnectPolicy>)
where
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
                let mut st = shared.lock();
                let st = &mut *st;
                st.link = Link::Up;
                st.send_closed = false;
                st.wbuf.clear();
                // The subscriptions fit: they were encoded before into a sink
                // that only grows.
                let _ = st.protocol.resubscribe(&mut Sink(&mut st.wbuf));
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

async fn reconnect_loop<S>(shared: &Arc<Shared>, policy: ReconnectPolicy, connector: &Connector<S>) -> Option<S> {
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
enum Got {
    Response(RequestId),
    Failure(RequestId, Span, Vec<Span>),
    TooLarge(RequestId),
    Publication(Span),
    Nothing,
}

/// One connection's I/O state, owned by the driver task.
struct Conn<S> {
    stream: S,
    rbuf: BytesMut,
    out: BytesMut,
    decoder: Decoder,
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<Instant>,
    flush: bool,
    /// Polling before sleep while requests are in flight.
    spin: Spin,
    /// Requests are in flight (as of the last look at the state).
    awaiting: bool,
    wake: Vec<Waker>,
    /// The wire subscriptions the publication being delivered matches.
    matched: Vec<SubscriptionId>,
    /// The current read buffer growth step.
    chunk: usize,
    /// A write failed with `EPIPE` (see `State::send_closed`).
    send_closed: bool,
}

/// Read buffer growth step and the size it shrinks back to.
const READ_CHUNK: usize = 8 * 1024;
/// The read buffer growth step while reads keep filling the buffer.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// A read buffer larger than this is released once empty.
const SHRINK_ABOVE: usize = 256 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, max_frame: usize, spin: Duration) -> Self {
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
            chunk: READ_CHUNK,
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
    fn process(&mut self, shared: &Shared) -> bool {
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
                    let base = self.rbuf.as_ptr();
                    let argc = frame.argc();
                    // Note what the frame is, then cut it from the buffer as a
                    // frozen slice the values share.
                    let got = match protocol.handle_frame(frame) {
                        Some(ClientEvent::Response { id, .. }) => Got::Response(id),
                        Some(ClientEvent::Failure { id, message, details }) => Got::Failure(
                            id,
                            Span::of(message, base),
                            details.map(|d| Span::of(d, base)).collect(),
                        ),
                        Some(ClientEvent::ResponseTooLarge { id }) => Got::TooLarge(id),
                        Some(ClientEvent::Publication {
                            topic, subscriptions, ..
                        }) => {
                            self.matched.clear();
                            self.matched.extend(subscriptions);
                            Got::Publication(Span::of(topic, base))
                        }
                        None => Got::Nothing,
                    };
                    if let Got::Nothing = got {
                        self.rbuf.advance(consumed);
                        continue;
                    }
                    let bytes = self.rbuf.split_to(consumed).freeze();
                    match got {
                        Got::Response(id) => table.complete(id, Ok(Values::new(bytes, argc, 1)), &mut self.wake),
                        Got::Failure(id, message, details) => {
                            let error = Error::Failed {
                                message: message.slice(&bytes),
                                details: details.iter().map(|d| d.slice(&bytes)).collect(),
                            };
                            table.complete(id, Err(error), &mut self.wake);
                        }
                        Got::TooLarge(id) => table.complete(id, Err(Error::FrameTooLarge), &mut self.wake),
                        Got::Publication(topic) => {
                            let mut publication = Some(Publication::new(bytes, argc, topic));
                            // The last subscriber gets the publication itself,
                            // the others clones.
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
                                let one = if next.is_some() {
                                    publication.clone()
                                } else {
                                    publication.take()
                                };
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
                                deliver(inner, one);
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
        }
        self.wake.drain(..).for_each(Waker::wake);
        delivered
    }
}
