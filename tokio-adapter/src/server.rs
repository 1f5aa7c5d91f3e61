//! The async server: listeners, the publish hub, counters and shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use microsocket_core::PatternError;
use microsocket_host::{BufferLimits, MemoryLimits, ServerConfig, Stats};
use microsocket_host::{Counters, QueueBound};
use microsocket_socket::SocketOptions;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::Client;
use crate::conn;
use crate::handler::{Handler, PeerCredentials};
use crate::hub::{Core, Hub};
use crate::log::limited;
use microsocket_host::ConnectionId;

/// The socket-file settings of `config` as [`SocketOptions`].
fn socket_options(config: &ServerConfig) -> SocketOptions {
    let mut options = SocketOptions::new(config.socket_mode);
    options.owner = config.socket_owner;
    options.group = config.socket_group;
    options
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
        Ok(self
            .core
            .publish(topic, microsocket_host::publication_frame(topic, values)?))
    }

    /// Publishes several `(topic, values)` publications at once, as many
    /// [`Publisher::publish`] calls in a row would (same order, same
    /// buffering), but locking, charging and waking each subscriber's queue
    /// once for the whole batch: the way to publish at high rates. Returns
    /// how many deliveries were queued in all.
    ///
    /// # Errors
    /// [`EncodeError`](microsocket_core::EncodeError) if any publication
    /// cannot be encoded; then nothing is published.
    ///
    /// ```
    /// # async fn f(publisher: microsocket_tokio::Publisher) -> Result<(), microsocket_core::EncodeError> {
    /// let readings = [("temp.kitchen", "21.5"), ("temp.attic", "17.0")];
    /// publisher.publish_batch(readings.iter().map(|(topic, value)| (topic, [value])))?;
    /// # Ok(()) }
    /// ```
    pub fn publish_batch<T, I>(
        &self,
        publications: impl IntoIterator<Item = (T, I)>,
    ) -> Result<usize, microsocket_core::EncodeError>
    where
        T: AsRef<[u8]>,
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let (topics, frames) = microsocket_host::publication_frames(publications)?;
        let batch: Vec<_> = topics.iter().map(AsRef::as_ref).zip(frames).collect();
        Ok(self.core.publish_batch(&batch))
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

    /// Changes the caps on what buffered topics keep, while the server runs
    /// (a configuration reload); topics over the new caps give up their
    /// oldest publications at the next publication.
    pub fn set_buffer_limits(&self, limits: BufferLimits) {
        self.core.hub().hub.set_buffer_limits(limits);
    }

    /// Changes the memory budget's limits while the server runs (a
    /// configuration reload; see [`MemoryBudget::set_limits`](microsocket_host::MemoryBudget::set_limits)).
    pub fn set_memory_limits(&self, limits: MemoryLimits) {
        self.core.memory.set_limits(limits);
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
        Self::with_publisher(config, |_| handler)
    }

    /// A server whose handler is made from the server's [`Publisher`], for
    /// handlers that publish (no `OnceLock` needed).
    ///
    /// ```
    /// use microsocket_tokio::{handler_fn, Reply, Request, Server, ServerConfig};
    ///
    /// let server = Server::with_publisher(ServerConfig::default(), |publisher| {
    ///     handler_fn(move |request: Request| {
    ///         let n = publisher.publish("calls", [&request.command]).unwrap_or(0);
    ///         async move { Ok(Reply::one(n.to_string())) }
    ///     })
    /// });
    /// # let _ = server;
    /// ```
    ///
    /// # Panics
    /// As [`Server::with_config`].
    pub fn with_publisher(config: ServerConfig, make: impl FnOnce(Publisher) -> H) -> Self {
        let hub = match microsocket_host::Hub::with_config(&config) {
            Ok(hub) => Hub { hub, wake: Vec::new() },
            Err(e) => panic!("ServerConfig::buffers: not a valid pattern: {e}"),
        };
        let core = Arc::new(Core {
            bound: QueueBound::new(&config),
            hub: Mutex::new(hub),
            memory: microsocket_host::MemoryBudget::new(config.memory),
            own_uid: microsocket_socket::own_uid(),
            config,
            counters: Counters::default(),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            next_id: AtomicU64::new(1),
            monitors: microsocket_host::Monitors::new(),
        });
        let handler = make(Publisher { core: core.clone() });
        Self {
            handler: Arc::new(handler),
            core,
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

    /// Changes the buffered topics' caps (see [`Publisher::set_buffer_limits`]).
    pub fn set_buffer_limits(&self, limits: BufferLimits) {
        self.publisher().set_buffer_limits(limits);
    }

    /// Changes the memory limits (see [`Publisher::set_memory_limits`]).
    pub fn set_memory_limits(&self, limits: MemoryLimits) {
        self.publisher().set_memory_limits(limits);
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.core.stats()
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
        self.spawn_connection(stream, None, |_| false)
    }

    /// Publications on topics matching `patterns`, read straight from this
    /// server as it publishes them (see [`Tap`](crate::Tap)): how code in the
    /// server's process follows topics, cheaper than a client connected
    /// in-process. At most `max_queued_bytes` of publications wait unread;
    /// past that they are dropped for the tap, and counted, as for a slow
    /// subscriber.
    ///
    /// # Errors
    /// [`TapError::Pattern`](crate::TapError::Pattern) for an invalid pattern,
    /// [`TapError::ShuttingDown`](crate::TapError::ShuttingDown), or
    /// [`TapError::Refused`](crate::TapError::Refused) when the memory budget
    /// has no room.
    pub fn tap<I>(&self, patterns: I, max_queued_bytes: usize) -> Result<crate::Tap, crate::TapError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        crate::Tap::new(self.core.clone(), patterns, max_queued_bytes)
    }

    /// A client connected to this server in-process, over an in-memory pipe
    /// (`tokio::io::duplex`, 256 KiB each way): no socket file, no system
    /// calls, each side's task woken directly by the other. Its requests carry
    /// this process's credentials.
    ///
    /// # Errors
    /// [`io::ErrorKind::ConnectionRefused`] if the server is shutting down or
    /// full.
    pub fn connect_in_process(&self) -> io::Result<Client> {
        self.connect_in_process_with(crate::ClientBuilder::default())
    }

    /// [`Server::connect_in_process`] with a client made by `builder` (its
    /// queue limits, say).
    ///
    /// # Errors
    /// As [`Server::connect_in_process`].
    pub fn connect_in_process_with(&self, builder: crate::ClientBuilder) -> io::Result<Client> {
        let (ours, theirs) = tokio::io::duplex(IN_PROCESS_BUFFER);
        let peer = Some(microsocket_socket::own_credentials());
        // A pipe cannot be asked whether its other end is gone: a client
        // dropped while its connection is paused is seen at the next read.
        self.spawn_connection(ours, peer, |_| false)
            .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "server is shutting down or full"))?;
        Ok(builder.connect_stream(theirs))
    }

    /// Serves `stream`; `hung_up` tells, without reading, whether its peer
    /// has left (see `microsocket_socket::peer_hung_up`).
    fn spawn_connection<S>(
        &self,
        stream: S,
        peer: Option<PeerCredentials>,
        hung_up: fn(&S) -> bool,
    ) -> Option<ConnectionId>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.spawn_connection_as(stream, peer, None, hung_up)
    }

    /// [`Server::spawn_connection`] for a peer with a verified TLS identity.
    pub(crate) fn spawn_connection_as<S>(
        &self,
        stream: S,
        peer: Option<PeerCredentials>,
        tls: Option<Arc<crate::handler::TlsIdentity>>,
        hung_up: fn(&S) -> bool,
    ) -> Option<ConnectionId>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.core.cancel.is_cancelled() {
            return None;
        }
        let open = self.core.counters.open_connections();
        if open >= self.core.config.max_connections as u64 {
            self.core.counters.connection_refused();
            limited!(warn, open, "connection refused: too many connections");
            return None;
        }
        let account = match self
            .core
            .memory
            .open(peer.map(|p| p.uid), microsocket_host::CONNECTION_COST)
        {
            Ok(account) => account,
            Err(refused) => {
                self.core.counters.connection_refused();
                limited!(warn, %refused, "connection refused");
                return None;
            }
        };
        let (key, shared) = self.core.register(account, peer, self.core.bound);
        let id = shared.id;
        let context = crate::handler::RequestContext {
            connection: id,
            peer,
            tls,
        };
        let handler = self.handler.clone();
        let core = self.core.clone();
        self.core
            .tracker
            .spawn(conn::serve(stream, handler, core, key, shared, context, hung_up));
        Some(id)
    }

    /// The tracker of the server's tasks.
    #[cfg(feature = "tls")]
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.core.tracker
    }

    /// The token cancelled when the server shuts down.
    #[cfg(feature = "tls")]
    pub(crate) fn cancellation(&self) -> CancellationToken {
        self.core.cancel.clone()
    }

    /// Counts (and logs, rate-limited) a connection closed before it was served.
    #[cfg(feature = "tls")]
    pub(crate) fn refuse_connection(&self, why: &'static str) {
        self.core.counters.connection_refused();
        limited!(warn, why, "connection refused");
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
                        server.spawn_connection(stream, peer, socket_hung_up);
                    }
                    Some(Ok(Accepted::Tcp(stream))) => {
                        let _ = stream.set_nodelay(true);
                        server.spawn_connection(stream, None, socket_hung_up);
                    }
                    Some(Err(e)) => {
                        // Out of file descriptors and the like: back off briefly
                        // rather than spin.
                        limited!(warn, error = %e, "accept failed");
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

/// Bytes an in-process connection carries each way before its writer waits.
const IN_PROCESS_BUFFER: usize = 256 * 1024;

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

/// [`microsocket_socket::peer_hung_up`] for the sockets the server accepts.
pub(crate) fn socket_hung_up<S: std::os::fd::AsFd>(stream: &S) -> bool {
    microsocket_socket::peer_hung_up(stream)
}
