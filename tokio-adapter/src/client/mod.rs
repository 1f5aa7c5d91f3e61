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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use microsocket_core::SubscriptionKind;
use microsocket_host::{ByteBudget, ClientConfig, Members, ReconnectPolicy, SubscriptionQueue, Taken};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};

use microsocket_host::Error;

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

    /// Sets [`ClientConfig::subscription_max_bytes`]: bytes of publications
    /// each subscription stream queues (default 8 MiB, one always taken); past
    /// it the stream drops new ones and reports [`Error::Lagged`].
    #[must_use]
    pub fn subscription_max_bytes(mut self, bytes: usize) -> Self {
        self.config.subscription_max_bytes = bytes;
        self
    }

    /// Sets [`ClientConfig::max_queued_bytes`]: bytes of publications all of
    /// the connection's subscription streams queue together (default 32 MiB);
    /// past it, a stream holding something drops new ones and reports
    /// [`Error::Lagged`].
    #[must_use]
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queued_bytes = bytes;
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
        let mut config = self.config;
        if connector.is_none() {
            // Nothing to reconnect with.
            config.reconnect = None;
        }
        let reconnect = config.reconnect;
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
                drop_link: false,
            }),
            budget: ByteBudget::new(config.max_queued_bytes),
            config,
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
        let mut subscription = self.empty_subscription();
        subscription.add(kind, topic).await?;
        Ok(subscription)
    }

    /// One stream for several topics and patterns: each publication once, in
    /// the order the server sent them, however many of them it matches (where
    /// one [`Subscription`] per topic would each get their own copy, and
    /// merging them loses the order).
    ///
    /// ```no_run
    /// # async fn f(client: microsocket_tokio::Client) -> Result<(), microsocket_tokio::Error> {
    /// let mut stream = client.subscriber().topic("alpha").pattern("sensor.>").subscribe().await?;
    /// stream.add_topic("beta").await?;
    /// while let Some(publication) = stream.next().await {
    ///     let publication = publication?;
    ///     println!("{:?} matched {:?}", publication.topic_str(), stream.matching(&publication).count());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            client: self.clone(),
            wanted: Vec::new(),
        }
    }

    /// A stream with no subscription yet.
    fn empty_subscription(&self) -> Subscription {
        let queue = Arc::new(SubQueue {
            inner: Mutex::new(SubInner {
                queue: SubscriptionQueue::for_client(&self.shared().config, &self.shared().budget),
                waker: None,
                last: 0,
            }),
        });
        Subscription {
            client: self.clone(),
            members: Members::default(),
            queue,
            local: VecDeque::new(),
            taken: Taken::default(),
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

mod driver;
mod response;
mod state;
mod subscription;

use driver::*;
pub use response::ResponseFuture;
use response::*;
use state::*;
pub use state::{Client, MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES};
pub use subscription::{Subscriber, Subscription};
