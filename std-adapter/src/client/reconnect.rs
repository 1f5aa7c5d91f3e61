//! Reconnecting: a thread of its own connects again after the connection is
//! lost, subscribes again, and confirms each subscription with a barrier.
//!
//! The thread exists only while the client reconnects. It holds the client
//! weakly while it waits between attempts, so a client dropped meanwhile
//! stops it.

use super::state::*;
use microsocket_core::{RequestId, SubscriptionId};
use microsocket_host::ClientConfig;
use microsocket_host::Error;
use microsocket_host::ReconnectPolicy;
use microsocket_socket::Stream;
use std::io;
use std::net::Shutdown;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The longest the reconnecting thread waits for the barriers that confirm
/// the subscriptions it made again.
const CONFIRM_AT_MOST: Duration = Duration::from_secs(30);

/// How long the reconnecting thread sleeps at a time between attempts before
/// it looks whether the client was closed or dropped.
const CHECK_EVERY: Duration = Duration::from_millis(20);

impl Inner {
    /// Starts the thread that reconnects; false if it could not be started.
    pub(super) fn start_reconnecting(&self, policy: ReconnectPolicy) -> bool {
        let me = self.me.clone();
        std::thread::Builder::new()
            .name("microsocket-reconnect".into())
            .spawn(move || reconnect(&me, policy))
            .is_ok()
    }

    /// Puts a new socket in place of the lost one, subscribes again (each
    /// subscription followed by its barrier) and wakes every waiter. Returns
    /// the barriers to wait for, or `None` if the client was closed meanwhile.
    fn install(&self, stream: Stream) -> Option<Vec<(SubscriptionId, RequestId)>> {
        // The reader first, as a leader takes it: no read of the old socket is
        // under way once it is held.
        let mut rx = self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rx.buf.clear();
        rx.decoder.reset();
        rx.timeout = None;
        let mut st = self.lock_state();
        if st.closed {
            let _ = stream.shutdown(Shutdown::Both);
            return None;
        }
        st.stream = Arc::new(stream);
        st.generation += 1;
        st.reconnecting = false;
        st.send_closed = false;
        st.pending.clear();
        let mut barriers = Vec::new();
        let State { protocol, pending, .. } = &mut *st;
        // Every slot was freed with the old connection and there are more slots
        // than subscriptions; the buffer grows.
        let _ = protocol.resubscribe_confirmed(pending, |sub, barrier| barriers.push((sub, barrier)));
        for (_, barrier) in &barriers {
            st.slots[usize::from(barrier.slot())] = Some(*barrier);
        }
        drop(rx);
        self.wake_everyone(&st);
        // A write that fails is a loss of the new socket, handled as any.
        let _ = self.flush_pending(st);
        Some(barriers)
    }
}

/// Connects again with the client's connector, following its policy, until
/// it succeeds, gives up (the client closes), or the client is closed or
/// dropped.
fn reconnect(client: &Weak<Inner>, policy: ReconnectPolicy) {
    let mut failures = 0u32;
    loop {
        if !sleep_unless_closed(client, policy.delay(failures)) {
            return;
        }
        let Some(inner) = client.upgrade() else { return };
        let Some(connect) = inner.connector.clone() else { return };
        let stream = connect().and_then(|stream| prepare(&stream, &inner.config).map(|()| stream));
        match stream {
            Ok(stream) => {
                if let Some(barriers) = inner.install(stream) {
                    tracing::debug!("microsocket connection re-established");
                    confirm(&Client { inner }, barriers);
                }
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, failures, "microsocket reconnect failed");
                if policy.gives_up_after(failures) {
                    let mut st = inner.lock_state();
                    inner.close_locked(&mut st);
                    return;
                }
            }
        }
    }
}

/// Sleeps for `delay`; false if the client was closed or dropped meanwhile.
fn sleep_unless_closed(client: &Weak<Inner>, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        match client.upgrade() {
            Some(inner) if !inner.lock_state().closed => {}
            _ => return false,
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(CHECK_EVERY));
    }
}

/// Waits for the barrier after each subscription made again, and tells the
/// receivers of a subscription the server refused.
fn confirm(client: &Client, barriers: Vec<(SubscriptionId, RequestId)>) {
    // Bounded even without a request deadline: this thread holds the client,
    // which must not outlive its last handle because a server never answers.
    let wait = client.inner.config.request_timeout.unwrap_or(CONFIRM_AT_MOST);
    let deadline = Some(Instant::now() + wait.min(CONFIRM_AT_MOST));
    for (sub, barrier) in barriers {
        let answer = client.wait_response(barrier, deadline);
        if let Err(Error::SubscriptionRefused { reason }) = microsocket_host::subscription_confirmed(answer) {
            tracing::debug!(reason = %String::from_utf8_lossy(&reason), "microsocket resubscription refused");
            let inner = &client.inner;
            let mut st = inner.lock_state();
            let st = &mut *st;
            for handle in st.handles.get(&sub).into_iter().flatten() {
                if let Some(queue) = st.queues.get_mut(&handle.key) {
                    queue
                        .queue
                        .notify(Error::SubscriptionRefused { reason: reason.clone() });
                    handle.cv.notify_all();
                }
            }
        }
    }
}

/// Sets a new socket up for the client: writes time out with requests, reads
/// wait as long as their waiters do (set per read).
pub(super) fn prepare(stream: &Stream, config: &ClientConfig) -> io::Result<()> {
    stream.set_write_timeout(config.request_timeout)?;
    stream.set_read_timeout(None)
}
