//! What a server's threads share: the server's state, each connection's
//! state and output queue, the flusher's queue, and the constants that tune
//! them. Their behaviour lives with the thread that runs it.

use bytes::Bytes;
use microsocket_host::{Account, ConnectionId, Counters, MemoryBudget, QueueBound};
use microsocket_host::{ServerConfig, Stats};
use microsocket_socket::{PeerCredentials, SocketOptions, Stream, TlsIdentity};
use rustix::net::SendFlags;
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Flags of every socket write: never block, and where the platform allows it
/// never raise SIGPIPE for a peer that went away (elsewhere Rust programs ignore
/// SIGPIPE by default).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT.union(SendFlags::NOSIGNAL);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT;

pub(super) type Protocol = microsocket_host::ConnectionProtocol;

/// The socket-file settings of `config` as [`SocketOptions`].
pub(super) fn socket_options(config: &ServerConfig) -> SocketOptions {
    let mut options = SocketOptions::new(config.socket_mode);
    options.owner = config.socket_owner;
    options.group = config.socket_group;
    options
}

/// Locks `m`, whether or not a thread panicked holding it (every update under
/// these locks leaves consistent state).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State shared by the acceptor, the readers, the flusher, publishers and
/// responders.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: ServerConfig,
    pub(super) bound: QueueBound,
    pub(super) hub: Mutex<Hub>,
    pub(super) flusher: Flusher,
    pub(super) counters: Counters,
    /// What the connections may make the server hold.
    pub(super) memory: MemoryBudget,
    /// This process's user: who may use server commands by default.
    pub(super) own_uid: u32,
    /// The connections watching the server (`$MONITOR`).
    pub(super) monitors: microsocket_host::Monitors<Arc<Conn>>,
    pub(super) stopping: AtomicBool,
    /// Reader threads running (see [`ReaderRunning`]). Readers are detached, not
    /// joined: a finished reader's thread is released by the system at once,
    /// whether or not another connection comes.
    pub(super) readers: AtomicUsize,
    /// The write end of the acceptor's wake-up socket.
    pub(super) wake: UnixStream,
}

impl Shared {
    /// The counters now, with the bytes queued for all connections.
    pub(super) fn stats(&self) -> Stats {
        let (conns, buffers) = {
            let hub = lock(&self.hub);
            let conns: Vec<Arc<Conn>> = hub.connections().cloned().collect();
            (conns, hub.buffer_stats())
        };
        let queued: usize = conns.iter().map(|c| c.lock().queued).sum();
        self.counters.snapshot(queued as u64, buffers, self.memory.stats())
    }

    /// Shows the monitors an event (`tell` calls one of [`Monitors`]'
    /// methods with the offer it is given), scheduling the flusher for
    /// those it was queued to.
    ///
    /// [`Monitors`]: microsocket_host::Monitors
    pub(super) fn show(
        &self,
        tell: impl FnOnce(&microsocket_host::Monitors<Arc<Conn>>, &mut microsocket_host::OfferEvent<'_, Arc<Conn>>),
    ) {
        if !self.monitors.is_active() {
            return;
        }
        let mut flush = false;
        tell(&self.monitors, &mut |conn, frame| {
            let (queued, newly) = conn.offer_event(&mut conn.lock(), frame);
            if newly {
                self.flusher.push(conn.clone());
                flush = true;
            }
            queued
        });
        if flush {
            self.flusher.wake();
        }
    }
}

impl microsocket_host::ServerView for Shared {
    fn access(&self) -> (u32, microsocket_host::ServerCommands) {
        (self.own_uid, self.config.server_commands)
    }

    fn stats(&self) -> Stats {
        Shared::stats(self)
    }

    fn subscriptions(&self) -> Vec<(microsocket_core::SubscriptionKind, Vec<u8>, usize)> {
        lock(&self.hub).registry().subscriptions()
    }

    fn monitor(&self, slot: usize, filter: Option<&[u8]>) -> Result<(), microsocket_core::PatternError> {
        let Some(conn) = lock(&self.hub).get(slot).cloned() else {
            return Ok(());
        };
        self.monitors.watch(slot, conn, filter)
    }

    fn connections(&self) -> Vec<microsocket_host::ConnectionInfo> {
        let conns: Vec<Arc<Conn>> = lock(&self.hub).connections().cloned().collect();
        conns
            .iter()
            .map(|conn| {
                let out = conn.lock();
                microsocket_host::ConnectionInfo {
                    id: conn.context.connection.get(),
                    peer: conn.context.peer.map(|p| (p.pid, p.uid, p.gid)),
                    subscriptions: out.protocol.subscriptions().len(),
                    requests_in_flight: out.protocol.requests_in_flight(),
                    queued_bytes: out.queued,
                    memory: conn.account.held(),
                    dropped: out.dropped,
                }
            })
            .collect()
    }
}

/// Counts one reader thread in [`Shared::readers`] while it lives (also if the
/// handler panics on it).
pub(super) struct ReaderRunning(Arc<Shared>);

impl ReaderRunning {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
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
pub(super) type Hub = microsocket_host::Hub<Arc<Conn>, Bytes>;

#[derive(Debug)]
pub(super) struct Conn {
    /// Its share of the memory budget: what it holds is charged here.
    pub(super) account: Account,
    pub(super) context: RequestContext,
    /// Its slot in the [`Hub`], which is how the registry names it.
    pub(super) slot: usize,
    pub(super) stream: Stream,
    pub(super) out: Mutex<Out>,
    /// Signalled when the queue drains or the connection dies.
    pub(super) drained: Condvar,
    pub(super) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(super) struct Out {
    pub(super) protocol: Protocol,
    /// Encoded answers, whole frames; `answers[answers_sent..]` is unsent. An
    /// answer made while publications wait goes behind them in `pubs` instead
    /// (see [`Out::answer_sink`]).
    pub(super) answers: Vec<u8>,
    pub(super) answers_sent: usize,
    /// Encoded publication frames, in order; `pubs[pubs_sent..]` is unsent.
    pub(super) pubs: Vec<u8>,
    pub(super) pubs_sent: usize,
    /// Lengths of the publication frames not wholly written; `front_sent` bytes
    /// of the first are on the wire already.
    pub(super) pub_lens: VecDeque<usize>,
    pub(super) front_sent: usize,
    /// Unsent bytes, answers and publications.
    pub(super) queued: usize,
    /// In the flusher's hands.
    pub(super) scheduled: bool,
    /// A thread is writing bytes it took out of the buffers (without the lock):
    /// others only append, and the writer sends what they appended after it.
    pub(super) flushing: bool,
    /// An empty buffer with capacity, given to `pubs` while a writer holds its
    /// bytes.
    pub(super) spare: Vec<u8>,
    /// The reader is handling a batch of frames: answers wait for its end.
    pub(super) corked: bool,
    pub(super) dead: bool,
    /// Threads waiting on `drained` (it is signalled only if some wait).
    pub(super) drain_waiters: usize,
    /// Publications and monitor events dropped for this connection.
    pub(super) dropped: u64,
}

/// Output buffers larger than this are freed once drained rather than kept.
pub(super) const KEPT_BUFFER: usize = 1 << 20;

pub(super) enum Flushed {
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
pub(super) const ACCEPT_BATCH: usize = 64;

/// How long the acceptor waits before accepting again after `accept` failed
/// for want of file descriptors or memory.
pub(super) const ACCEPT_BACKOFF: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 50_000_000,
};

/// Writes one writer makes in a row before leaving the rest to the flusher.
pub(super) const ROUNDS: usize = 4;

/// How long the flusher lets publications gather between rounds while they keep
/// coming.
pub(super) const COALESCE: Duration = Duration::from_micros(100);

/// Writes queued frames for every connection; see the module docs.
#[derive(Debug)]
pub(super) struct Flusher {
    pub(super) ready: Mutex<Vec<Arc<Conn>>>,
    pub(super) asleep: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) wake_tx: UnixStream,
    pub(super) wake_rx: UnixStream,
}

/// Who a request or subscription comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The connection's id, unique within this server.
    pub connection: ConnectionId,
    /// The peer's credentials, on UNIX sockets where the platform tells them.
    pub peer: Option<PeerCredentials>,
    /// The verified certificate of a client over TLS that presented one
    /// (mutual TLS, feature `tls`); `None` otherwise.
    pub tls: Option<std::sync::Arc<TlsIdentity>>,
}
