//! What a client connection is made of: its shared state, its reader, its
//! subscription queues, and the limits that size them.

use crate::rx::RxBuf;
use microsocket_core::frame::Decoder;
use microsocket_core::{ClientProtocol, RequestId, SubscriptionId};
use microsocket_host::{ByteBudget, SubscriptionQueue};
use microsocket_host::{ClientConfig, Publication, Values};
use microsocket_host::{Error, Result};
use microsocket_socket::Stream;
use rustc_hash::FxHashMap as IdMap;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// Requests one connection can have in flight (one-byte tags, as the original
/// IPC::MicroSocket client).
pub const MAX_IN_FLIGHT: usize = 256;
/// Distinct wire subscriptions (topics and patterns) one client connection can
/// hold.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Total bytes of the topics and patterns of one client connection's subscriptions.
pub const MAX_SUBSCRIPTION_BYTES: usize = 4096;

/// Write buffers larger than this are freed once written rather than kept.
pub(super) const MAX_KEPT_BUFFER: usize = 1 << 20;

/// How many times a thread whose answer another thread is reading yields the CPU
/// before it sleeps. A wake-up from a condition variable costs a futex call and a
/// cross-CPU context switch; yielding lets the leader and the server run and
/// usually finds the answer in, or the leader role free, first. Bounded, so a
/// slow server costs a waiter at most this many `sched_yield` calls.
pub(super) const SPIN_YIELDS: u32 = 64;

/// Answers that arrived for one slot and are not yet collected, with their
/// ids and whether they count in [`State::uncollected`].
pub(super) type Answers = Vec<(RequestId, Result<Values>, Counted)>;

/// How a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sending {
    /// By [`Client::request`], which waits for the answer at once.
    Request,
    /// For a [`Ticket`](super::Ticket): written as a request is.
    Ticket,
    /// In a [`Batch`](super::Batch): written when the batch is sent.
    Batched,
}

/// Whether an answer waiting in `done` counts in [`State::uncollected`]: the
/// answers of [`Ticket`](super::Ticket)s do not, since their holders collect
/// them whenever they like, and requests must not wait for that to be written.
pub(super) type Counted = bool;

pub(super) type Protocol = ClientProtocol<MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES>;

/// A handle to one client connection; clone it to share the connection between
/// threads. See the [module docs](crate::client) for the thread model.
#[derive(Debug, Clone)]
pub struct Client {
    pub(super) inner: Arc<Inner>,
}

/// Opens a new stream to the same server, for reconnecting.
pub(super) type Connector = Arc<dyn Fn() -> io::Result<Stream> + Send + Sync>;

pub(super) struct Inner {
    /// This connection, for the thread that reconnects it.
    pub(super) me: Weak<Inner>,
    /// How to connect again, if the client was connected to an address.
    pub(super) connector: Option<Connector>,
    pub(super) config: ClientConfig,
    /// What the subscription queues may hold together.
    pub(super) budget: ByteBudget,
    pub(super) state: Mutex<State>,
    /// Held only by the leader.
    pub(super) rx: Mutex<Reader>,
    /// One condition variable per request slot, used with `state`.
    pub(super) slot_cvs: Box<[Condvar]>,
    /// Bumped whenever an answer is handed out, the connection closes or the
    /// leader steps down.
    pub(super) progress: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("reconnects", &self.connector.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(super) struct Reader {
    pub(super) buf: RxBuf,
    pub(super) decoder: Decoder,
    /// The read timeout set on the socket now.
    pub(super) timeout: Option<Duration>,
}

#[derive(Debug)]
pub(super) struct SubQueue {
    /// Publications, lag markers and connection notices, in order.
    pub(super) queue: SubscriptionQueue<Publication, Error>,
    /// Threads sleeping on its condition variable (0 or 1).
    pub(super) sleeping: u16,
    /// The number of the last publication queued: a receiver that several of
    /// the matched subscriptions feed gets each publication once.
    pub(super) last: u64,
}

#[derive(Debug, Clone)]
pub(super) enum WaitKey {
    Slot(u16),
    Sub(Arc<SubShared>),
}

impl WaitKey {
    pub(super) fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Slot(a), Self::Slot(b)) => a == b,
            (Self::Sub(a), Self::Sub(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

#[derive(Debug)]
pub(super) struct SubShared {
    pub(super) key: u64,
    pub(super) cv: Condvar,
}

#[derive(Debug)]
pub(super) struct State {
    /// The connection's socket, replaced when the client reconnects.
    pub(super) stream: Arc<Stream>,
    /// Counts the sockets `stream` has held: an error on a socket that has
    /// since been replaced is not a loss of the current one.
    pub(super) generation: u64,
    /// The connection was lost and a thread is connecting again: nothing is
    /// read or written meanwhile, new requests fail with
    /// [`Error::Reconnecting`].
    pub(super) reconnecting: bool,
    pub(super) protocol: Protocol,
    /// The request waiting in each slot. The core frees a slot as soon as its
    /// answer arrives, so answers wait in `done` (per slot, with their ids), not in `slots`.
    pub(super) slots: Vec<Option<RequestId>>,
    /// Per slot: whether its request was sent for a [`Ticket`](super::Ticket).
    pub(super) ticketed: Vec<bool>,
    pub(super) done: Vec<Answers>,
    /// Per slot: threads sleeping on the slot's condition variable (two at most:
    /// one whose answer is in but not yet collected, one whose request reuses the
    /// freed slot).
    pub(super) sleeping: Vec<u16>,
    /// Encoded frames not yet written, in protocol order.
    pub(super) pending: Vec<u8>,
    /// The writer's buffer, kept for reuse while nobody writes.
    pub(super) spare: Vec<u8>,
    /// A thread is writing: it writes whatever `pending` holds before it stops.
    pub(super) writing: bool,
    /// Stands in for the sleeping flag of a subscription being dropped.
    pub(super) sub_sleeping_gone: u16,
    /// Wake-ups to send once the lock is released.
    pub(super) wakes: Vec<WaitKey>,
    /// Answers handed out to `done` and not yet collected by their threads.
    pub(super) uncollected: usize,
    /// Someone leads (reads the socket).
    pub(super) reading: bool,
    /// Threads inside [`Inner::wait`] for an answer (not a publication),
    /// leader included.
    pub(super) awaiting_answers: usize,
    pub(super) closed: bool,
    /// The server stopped reading (a write failed with `EPIPE`, as when a
    /// server shutting down gracefully shuts its side for reading): nothing
    /// more is written, new requests fail with [`Error::Closed`], and requests
    /// already sent still get the answers the server gives before it closes.
    pub(super) send_closed: bool,
    /// Threads waiting that could take over reading.
    pub(super) idle: Vec<WaitKey>,
    /// Local subscription handles by wire subscription.
    pub(super) handles: IdMap<SubscriptionId, Vec<Arc<SubShared>>>,
    pub(super) queues: IdMap<u64, SubQueue>,
    pub(super) next_key: u64,
    /// Publications received, numbering each (see [`SubQueue::last`]).
    pub(super) publications: u64,
}
