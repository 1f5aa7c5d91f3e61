//! The future of one request.

use super::state::*;
use microsocket_host::Error;
use microsocket_host::Values;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The answer to a request (see [`Client::request`]): resolves to the response's
/// values or an [`Error`]. Dropping it abandons the request.
#[derive(Debug)]
#[must_use = "the request is sent either way; await the future for its answer"]
pub struct ResponseFuture {
    /// Keeps the connection open while the answer is awaited.
    pub(super) handle: Arc<Handle>,
    pub(super) state: FutureState,
}

#[derive(Debug)]
pub(super) enum FutureState {
    Waiting(Arc<Waiter>),
    Failed(Option<Error>),
    Done,
}

impl Future for ResponseFuture {
    type Output = Result<Values, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &mut self.state {
            FutureState::Waiting(waiter) => match waiter.poll_result(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => return Poll::Pending,
            },
            FutureState::Failed(e) => Err(e.take().unwrap_or(Error::Closed)),
            FutureState::Done => Err(Error::Closed),
        };
        self.state = FutureState::Done;
        Poll::Ready(result)
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        let FutureState::Waiting(waiter) = &self.state else {
            return;
        };
        if waiter.lock().finished {
            return;
        }
        let mut guard = self.handle.shared.lock();
        let st = &mut *guard;
        // Still pending: the tag stays reserved until the late answer.
        if let Some(id) = st.table.abandon(waiter) {
            st.protocol.cancel(id);
        }
    }
}
