//! Subscription streams and the queues that feed them.

use super::*;

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
}

pub(super) type Entry = Delivery<Publication, Error>;

/// A stream of the publications of one subscription (see [`Client::subscribe`]).
///
/// Yields `Ok(publication)` in the order the server sent them;
/// `Err(Error::Lagged { missed })` where `missed` publications were dropped because the stream
/// was not read fast enough (it goes on); `Err(Error::Reconnecting)` when the
/// connection was lost and is being re-established (it goes on); and
/// `Err(Error::Closed)` followed by the end of the stream when the connection is
/// gone for good. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub(super) client: Client,
    pub(super) id: SubscriptionId,
    pub(super) queue: Arc<SubQueue>,
    pub(super) topic: Bytes,
    pub(super) kind: SubscriptionKind,
    /// Items taken from `queue` in one go, handed out one by one.
    pub(super) local: VecDeque<Entry>,
    /// Publications taken into `local` that `queue` still counts against its
    /// capacity (they are uncounted at the next take).
    pub(super) taken: usize,
}

impl Subscription {
    /// The topic or pattern subscribed to.
    #[must_use]
    pub fn topic(&self) -> &Bytes {
        &self.topic
    }

    /// Whether it is an exact or a pattern subscription.
    #[must_use]
    pub fn kind(&self) -> SubscriptionKind {
        self.kind
    }

    /// The client it belongs to.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The next item, as [`Stream::poll_next`] would give it: `None` once the
    /// stream has ended.
    pub async fn next(&mut self) -> Option<Result<Publication, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Result<Publication, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.local.is_empty() {
            // Take everything queued at once: one lock per batch, not per item.
            let mut inner = this.queue.lock();
            inner.queue.release(this.taken);
            if inner.queue.is_empty() {
                this.taken = 0;
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
        if this.local.is_empty() && this.taken > 0 {
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
        self.client.shared().unsubscribe(self.id, &self.queue);
    }
}

/// Queues a publication for one local subscriber (whose queue is locked), or
/// counts it as missed.
pub(super) fn deliver(inner: &mut SubInner, publication: Publication) {
    if !inner.queue.push(publication) && !inner.queue.is_ended() {
        tracing::debug!("subscriber fell behind; publication dropped");
    }
}
