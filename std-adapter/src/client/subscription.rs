//! A subscription: the queue of publications matching one topic or pattern.

use super::*;

/// A subscription to a topic or pattern: a bounded queue of the publications that
/// match it. Dropping it unsubscribes (the `-` goes out when no other handle of
/// this client shares the same wire subscription).
///
/// If the queue is full (see [`ClientConfig::subscription_capacity`]), further
/// publications are dropped and counted; the next receive at that point returns
/// [`Error::Lagged`] with the count, then receiving carries on.
#[derive(Debug)]
pub struct Subscription {
    pub(super) client: Client,
    pub(super) shared: Arc<SubShared>,
    pub(super) id: SubscriptionId,
    pub(super) topic: Bytes,
}

impl Subscription {
    /// The topic or pattern subscribed to.
    #[must_use]
    pub fn topic(&self) -> &[u8] {
        &self.topic
    }

    /// Waits for the next publication.
    ///
    /// # Errors
    /// [`Error::Lagged`] where publications were dropped, [`Error::Closed`] once
    /// the connection has ended and the queue is empty.
    pub fn recv(&mut self) -> Result<Publication> {
        self.receive(None, false).unwrap_or(Err(Error::TimedOut))
    }

    /// Waits at most `timeout` for the next publication.
    ///
    /// # Errors
    /// [`Error::TimedOut`], and as [`Subscription::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Publication> {
        self.receive(Some(Instant::now() + timeout), false)
            .unwrap_or(Err(Error::TimedOut))
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

    pub(super) fn receive(&mut self, deadline: Option<Instant>, nonblocking: bool) -> Option<Result<Publication>> {
        let key = self.shared.key;
        self.client
            .inner
            .wait(WaitKey::Sub(self.shared.clone()), deadline, nonblocking, |st| {
                let closed = st.closed;
                let q = st.queues.get_mut(&key)?;
                match q.queue.pop() {
                    Some(Delivery::Publication(p)) => Some(Ok(p)),
                    Some(Delivery::Lagged { missed }) => Some(Err(Error::Lagged { missed })),
                    Some(Delivery::Notice(never)) => match never {},
                    None if closed => Some(Err(Error::Closed)),
                    None => None,
                }
            })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let inner = &self.client.inner;
        let mut st = inner.lock_state();
        st.queues.remove(&self.shared.key);
        if let Some(list) = st.handles.get_mut(&self.id) {
            list.retain(|h| !Arc::ptr_eq(h, &self.shared));
            if list.is_empty() {
                st.handles.remove(&self.id);
            }
        }
        st.idle.retain(|k| !k.same(&WaitKey::Sub(self.shared.clone())));
        let State {
            protocol,
            pending,
            closed,
            ..
        } = &mut *st;
        let sent = protocol.unsubscribe(self.id, pending).unwrap_or(false);
        if *closed {
            pending.clear();
        } else if sent {
            let _ = inner.flush_pending(st);
        }
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
