//! What a server's connections share with its publishers: the host layer's
//! hub, each connection's queue of publications, counters and shutdown.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use microsocket_core::SubscriptionKind;
use microsocket_host::{Account, Admission, Counters, MemoryBudget, QueueBound, ServerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::limited;
use microsocket_host::ConnectionId;

// ---------------------------------------------------------------------------
// The hub: registry of subscriptions and the connections' outgoing queues
// ---------------------------------------------------------------------------

/// What the server's connections share with publishers (not generic over the
/// handler).
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: ServerConfig,
    pub(crate) counters: Counters,
    pub(crate) bound: QueueBound,
    pub(crate) hub: Mutex<Hub>,
    pub(crate) tracker: TaskTracker,
    pub(crate) cancel: CancellationToken,
    pub(crate) next_id: AtomicU64,
    /// What the connections may make the server hold.
    pub(crate) memory: MemoryBudget,
    /// This process's user: who may use server commands by default.
    pub(crate) own_uid: u32,
    /// The connections watching the server (`$MONITOR`).
    pub(crate) monitors: microsocket_host::Monitors<Arc<ConnShared>>,
}

/// The host layer's hub (connection slots and the subscription registry),
/// with the wakers collected under its lock and woken after it.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    pub(crate) hub: microsocket_host::Hub<Arc<ConnShared>, Bytes>,
    pub(crate) wake: Vec<Waker>,
}

/// One connection's queue of publications and its control flags, shared with
/// publishers.
#[derive(Debug)]
pub(crate) struct ConnShared {
    pub(crate) id: ConnectionId,
    /// Its share of the memory budget: what it holds is charged here.
    pub(crate) account: Account,
    /// The bound on its unsent bytes, and what happens past it: the server's
    /// for a connection, a tap's own for a tap.
    pub(crate) bound: QueueBound,
    /// Bytes the connection's task holds and has not written yet (answers and
    /// publications it took from the queue); only that task stores it.
    pub(crate) held: AtomicUsize,
    pub(crate) queue: Mutex<OutQueue>,
    /// The peer's process, user and group ids, where the socket tells them.
    pub(crate) peer: Option<microsocket_socket::PeerCredentials>,
    /// Its subscriptions and unanswered requests, as its task last saw them
    /// (for `$CONNECTIONS`).
    pub(crate) subscriptions: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
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
    /// A written chunk's buffer, given back by the connection for the next
    /// chunk: a busy connection reuses its buffers instead of allocating one
    /// per chunk.
    pub(crate) spare: Option<BytesMut>,
}

/// Publication frames up to this size are copied into the connection's queue
/// rather than shared.
pub(crate) const COPY_BELOW: usize = 512;
/// Copied publication frames are gathered in chunks of up to this size, each
/// handed to the writer whole.
pub(crate) const TAIL_CHUNK: usize = 32 * 1024;

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
    pub(crate) fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new connection; returns its slot and shared state.
    pub(crate) fn register(
        &self,
        account: Account,
        peer: Option<microsocket_socket::PeerCredentials>,
        bound: QueueBound,
    ) -> (usize, Arc<ConnShared>) {
        let id = ConnectionId::new(self.next_id.fetch_add(1, Ordering::Relaxed));
        let shared = Arc::new(ConnShared {
            id,
            account,
            bound,
            peer,
            subscriptions: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            queue: Mutex::new(OutQueue::default()),
        });
        let key = {
            let mut hub = self.hub();
            // Under the hub's lock, which shutdown's signal to every connection
            // takes too: a connection registered as shutdown begins is either
            // signalled with the others or sees the cancellation here.
            shared.lock().shutdown = self.cancel.is_cancelled();
            hub.hub.insert_with(|_| shared.clone())
        };
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
        // Before the slot can be given to a new connection.
        self.monitors.forget(key, shared.id);
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

    pub(crate) fn publish(&self, topic: &[u8], frame: Bytes) -> usize {
        let mut guard = self.hub();
        let Hub { hub, wake } = &mut *guard;
        let delivered = hub.publish(topic, &frame, |conn| self.deliver(conn, &frame, wake));
        let wake = std::mem::take(wake);
        drop(guard);
        self.counters.published(delivered as u64);
        wake_all(wake, self);
        self.show(|monitors, offer| monitors.publication(&frame, delivered, offer));
        delivered
    }

    /// Shows the monitors an event (`tell` calls one of [`Monitors`]'
    /// methods with the offer it is given), waking those it was queued to.
    ///
    /// [`Monitors`]: microsocket_host::Monitors
    pub(crate) fn show(
        &self,
        tell: impl FnOnce(
            &microsocket_host::Monitors<Arc<ConnShared>>,
            &mut microsocket_host::OfferEvent<'_, Arc<ConnShared>>,
        ),
    ) {
        if !self.monitors.is_active() {
            return;
        }
        let mut wake = Vec::new();
        tell(&self.monitors, &mut |conn, frame| self.offer(conn, frame, &mut wake));
        wake.into_iter().for_each(Waker::wake);
    }

    /// Queues a monitor event to a connection if its queue has room and
    /// the budget allows, without ever waiting or disconnecting it; a
    /// dropped event is counted on the connection.
    fn offer(&self, conn: &ConnShared, make: &mut dyn FnMut() -> Option<Bytes>, wake: &mut Vec<Waker>) -> bool {
        let mut queue = conn.lock();
        if queue.abort {
            return false;
        }
        let queued = queue.bytes + conn.held.load(Ordering::Relaxed);
        // A full queue drops the event before it is built.
        let frame = if conn.bound.is_full(queued) { None } else { make() };
        let admitted =
            |f: &Bytes| conn.bound.admit(queued, f.len()) == Admission::Queue && conn.account.try_charge(f.len());
        let Some(frame) = frame.filter(admitted) else {
            queue.dropped += 1;
            return false;
        };
        push(&mut queue, &frame, wake);
        true
    }

    /// Publishes a batch (see `Hub::publish_batch`): each connection's queue
    /// is locked, charged and woken once for all its publications.
    pub(crate) fn publish_batch(&self, batch: &[(&[u8], Bytes)]) -> usize {
        let mut guard = self.hub();
        let Hub { hub, wake } = &mut *guard;
        // Each publication's connections reached, for the monitors.
        let mut reached = vec![0; if self.monitors.is_active() { batch.len() } else { 0 }];
        let delivered = hub.publish_batch(batch, |conn, indices| {
            let total: usize = indices.iter().map(|&i| batch[i].1.len()).sum();
            // Charged for all at once; given back for any not queued.
            let prepaid = conn.account.try_charge(total);
            let mut queue = conn.lock();
            let mut queued = 0;
            for &i in indices {
                let frame = &batch[i].1;
                if self.deliver_locked(conn, &mut queue, frame, prepaid, wake) {
                    queued += 1;
                    if let Some(n) = reached.get_mut(i) {
                        *n += 1;
                    }
                } else if prepaid {
                    conn.account.release(frame.len());
                }
            }
            queued
        });
        let wake = std::mem::take(wake);
        drop(guard);
        self.counters.published_batch(batch.len() as u64, delivered as u64);
        wake_all(wake, self);
        for ((_, frame), n) in batch.iter().zip(reached) {
            self.show(|monitors, offer| monitors.publication(frame, n, offer));
        }
        delivered
    }

    /// Queues one publication frame to a connection, applying the slow-consumer
    /// policy. Returns whether it was queued.
    pub(crate) fn deliver(&self, conn: &ConnShared, frame: &Bytes, wake: &mut Vec<Waker>) -> bool {
        let mut queue = conn.lock();
        self.deliver_locked(conn, &mut queue, frame, false, wake)
    }

    /// [`Core::deliver`] with the queue locked; `prepaid`: the frame's bytes
    /// are already charged to the connection's account.
    fn deliver_locked(
        &self,
        conn: &ConnShared,
        queue: &mut OutQueue,
        frame: &Bytes,
        prepaid: bool,
        wake: &mut Vec<Waker>,
    ) -> bool {
        let len = frame.len();
        if queue.abort {
            return false;
        }
        let mut admission = conn.bound.admit(queue.bytes + conn.held.load(Ordering::Relaxed), len);
        if admission == Admission::Queue && !prepaid && !conn.account.try_charge(len) {
            // Short of memory: dropped for this connection, as for a slow one.
            admission = Admission::Drop;
        }
        if admission != Admission::Queue {
            self.counters.dropped(1);
            queue.dropped += 1;
            if admission == Admission::Disconnect {
                queue.abort = true;
                self.counters.slow_consumer_disconnected();
                limited!(warn, connection = %conn.id, "slow consumer disconnected");
                if let Some(w) = queue.waker.take() {
                    wake.push(w);
                }
            } else if queue.dropped.is_power_of_two() {
                tracing::debug!(connection = %conn.id, dropped = queue.dropped, "publication dropped for slow consumer");
            }
            return false;
        }
        push(queue, frame, wake);
        true
    }

    /// The counters now, with the bytes queued for all connections and what
    /// the buffered topics hold.
    pub(crate) fn stats(&self) -> microsocket_host::Stats {
        let (queued, buffers) = {
            let hub = self.hub();
            let queued = hub
                .hub
                .connections()
                .map(|c| (c.lock().bytes + c.held.load(Ordering::Relaxed)) as u64)
                .sum();
            (queued, hub.hub.buffer_stats())
        };
        self.counters.snapshot(queued, buffers, self.memory.stats())
    }

    /// Every connection as `$CONNECTIONS` describes it.
    pub(crate) fn connections(&self) -> Vec<microsocket_host::ConnectionInfo> {
        let hub = self.hub();
        hub.hub
            .connections()
            .map(|c| {
                let queue = c.lock();
                microsocket_host::ConnectionInfo {
                    id: c.id.get(),
                    peer: c.peer.map(|p| (p.pid, p.uid, p.gid)),
                    subscriptions: c.subscriptions.load(Ordering::Relaxed),
                    requests_in_flight: c.in_flight.load(Ordering::Relaxed),
                    queued_bytes: queue.bytes + c.held.load(Ordering::Relaxed),
                    memory: c.account.held(),
                    dropped: queue.dropped,
                }
            })
            .collect()
    }

    /// Sets a flag on every connection and wakes it.
    pub(crate) fn signal_all(&self, f: impl Fn(&mut OutQueue)) {
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

/// Appends a frame to a connection's queue: a small one copied into its
/// tail chunk, a large one shared; wakes the connection.
fn push(queue: &mut OutQueue, frame: &Bytes, wake: &mut Vec<Waker>) {
    let len = frame.len();
    queue.bytes += len;
    if len <= COPY_BELOW {
        let room = queue.tail.capacity() - queue.tail.len();
        if queue.tail.len() + len > TAIL_CHUNK || room < len {
            // A full chunk goes to the writer whole, and the next one
            // starts with room for as much (a buffer the connection gave
            // back, if any), rather than growing by copies.
            let next = queue
                .spare
                .take()
                .unwrap_or_else(|| BytesMut::with_capacity(TAIL_CHUNK));
            let full = std::mem::replace(&mut queue.tail, next);
            if !full.is_empty() {
                queue.frames.push_back(full.freeze());
            }
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
}

/// Wakes the collected wakers, then gives the spare vector back to the hub.
pub(crate) fn wake_all(mut wake: Vec<Waker>, core: &Core) {
    if wake.is_empty() {
        return;
    }
    wake.drain(..).for_each(Waker::wake);
    let mut hub = core.hub();
    if hub.wake.capacity() < wake.capacity() {
        hub.wake = wake;
    }
}

impl microsocket_host::ServerView for Core {
    fn access(&self) -> (u32, microsocket_host::ServerCommands) {
        (self.own_uid, self.config.server_commands)
    }

    fn stats(&self) -> microsocket_host::Stats {
        Core::stats(self)
    }

    fn connections(&self) -> Vec<microsocket_host::ConnectionInfo> {
        Core::connections(self)
    }

    fn subscriptions(&self) -> Vec<(SubscriptionKind, Vec<u8>, usize)> {
        self.hub().hub.registry().subscriptions()
    }

    fn monitor(&self, slot: usize, filter: Option<&[u8]>) -> Result<(), microsocket_core::PatternError> {
        let Some(conn) = self.hub().hub.get(slot).cloned() else {
            return Ok(());
        };
        self.monitors.watch(slot, conn, filter)
    }
}
