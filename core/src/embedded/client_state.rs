//! What the blocking and the async client drivers share: the machine, the
//! publication queue, and each step of waiting that needs no I/O. The drivers
//! only read, write and (for the async one) await.

use super::error::*;
use super::queue::PublicationQueue;

use crate::frame::Args;
use crate::{Client, ClientEvent, Matches, RequestId};

/// A publication delivered by a client driver, borrowing its storage.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Publication<'a> {
    /// The topic.
    pub topic: &'a [u8],
    /// The published values.
    pub values: Args<'a>,
    /// The local subscriptions it matches (at least one).
    pub subscriptions: Matches<'a>,
}

/// What a driver found for the request it waits for.
pub(super) enum Answer<R> {
    Values(R),
    Failed(ServerFailure),
    TooLarge,
}

/// The machine and the queue of publications that arrived while waiting.
#[derive(Debug)]
pub(super) struct ClientState<
    const RX: usize,
    const TX: usize,
    const QUEUE: usize,
    const INFLIGHT: usize,
    const SUBS: usize,
    const SUB_BYTES: usize,
> {
    pub(super) client: Client<RX, TX, INFLIGHT, SUBS, SUB_BYTES>,
    pub(super) queue: PublicationQueue<QUEUE>,
}

impl<
        const RX: usize,
        const TX: usize,
        const QUEUE: usize,
        const INFLIGHT: usize,
        const SUBS: usize,
        const SUB_BYTES: usize,
    > ClientState<RX, TX, QUEUE, INFLIGHT, SUBS, SUB_BYTES>
{
    pub(super) const fn new() -> Self {
        Self {
            client: Client::new(),
            queue: PublicationQueue::new(),
        }
    }

    /// The answer to request `id` if it has been received (`on_values` has
    /// then run on its values); else `on_values` back: the driver reads more.
    /// Publications received meanwhile go to `on_publication`, or the queue.
    pub(super) fn poll_answer<R, F: FnOnce(Args<'_>) -> R>(
        &mut self,
        id: RequestId,
        on_publication: &mut Option<&mut dyn FnMut(Publication<'_>)>,
        on_values: F,
    ) -> Result<Answer<R>, F> {
        loop {
            match self.client.poll_event() {
                Some(ClientEvent::Response { id: got, values }) if got == id => {
                    return Ok(Answer::Values(on_values(values)));
                }
                Some(ClientEvent::Failure { id: got, message, .. }) if got == id => {
                    return Ok(Answer::Failed(ServerFailure::new(message)));
                }
                Some(ClientEvent::ResponseTooLarge { id: got }) if got == id => return Ok(Answer::TooLarge),
                Some(ClientEvent::Publication {
                    topic,
                    values,
                    subscriptions,
                }) => match on_publication.as_mut() {
                    Some(handler) => handler(Publication {
                        topic,
                        values,
                        subscriptions,
                    }),
                    None => {
                        self.queue.push(topic, values);
                    }
                },
                // Answers to earlier requests abandoned after an error.
                Some(_) => {}
                None => return Err(on_values),
            }
        }
    }

    /// A publication from what has been received, for `on_publication`; else
    /// `on_publication` back: the driver reads more.
    pub(super) fn poll_publication<R, F: FnOnce(Publication<'_>) -> R>(&mut self, on_publication: F) -> Result<R, F> {
        loop {
            match self.client.poll_event() {
                Some(ClientEvent::Publication {
                    topic,
                    values,
                    subscriptions,
                }) => {
                    return Ok(on_publication(Publication {
                        topic,
                        values,
                        subscriptions,
                    }))
                }
                // Answers to requests nobody waits for any more.
                Some(_) => {}
                None => return Err(on_publication),
            }
        }
    }

    /// Publications lost since the last report, once.
    pub(super) fn take_lost<E>(&mut self) -> Result<(), Error<E>> {
        if self.queue.lost > 0 {
            let count = core::mem::take(&mut self.queue.lost);
            return Err(Error::PublicationsLost { count });
        }
        Ok(())
    }

    /// Drops queued publications that no subscription matches any more; returns
    /// whether one is left to deliver.
    fn queue_ready(&mut self) -> bool {
        loop {
            let Some((topic, _, consumed)) = self.queue.front() else {
                return false;
            };
            if self.client.protocol().subscriptions().contains_match(topic) {
                return true;
            }
            // Unsubscribed since it arrived.
            self.queue.pop(consumed);
        }
    }

    /// Delivers the oldest deliverable queued publication, or gives the handler
    /// back when there is none.
    pub(super) fn try_queued<R, F: FnOnce(Publication<'_>) -> R>(&mut self, on_publication: F) -> Result<R, F> {
        if !self.queue_ready() {
            return Err(on_publication);
        }
        let Some((topic, values, consumed)) = self.queue.front() else {
            return Err(on_publication);
        };
        let subscriptions = self.client.protocol().subscriptions().matches(topic);
        let r = on_publication(Publication {
            topic,
            values,
            subscriptions,
        });
        self.queue.pop(consumed);
        Ok(r)
    }

    /// The outcome of waiting for request `id`. When the connection closed,
    /// every pending request is dropped; on another transport error the request
    /// is cancelled, so that a late answer is dropped.
    pub(super) fn settle<R, E>(&mut self, id: RequestId, answer: Result<Answer<R>, Error<E>>) -> Result<R, Error<E>> {
        match answer {
            Ok(Answer::Values(r)) => Ok(r),
            Ok(Answer::Failed(failure)) => Err(Error::Failed(failure)),
            Ok(Answer::TooLarge) => Err(Error::ResponseTooLarge),
            Err(Error::ConnectionClosed) => {
                self.client.handle_eof();
                Err(Error::ConnectionClosed)
            }
            Err(e) => {
                self.client.cancel(id);
                Err(e)
            }
        }
    }

    /// Takes `n` bytes read from the transport; zero is the end of the stream.
    pub(super) fn received<E>(&mut self, n: usize) -> Result<(), Error<E>> {
        if n == 0 {
            self.client.handle_eof();
            return Err(Error::ConnectionClosed);
        }
        self.client.commit_rx(n);
        Ok(())
    }
}

/// `values` (a response's, copied by [`encode_to_slice`](crate::frame::encode_to_slice)
/// into `buf[..n]`) read back from `buf`.
pub(super) fn copied_values(buf: &[u8], n: usize) -> Args<'_> {
    use crate::frame::{Decoded, Decoder};
    // `buf[..n]` is one whole frame just encoded, so it decodes.
    match Decoder::new(n).decode(&buf[..n]) {
        Decoded::Frame { frame, .. } => frame.args(),
        _ => Args::empty(),
    }
}
