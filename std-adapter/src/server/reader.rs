//! A connection's reader thread: reads frames, hands requests to the handler,
//! applies subscriptions.

use super::handler::{Handler, Request, Responder, TagBuf};
use super::state::*;
use crate::rx::{read_within, RxBuf};
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::SubscriptionKind;
use microsocket_core::{ServerEvent, SERVER_BUSY};
use microsocket_host::shared::NO_ARGS;
use microsocket_host::SubscriptionChange;
use microsocket_socket::peer_hung_up;
use rustix::event::{PollFd, PollFlags};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads for which a connection's reader keeps polling before it blocks after
/// a read that brought several frames: a client that keeps requests in flight
/// sends the next batch within microseconds, and an occasional read of one
/// frame among its batches does not mean it stopped.
pub(super) const BURST_READS: u8 = 8;

/// The receive buffer a connection starts with, and shrinks back to once a
/// larger frame has passed.
const RECEIVE_BUFFER: usize = 16 << 10;

/// How often a connection paused for want of memory looks again.
const MEMORY_RECHECK: Duration = Duration::from_millis(10);

/// The reader thread of one connection.
pub(super) fn serve_connection<H: Handler + ?Sized>(conn: &Arc<Conn>, handler: &H) {
    let shared = &conn.shared;
    let config = &shared.config;
    handler.connected(&conn.context);
    let mut rx = RxBuf::new(RECEIVE_BUFFER, config.max_frame);
    let mut decoder = Decoder::new(config.max_frame);
    // Reads left during which the reader polls before it blocks (see
    // `ServerConfig::spin_before_sleep`).
    let mut burst = 0u8;
    let mut large = microsocket_host::LargeFrames::default();
    'read: loop {
        // Backpressure: stop reading requests while too much is unsent.
        let subscribed = {
            let mut out = conn.lock();
            while conn.shared.bound.is_full(out.queued) && !out.dead {
                out.drain_waiters += 1;
                out = conn
                    .drained
                    .wait_timeout(out, Duration::from_millis(100))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
                out.drain_waiters -= 1;
            }
            if out.dead {
                break 'read;
            }
            !out.protocol.subscriptions().is_empty()
        };
        // Short of memory: this connection is not read until memory frees
        // (see `Account::may_read`), and a frame arriving waits before its
        // buffer grows. A peer that hangs up meanwhile is noticed at once.
        while !conn.account.may_read(rx.data().len(), rx.growth_needed()) {
            if conn.lock().dead || shared.stopping.load(Ordering::SeqCst) || peer_hung_up(&conn.stream) {
                break 'read;
            }
            std::thread::sleep(MEMORY_RECHECK);
        }
        // A buffer that grows for a large frame is charged as it grows (and
        // given back with the connection).
        conn.account.charge(rx.make_room());
        let spare = rx.spare();
        let limit = conn.account.read_limit(spare.len());
        let spare = &mut spare[..limit];
        let window = if burst > 0 {
            config.spin_before_sleep
        } else {
            Duration::ZERO
        };
        let read = match read_within(&conn.stream, spare, window) {
            Some(read) => read,
            None if subscribed => {
                // A thread blocked in `read` is woken each time the peer reads
                // publications and frees send-buffer space (the socket has one wait
                // queue); one waiting in `poll` for input is not.
                let ready = if window.is_zero() {
                    rustix::net::recv(&conn.stream, spare, rustix::net::RecvFlags::DONTWAIT)
                } else {
                    // `read_within` has just found nothing.
                    Err(rustix::io::Errno::AGAIN)
                };
                match ready {
                    Ok((n, _)) => Ok(n),
                    Err(rustix::io::Errno::AGAIN) => {
                        let mut fds = [PollFd::new(&conn.stream, PollFlags::IN)];
                        let _ = rustix::event::poll(&mut fds, None);
                        continue;
                    }
                    Err(e) => Err(io::Error::from(e)),
                }
            }
            None => (&conn.stream).read(spare),
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        rx.commit(n);
        large.read(rx.data().len(), RECEIVE_BUFFER);
        conn.lock().corked = true;
        let mut frames = 0usize;
        loop {
            let (consumed, event) = {
                let mut out = conn.lock();
                // The protocol's own answers (the subscribe barrier's, say) follow
                // publications already queued, a subscription's catch-up among them.
                let (decoded, added) = out.encode_answer(|protocol, answers| match decoder.decode(rx.data()) {
                    Decoded::NeedMore => None,
                    Decoded::Skipped { consumed } => Some((consumed, None)),
                    Decoded::Oversized { sigil, tag, consumed } => {
                        let _ = protocol.handle_oversized(sigil, tag, answers);
                        Some((consumed, None))
                    }
                    Decoded::Frame { frame, consumed } => {
                        // Answers go into a growable buffer, so encoding cannot fail.
                        Some((consumed, protocol.handle_frame(frame, answers).ok().flatten()))
                    }
                });
                let Some((consumed, event)) = decoded else { break };
                frames += 1;
                // Corked: the batch's answers are written when it ends.
                conn.answers_added(&mut out, added);
                (consumed, event)
            };
            if let Some(event) = event {
                handle_event(conn, handler, event);
            }
            rx.consume(consumed);
        }
        // A buffer large frames made large goes back once empty and they
        // have stopped coming, and with it its charge.
        if large.should_shrink(rx.capacity(), conn.account.is_tight()) {
            conn.account.release(rx.shrink_if_empty(RECEIVE_BUFFER));
        }
        burst = if frames > 1 {
            BURST_READS
        } else {
            burst.saturating_sub(1)
        };
        let mut out = conn.lock();
        out.corked = false;
        if out.answers_sent < out.answers.len() || (out.pubs_sent < out.pubs.len() && !out.scheduled) {
            conn.flush_answers(out);
        }
    }
    // The server is shutting down: let requests in flight be answered and the
    // queue drain, within the grace period. If instead the peer hung up, nobody
    // is left to answer: the connection's slot and buffers go at once, and
    // the responders of requests still running find it dead (handler threads
    // cannot be stopped; they end on their own).
    let deadline = if shared.stopping.load(Ordering::SeqCst) {
        Instant::now() + config.shutdown_timeout
    } else {
        Instant::now()
    };
    {
        let mut out = conn.lock();
        while !out.dead && (out.protocol.requests_in_flight() > 0 || out.queued > 0) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            out.drain_waiters += 1;
            out = conn
                .drained
                .wait_timeout(out, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            out.drain_waiters -= 1;
        }
    }
    // Before the hub and the queue are locked: showing an event takes the
    // monitors' table, then a monitor's queue. The slot is not reused until
    // the hub lets it go, below.
    shared.monitors.forget(conn.slot, conn.context.connection);
    {
        let mut hub = lock(&shared.hub);
        let mut out = conn.lock();
        let subscriptions: Vec<(SubscriptionKind, Vec<u8>)> = out
            .protocol
            .subscriptions()
            .iter()
            .map(|(kind, bytes)| (kind, bytes.to_vec()))
            .collect();
        hub.remove(conn.slot, subscriptions.iter().map(|(k, b)| (*k, b.as_slice())));
        out.protocol.handle_eof();
        conn.kill_locked(&mut out);
        drop(out);
        drop(hub);
        for (_, topic) in &subscriptions {
            handler.subscription_changed(&conn.context, SubscriptionChange::Unsubscribed { topic });
        }
    }
    shared.counters.connection_closed();
    handler.disconnected(&conn.context);
}

pub(super) fn handle_event<H: Handler + ?Sized>(conn: &Arc<Conn>, handler: &H, event: ServerEvent<'_>) {
    let shared = &conn.shared;
    match event {
        ServerEvent::Request { tag, command, args } if microsocket_host::is_server_command(command) => {
            let responder = Responder {
                conn: Arc::downgrade(conn),
                context: conn.context.clone(),
                tag: TagBuf::new(tag),
                answered: false,
                charged: 0,
            };
            // Answered by the server itself, never by the handler.
            let caller = microsocket_host::Caller {
                uid: conn.context.peer.map(|p| p.uid),
                slot: conn.slot,
            };
            let answer = microsocket_host::server_command(command, args, caller, &**shared);
            let _ = match answer {
                Ok(values) => responder.respond(values),
                Err(message) => responder.fail(message, NO_ARGS),
            };
        }
        ServerEvent::Request { tag, command, args } => {
            let mut responder = Responder {
                conn: Arc::downgrade(conn),
                context: conn.context.clone(),
                tag: TagBuf::new(tag),
                answered: false,
                charged: 0,
            };
            if conn.account.is_over() {
                // Short of memory: refused before the handler holds anything.
                shared.memory.count_shed();
                let _ = responder.fail(SERVER_BUSY, NO_ARGS);
                return;
            }
            // What a handler may keep of the request (a copy of its arguments,
            // typically) is charged while the request is held.
            responder.charged = args.encoded_len() + command.len();
            conn.account.charge(responder.charged);
            shared.counters.requests(1);
            shared.show(|monitors, offer| {
                monitors.request(conn.context.connection, tag, command, args.clone(), offer);
            });
            let request = Request {
                context: &conn.context,
                command,
                args,
            };
            // A panicking handler fails its own request (its responder, dropped
            // while unwinding, says so and counts it) and nothing else: the
            // reader goes on with the connection's next frame.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.handle(request, responder)));
        }
        ServerEvent::Subscribed { topic, kind, new } => {
            if !new {
                return;
            }
            let subscriptions = conn.lock().protocol.subscriptions().len();
            let refusal = microsocket_host::refusal(&shared.config, subscriptions, &conn.account, || {
                handler.authorize_subscription(&conn.context, kind, topic)
            });
            if let Some(why) = refusal {
                conn.lock().protocol.refuse_subscription(kind, topic, why);
                shared.counters.subscription_refused();
                return;
            }
            let mut hub = lock(&shared.hub);
            // Topics the connection already receives through another subscription
            // are not replayed: a publication reaches a connection once.
            let backlog = hub
                .subscribe(conn.slot, kind, topic)
                .map(|(_, b)| b)
                .unwrap_or_default();
            if !backlog.is_empty() {
                let mut out = conn.lock();
                let mut newly = false;
                for frame in &backlog {
                    newly |= conn.queue_publication(&mut out, frame).1;
                }
                drop(out);
                if newly {
                    shared.flusher.push(conn.clone());
                    shared.flusher.wake();
                }
            }
            drop(hub);
            handler.subscription_changed(&conn.context, SubscriptionChange::Subscribed { kind, topic });
        }
        ServerEvent::SubscribeRefused { .. } => shared.counters.subscription_refused(),
        ServerEvent::Unsubscribed { topic, removed } if removed > 0 => {
            lock(&shared.hub).unsubscribe(conn.slot, topic);
            handler.subscription_changed(&conn.context, SubscriptionChange::Unsubscribed { topic });
        }
        _ => {}
    }
}
