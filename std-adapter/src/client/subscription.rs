//! A subscription: the queue of publications matching one topic or pattern.

use super::state::*;
use super::waiting::take_done;
use microsocket_core::SubscriptionKind;
use microsocket_host::Member;
use microsocket_host::Publication;
use microsocket_host::{Delivery, Members, Taken};
use microsocket_host::{Error, Result};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A subscription to one or more topics and patterns (see [`Client::subscribe`]
/// and [`Client::subscriber`]): a bounded queue of the publications that match
/// them, each once, in the order the server sent them. Dropping it
/// unsubscribes (the `-` goes out when no other handle of this client shares
/// the same wire subscription).
///
/// If the queue is full (see [`ClientConfig::subscription_capacity`](crate::ClientConfig::subscription_capacity)), further
/// publications are dropped and counted; the next receive at that point returns
/// [`Error::Lagged`] with the count, then receiving carries on.
#[derive(Debug)]
pub struct Subscription {
    pub(super) client: Client,
    pub(super) shared: Arc<SubShared>,
    pub(super) members: Members,
    /// Items taken from the queue in one go, handed out one by one without
    /// the client's lock.
    pub(super) local: VecDeque<Delivery<Publication, Error>>,
    /// Publications taken into `local` that the queue still counts against
    /// its bounds (released once `local` is handed out).
    pub(super) taken: Taken,
}

impl Subscription {
    /// The (first) topic or pattern subscribed to; empty if there is none.
    #[must_use]
    pub fn topic(&self) -> &[u8] {
        self.members.first().map_or(&[][..], |m| &m.topic[..])
    }

    /// Every topic and pattern this receiver gets, in the order added.
    pub fn subscriptions(&self) -> impl Iterator<Item = (SubscriptionKind, &[u8])> {
        self.members.iter()
    }

    /// Which of this receiver's topics and patterns `publication` matches.
    pub fn matching<'a>(&'a self, publication: &'a Publication) -> impl Iterator<Item = (SubscriptionKind, &'a [u8])> {
        self.members.matching(publication.topic())
    }

    /// Adds a topic to this receiver; returns once the server has it in place.
    ///
    /// # Errors
    /// As [`Client::subscribe`]; the receiver is unchanged.
    pub fn add_topic(&mut self, topic: impl AsRef<[u8]>) -> Result<()> {
        self.add(SubscriptionKind::Exact, topic.as_ref())
    }

    /// Adds a pattern to this receiver; returns once the server has it in place.
    ///
    /// # Errors
    /// As [`Client::subscribe_pattern`]; the receiver is unchanged.
    pub fn add_pattern(&mut self, pattern: impl AsRef<[u8]>) -> Result<()> {
        self.add(SubscriptionKind::Pattern, pattern.as_ref())
    }

    pub(super) fn add(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> Result<()> {
        let client = self.client.clone();
        let inner = &client.inner;
        let mut st = inner.lock_for_sending()?;
        let State { protocol, pending, .. } = &mut *st;
        let id = match kind {
            SubscriptionKind::Pattern => protocol.subscribe_pattern(bytes, pending)?,
            _ => protocol.subscribe(bytes, pending)?,
        };
        st.handles.entry(id).or_default().push(self.shared.clone());
        self.members.push(id, kind, bytes);
        let State { protocol, pending, .. } = &mut *st;
        let barrier = match protocol.barrier(pending) {
            Ok(b) => b,
            Err(e) => {
                // The subscribe frame goes out with the next write; removing
                // the member then unsubscribes.
                drop(st);
                self.remove_last();
                return Err(e.into());
            }
        };
        st.slots[usize::from(barrier.slot())] = Some(barrier);
        if let Err(e) = inner.flush_pending(st) {
            // The barrier's `Closed` answer is nobody's to collect now.
            take_done(&mut inner.lock_state(), barrier);
            self.remove_last();
            return Err(e);
        }
        let deadline = inner.config.request_timeout.map(|t| Instant::now() + t);
        let confirmed = microsocket_host::subscription_confirmed(client.wait_response(barrier, deadline));
        if confirmed.is_err() {
            self.remove_last();
        }
        confirmed
    }

    fn remove_last(&mut self) {
        if let Some(member) = self.members.pop() {
            self.unsubscribe(&member);
        }
    }

    /// Stops receiving `topic` (an exact topic, a pattern, or both if both were
    /// added); returns how many were removed. The receiver goes on with the rest.
    pub fn remove(&mut self, topic: impl AsRef<[u8]>) -> usize {
        let gone = self.members.take(topic.as_ref());
        for member in &gone {
            self.unsubscribe(member);
        }
        gone.len()
    }

    /// Drops this receiver's share of one wire subscription (the `-` goes out
    /// when no other handle of the client shares it).
    fn unsubscribe(&self, member: &Member) {
        let inner = &self.client.inner;
        let mut st = inner.lock_state();
        if let Some(list) = st.handles.get_mut(&member.id) {
            if let Some(at) = list.iter().position(|h| Arc::ptr_eq(h, &self.shared)) {
                list.swap_remove(at);
            }
            if list.is_empty() {
                st.handles.remove(&member.id);
            }
        }
        let down = st.down();
        let State { protocol, pending, .. } = &mut *st;
        let sent = protocol.unsubscribe(member.id, pending).unwrap_or(false);
        if down {
            // A new connection subscribes only to what the table still holds.
            pending.clear();
        } else if sent {
            let _ = inner.flush_pending(st);
        }
    }

    /// Waits for the next publication.
    ///
    /// # Errors
    /// [`Error::Lagged`] where publications were dropped;
    /// [`Error::Reconnecting`] when the connection was lost and the client is
    /// connecting again (receiving goes on once it has; publications made
    /// meanwhile may have been missed); [`Error::SubscriptionRefused`] if the
    /// new connection's server refused one of its subscriptions;
    /// [`Error::Closed`] once the connection has ended for good and the queue
    /// is empty.
    pub fn recv(&mut self) -> Result<Publication> {
        self.receive(None, false).unwrap_or(Err(Error::TimedOut))
    }

    /// Waits at most `timeout` for the next publication.
    ///
    /// # Errors
    /// [`Error::TimedOut`], and as [`Subscription::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Publication> {
        self.receive(Some(timeout), false).unwrap_or(Err(Error::TimedOut))
    }

    /// The next publication if one has arrived, without waiting (it reads what the
    /// socket already holds if no other thread is reading).
    ///
    /// # Errors
    /// As [`Subscription::recv`].
    pub fn try_recv(&mut self) -> Result<Option<Publication>> {
        self.receive(None, true).transpose()
    }

    /// Iterates over publications, waiting for each; ends when the connection
    /// closes. [`Error::Lagged`] comes as an `Err` item.
    pub fn iter(&mut self) -> SubscriptionIter<'_> {
        SubscriptionIter { subscription: self }
    }

    /// The next item: from those taken before, or (waiting at most `timeout`,
    /// or not at all if `nonblocking`) everything queued at once, under one lock.
    pub(super) fn receive(&mut self, timeout: Option<Duration>, nonblocking: bool) -> Option<Result<Publication>> {
        let key = self.shared.key;
        if self.local.is_empty() {
            // The clock is read only when nothing was taken before.
            let deadline = timeout.map(|t| Instant::now() + t);
            let (local, taken) = (&mut self.local, &mut self.taken);
            let closed = self
                .client
                .inner
                .wait(WaitKey::Sub(self.shared.clone()), deadline, nonblocking, |st| {
                    let closed = st.closed;
                    let q = st.queues.get_mut(&key)?;
                    q.queue.release(std::mem::take(taken));
                    if !q.queue.is_empty() {
                        *taken = q.queue.take_all(local);
                        Some(false)
                    } else {
                        closed.then_some(true)
                    }
                })?;
            if closed {
                return Some(Err(Error::Closed));
            }
        }
        let entry = self.local.pop_front()?;
        if self.local.is_empty() && !self.taken.is_empty() {
            // The reader has caught up: what it took stops counting against
            // the bounds now, not at its next receive.
            if let Some(q) = self.client.inner.lock_state().queues.get_mut(&key) {
                q.queue.release(std::mem::take(&mut self.taken));
            }
        }
        Some(match entry {
            Delivery::Publication(p) => Ok(p),
            Delivery::Lagged { missed } => Err(Error::Lagged { missed }),
            Delivery::Notice(notice) => Err(notice),
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for member in self.members.take_all() {
            self.unsubscribe(&member);
        }
        let mut st = self.client.inner.lock_state();
        st.queues.remove(&self.shared.key);
        st.idle.retain(|k| !k.same(&WaitKey::Sub(self.shared.clone())));
    }
}

microsocket_host::subscriber_builder!("called");

impl Subscriber {
    /// Subscribes to all of them: one receiver, each publication once, in the
    /// order the server sent them.
    ///
    /// # Errors
    /// The first error of [`Client::subscribe`] or [`Client::subscribe_pattern`];
    /// the subscriptions made before it are dropped again.
    pub fn subscribe(self) -> Result<Subscription> {
        let mut subscription = self.client.empty_subscription();
        for (kind, topic) in &self.wanted {
            subscription.add(*kind, topic)?;
        }
        Ok(subscription)
    }
}

/// Publications of a [`Subscription`], waiting for each; see
/// [`Subscription::iter`].
#[derive(Debug)]
pub struct SubscriptionIter<'a> {
    pub(super) subscription: &'a mut Subscription,
}

impl Iterator for SubscriptionIter<'_> {
    type Item = Result<Publication>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.subscription.recv() {
            Err(Error::Closed) => None,
            other => Some(other),
        }
    }
}

impl<'a> IntoIterator for &'a mut Subscription {
    type Item = Result<Publication>;
    type IntoIter = SubscriptionIter<'a>;

    fn into_iter(self) -> SubscriptionIter<'a> {
        self.iter()
    }
}
