//! Subscription streams and the queues that feed them.

use super::response::{FutureState, ResponseFuture};
use super::state::*;
use bytes::Bytes;
use futures_core::Stream;
use microsocket_core::SubscriptionKind;
use microsocket_host::Error;
use microsocket_host::Publication;
use microsocket_host::{Delivery, Members, Taken};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A stream of the publications of one or more topics and patterns (see
/// [`Client::subscribe`] and [`Client::subscriber`]).
///
/// Yields `Ok(publication)` in the order the server sent them, each once
/// however many of the stream's topics and patterns it matches;
/// `Err(Error::Lagged { missed })` where `missed` publications were dropped
/// because the stream was not read fast enough (it goes on);
/// `Err(Error::Reconnecting)` when the connection was lost and is being
/// re-established (it goes on); and `Err(Error::Closed)` followed by the end of
/// the stream when the connection is gone for good. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub(super) client: Client,
    pub(super) members: Members,
    pub(super) queue: Arc<SubQueue>,
    /// Items taken from `queue` in one go, handed out one by one.
    pub(super) local: VecDeque<Entry>,
    /// Publications taken into `local` that `queue` still counts against its
    /// capacity (they are uncounted at the next take).
    pub(super) taken: Taken,
}

impl Subscription {
    /// The (first) topic or pattern subscribed to; empty if there is none.
    #[must_use]
    pub fn topic(&self) -> &Bytes {
        static NONE: Bytes = Bytes::new();
        self.members.first().map_or(&NONE, |m| &m.topic)
    }

    /// Whether the (first) subscription is exact or a pattern.
    #[must_use]
    pub fn kind(&self) -> SubscriptionKind {
        self.members.first().map_or(SubscriptionKind::Exact, |m| m.kind)
    }

    /// Every topic and pattern this stream receives, in the order added.
    pub fn subscriptions(&self) -> impl Iterator<Item = (SubscriptionKind, &[u8])> {
        self.members.iter()
    }

    /// Which of this stream's topics and patterns `publication` matches.
    pub fn matching<'a>(&'a self, publication: &'a Publication) -> impl Iterator<Item = (SubscriptionKind, &'a [u8])> {
        self.members.matching(publication.topic())
    }

    /// The client it belongs to.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Adds a topic to this stream, once the server has it in place.
    ///
    /// # Errors
    /// As [`Client::subscribe`]; the stream is unchanged.
    pub async fn add_topic(&mut self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        self.add(SubscriptionKind::Exact, topic.as_ref()).await
    }

    /// Adds a pattern to this stream, once the server has it in place.
    ///
    /// # Errors
    /// As [`Client::subscribe_pattern`]; the stream is unchanged.
    pub async fn add_pattern(&mut self, pattern: impl AsRef<[u8]>) -> Result<(), Error> {
        self.add(SubscriptionKind::Pattern, pattern.as_ref()).await
    }

    pub(super) async fn add(&mut self, kind: SubscriptionKind, topic: &[u8]) -> Result<(), Error> {
        let shared = self.client.shared();
        let (id, barrier) = shared.start_subscription(kind, topic, &self.queue)?;
        self.members.push(id, kind, topic);
        let barrier = ResponseFuture {
            handle: self.client.handle.clone(),
            state: FutureState::Waiting(barrier),
        };
        let confirmed = microsocket_host::subscription_confirmed(barrier.await);
        if confirmed.is_err() {
            if let Some(member) = self.members.pop() {
                shared.unsubscribe(member.id, &self.queue);
            }
        }
        confirmed
    }

    /// Stops receiving `topic` (an exact topic, a pattern, or both if both were
    /// added); returns how many were removed. The stream goes on with the rest.
    pub fn remove(&mut self, topic: impl AsRef<[u8]>) -> usize {
        let topic = topic.as_ref();
        let gone = self.members.take(topic);
        for member in &gone {
            self.client.shared().unsubscribe(member.id, &self.queue);
        }
        gone.len()
    }

    /// The next item, as [`Stream::poll_next`] would give it: `None` once the
    /// stream has ended.
    // Not `Iterator::next`: it returns a future. A plain function rather than
    // an `async fn`, so that it inlines into a caller in another crate.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> impl std::future::Future<Output = Option<Result<Publication, Error>>> + '_ {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
    }
}

microsocket_host::subscriber_builder!("awaited");

impl Subscriber {
    /// Subscribes to all of them: one stream, each publication once, in the
    /// order the server sent them.
    ///
    /// # Errors
    /// The first error of [`Client::subscribe`] or [`Client::subscribe_pattern`];
    /// the subscriptions made before it are dropped again.
    pub async fn subscribe(self) -> Result<Subscription, Error> {
        let mut subscription = self.client.empty_subscription();
        for (kind, topic) in &self.wanted {
            subscription.add(*kind, topic).await?;
        }
        Ok(subscription)
    }
}

impl Stream for Subscription {
    type Item = Result<Publication, Error>;

    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.local.is_empty() {
            // Take everything queued at once: one lock per batch, not per item.
            let mut inner = this.queue.lock();
            inner.queue.release(std::mem::take(&mut this.taken));
            if inner.queue.is_empty() {
                if inner.queue.is_ended() {
                    return Poll::Ready(None);
                }
                match &inner.waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => inner.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            this.taken = inner.queue.take_all(&mut this.local);
        }
        let entry = this.local.pop_front();
        if this.local.is_empty() && !this.taken.is_empty() {
            // The batch is handed out: the reader has kept up with it, so it
            // stops counting against the capacity now, not at the next poll
            // (a reader that is idle after catching up is not behind).
            this.queue.lock().queue.release(std::mem::take(&mut this.taken));
        }
        Poll::Ready(entry.map(|entry| match entry {
            Delivery::Publication(p) => Ok(p),
            Delivery::Lagged { missed } => Err(Error::Lagged { missed }),
            Delivery::Notice(e) => Err(e),
        }))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let shared = self.client.shared();
        for member in self.members.take_all() {
            shared.unsubscribe(member.id, &self.queue);
        }
    }
}

/// Queues publication number `number` (of `weight` bytes, made by `make`) for
/// one local stream (whose queue is locked), or counts it as missed; a stream
/// that several matched subscriptions feed already has it the second time.
#[inline]
pub(super) fn deliver(inner: &mut SubInner, number: u64, weight: usize, make: impl FnOnce() -> Publication) {
    if inner.last == number {
        return;
    }
    inner.last = number;
    if !inner.queue.push_weighed(weight, make) && !inner.queue.is_ended() {
        tracing::debug!("subscriber fell behind; publication dropped");
    }
}
