//! The async drivers against the blocking ones, both ways, over an in-memory
//! pipe whose async side really waits (a read with nothing to read is
//! pending until the other side writes), run by a small executor
//! (`embassy_futures::block_on`).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};

use embassy_futures::block_on;
use embassy_futures::select::{select, Either};
use microsocket_core::embedded::{AsyncClient, AsyncServer, BlockingClient, BlockingServer, Error};
use microsocket_core::ServerEvent;

/// One direction of the pipe.
#[derive(Default)]
struct Channel {
    state: Mutex<(VecDeque<u8>, bool, Option<Waker>)>,
    ready: Condvar,
}

impl Channel {
    fn write(&self, bytes: &[u8]) -> usize {
        let mut state = self.state.lock().unwrap();
        state.0.extend(bytes);
        if let Some(w) = state.2.take() {
            w.wake();
        }
        self.ready.notify_all();
        bytes.len()
    }

    fn close(&self) {
        let mut state = self.state.lock().unwrap();
        state.1 = true;
        if let Some(w) = state.2.take() {
            w.wake();
        }
        self.ready.notify_all();
    }

    fn take(state: &mut (VecDeque<u8>, bool, Option<Waker>), buf: &mut [u8]) -> usize {
        let n = buf.len().min(state.0.len());
        for (slot, byte) in buf.iter_mut().zip(state.0.drain(..n)) {
            *slot = byte;
        }
        n
    }
}

/// One end of an in-memory duplex pipe, usable by both kinds of driver.
struct End {
    rx: Arc<Channel>,
    tx: Arc<Channel>,
}

fn pipe() -> (End, End) {
    let (a, b) = (Arc::new(Channel::default()), Arc::new(Channel::default()));
    (
        End {
            rx: a.clone(),
            tx: b.clone(),
        },
        End { rx: b, tx: a },
    )
}

impl Drop for End {
    fn drop(&mut self) {
        self.tx.close();
    }
}

impl embedded_io::ErrorType for End {
    type Error = std::convert::Infallible;
}

impl embedded_io::Read for End {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut state = self.rx.state.lock().unwrap();
        while state.0.is_empty() && !state.1 {
            state = self.rx.ready.wait(state).unwrap();
        }
        Ok(Channel::take(&mut state, buf))
    }
}

impl embedded_io::Write for End {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.tx.write(buf))
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_io_async::Read for End {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        poll_fn(|cx| {
            let mut state = self.rx.state.lock().unwrap();
            if state.0.is_empty() && !state.1 {
                state.2 = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(Channel::take(&mut state, buf)))
        })
        .await
    }
}

impl embedded_io_async::Write for End {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(self.tx.write(buf))
    }
}

/// The handler both kinds of server run: ECHO, FAIL, and PUBLISH topic value
/// (published to this connection if it subscribes).
fn handle<const TX: usize, const S: usize, const B: usize>(
    event: ServerEvent<'_>,
    outbox: &mut microsocket_core::Outbox<'_, TX, S, B>,
) -> Result<(), microsocket_core::EncodeError> {
    match event {
        ServerEvent::Request {
            tag,
            command: b"ECHO",
            args,
        } => outbox.respond(tag, args).map(drop),
        ServerEvent::Request {
            tag,
            command: b"PUBLISH",
            mut args,
        } => {
            let topic = args.next().unwrap_or_default();
            let sent = outbox.publish(topic, args)?;
            outbox.respond(tag, [if sent { "1" } else { "0" }]).map(drop)
        }
        ServerEvent::Request { tag, .. } => outbox.fail(tag, b"no such command", [b""; 0]).map(drop),
        _ => Ok(()),
    }
}

#[test]
fn an_async_client_talks_to_a_blocking_server() {
    let (a, b) = pipe();
    let server = std::thread::spawn(move || {
        let mut server: BlockingServer<End> = BlockingServer::new(b);
        server.run(&mut handle)
    });
    let mut client: AsyncClient<End> = AsyncClient::new(a);
    block_on(async {
        let echoed = client
            .call(b"ECHO", [&b"a"[..], b"b c"], |v| {
                v.map(<[u8]>::to_vec).collect::<Vec<_>>()
            })
            .await
            .unwrap();
        assert_eq!(echoed, [b"a".to_vec(), b"b c".to_vec()]);
        match client.call(b"NOPE", [b""; 0], |_| ()).await {
            Err(Error::Failed(f)) => assert_eq!(f.message(), b"no such command"),
            other => panic!("{other:?}"),
        }
        let mut buf = [0u8; 64];
        let values = client.request(b"ECHO", [b"copied"], &mut buf).await.unwrap();
        assert_eq!(values.collect::<Vec<_>>(), [b"copied"]);
        let _news = client.subscribe(b"news").await.unwrap();
        // Published while the client waits for the answer: queued, then delivered.
        let sent = client
            .call(b"PUBLISH", [&b"news"[..], b"hi"], |mut v| v.next().map(<[u8]>::to_vec))
            .await;
        assert_eq!(sent.unwrap().unwrap(), b"1");
        assert_eq!(client.queued_publications(), 1);
        let (topic, value) = client
            .next_publication(|p| (p.topic.to_vec(), p.values.clone().next().unwrap().to_vec()))
            .await
            .unwrap();
        assert_eq!((&topic[..], &value[..]), (&b"news"[..], &b"hi"[..]));
    });
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn a_blocking_client_talks_to_an_async_server() {
    let (a, b) = pipe();
    let server = std::thread::spawn(move || {
        let mut server: AsyncServer<End> = AsyncServer::new(b);
        block_on(server.run(&mut handle))
    });
    let mut client: BlockingClient<End> = BlockingClient::new(a);
    assert_eq!(client.call(b"ECHO", [b"x"], |v| v.count()).unwrap(), 1);
    let _sensors = client.subscribe_pattern(b"sensor.>").unwrap();
    let sent = client.call(b"PUBLISH", [&b"sensor.t"[..], b"20"], |mut v| {
        v.next().map(<[u8]>::to_vec)
    });
    assert_eq!(sent.unwrap().unwrap(), b"1");
    let topic = client.next_publication(|p| p.topic.to_vec()).unwrap();
    assert_eq!(topic, b"sensor.t");
    assert!(matches!(client.call(b"NOPE", [b""; 0], |_| ()), Err(Error::Failed(_))));
    drop(client);
    server.join().unwrap().unwrap();
}

/// `next_publication` cancelled while it waits loses nothing: the next call
/// gets the publication that arrived meanwhile.
#[test]
fn next_publication_is_cancel_safe() {
    let (a, b) = pipe();
    let (publish_now, publish) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut server: BlockingServer<End> = BlockingServer::new(b);
        // Answers the subscription, then publishes when told to.
        while !server.connection().protocol().is_subscribed(b"news") {
            server.poll(&mut handle).unwrap();
        }
        // The barrier's answer too.
        server.flush().unwrap();
        publish.recv().unwrap();
        server.publish(b"news", [b"late"]).unwrap();
        server.run(&mut handle)
    });
    let mut client: AsyncClient<End> = AsyncClient::new(a);
    block_on(async {
        let _news = client.subscribe(b"news").await.unwrap();
        // Nothing published yet: cancelled by the other branch.
        let mut polls = 0;
        let outcome = select(
            client.next_publication(|p| p.topic.to_vec()),
            poll_fn(|_| {
                polls += 1;
                if polls < 3 {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }),
        )
        .await;
        assert!(matches!(outcome, Either::Second(())));
        publish_now.send(()).unwrap();
        let value = client
            .next_publication(|p| p.values.clone().next().unwrap().to_vec())
            .await
            .unwrap();
        assert_eq!(value, b"late");
        assert!(client.call(b"ECHO", [b"still"], |v| v.count()).await.is_ok());
    });
    drop(client);
    server.join().unwrap().unwrap();
}

/// The server's end going away ends the async client's calls with
/// `ConnectionClosed`, and the async server's `run` returns when its client
/// goes.
#[test]
fn closing_either_end_is_reported() {
    let (a, b) = pipe();
    drop(b);
    let mut client: AsyncClient<End> = AsyncClient::new(a);
    assert!(matches!(
        block_on(client.call(b"ECHO", [b"x"], |_| ())),
        Err(Error::ConnectionClosed)
    ));
    let (a, b) = pipe();
    drop(a);
    let mut server: AsyncServer<End> = AsyncServer::new(b);
    assert!(block_on(server.run(&mut handle)).is_ok());
}

/// Calls given up on (a server that stopped answering) hold every request
/// slot; `reconnect` on a new transport frees them and subscribes again.
#[test]
fn reconnect_frees_the_slots_of_calls_given_up_on() {
    let (a, _silent) = pipe();
    let mut client: AsyncClient<End, 256, 256, 256, 2, 4, 64> = AsyncClient::new(a);
    block_on(async {
        for _ in 0..2 {
            // Given up on at once: the answer never comes.
            let call = client.call(b"ECHO", [b"x"], |_| ());
            let outcome = select(call, std::future::ready(())).await;
            assert!(matches!(outcome, Either::Second(())));
        }
        assert!(matches!(
            client.call(b"ECHO", [b"x"], |_| ()).await,
            Err(Error::Request(microsocket_core::RequestError::InflightFull))
        ));
    });
    let (b, server_end) = pipe();
    let server = std::thread::spawn(move || {
        let mut server: BlockingServer<End> = BlockingServer::new(server_end);
        server.run(&mut handle)
    });
    block_on(async {
        client.reconnect(b).await.unwrap();
        assert_eq!(client.call(b"ECHO", [b"back"], |v| v.count()).await.unwrap(), 1);
    });
    drop(client);
    server.join().unwrap().unwrap();
}
