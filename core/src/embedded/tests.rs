//! The drivers against each other and against std sockets.

use super::*;
use crate::frame::Args;
use crate::*;
use core::time::Duration;
use embedded_io::{ErrorKind, Read, Write};
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;
use std::vec::Vec;

/// How long a test transport waits for its peer; longer under Miri, which runs
/// the other thread some thousand times slower.
const TIMEOUT: Duration = Duration::from_secs(if cfg!(miri) { 60 } else { 5 });

// ---- an in-memory, serial-like byte pipe ----

#[derive(Debug, Default)]
struct Chan {
    state: Mutex<(VecDeque<u8>, bool)>,
    ready: Condvar,
}

/// One end of a bounded byte pipe: writes take at most what fits, reads block
/// (for at most [`TIMEOUT`]) until bytes arrive or the other end is dropped.
#[derive(Debug)]
struct PipeEnd {
    rx: Arc<Chan>,
    tx: Arc<Chan>,
    capacity: usize,
}

fn pipe(capacity: usize) -> (PipeEnd, PipeEnd) {
    let (a, b) = (Arc::new(Chan::default()), Arc::new(Chan::default()));
    (
        PipeEnd {
            rx: a.clone(),
            tx: b.clone(),
            capacity,
        },
        PipeEnd { rx: b, tx: a, capacity },
    )
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        for chan in [&self.rx, &self.tx] {
            chan.state.lock().unwrap().1 = true;
            chan.ready.notify_all();
        }
    }
}

impl embedded_io::ErrorType for PipeEnd {
    type Error = ErrorKind;
}

impl Read for PipeEnd {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.rx.state.lock().unwrap();
        while state.0.is_empty() && !state.1 {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(ErrorKind::TimedOut)?;
            state = self.rx.ready.wait_timeout(state, left).unwrap().0;
        }
        let n = buf.len().min(state.0.len());
        for (slot, byte) in buf.iter_mut().zip(state.0.drain(..n)) {
            *slot = byte;
        }
        self.rx.ready.notify_all();
        Ok(n)
    }
}

impl Write for PipeEnd {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.tx.state.lock().unwrap();
        while state.0.len() >= self.capacity && !state.1 {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(ErrorKind::TimedOut)?;
            state = self.tx.ready.wait_timeout(state, left).unwrap().0;
        }
        if state.1 {
            return Err(ErrorKind::BrokenPipe);
        }
        let n = buf.len().min(self.capacity - state.0.len());
        state.0.extend(&buf[..n]);
        self.tx.ready.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

// ---- a UNIX socket as an embedded-io transport ----

#[derive(Debug)]
struct Socket(UnixStream);

fn socket_pair() -> (Socket, Socket) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
    }
    (Socket(a), Socket(b))
}

impl embedded_io::ErrorType for Socket {
    type Error = std::io::Error;
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.0, buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::Write::write(&mut self.0, buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut self.0)
    }
}

// ---- the application under test ----

type Out<'a> = Outbox<'a, 8192, 8, 256>;
type Server<T> = BlockingServer<T, 1024, 8192>;

/// ECHO args; FAIL message; PUB topic values (publishes, then answers);
/// BIG n (answers with n bytes); a subscription to `retained` gets a value at once.
fn app(event: ServerEvent<'_>, out: &mut Out<'_>) -> Result<(), EncodeError> {
    match event {
        ServerEvent::Request { tag, command, mut args } => match command {
            b"ECHO" => out.respond(tag, args).map(drop),
            b"FAIL" => out.fail(tag, args.next().unwrap_or(b"failed"), [b""; 0]).map(drop),
            b"PUB" => {
                let topic = args.next().unwrap_or_default();
                out.publish(topic, args)?;
                out.respond(tag, [b""; 0]).map(drop)
            }
            b"BIG" => {
                let n = core::str::from_utf8(args.next().unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let value = std::vec![b'x'; n];
                out.respond(tag, [&value[..]]).map(drop)
            }
            _ => out.fail(tag, b"no such command", [b""; 0]).map(drop),
        },
        ServerEvent::Subscribed { topic: b"retained", .. } => out.publish(b"retained", [b"last value"]).map(drop),
        _ => Ok(()),
    }
}

fn spawn_server<T>(transport: T) -> JoinHandle<Result<(), Error<T::Error>>>
where
    T: Read + Write + Send + 'static,
    T::Error: Send,
{
    thread::spawn(move || {
        let mut server: Server<T> = BlockingServer::new(transport);
        server.run(&mut app)
    })
}

fn collect(values: Args<'_>) -> Vec<Vec<u8>> {
    values.map(<[u8]>::to_vec).collect()
}

/// A publication's topic and values, copied.
type Received = (Vec<u8>, Vec<Vec<u8>>);

fn next_pub<T: Read + Write, const Q: usize>(
    client: &mut BlockingClient<T, 1024, 1024, Q>,
) -> Result<Received, Error<T::Error>> {
    client.next_publication(|p| (p.topic.to_vec(), collect(p.values)))
}

/// The same scenario over any transport.
fn requests_and_publications<T: Read + Write>(client_end: T) -> T {
    let mut client: BlockingClient<T> = BlockingClient::new(client_end);

    // Zero-copy call and copying request.
    let echoed = client.call(b"ECHO", [&b"a"[..], b"", b"ccc"], collect).unwrap();
    assert_eq!(echoed, [&b"a"[..], b"", b"ccc"]);
    let mut buf = [0u8; 64];
    let values = client.request(b"ECHO", [b"xyz"], &mut buf).unwrap();
    assert!(values.eq([&b"xyz"[..]]));
    assert!(matches!(
        client.request(b"ECHO", [[7u8; 100]], &mut buf),
        Err(Error::Encode(EncodeError::FrameTooLarge { .. }))
    ));

    // Failures carry the server's message.
    match client.call(b"FAIL", [b"out of paper"], |_| ()) {
        Err(Error::Failed(f)) => {
            assert_eq!(f.message(), b"out of paper");
            assert!(!f.is_truncated());
        }
        other => panic!("{other:?}"),
    }
    let long = [b'm'; 100];
    match client.call(b"FAIL", [long], |_| ()) {
        Err(Error::Failed(f)) => {
            assert_eq!(f.message(), &long[..FAILURE_MESSAGE_CAPACITY]);
            assert!(f.is_truncated());
        }
        other => panic!("{other:?}"),
    }

    // A response larger than RX fails that request only.
    assert!(matches!(
        client.call(b"BIG", [b"5000"], |v| v.count()),
        Err(Error::ResponseTooLarge)
    ));
    assert_eq!(
        client
            .call(b"BIG", [b"500"], |mut v| v.next().map(<[u8]>::len))
            .unwrap(),
        Some(500)
    );

    // Subscribing waits for the server; publications during a call are queued.
    let news = client.subscribe(b"news").unwrap();
    client.call(b"PUB", [&b"news"[..], b"one"], |_| ()).unwrap();
    client.call(b"PUB", [&b"other"[..], b"nobody"], |_| ()).unwrap();
    client.call(b"PUB", [&b"news"[..], b"two", b"2"], |_| ()).unwrap();
    assert_eq!(client.queued_publications(), 2);
    assert_eq!(
        next_pub(&mut client).unwrap(),
        (b"news".to_vec(), std::vec![b"one".to_vec()])
    );
    assert_eq!(
        next_pub(&mut client).unwrap(),
        (b"news".to_vec(), std::vec![b"two".to_vec(), b"2".to_vec()])
    );
    assert_eq!(client.try_next_publication(|_| ()), None);

    // ... or handed to a handler.
    let mut seen = Vec::new();
    client
        .call_with(
            b"PUB",
            [&b"news"[..], b"three"],
            &mut |p| seen.push((p.topic.to_vec(), p.subscriptions.count())),
            |_| (),
        )
        .unwrap();
    assert_eq!(seen, [(b"news".to_vec(), 1)]);
    assert_eq!(client.queued_publications(), 0);

    // Patterns, and subscription-time publications.
    let _ = client.subscribe_pattern(b"sensor.>").unwrap();
    client
        .call(b"PUB", [&b"sensor.kitchen.temp"[..], b"21"], |_| ())
        .unwrap();
    let (topic, values) = next_pub(&mut client).unwrap();
    assert_eq!(
        (&topic[..], &values[..]),
        (&b"sensor.kitchen.temp"[..], &[b"21".to_vec()][..])
    );
    assert!(matches!(
        client.subscribe_pattern(b"a.>.b"),
        Err(Error::Subscribe(SubscribeError::InvalidPattern(_)))
    ));
    let _ = client.subscribe(b"retained").unwrap();
    assert_eq!(
        next_pub(&mut client).unwrap(),
        (b"retained".to_vec(), std::vec![b"last value".to_vec()])
    );

    // Unsubscribing stops publications, even ones already queued.
    client.call(b"PUB", [&b"news"[..], b"queued"], |_| ()).unwrap();
    assert_eq!(client.queued_publications(), 1);
    client.unsubscribe(news).unwrap();
    assert_eq!(client.try_next_publication(|_| ()), None);
    client.call(b"PUB", [&b"news"[..], b"late"], |_| ()).unwrap();
    assert_eq!(client.queued_publications(), 0);
    assert!(matches!(
        client.unsubscribe(news),
        Err(Error::Unsubscribe(UnsubscribeError::UnknownSubscription))
    ));
    client.into_inner()
}

#[test]
fn requests_and_publications_over_a_pipe() {
    // Room for the whole oversized response: a blocking client that sends its
    // next request while the server still writes the last one's answer would
    // otherwise wait on a full pipe as the server does (see the module docs).
    let (client_end, server_end) = pipe(8192);
    let server = spawn_server(server_end);
    let client_end = requests_and_publications(client_end);
    drop(client_end);
    server.join().unwrap().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "Miri has no recv or socket timeouts on UNIX sockets")]
fn requests_and_publications_over_a_unix_socket_pair() {
    let (client_end, server_end) = socket_pair();
    let server = spawn_server(server_end);
    let client_end = requests_and_publications(client_end);
    drop(client_end);
    server.join().unwrap().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "Miri has no recv or socket timeouts on UNIX sockets")]
fn a_full_queue_reports_lost_publications() {
    let (client_end, server_end) = socket_pair();
    let server = spawn_server(server_end);
    let mut client: BlockingClient<Socket, 1024, 1024, 64> = BlockingClient::new(client_end);
    let _ = client.subscribe(b"t").unwrap();
    for i in 0..5u8 {
        client.call(b"PUB", [&b"t"[..], &[i; 20]], |_| ()).unwrap();
    }
    // Each publication takes 2 + 5 + 24 = 31 bytes: two fit in 64.
    assert_eq!(client.queued_publications(), 2);
    assert_eq!(client.lost_publications(), 3);
    assert!(matches!(
        next_pub(&mut client),
        Err(Error::PublicationsLost { count: 3 })
    ));
    assert_eq!(next_pub(&mut client).unwrap().1, [std::vec![0u8; 20]]);
    assert_eq!(next_pub(&mut client).unwrap().1, [std::vec![1u8; 20]]);
    assert_eq!(client.lost_publications(), 0);
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn next_publication_blocks_until_the_server_publishes() {
    // The server publishes (15 bytes a frame) without reading while the client
    // may still be writing its barrier (11 bytes): with less buffering than the
    // barrier, both can block on full pipes (see "Blocking and flow control").
    let (client_end, server_end) = pipe(16);
    let server = thread::spawn(move || {
        let mut server: Server<PipeEnd> = BlockingServer::new(server_end);
        let mut subscribed = false;
        while !subscribed {
            server.poll(&mut |event, _| {
                subscribed |= matches!(event, ServerEvent::Subscribed { topic: b"tick", .. });
                Ok(())
            })?;
        }
        assert!(!server.publish(b"tock", [b"nobody listens"])?);
        for i in 0..3u8 {
            assert!(server.publish(b"tick", [[i]])?);
        }
        server.run(&mut app)
    });
    let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
    let _ = client.subscribe(b"tick").unwrap();
    for i in 0..3u8 {
        assert_eq!(
            next_pub(&mut client).unwrap(),
            (b"tick".to_vec(), std::vec![std::vec![i]])
        );
    }
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn closing_the_connection_is_a_typed_error_on_both_sides() {
    let (client_end, server_end) = pipe(64);
    let server = thread::spawn(move || {
        let mut server: Server<PipeEnd> = BlockingServer::new(server_end);
        server.serve_one(&mut app).unwrap();
        // The server hangs up after one request.
    });
    let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
    client.call(b"ECHO", [b"1"], |_| ()).unwrap();
    server.join().unwrap();
    assert_eq!(client.call(b"ECHO", [b"2"], |_| ()), Err(Error::ConnectionClosed));
    assert_eq!(client.client().protocol().requests_in_flight(), 0);

    // A server whose client hangs up mid-frame sees the end of the stream.
    let (mut raw, server_end) = pipe(64);
    let mut server: Server<PipeEnd> = BlockingServer::new(server_end);
    raw.write_all(b"\x28\x02\x00\x00\x00\x01\x07").unwrap();
    drop(raw);
    assert_eq!(server.poll(&mut app), Ok(0));
    assert_eq!(server.poll(&mut app), Err(Error::ConnectionClosed));
}

#[test]
#[cfg_attr(miri, ignore = "Miri has no recv or socket timeouts on UNIX sockets")]
fn bad_and_unknown_frames_do_not_stop_the_server() {
    let (mut raw, server_end) = socket_pair();
    let server = spawn_server(server_end);
    // An unknown sigil, a request without a command, a response sent the wrong
    // way, then a good request.
    raw.write_all(b"?\x01\x00\x00\x00\x01z").unwrap();
    raw.write_all(b"(\x01\x00\x00\x00\x01\x05").unwrap();
    raw.write_all(b")\x01\x00\x00\x00\x01\x05").unwrap();
    raw.write_all(b"(\x02\x00\x00\x00\x01\x06\x00\x00\x00\x04ECHO").unwrap();
    let mut client: BlockingClient<Socket> = BlockingClient::new(raw);
    let mut got = [0u8; 64];
    let mut n = 0;
    let want: &[u8] = b"#\x02\x00\x00\x00\x01\x05\x00\x00\x00\x16request has no command)\x01\x00\x00\x00\x01\x06";
    while n < want.len() {
        let read = client.transport_mut().read(&mut got[n..]).unwrap();
        assert!(read > 0);
        n += read;
    }
    assert_eq!(&got[..n], want);
    assert_eq!(
        client.call(b"ECHO", [b"still here"], collect).unwrap(),
        [b"still here".to_vec()]
    );
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn a_response_too_large_for_the_server_is_failed() {
    let (client_end, server_end) = pipe(64);
    let server = thread::spawn(move || {
        let mut server: BlockingServer<PipeEnd, 256, 128> = BlockingServer::new(server_end);
        server.run(&mut |event, out| match event {
            ServerEvent::Request { tag, .. } => out.respond(tag, [[0u8; 200]]).map(drop),
            _ => Ok(()),
        })
    });
    let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
    match client.call(b"ANY", [b""; 0], |_| ()) {
        Err(Error::Failed(f)) => assert_eq!(f.message(), UNENCODABLE_RESPONSE),
        other => panic!("{other:?}"),
    }
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn requests_larger_than_tx_are_refused_and_change_nothing() {
    let (client_end, server_end) = pipe(64);
    let server = spawn_server(server_end);
    let mut client: BlockingClient<PipeEnd, 1024, 64> = BlockingClient::new(client_end);
    let refused = client.call(b"ECHO", [[0u8; 100]], |_| ());
    assert!(
        matches!(
            refused,
            Err(Error::Request(RequestError::Encode(EncodeError::FrameTooLarge { .. })))
        ),
        "{refused:?}"
    );
    assert_eq!(client.client().protocol().requests_in_flight(), 0);
    assert_eq!(client.call(b"ECHO", [b"ok"], collect).unwrap(), [b"ok".to_vec()]);
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn reconnecting_resubscribes() {
    let (client_end, server_end) = pipe(64);
    let first = spawn_server(server_end);
    let mut client: BlockingClient<PipeEnd> = BlockingClient::new(client_end);
    let _ = client.subscribe(b"news").unwrap();
    let (client_end, server_end) = pipe(64);
    let second = spawn_server(server_end);
    drop(client.reconnect(client_end).unwrap());
    first.join().unwrap().unwrap();
    client.call(b"PUB", [&b"news"[..], b"again"], |_| ()).unwrap();
    assert_eq!(next_pub(&mut client).unwrap().1, [b"again".to_vec()]);
    drop(client);
    second.join().unwrap().unwrap();
}

#[test]
fn errors_display_and_chain() {
    use core::error::Error as _;
    let failed: Error<ErrorKind> = Error::Failed(ServerFailure::new(b"no \xffway"));
    assert_eq!(std::format!("{failed}"), "request failed: no \\xffway");
    let long = Error::<ErrorKind>::Failed(ServerFailure::new(&[b'a'; 70]));
    assert!(std::format!("{long}").ends_with("a..."));
    assert_eq!(
        std::format!("{}", Error::Io(ErrorKind::TimedOut)),
        "transport error: TimedOut"
    );
    let e: Error<ErrorKind> = RequestError::InflightFull.into();
    assert!(e.source().is_some());
    assert!(Error::<ErrorKind>::ConnectionClosed.source().is_none());
    assert_eq!(
        std::format!("{}", Error::<ErrorKind>::PublicationsLost { count: 2 }),
        "2 publications lost: the queue was full"
    );
}

#[test]
fn transport_errors_cancel_the_request() {
    /// Accepts writes, then fails every read.
    #[derive(Debug)]
    struct Broken;
    impl embedded_io::ErrorType for Broken {
        type Error = ErrorKind;
    }
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
            Err(ErrorKind::ConnectionReset)
        }
    }
    impl Write for Broken {
        fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }
    let mut client: BlockingClient<Broken, 64, 64, 0, 3> = BlockingClient::new(Broken);
    for _ in 0..3 {
        assert_eq!(
            client.call(b"X", [b""; 0], |_| ()),
            Err(Error::Io(ErrorKind::ConnectionReset))
        );
    }
    // Each slot stays reserved for a late answer, so all three are taken.
    assert_eq!(
        client.call(b"X", [b""; 0], |_| ()),
        Err(Error::Request(RequestError::InflightFull))
    );
}
