//! A tap: publications read straight from the server's hub by code in the
//! server's process, with no connection, no socket and no frame parsed twice.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{Pattern, PatternError, SubscriptionKind};
use microsocket_host::{Error, Publication, QueueBound, CONNECTION_COST};

use crate::hub::{ConnShared, Core};

/// Publications on topics matching some patterns, taken from the server as
/// it publishes them, in its own process: what a subscribed connection
/// would receive (catch-up of buffered topics included), without the
/// connection. Made by [`Server::tap`](crate::Server::tap).
///
/// A tap is a stream of `Result<Publication, Error>`, like a client's
/// [`Subscription`](crate::Subscription): in order, and
/// `Err(Error::Lagged { missed })` once `missed` publications were dropped
/// because the tap held its bound of unread bytes (told when the tap next
/// takes from its queue, before what it takes then). It never slows the
/// server or its other subscribers. It ends (`None`) once the server has
/// shut down and what it queued has been read. Dropping it unsubscribes.
/// It counts among the server's connections (in [`Stats`] and
/// `$CONNECTIONS`, with this process's credentials), as the subscriber it is.
///
/// [`Stats`]: crate::Stats
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::StreamExt;
/// use microsocket_tokio::{handler_fn, Failure, Reply, Request, Server};
///
/// let server = Server::new(handler_fn(|_: Request| async { Err::<Reply, _>(Failure::new("none")) }));
/// let mut tap = server.tap(["sensors.>"], 1 << 20).unwrap();
/// server.publish("sensors.temp", ["21.5"]).unwrap();
/// server.publish("other", ["ignored"]).unwrap();
/// let publication = tap.next().await.unwrap().unwrap();
/// assert_eq!(publication.topic(), b"sensors.temp");
/// assert_eq!(*publication.values(), ["21.5"]);
/// # }
/// ```
#[derive(Debug)]
pub struct Tap {
    core: Arc<Core>,
    key: usize,
    shared: Arc<ConnShared>,
    patterns: Vec<Vec<u8>>,
    /// Chunks of frames taken from the queue, not yet handed out; the first
    /// one from `position` on.
    chunks: VecDeque<Bytes>,
    position: usize,
    /// Bytes taken from the queue and not handed out yet (they count
    /// against the bound until then).
    held: usize,
    /// Publications dropped for the tap so far, as last reported.
    reported: u64,
    ended: bool,
}

impl Tap {
    /// Registers a tap on `patterns` (each a pattern, `a.*.c` or `a.>`, or a
    /// plain topic) that may hold `max_queued_bytes` of unread publications.
    pub(crate) fn new<I>(core: Arc<Core>, patterns: I, max_queued_bytes: usize) -> Result<Tap, TapError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut unique: Vec<Vec<u8>> = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            Pattern::new(pattern).map_err(TapError::Pattern)?;
            if !unique.iter().any(|p| p == pattern) {
                unique.push(pattern.to_vec());
            }
        }
        if core.cancel.is_cancelled() {
            return Err(TapError::ShuttingDown);
        }
        let own = microsocket_socket::own_credentials();
        let account = core
            .memory
            .open(Some(own.uid), CONNECTION_COST)
            .map_err(|refused| TapError::Refused(refused.to_string()))?;
        let (key, shared) = core.register(account, Some(own), QueueBound::dropping(max_queued_bytes));
        shared.subscriptions.store(unique.len(), Ordering::Relaxed);
        for pattern in &unique {
            core.subscribe(key, SubscriptionKind::Pattern, pattern);
        }
        Ok(Tap {
            core,
            key,
            shared,
            patterns: unique,
            chunks: VecDeque::new(),
            position: 0,
            held: 0,
            reported: 0,
            ended: false,
        })
    }

    /// Publications dropped for this tap so far (it held its bound).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// The next frame of the chunks taken, as a publication.
    fn next_taken(&mut self) -> Option<Publication> {
        while let Some(chunk) = self.chunks.front() {
            let rest = chunk.get(self.position..).unwrap_or_default();
            if let Decoded::Frame { consumed, .. } = Decoder::new(usize::MAX).decode(rest) {
                let frame = chunk.slice(self.position..self.position + consumed);
                self.position += consumed;
                self.give_back(consumed);
                return Some(Publication::from_frame(frame));
            }
            // The queue holds whole frames only: what is left of a chunk is
            // nothing.
            self.give_back(rest.len());
            self.chunks.pop_front();
            self.position = 0;
        }
        None
    }

    /// `n` bytes handed out: no longer held against the bound or the budget.
    fn give_back(&mut self, n: usize) {
        self.held -= n;
        self.shared.held.store(self.held, Ordering::Relaxed);
        self.shared.account.release(n);
    }
}

impl Stream for Tap {
    type Item = Result<Publication, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(publication) = this.next_taken() {
                return Poll::Ready(Some(Ok(publication)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let mut queue = this.shared.lock();
            if queue.dropped > this.reported {
                let missed = queue.dropped - this.reported;
                this.reported = queue.dropped;
                return Poll::Ready(Some(Err(Error::Lagged { missed })));
            }
            if !queue.is_empty() {
                let mut taken = std::mem::take(&mut this.chunks);
                this.held += queue.drain_into(&mut taken);
                this.chunks = taken;
                drop(queue);
                this.shared.held.store(this.held, Ordering::Relaxed);
                continue;
            }
            if queue.shutdown || queue.abort {
                this.ended = true;
                continue;
            }
            match &queue.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => queue.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // What it holds goes back to the budget with its account, once the
        // hub has let go of it too.
        let subscriptions = self.patterns.iter().map(|p| (SubscriptionKind::Pattern, &p[..]));
        self.core.unregister(self.key, &self.shared, subscriptions);
    }
}

/// Why [`Server::tap`](crate::Server::tap) made no tap.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapError {
    /// One of the patterns is not a valid pattern.
    #[error("invalid pattern: {0}")]
    Pattern(PatternError),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server's memory budget has no room for one more subscriber.
    #[error("refused: {0}")]
    Refused(String),
}
