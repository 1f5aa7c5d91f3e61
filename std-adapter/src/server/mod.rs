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
//! A large answer (a value of 16 KiB or more) with nothing queued ahead of it
//! is not copied at all: its framing alone is encoded, and the socket is
//! handed the handler's values where they lie, in one vectored `sendmsg`;
//! only what the socket does not take at once is copied into the queue.
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

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use microsocket_core::{PatternError, SubscriptionKind};
use microsocket_host::{Account, ConnectionId, Counters, MemoryBudget, QueueBound, CONNECTION_COST};
pub use microsocket_host::{ServerConfig, SlowConsumer, Stats};
use rustix::event::{PollFd, PollFlags};

use microsocket_socket::{Address, Listener, PeerCredentials, Stream};

mod conn;
mod direct;
mod flusher;
mod handler;
mod publisher;
mod reader;
mod state;
#[cfg(feature = "tls")]
mod tls;

pub use handler::*;
pub use publisher::Publisher;
use reader::*;
pub use state::RequestContext;
use state::*;

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
    /// TLS on accepted connections (feature `tls`).
    #[cfg(feature = "tls")]
    tls: Option<tls::TlsAccept>,
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
        Self::from_listener_with(listener, config, |_| handler)
    }

    /// Binds an [`Address`] with a handler made from the server's
    /// [`Publisher`], for handlers that publish (no `OnceLock` needed).
    ///
    /// ```no_run
    /// use microsocket_std::{Address, Request, Responder, Server, ServerConfig};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let address: Address = "/tmp/app.sock".parse().unwrap();
    /// let server = Server::bind_with(&address, ServerConfig::default(), |publisher| {
    ///     move |request: Request<'_>, responder: Responder| {
    ///         let n = publisher.publish("calls", [request.command]).unwrap_or(0);
    ///         let _ = responder.respond([n.to_string()]);
    ///     }
    /// })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub fn bind_with(address: &Address, config: ServerConfig, make: impl FnOnce(Publisher) -> H) -> io::Result<Self> {
        let listener = address.bind_with(&socket_options(&config))?;
        Self::from_listener_with(listener, config, make)
    }

    /// Serves a listener the application bound, with a handler made from the
    /// server's [`Publisher`] (see [`Server::bind_with`]).
    ///
    /// # Errors
    /// As [`Server::from_listener`].
    pub fn from_listener_with(
        listener: impl Into<Listener>,
        config: ServerConfig,
        make: impl FnOnce(Publisher) -> H,
    ) -> io::Result<Self> {
        let listener = listener.into();
        listener.set_nonblocking(true)?;
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let hub = Hub::with_config(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shared = Arc::new(Shared {
            bound: QueueBound::new(&config),
            hub: Mutex::new(hub),
            flusher: Flusher::new()?,
            counters: Counters::default(),
            memory: MemoryBudget::new(config.memory),
            own_uid: microsocket_socket::own_uid(),
            monitors: microsocket_host::Monitors::new(),
            stopping: AtomicBool::new(false),
            readers: AtomicUsize::new(0),
            wake,
            config,
        });
        let handler = make(Publisher { shared: shared.clone() });
        Ok(Self {
            listener,
            handler: Arc::new(handler),
            shared,
            wake_rx,
            #[cfg(feature = "tls")]
            tls: None,
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
                let peer = stream.peer_credentials();
                let account = match shared.memory.open(peer.map(|p| p.uid), CONNECTION_COST) {
                    Ok(account) => account,
                    Err(_) => {
                        shared.counters.connection_refused();
                        continue;
                    }
                };
                let id = next_id.fetch_add(1, Ordering::Relaxed) as u64;
                #[cfg(feature = "tls")]
                if let Some(tls) = &self.tls {
                    tls.accept(id, stream, account, &shared, &self.handler);
                    continue;
                }
                start_connection(&shared, &self.handler, id, stream, peer, None, account);
            }
        };
        // New clients are refused from here on: the listener closes and its
        // socket file goes first, then requests in flight get their grace.
        drop(self.listener);
        shutdown_connections(&shared);
        shared.flusher.stop.store(true, Ordering::SeqCst);
        shared.flusher.asleep.store(true, Ordering::SeqCst);
        shared.flusher.wake();
        let _ = flusher.join();
        result
    }
}

/// Registers a connection and starts its reader thread, detached: the thread
/// is released when it ends (a handle kept until the next `accept` would
/// keep its stack mapped until then, without bound while clients keep
/// connecting).
fn start_connection<H: Handler>(
    shared: &Arc<Shared>,
    handler: &Arc<H>,
    id: u64,
    stream: Stream,
    peer: Option<PeerCredentials>,
    tls: Option<Arc<microsocket_socket::TlsIdentity>>,
    account: Account,
) {
    let _ = stream.set_read_timeout(None);
    let context = RequestContext {
        connection: ConnectionId::new(id),
        peer,
        tls,
    };
    let mut conn = None;
    lock(&shared.hub).insert_with(|slot| {
        let made = Arc::new(Conn {
            account,
            context,
            slot,
            stream,
            out: Mutex::new(Out::new(microsocket_host::connection_protocol(&shared.config))),
            drained: Condvar::new(),
            shared: shared.clone(),
        });
        conn = Some(made.clone());
        made
    });
    let Some(conn) = conn else { return };
    shared.counters.connection_opened();
    let handler = handler.clone();
    let running = ReaderRunning::new(shared.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("microsocket-conn-{id}"))
        .stack_size(shared.config.stack_size)
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
        lock(&shared.hub).remove(conn.slot, []);
        shared.counters.connection_closed();
    }
}

/// Stops reading every connection, waits for answers and queues to drain,
/// then closes what is left.
fn shutdown_connections(shared: &Shared) {
    let readers_running = || shared.readers.load(Ordering::SeqCst) > 0;
    let conns: Vec<Arc<Conn>> = lock(&shared.hub).connections().cloned().collect();
    for conn in &conns {
        let _ = conn.stream.shutdown(Shutdown::Read);
    }
    let deadline = Instant::now() + shared.config.shutdown_timeout;
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
