//! The async server: listeners, the publish hub, counters and shutdown.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use microsocket_core::{encode_publication, PatternError, SubscriptionKind};
use microsocket_host::{Admission, Counters, QueueBound};
pub use microsocket_host::{ServerConfig, SlowConsumer, Stats};
use microsocket_socket::SocketOptions;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::Client;
use crate::conn;
use crate::handler::{ConnectionId, Handler, PeerCredentials};
use crate::values::Sink;

/// The socket-file settings of `config` as [`SocketOptions`].
pub(crate) fn socket_options(config: &ServerConfig) -> SocketOptions {
    let mut options = SocketOptions::new(config.socket_mode);
    options.owner = config.socket_owner;
    options.group = config.socket_group;
    options
}

// ---------------------------------------------------------------------------
// The hub: registry of subscriptions and the connections' outgoing queues
// ---------------------------------------------------------------------------

/// What the server's connections share with publishers (not generic over the
/// handler).
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: ServerConfig,
    pub(crate) counters: Counters,
    bound: QueueBound,
    hub: Mutex<Hub>,
    pub(crate) tracker: TaskTracker,
    pub(crate) cancel: CancellationToken,
    next_id: AtomicU64,
}

/// The host layer's hub (connection slots and the subscription registry),
/// with the wakers collected under its lock and woken after it.
#[derive(Debug, Default)]
struct Hub {
    hub: microsocket_host::Hub<Arc<ConnShared>, Bytes>,
    wake: Vec<Waker>,
}

/// One connection's queue of publications and its control flags, shared with
/// publishers.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) id: ConnectionId,
    /// Bytes the connection's task holds and has not written yet (answers and
    /// publications it took from the queue); only that task stores it.
    pub(crate) held: AtomicUsize,
    pub(crate) queue: Mutex<OutQueue>,
}

#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    /// Encoded publication frames, in order: large ones shared with every other
    /// subscriber, small ones copied into `tail` (cheaper than a shared
    /// reference count, and written in one piece).
    pub(crate) frames: VecDeque<Bytes>,
    /// Small publication frames queued after `frames`.
    pub(crate) tail: BytesMut,
    /// Bytes in `frames` and `tail`.
    pub(crate) bytes: usize,
    pub(crate) waker: Option<Waker>,
    /// Stop reading, finish in-flight requests, flush and close.
    pub(crate) shutdown: bool,
    /// Close now.
    pub(crate) abort: bool,
    /// Publications dropped for this connection.
    pub(crate) dropped: u64,
}

/// Publication frames up to this size are copied into the connection's queue
/// rather than shared.
const COPY_BELOW: usize = 512;
/// Copied publication frames are gathered in chunks of up to this size, each
/// handed to the writer whole.
const TAIL_CHUNK: usize = 32 * 1024;

impl OutQueue {
    /// Whether no publication is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.tail.is_empty()
    }

    /// Moves every queued publication frame to the end of `out`; returns their
    /// size in bytes.
    pub(crate) fn drain_into(&mut self, out: &mut VecDeque<Bytes>) -> usize {
        out.extend(self.frames.drain(..));
        if !self.tail.is_empty() {
            // The spare room stays: once written, the chunk's buffer is taken
            // back whole by the next `reserve`.
            out.push_back(self.tail.split().freeze());
        }
        std::mem::take(&mut self.bytes)
    }
}

impl ConnShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, OutQueue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Core {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection; returns its slot and shared state.
    pub(crate) fn register(&self) -> (usize, Arc<ConnShared>) {
        let id = ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let shared = Arc::new(ConnShared {
            id,
            held: AtomicUsize::new(0),
            queue: Mutex::new(OutQueue {
                shutdown: self.cancel.is_cancelled(),
                ..OutQueue::default()
            }),
        });
        let key = self.hub().hub.insert_with(|_| shared.clone());
        self.counters.connection_opened();
        (key, shared)
    }

    /// Forgets a closed connection and its subscriptions.
    pub(crate) fn unregister<'a>(
        &self,
        key: usize,
        shared: &ConnShared,
        subscriptions: impl IntoIterator<Item = (SubscriptionKind, &'a [u8])>,
    ) {
        self.hub().hub.remove(key, subscriptions);
        shared.held.store(0, Ordering::Relaxed);
        self.counters.connection_closed();
    }

    /// Subscribes a connection in the registry and queues the buffered backlog
    /// to it, atomically with respect to publishing.
    pub(crate) fn subscribe(&self, key: usize, kind: SubscriptionKind, topic: &[u8]) {
        let mut guard = self.hub();
        let Hub { hub, wake } = &mut *guard;
        let Some((conn, backlog)) = hub.subscribe(key, kind, topic) else {
            return;
        };
        let delivered = backlog.iter().filter(|frame| self.deliver(conn, frame, wake)).count();
        self.counters.delivered(delivered as u64);
        let wake = std::mem::take(wake);
        drop(guard);
        wake_all(wake, self);
    }

    /// Drops a connection's subscriptions made with `topic` from the registry.
    pub(crate) fn unsubscribe(&self, key: usize, topic: &[u8]) {
        self.hub().hub.unsubscribe(key, topic);
    }

    fn publish(&self, topic: &[u8], frame: Bytes) -> usize {
        let mut guard = self.hub();
        let Hub { hub, wake } = &mut *guard;
        let delivered = hub.publish(topic, &frame, |conn| self.deliver(conn, &frame, wake));
        let wake = std::mem::take(wake);
        drop(guard);
        self.counters.published(delivered as u64);
        wake_all(wake, self);
        delivered
    }

    /// Queues one publication frame to a connection, applying the slow-consumer
    /// policy. Returns whether it was queued.
    fn deliver(&self, conn: &ConnShared, frame: &Bytes, wake: &mut Vec<Waker>) -> bool {
        let len = frame.len();
        let mut queue = conn.lock();
        if queue.abort {
            return false;
        }
        let admission = self.bound.admit(queue.bytes + conn.held.load(Ordering::Relaxed), len);
        if admission != Admission::Queue {
            self.counters.dropped(1);
            queue.dropped += 1;
            if admission == Admission::Disconnect {
                queue.abort = true;
                self.counters.slow_consumer_disconnected();
                tracing::warn!(connection = %conn.id, "slow consumer disconnected");
                if let Some(w) = queue.waker.take() {
                    wake.push(w);
                }
            } else if queue.dropped.is_power_of_two() {
                tracing::debug!(connection = %conn.id, dropped = queue.dropped, "publication dropped for slow consumer");
            }
            return false;
        }
        queue.bytes += len;
        if len <= COPY_BELOW {
            if queue.tail.len() + len > TAIL_CHUNK {
                // A full chunk goes to the writer whole, and the next one
                // starts with room for as much, rather than this one growing
                // (and being copied) without end.
                let full = queue.tail.split().freeze();
                queue.frames.push_back(full);
                queue.tail.reserve(TAIL_CHUNK);
            }
            queue.tail.extend_from_slice(frame);
        } else {
            if !queue.tail.is_empty() {
                let tail = queue.tail.split().freeze();
                queue.frames.push_back(tail);
            }
            queue.frames.push_back(frame.clone());
        }
        if let Some(w) = queue.waker.take() {
            wake.push(w);
        }
        true
    }

    /// Bytes queued for all connections and not yet written.
    fn queued_bytes(&self) -> u64 {
        let hub = self.hub();
        hub.hub
            .connections()
            .map(|c| (c.lock().bytes + c.held.load(Ordering::Relaxed)) as u64)
            .sum()
    }

    /// Sets a flag on every connection and wakes it.
    fn signal_all(&self, f: impl Fn(&mut OutQueue)) {
        let hub = self.hub();
        let mut wake = Vec::new();
        for conn in hub.hub.connections() {
            let mut q = conn.lock();
            f(&mut q);
            if let Some(w) = q.waker.take() {
                wake.push(w);
            }
        }
        drop(hub);
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Wakes the collected wakers, then gives the spare vector back to the hub.
fn wake_all(mut wake: Vec<Waker>, core: &Core) {
    if wake.is_empty() {
        return;
    }
    wake.drain(..).for_each(Waker::wake);
    let mut hub = core.hub();
    if hub.wake.capacity() < wake.capacity() {
        hub.wake = wake;
    }
}

// ---------------------------------------------------------------------------
// Publisher
// ---------------------------------------------------------------------------

/// Publishes from anywhere: cheap to clone, `Send + Sync`, independent of the
/// handler type. See [`Server::publisher`].
#[derive(Debug, Clone)]
pub struct Publisher {
    core: Arc<Core>,
}

impl Publisher {
    /// Publishes `values` on `topic` to every connection subscribed to it (once
    /// per connection, however many of its subscriptions match) and keeps it if
    /// the topic is buffered. Returns how many connections it was queued to.
    ///
    /// The frame is encoded once and shared by every subscriber; the cost grows
    /// with the matching subscriptions, not with the number of connections.
    ///
    /// # Errors
    /// [`microsocket_core::EncodeError`] for more than 254 values or a value
    /// over 4 GiB.
    pub fn publish<I>(&self, topic: impl AsRef<[u8]>, values: I) -> Result<usize, microsocket_core::EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let topic = topic.as_ref();
        let values = values.into_iter();
        let len = microsocket_core::frame::encoded_len(values.clone())? + 4 + topic.len();
        let mut buf = BytesMut::with_capacity(len);
        encode_publication(topic, values, &mut Sink(&mut buf))?;
        Ok(self.core.publish(topic, buf.freeze()))
    }

    /// Keeps the last `depth` publications of every topic equal to `selector`, or
    /// matching it when it is a pattern, and replays them (oldest first) to each
    /// new subscriber before any live publication. `depth` 0 stops buffering.
    ///
    /// # Errors
    /// [`PatternError`] if `selector` is not a well-formed topic or pattern.
    pub fn set_buffer(&self, selector: impl AsRef<[u8]>, depth: usize) -> Result<(), PatternError> {
        self.core.hub().hub.set_buffer(selector.as_ref(), depth)
    }

    /// Whether any connection subscribes to a topic matching `topic`.
    #[must_use]
    pub fn has_subscribers(&self, topic: impl AsRef<[u8]>) -> bool {
        self.core.hub().hub.has_subscribers(topic.as_ref())
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A microsocket server: a handler, any number of listeners, a publish hub.
///
/// Cheap to clone (all clones are the same server). Listening spawns tasks on
/// the current Tokio runtime; [`Server::shutdown`] stops them all gracefully.
#[derive(Debug)]
pub struct Server<H> {
    handler: Arc<H>,
    core: Arc<Core>,
}

impl<H> Clone for Server<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            core: self.core.clone(),
        }
    }
}

impl<H: Handler> Server<H> {
    /// A server with default limits.
    pub fn new(handler: H) -> Self {
        Self::with_config(handler, ServerConfig::default())
    }

    /// A server with these limits.
    ///
    /// # Panics
    /// If a selector in [`ServerConfig::buffers`] is not a valid pattern.
    pub fn with_config(handler: H, config: ServerConfig) -> Self {
        let mut hub = Hub::default();
        for (selector, depth) in &config.buffers {
            if let Err(e) = hub.hub.set_buffer(selector, *depth) {
                panic!(
                    "ServerConfig::buffers: {:?} is not a valid pattern: {e}",
                    String::from_utf8_lossy(selector)
                );
            }
        }
        Self {
            handler: Arc::new(handler),
            core: Arc::new(Core {
                bound: QueueBound::new(&config),
                hub: Mutex::new(hub),
                config,
                counters: Counters::default(),
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The server's settings.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.core.config
    }

    /// The handler.
    #[must_use]
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// A handle to publish with.
    #[must_use]
    pub fn publisher(&self) -> Publisher {
        Publisher {
            core: self.core.clone(),
        }
    }

    /// Publishes (see [`Publisher::publish`]).
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub fn publish<I>(&self, topic: impl AsRef<[u8]>, values: I) -> Result<usize, microsocket_core::EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.publisher().publish(topic, values)
    }

    /// Buffers a topic or pattern of topics (see [`Publisher::set_buffer`]).
    ///
    /// # Errors
    /// As [`Publisher::set_buffer`].
    pub fn set_buffer(&self, selector: impl AsRef<[u8]>, depth: usize) -> Result<(), PatternError> {
        self.publisher().set_buffer(selector, depth)
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.core.counters.snapshot(self.core.queued_bytes())
    }

    /// Listens on a UNIX socket path with the socket-file rules of
    /// [`microsocket_socket`]: refuses to start if a live server listens
    /// there, replaces only a stale socket file, creates the file never more open
    /// than [`ServerConfig::socket_mode`] (with [`ServerConfig::socket_owner`] and
    /// [`ServerConfig::socket_group`] if set) and removes it when the server shuts
    /// down.
    ///
    /// # Errors
    /// As [`microsocket_socket::bind_unix_with`]: among others
    /// [`io::ErrorKind::AddrInUse`] if a server listens on `path`,
    /// [`io::ErrorKind::AlreadyExists`] if `path` is not a socket,
    /// [`io::ErrorKind::InvalidInput`] if it is too long,
    /// [`io::ErrorKind::NotFound`] if its directory does not exist.
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let (listener, guard) = microsocket_socket::bind_unix_with(path, &socket_options(&self.core.config))?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        tracing::info!(path = %guard.path().display(), "microsocket server listening");
        self.spawn_accept(Accept::Unix(listener), Some(guard));
        Ok(())
    }

    /// Listens on a Linux abstract socket name (no file; any local process in the
    /// network namespace may connect: check [`crate::RequestContext::peer`]).
    ///
    /// # Errors
    /// [`io::ErrorKind::AddrInUse`] if the name is taken.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn listen_abstract(&self, name: impl AsRef<[u8]>) -> io::Result<()> {
        let listener = microsocket_socket::bind_abstract(name.as_ref())?;
        listener.set_nonblocking(true)?;
        self.serve_unix_listener(UnixListener::from_std(listener)?);
        Ok(())
    }

    /// Listens on TCP; returns the bound address (useful with port 0).
    ///
    /// # Errors
    /// Any error binding the address.
    pub async fn listen_tcp(&self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        self.serve_tcp_listener(listener);
        Ok(local)
    }

    /// Serves connections from a UNIX listener the caller opened (systemd socket
    /// activation, say). The caller keeps charge of any socket file.
    pub fn serve_unix_listener(&self, listener: UnixListener) {
        self.spawn_accept(Accept::Unix(listener), None);
    }

    /// Serves connections from a TCP listener the caller opened.
    pub fn serve_tcp_listener(&self, listener: TcpListener) {
        self.spawn_accept(Accept::Tcp(listener), None);
    }

    /// Serves one connection over any stream (an in-process
    /// `tokio::io::duplex`, one end of a `UnixStream::pair`, a pipe), without
    /// peer credentials. Returns its id, or `None` if the server is shutting
    /// down or full.
    pub fn serve_stream<S>(&self, stream: S) -> Option<ConnectionId>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.spawn_connection(stream, None)
    }

    /// A client connected to this server in-process over a socket pair (no
    /// socket file). Its requests carry this process's credentials.
    ///
    /// # Errors
    /// If the socket pair cannot be made, or [`io::ErrorKind::ConnectionRefused`]
    /// if the server is shutting down or full.
    pub fn connect_in_process(&self) -> io::Result<Client> {
        let (ours, theirs) = tokio::net::UnixStream::pair()?;
        let peer = peer_credentials(&ours);
        self.spawn_connection(ours, peer)
            .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "server is shutting down or full"))?;
        Ok(Client::new(theirs))
    }

    fn spawn_connection<S>(&self, stream: S, peer: Option<PeerCredentials>) -> Option<ConnectionId>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.core.cancel.is_cancelled() {
            return None;
        }
        let open = self.core.counters.open_connections();
        if open >= self.core.config.max_connections as u64 {
            self.core.counters.connection_refused();
            tracing::warn!(open, "connection refused: too many connections");
            return None;
        }
        let (key, shared) = self.core.register();
        let id = shared.id;
        let handler = self.handler.clone();
        let core = self.core.clone();
        self.core
            .tracker
            .spawn(conn::serve(stream, handler, core, key, shared, peer));
        Some(id)
    }

    fn spawn_accept(&self, listener: Accept, guard: Option<microsocket_socket::SocketFileGuard>) {
        let server = self.clone();
        self.core.tracker.spawn(async move {
            let cancel = server.core.cancel.clone();
            let mut cancelled = pin!(cancel.cancelled());
            loop {
                let accepted = std::future::poll_fn(|cx| {
                    if cancelled.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    listener.poll_accept(cx).map(Some)
                })
                .await;
                match accepted {
                    None => break,
                    Some(Ok(Accepted::Unix(stream))) => {
                        let peer = peer_credentials(&stream);
                        server.spawn_connection(stream, peer);
                    }
                    Some(Ok(Accepted::Tcp(stream))) => {
                        let _ = stream.set_nodelay(true);
                        server.spawn_connection(stream, None);
                    }
                    Some(Err(e)) => {
                        // Out of file descriptors and the like: back off briefly
                        // rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            drop(listener);
            if let Some(guard) = guard {
                tracing::info!(path = %guard.path().display(), "microsocket server stopped listening");
                drop(guard);
            }
        });
    }

    /// Shuts down gracefully: stops accepting, stops reading requests, lets
    /// requests in flight finish within [`ServerConfig::shutdown_timeout`] (then
    /// drops them), flushes what is queued, closes every connection and removes
    /// the socket files. Publications made meanwhile still reach open
    /// connections.
    pub async fn shutdown(&self) {
        self.core.cancel.cancel();
        self.core.signal_all(|q| q.shutdown = true);
        self.core.tracker.close();
        let deadline = self.core.config.shutdown_timeout;
        if tokio::time::timeout(deadline, self.core.tracker.wait()).await.is_err() {
            tracing::warn!("shutdown deadline passed; closing connections with requests in flight");
            self.core.signal_all(|q| q.abort = true);
            self.core.tracker.wait().await;
        }
        tracing::info!("microsocket server shut down");
    }

    /// Whether [`Server::shutdown`] has begun.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.core.cancel.is_cancelled()
    }
}

fn peer_credentials(stream: &tokio::net::UnixStream) -> Option<PeerCredentials> {
    microsocket_socket::peer_credentials(stream).ok()
}

enum Accept {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Accept {
    fn poll_accept(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<Accepted>> {
        match self {
            Self::Unix(l) => l.poll_accept(cx).map_ok(|(s, _)| Accepted::Unix(s)),
            Self::Tcp(l) => l.poll_accept(cx).map_ok(|(s, _)| Accepted::Tcp(s)),
        }
    }
}
