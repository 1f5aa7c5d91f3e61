//! IPC::MicroSocket 0.03-style peers, written by hand over raw sockets, against
//! microsocket:
//!
//! - an "old client" (one-byte tags counting 1, 2, ... 255, 0, 1, ...; only `(`
//!   and `+`, never `-` or `*`) against the std and the Tokio server;
//! - an "old server" (hands every command, the empty one included, to its
//!   application, which fails what it does not know with `#`; ignores `-`, `*`
//!   and anything else it does not know) against the std and the Tokio client.
//!
//! Frames are compared byte for byte, including the examples of PROTOCOL.md.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;

const NONE: [&[u8]; 0] = [];

// ===========================================================================
// The old client
// ===========================================================================

/// The client side of IPC::MicroSocket 0.03: a one-byte tag counter.
struct OldClient {
    stream: UnixStream,
    next_tag: u8,
}

impl OldClient {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        Self { stream, next_tag: 1 }
    }

    fn tag(&mut self) -> u8 {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        tag
    }

    /// Sends a request; returns its tag.
    fn send(&mut self, command: &[u8], args: &[&[u8]]) -> u8 {
        let tag = self.tag();
        let tag_bytes = [tag];
        let mut all: Vec<&[u8]> = vec![&tag_bytes, command];
        all.extend_from_slice(args);
        write_frame(&mut self.stream, b'(', &all).unwrap();
        tag
    }

    fn read(&mut self) -> RawFrame {
        read_frame(&mut self.stream).unwrap().expect("a frame, not EOF")
    }

    /// Sends a request and reads the next frame, which must be its response.
    fn call(&mut self, command: &[u8], args: &[&[u8]]) -> RawFrame {
        let tag = self.send(command, args);
        let frame = self.read();
        assert_eq!(frame.args[0], [tag][..], "response to the right tag");
        frame
    }
}

/// Everything the old client does, against a server at `path` whose
/// application is [`common`]'s; `publish` publishes from the server side and
/// returns how many connections it reached. With `strict_order`, a publication
/// made while handling a request must come before that request's response, as
/// PROTOCOL.md promises; without, only both must come.
fn old_client_session(path: &Path, publish: &dyn Fn(&str, &[&[u8]]) -> usize, strict_order: bool) {
    let mut c = OldClient::connect(path);

    // The worked examples of PROTOCOL.md, byte for byte (tag 0x07).
    c.next_tag = 7;
    c.stream
        .write_all(b"\x28\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PING")
        .unwrap();
    assert_eq!(c.read().bytes, b"\x29\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PONG");
    c.next_tag = 7;
    let fail = c.call(b"NOPE", &[]);
    assert_eq!(fail.bytes, b"\x23\x02\x00\x00\x00\x01\x07\x00\x00\x00\x07no such");

    // The tag counter from the start: 1, 2, ... 255, 0, 1, ... over 600
    // requests, pipelined 50 at a time, answered by tag.
    c.next_tag = 1;
    let mut sent = 0usize;
    while sent < 600 {
        let mut expected: HashMap<u8, Vec<u8>> = HashMap::new();
        for _ in 0..50 {
            let args = assorted_args(sent % 7 + 1);
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let tag = c.send(b"ECHO", &refs);
            let tag_bytes = [tag];
            let mut want = refs.clone();
            want.insert(0, &tag_bytes);
            assert!(expected.insert(tag, frame(b')', &want)).is_none());
            sent += 1;
        }
        for _ in 0..50 {
            let got = c.read();
            let want = expected.remove(&got.args[0][0]).expect("an answer for a pending tag");
            assert_eq!(got.bytes, want);
        }
    }
    assert_eq!(c.next_tag, (600 % 256 + 1) as u8, "the counter wrapped through 0");

    // The empty command: a microsocket server answers it itself, with no values.
    let tag = c.send(b"", &[]);
    assert_eq!(c.read().bytes, frame(b')', &[&[tag]]));

    // Subscribing the 0.03 way: `+`, then any request; its answer proves the
    // subscription is in place.
    write_frame(&mut c.stream, b'+', &[b"news"]).unwrap();
    c.call(b"PING", &[]);
    // The publication example of PROTOCOL.md.
    assert_eq!(publish("news", &[b"hello"]), 1);
    assert_eq!(c.read().bytes, b"\x21\x02\x00\x00\x00\x04news\x00\x00\x00\x05hello");
    // A publication made by a request comes before its response.
    let tag = c.send(b"PUBLISH", &[b"news", b"", b"\x00\xff"]);
    let mut two = [c.read().bytes, c.read().bytes];
    if !strict_order {
        two.sort(); // `!` (0x21) before `)` (0x29)
    }
    assert_eq!(two[0], frame(b'!', &[b"news", b"", b"\x00\xff"]));
    assert_eq!(two[1], frame(b')', &[&[tag], b"1"]));
    // Subscribing twice is the same as once.
    write_frame(&mut c.stream, b'+', &[b"news"]).unwrap();
    c.call(b"PING", &[]);
    assert_eq!(publish("news", &[b"once"]), 1);
    assert_eq!(c.read().bytes, frame(b'!', &[b"news", b"once"]));
    let tag = c.send(b"PING", &[]);
    assert_eq!(c.read().bytes, frame(b')', &[&[tag], b"PONG"]), "no second copy");
    // Other topics are not sent.
    assert_eq!(publish("other", &[b"x"]), 0);
    // A failure with details.
    let tag = c.send(b"FAIL", &[b"bad", b"d1", b""]);
    assert_eq!(c.read().bytes, frame(b'#', &[&[tag], b"bad", b"d1", b""]));

    // Pipelined requests with the counter wrapping, while publications arrive.
    c.next_tag = 250;
    let tags: Vec<u8> = (0..10).map(|_| c.send(b"PUBLISH", &[b"news", b"p"])).collect();
    assert_eq!(tags, [250, 251, 252, 253, 254, 255, 0, 1, 2, 3]);
    let mut answered = HashSet::new();
    let mut publications = 0;
    while answered.len() < tags.len() || publications < tags.len() {
        let f = c.read();
        match f.sigil {
            b'!' => {
                assert_eq!(f.bytes, frame(b'!', &[b"news", b"p"]));
                publications += 1;
            }
            b')' => {
                assert_eq!(f.args[1], "1");
                assert!(answered.insert(f.args[0][0]));
                if strict_order {
                    assert!(publications >= answered.len(), "each publication before its response");
                }
            }
            other => panic!("unexpected sigil {other}"),
        }
    }

    // Closing: the server closes its end too.
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_frame(&mut c.stream).unwrap().is_none());
}

#[test]
fn old_client_against_std_server() {
    let server = StdServer::start(std_config());
    let path = server.path.clone();
    let publisher = server.publisher.clone();
    bounded(LIMIT, move || {
        old_client_session(&path, &|topic, values| publisher.publish(topic, values).unwrap(), false);
    });
}

/// PROTOCOL.md: "publications made while handling a request are queued to every
/// subscriber before that request's response is sent" — the std server keeps it
/// although answers otherwise go ahead of publications in its queue.
#[test]
fn old_client_against_std_server_publication_order() {
    let server = StdServer::start(std_config());
    let path = server.path.clone();
    let publisher = server.publisher.clone();
    bounded(LIMIT, move || {
        old_client_session(&path, &|topic, values| publisher.publish(topic, values).unwrap(), true);
    });
}

#[test]
fn old_client_against_tokio_server() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    let publisher = server.server.publisher();
    bounded(LIMIT, move || {
        old_client_session(&path, &|topic, values| publisher.publish(topic, values).unwrap(), true);
    });
}

// ===========================================================================
// The old server
// ===========================================================================

/// The server side of IPC::MicroSocket 0.03, one thread per connection. Its
/// application knows ECHO, FAIL, PUBLISH topic values... (to this
/// connection's exact subscriptions) and NOISE topic (publishes on `topic`
/// whether subscribed or not); it fails everything else, the empty command
/// included, with `#` "unknown command". Every frame received is recorded.
struct OldServer {
    path: PathBuf,
    received: Arc<Mutex<Vec<RawFrame>>>,
    _dir: tempfile::TempDir,
}

impl OldServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        // Accepts until the test process ends (each test has its own server).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || Self::serve(stream, &log));
            }
        });
        Self {
            path,
            received,
            _dir: dir,
        }
    }

    fn serve(mut stream: UnixStream, log: &Mutex<Vec<RawFrame>>) {
        let mut subscribed: HashSet<Bytes> = HashSet::new();
        let mut out = stream.try_clone().unwrap();
        while let Ok(Some(f)) = read_frame(&mut stream) {
            log.lock().unwrap().push(f.clone());
            match f.sigil {
                b'(' if f.args.len() >= 2 => {
                    let tag = &f.args[0][..];
                    let args: Vec<&[u8]> = f.args[2..].iter().map(|a| &a[..]).collect();
                    let mut reply: Vec<&[u8]> = vec![tag];
                    let result = match &f.args[1][..] {
                        b"ECHO" => {
                            reply.extend(&args);
                            write_frame(&mut out, b')', &reply)
                        }
                        b"FAIL" => {
                            reply.extend(&args);
                            write_frame(&mut out, b'#', &reply)
                        }
                        b"PUBLISH" => {
                            let hit = subscribed.contains(args[0]);
                            if hit {
                                let _ = write_frame(&mut out, b'!', &args);
                            }
                            let n = if hit { "1" } else { "0" };
                            reply.push(n.as_bytes());
                            write_frame(&mut out, b')', &reply)
                        }
                        b"NOISE" => {
                            let _ = write_frame(&mut out, b'!', &[args[0], b"noise"]);
                            write_frame(&mut out, b')', &reply)
                        }
                        _ => {
                            reply.push(b"unknown command");
                            write_frame(&mut out, b'#', &reply)
                        }
                    };
                    if result.is_err() {
                        return;
                    }
                }
                b'+' if !f.args.is_empty() => {
                    subscribed.insert(f.args[0].clone());
                }
                // `-`, `*` and everything else: not part of 0.03, ignored.
                _ => {}
            }
        }
    }

    /// The frames received so far with this sigil.
    fn received(&self, sigil: u8) -> Vec<RawFrame> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.sigil == sigil)
            .cloned()
            .collect()
    }

    /// The frames received so far.
    fn all_received(&self) -> Vec<RawFrame> {
        self.received.lock().unwrap().clone()
    }
}

/// What both clients must have sent the old server, byte for byte.
fn check_old_server_saw(server: &OldServer) {
    let all = server.all_received();
    // `+ news` followed at once by the subscribe barrier: an empty command.
    let plus = all
        .iter()
        .position(|f| f.bytes == frame(b'+', &[b"news"]))
        .expect("+ news");
    let barrier = &all[plus + 1];
    assert_eq!(barrier.sigil, b'(');
    assert_eq!(barrier.args.len(), 2);
    assert!(barrier.args[1].is_empty(), "the barrier is the empty command");
    assert_eq!(barrier.bytes, frame(b'(', &[&barrier.args[0], b""]));
    // The pattern subscription and both unsubscriptions went out, and were ignored.
    assert_eq!(
        server
            .received(b'*')
            .iter()
            .map(|f| f.bytes.clone())
            .collect::<Vec<_>>(),
        [frame(b'*', &[b"news.>"])]
    );
    let minus: Vec<_> = server.received(b'-').into_iter().map(|f| f.bytes).collect();
    assert!(minus.contains(&frame(b'-', &[b"news"])));
    assert!(minus.contains(&frame(b'-', &[b"news.>"])));
    // Every request frame is well formed and its tag is short.
    for f in server.received(b'(') {
        assert!(f.args.len() >= 2 && f.args[0].len() <= 4, "{f:?}");
    }
}

#[test]
fn std_client_against_old_server() {
    let server = OldServer::start();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        let args = assorted_args(100);
        assert_eq!(client.request("ECHO", &args).unwrap(), args);
        match client.request("FAIL", ["bad", "d1"]) {
            Err(microsocket_std::Error::Failed { message, details }) => {
                assert_eq!(message, "bad");
                assert_eq!(details, ["d1"]);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // The empty command goes to the old server's application, which fails it.
        assert!(matches!(
            client.request("", NONE),
            Err(microsocket_std::Error::Failed { .. })
        ));
        // Subscribing works: the barrier's `#` answer counts as confirmation.
        let mut news = client.subscribe("news").unwrap();
        assert_eq!(client.request("PUBLISH", ["news", "hello", ""]).unwrap(), ["1"]);
        assert_eq!(news.recv_timeout(STEP).unwrap().values(), ["hello", ""]);
        // A pattern subscription returns too, though the old server ignores it.
        let mut pattern = client.subscribe_pattern("news.>").unwrap();
        assert_eq!(client.request("PUBLISH", ["news.x", "v"]).unwrap(), ["0"]);
        assert!(matches!(
            pattern.recv_timeout(QUIET),
            Err(microsocket_std::Error::TimedOut)
        ));
        // Publications on topics the client never subscribed to are ignored.
        client.request("NOISE", ["elsewhere"]).unwrap();
        drop(pattern);
        drop(news);
        // The old server ignores the `-` and still publishes on `news`; the
        // client drops what no subscription wants, and carries on.
        assert_eq!(client.request("PUBLISH", ["news", "late"]).unwrap(), ["1"]);
        // Sequential requests: one-byte tags wrapping around.
        for i in 0..300 {
            assert_eq!(client.request("ECHO", [i.to_string()]).unwrap(), [i.to_string()]);
        }
        check_old_server_saw(&server);
        for f in server.received(b'(') {
            assert_eq!(f.args[0].len(), 1, "one-byte tags, as the original client");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_against_old_server() {
    let server = OldServer::start();
    within(LIMIT, "test", async {
        let client = microsocket_tokio::Client::connect_unix(&server.path).await.unwrap();
        let args = assorted_args(100);
        assert_eq!(client.request("ECHO", &args).await.unwrap().to_vec(), args);
        match client.request("FAIL", ["bad", "d1"]).await {
            Err(microsocket_tokio::Error::Failed { message, details }) => {
                assert_eq!(message, "bad");
                assert_eq!(details, ["d1"]);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(matches!(
            client.request("", NONE).await,
            Err(microsocket_tokio::Error::Failed { .. })
        ));
        let mut news = client.subscribe("news").await.unwrap();
        assert_eq!(client.request("PUBLISH", ["news", "hello", ""]).await.unwrap(), ["1"]);
        let p = within(STEP, "publication", news.next()).await.unwrap().unwrap();
        assert_eq!(*p.values(), ["hello", ""]);
        let mut pattern = client.subscribe_pattern("news.>").await.unwrap();
        assert_eq!(client.request("PUBLISH", ["news.x", "v"]).await.unwrap(), ["0"]);
        assert!(tokio::time::timeout(QUIET, pattern.next()).await.is_err());
        client.request("NOISE", ["elsewhere"]).await.unwrap();
        drop(pattern);
        drop(news);
        assert_eq!(client.request("PUBLISH", ["news", "late"]).await.unwrap(), ["1"]);
        // Many in flight at once, batch after batch.
        for batch in 0..3 {
            let futures: Vec<_> = (0..200)
                .map(|i| client.request("ECHO", [format!("{batch}/{i}")]))
                .collect();
            for (i, f) in futures.into_iter().enumerate() {
                assert_eq!(f.await.unwrap(), [format!("{batch}/{i}")]);
            }
        }
        check_old_server_saw(&server);
    })
    .await;
}
