//! What the handles and the driver share: the protocol state, the write
//! buffer, and the table of requests waiting for answers.

use crate::sink::Sink;
use bytes::{Bytes, BytesMut};
use microsocket_core::{ClientProtocol, RequestId, SubscriptionId, SubscriptionKind};
use microsocket_host::Error;
use microsocket_host::{ByteBudget, ClientConfig, Delivery, SubscriptionQueue};
use microsocket_host::{Publication, Values};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// Requests a client can have in flight at most, whatever
/// [`ClientBuilder::max_in_flight`](super::ClientBuilder::max_in_flight) says (the size of the tag table).
pub const MAX_IN_FLIGHT: usize = 1024;

/// Distinct wire subscriptions (topics and patterns) one client connection holds
/// at most. Local subscriptions to the same topic share one.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Bytes of topic and pattern strings one client connection holds at most.
pub const MAX_SUBSCRIPTION_BYTES: usize = 4096;

pub(super) type Protocol = ClientProtocol<MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES>;

/// A boxed future that opens a new stream, for reconnecting.
pub(super) type ConnectFuture<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

pub(super) type Connector<S> = Arc<dyn Fn() -> ConnectFuture<S> + Send + Sync>;

/// A connection to a microsocket server: cheap to clone, usable from any number
/// of tasks at once.
///
/// Requests are pipelined: each call to [`Client::request`] queues its frame at
/// once, frames queued while the connection writes leave together, and answers
/// are delivered as they arrive, in any order. The connection closes when the last
/// clone and the last [`Subscription`](super::Subscription) are dropped, or on [`Client::close`].
#[derive(Debug, Clone)]
pub struct Client {
    pub(super) handle: Arc<Handle>,
}

/// Closes the connection when the last client clone goes.
#[derive(Debug)]
pub(super) struct Handle {
    pub(super) shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

#[derive(Debug)]
pub(super) struct SubQueue {
    pub(super) inner: Mutex<SubInner>,
}

impl SubQueue {
    pub(super) fn lock(&self) -> MutexGuard<'_, SubInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub(super) struct SubInner {
    /// Publications, lag markers and connection notices, in order.
    pub(super) queue: SubscriptionQueue<Publication, Error>,
    pub(super) waker: Option<Waker>,
    /// The number of the last publication queued (see [`deliver`](super::subscription::deliver)).
    pub(super) last: u64,
}

pub(super) type Entry = Delivery<Publication, Error>;

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) config: ClientConfig,
    /// What the subscription queues may hold together.
    pub(super) budget: ByteBudget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Up,
    Reconnecting,
    Closed,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) protocol: Protocol,
    /// Frames queued for the driver to write.
    pub(super) wbuf: BytesMut,
    /// Who waits for which request.
    pub(super) table: Waiters,
    /// Local subscription streams of each wire subscription.
    pub(super) subs: HashMap<SubscriptionId, Vec<Arc<SubQueue>>>,
    /// Wakes the driver when frames are queued to an empty buffer.
    pub(super) driver: Option<Waker>,
    pub(super) link: Link,
    /// Every handle is gone or `close` was called.
    pub(super) closing: bool,
    /// The server stopped reading (a write failed with `EPIPE`, as when a
    /// server shutting down gracefully shuts its side for reading): nothing
    /// more is written, new requests fail with [`Error::Closed`], and requests
    /// already sent still get the answers the server gives before it closes.
    pub(super) send_closed: bool,
    /// The server stopped answering and the client reconnects: the driver
    /// drops the connection.
    pub(super) drop_link: bool,
}

/// The pending requests, by tag slot.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    /// Each tag slot's waiter and the request pending in it, if any.
    pub(super) by_slot: Vec<Slot>,
    /// Slots whose pending request has a timeout but no deadline yet: the
    /// driver stamps them with one clock reading per round rather than each
    /// request reading the clock (a deadline is thus never early, and late by
    /// at most the time until the driver runs).
    pub(super) unstamped: Vec<u16>,
    /// The earliest request deadline the driver must watch (may be stale-early).
    pub(super) next_deadline: Option<Instant>,
}

/// One tag slot. Its waiter is reused by the slot's next request once no
/// future holds it any more, so a request allocates nothing in the steady state.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) waiter: Arc<Waiter>,
    pub(super) pending: Option<Pending>,
}

/// A request whose answer is still expected.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) id: RequestId,
    pub(super) timeout: Option<Duration>,
    /// `None` until the driver stamps it (see `Waiters::unstamped`), or for
    /// a request without timeout.
    pub(super) deadline: Option<Instant>,
}

/// Where one request's answer is left for its future: a lock of its own, so
/// futures polling for their answers never contend for the connection's state.
#[derive(Debug)]
pub(super) struct Waiter {
    /// The request's tag slot.
    pub(super) slot: u16,
    pub(super) inner: Mutex<WaiterInner>,
}

#[derive(Debug, Default)]
pub(super) struct WaiterInner {
    pub(super) waker: Option<Waker>,
    pub(super) result: Option<Result<Values, Error>>,
    /// The result was delivered (it may have been taken since).
    pub(super) finished: bool,
}

impl Waiter {
    pub(super) fn new(slot: u16) -> Arc<Self> {
        Arc::new(Self {
            slot,
            inner: Mutex::default(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, WaiterInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the result if it is in, or leaves the task's waker for it.
    pub(super) fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<Values, Error>> {
        let mut inner = self.lock();
        match inner.result.take() {
            Some(result) => {
                inner.waker = None;
                Poll::Ready(result)
            }
            None => {
                match &inner.waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Leaves the result and collects the future's waker.
    #[inline]
    pub(super) fn finish(&self, result: Result<Values, Error>, wake: &mut Vec<Waker>) {
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
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state: every
        // update below is a plain field write.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request (or a subscription and its barrier) may be sent now.
    /// A server that stopped answering (every slot held by a timed-out
    /// request) costs a client set to reconnect its connection: the driver
    /// drops it and connects again.
    #[inline]
    fn check_can_send(&self, st: &mut State) -> Result<(), Error> {
        if st.may_send(&self.config) {
            return Ok(());
        }
        self.cannot_send(st)
    }

    /// Why a request may not be sent now ([`State::may_send`] said no).
    #[cold]
    fn cannot_send(&self, st: &mut State) -> Result<(), Error> {
        let checked = st.check_can_send(&self.config);
        if let Err(Error::Unresponsive { .. }) = checked {
            if self.config.reconnect.is_some() && !st.drop_link {
                st.drop_link = true;
                drop_then_wake(st.driver.take());
            }
        }
        checked
    }

    pub(super) fn close(&self) {
        let waker = {
            let mut st = self.lock();
            st.closing = true;
            st.driver.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(super) fn start_request<I>(
        &self,
        command: &[u8],
        args: I,
        timeout: Option<Duration>,
    ) -> Result<Arc<Waiter>, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let mut guard = self.lock();
        let st = &mut *guard;
        self.check_can_send(st)?;
        let was_empty = st.wbuf.is_empty();
        let id = st.protocol.request(command, args, &mut Sink(&mut st.wbuf))?;
        let (waiter, wake) = st.table.register(id, timeout, was_empty);
        let waker = if wake { st.driver.take() } else { None };
        drop(guard);
        drop_then_wake(waker);
        Ok(waiter)
    }

    pub(super) fn start_subscription(
        &self,
        kind: SubscriptionKind,
        topic: &[u8],
        queue: &Arc<SubQueue>,
    ) -> Result<(SubscriptionId, Arc<Waiter>), Error> {
        let mut guard = self.lock();
        let st = &mut *guard;
        self.check_can_send(st)?;
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

    pub(super) fn unsubscribe(&self, id: SubscriptionId, queue: &Arc<SubQueue>) {
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

pub(super) fn drop_then_wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

impl Waiters {
    /// Records a waiter for a request just encoded. Returns it and whether the
    /// driver must be woken (outside the lock): for the first frame queued, or
    /// to stamp the deadline.
    pub(super) fn register(
        &mut self,
        id: RequestId,
        timeout: Option<Duration>,
        was_empty: bool,
    ) -> (Arc<Waiter>, bool) {
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
    pub(super) fn stamp(&mut self, now: Instant) {
        for slot in self.unstamped.drain(..) {
            let Some(p) = self.by_slot.get_mut(usize::from(slot)).and_then(|s| s.pending.as_mut()) else {
                continue;
            };
            if let (None, Some(timeout)) = (p.deadline, p.timeout) {
                let deadline = now + timeout;
                p.deadline = Some(deadline);
                if self.next_deadline.is_none_or(|n| deadline < n) {
                    self.next_deadline = Some(deadline);
                }
            }
        }
    }

    /// Completes the pending request `id` (if it still has a waiter).
    #[inline]
    pub(super) fn complete(&mut self, id: RequestId, result: Result<Values, Error>, wake: &mut Vec<Waker>) {
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
    pub(super) fn abandon(&mut self, waiter: &Arc<Waiter>) -> Option<RequestId> {
        let entry = self.by_slot.get_mut(usize::from(waiter.slot))?;
        if !Arc::ptr_eq(&entry.waiter, waiter) {
            return None;
        }
        entry.pending.take().map(|p| p.id)
    }

    /// Fails every request still waiting (the connection ended).
    pub(super) fn fail_all(&mut self, wake: &mut Vec<Waker>) {
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
    pub(super) fn expire(&mut self, protocol: &mut Protocol, now: Instant, wake: &mut Vec<Waker>) {
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
    /// Whether a request (or a subscription and its barrier) may be sent now.
    /// Whether a request may be sent now: the common case of
    /// [`State::check_can_send`], checked first on every request.
    #[inline]
    fn may_send(&self, config: &ClientConfig) -> bool {
        self.link == Link::Up
            && !self.closing
            && !self.send_closed
            && self.protocol.requests_in_flight() < config.max_in_flight
    }

    pub(super) fn check_can_send(&self, config: &ClientConfig) -> Result<(), Error> {
        if self.link == Link::Reconnecting && !self.closing {
            // Not closed for good: the caller may retry once reconnected.
            return Err(Error::Reconnecting);
        }
        if self.link != Link::Up || self.closing || self.send_closed {
            return Err(Error::Closed);
        }
        microsocket_host::check_in_flight(
            self.protocol.requests_in_flight(),
            self.protocol.requests_abandoned(),
            config.max_in_flight,
        )
    }

    /// The connection ended: every pending request fails.
    pub(super) fn fail_all(&mut self, wake: &mut Vec<Waker>) {
        self.protocol.handle_eof();
        self.table.fail_all(wake);
    }

    /// Tells the streams of wire subscription `id` that the server refused it
    /// when it was made again on a new connection.
    pub(super) fn notify_refused(&mut self, id: SubscriptionId, reason: &Bytes, wake: &mut Vec<Waker>) {
        for queue in self.subs.get(&id).into_iter().flatten() {
            let mut inner = queue.lock();
            inner
                .queue
                .notify(Error::SubscriptionRefused { reason: reason.clone() });
            wake.extend(inner.waker.take());
        }
    }

    pub(super) fn notify_subscriptions(&mut self, notice: impl Fn() -> Error, end: bool, wake: &mut Vec<Waker>) {
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
