//! The body of fuzz target `tokio_server`: a whole `microsocket-tokio` server,
//! fed arbitrary bytes as one client connection over an in-memory stream.
//!
//! This file stands alone (it is not a module of the fuzz crate's library, which
//! the core's tests include and which must not need Tokio): the fuzz target and
//! `tests/tests/fuzz_tokio_server.rs` both include it with `#[path]`.
//!
//! Input: a configuration byte, then the bytes the "client" sends.
//!
//! - bits 0-1: requests in flight per connection, 1 to 4;
//! - bit 2: largest frame 64 bytes (else 64 KiB);
//! - bit 3: outgoing queue bound 256 bytes (else 1 MiB);
//! - bit 4: slow consumers are disconnected (else their publications dropped);
//! - bits 5-7: the size of the chunks the bytes are written in (1 to 64).
//!
//! The handler knows `echo` (answers the arguments), `later <ms> <values...>`
//! (answers after a delay, so answers leave out of order), `fail`, and
//! `publish <topic> <values...>`; every other command fails. Topic `kept` is
//! buffered (depth 2).
//!
//! Checked, on a paused clock so that a stall shows up as an expired deadline
//! rather than a hang:
//! - the server reads everything or closes the connection, and after the
//!   client's end of stream it answers what it owes and closes;
//! - what it writes is a sequence of whole `)`, `#` and `!` frames (a frame may
//!   be cut short only when the server disconnected a slow consumer);
//! - it never answers more requests than it was sent, and publishes only to a
//!   connection that subscribed;
//! - meanwhile a second, well-behaved client is answered correctly;
//! - shutdown completes, leaving no connection open and no byte queued.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::Sigil;
use microsocket_tokio::{handler_fn, Failure, Publisher, Reply, Server, ServerConfig, SlowConsumer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Long enough for every handler delay and every answer; only a stalled server
/// reaches it (the clock is paused, so waiting costs nothing).
const DEADLINE: Duration = Duration::from_secs(3600);

/// What a configuration byte selects.
#[derive(Debug, Clone, Copy)]
struct Setup {
    max_in_flight: usize,
    max_frame: usize,
    max_queued_bytes: usize,
    disconnect_slow: bool,
    chunk: usize,
}

impl Setup {
    fn from_byte(byte: u8) -> Self {
        Self {
            max_in_flight: 1 + usize::from(byte & 3),
            max_frame: if byte & 4 != 0 { 64 } else { 64 * 1024 },
            max_queued_bytes: if byte & 8 != 0 { 256 } else { 1 << 20 },
            disconnect_slow: byte & 16 != 0,
            chunk: 1 + usize::from(byte >> 5) * 9,
        }
    }

    fn config(self) -> ServerConfig {
        ServerConfig::default()
            .max_in_flight(self.max_in_flight)
            .max_frame(self.max_frame)
            .max_queued_bytes(self.max_queued_bytes)
            .slow_consumer(if self.disconnect_slow {
                SlowConsumer::Disconnect
            } else {
                SlowConsumer::DropAndCount
            })
            .shutdown_timeout(Duration::from_secs(60))
    }
}

/// Runs one input.
pub(crate) fn tokio_server(data: &[u8]) {
    let Some((&config, input)) = data.split_first() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(run(Setup::from_byte(config), input));
}

async fn run(setup: Setup, input: &[u8]) {
    let publisher: Arc<OnceLock<Publisher>> = Arc::default();
    let server = Server::with_config(handler(publisher.clone()), setup.config());
    publisher.set(server.publisher()).expect("set once");
    server.set_buffer("kept", 2).expect("a valid topic");

    let (hostile, server_end) = tokio::io::duplex(256);
    server.serve_stream(server_end).expect("a fresh server accepts");
    let (good, server_end) = tokio::io::duplex(4096);
    server.serve_stream(server_end).expect("a fresh server accepts");
    let good = microsocket_tokio::Client::new(good);

    let (mut from_server, mut to_server) = tokio::io::split(hostile);
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        // A reset connection ends the stream like a close does.
        let _ = from_server.read_to_end(&mut out).await;
        out
    });
    let writer = async {
        for chunk in input.chunks(setup.chunk) {
            if to_server.write_all(chunk).await.is_err() {
                // The server closed the connection; it owes nothing more.
                return;
            }
        }
        let _ = to_server.shutdown().await;
    };
    tokio::time::timeout(DEADLINE, writer)
        .await
        .expect("the server stopped reading for good");
    let output = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the server did not close the connection after the client's end of stream")
        .expect("the reader task");

    let answer = tokio::time::timeout(DEADLINE, good.request("echo", ["still", "serving"]))
        .await
        .expect("the well-behaved client was not answered")
        .expect("the well-behaved client's request failed");
    assert_eq!(answer, ["still", "serving"]);
    drop(good);

    let stats = server.stats();
    check_output(setup, input, &output, stats.slow_consumers_disconnected > 0);

    tokio::time::timeout(DEADLINE, server.shutdown())
        .await
        .expect("shutdown did not finish");
    let stats = server.stats();
    assert_eq!(stats.connections, 0, "connections left open: {stats:?}");
    assert_eq!(stats.queued_bytes, 0, "bytes left queued: {stats:?}");
}

fn handler(publisher: Arc<OnceLock<Publisher>>) -> impl microsocket_tokio::Handler {
    handler_fn(move |request: microsocket_tokio::Request| {
        let publisher = publisher.clone();
        async move {
            match &request.command[..] {
                b"echo" => Ok(Reply::from(request.args)),
                b"later" => {
                    let delay = request.args.first().unwrap_or_default();
                    let millis = delay.iter().map(|&b| u64::from(b)).sum();
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    Ok(Reply::values(request.args.iter().skip(1)))
                }
                b"publish" => {
                    let topic = request.args.first().ok_or("publish needs a topic")?;
                    let publisher = publisher.get().expect("set before serving");
                    let reached = publisher
                        .publish(&topic, request.args.iter().skip(1))
                        .map_err(|e| Failure::new(e.to_string()))?;
                    Ok(Reply::one(reached.to_string()))
                }
                b"fail" => Err(Failure::new("failed as asked")),
                _ => Err(Failure::new("unknown command")),
            }
        }
    })
}

/// What the client sent, as the server's decoder sees it.
#[derive(Debug, Default)]
struct Sent {
    requests: usize,
    subscribed: bool,
}

fn tally_input(input: &[u8], max_frame: usize) -> Sent {
    let mut sent = Sent::default();
    let mut decoder = Decoder::new(max_frame);
    let mut rest = input;
    loop {
        let (sigil, consumed) = match decoder.decode(rest) {
            Decoded::Frame { frame, consumed } => (frame.sigil(), consumed),
            Decoded::Oversized { sigil, consumed, .. } => (Sigil::from_byte(sigil), consumed),
            Decoded::Skipped { consumed } => (None, consumed),
            Decoded::NeedMore => return sent,
        };
        match sigil {
            Some(Sigil::Request) => sent.requests += 1,
            Some(Sigil::Subscribe | Sigil::PatternSubscribe) => sent.subscribed = true,
            _ => {}
        }
        rest = &rest[consumed..];
    }
}

fn check_output(setup: Setup, input: &[u8], output: &[u8], disconnected: bool) {
    let sent = tally_input(input, setup.max_frame);
    let mut decoder = Decoder::new(usize::MAX);
    let mut rest = output;
    let mut answers = 0;
    loop {
        match decoder.decode(rest) {
            Decoded::Frame { frame, consumed } => {
                match frame.sigil() {
                    Some(Sigil::Response | Sigil::Failure) => {
                        answers += 1;
                        assert!(frame.argc() >= 1, "an answer without a tag");
                    }
                    Some(Sigil::Publication) => {
                        assert!(sent.subscribed, "a publication to a connection that never subscribed");
                        assert!(frame.argc() >= 1, "a publication without a topic");
                    }
                    other => panic!("the server sent a {other:?} frame (sigil {:#04x})", frame.sigil_byte()),
                }
                rest = &rest[consumed..];
            }
            Decoded::NeedMore => {
                assert!(
                    rest.is_empty() || disconnected,
                    "the server closed mid-frame ({} bytes left) without disconnecting a slow consumer",
                    rest.len()
                );
                break;
            }
            other => panic!("an unlimited decoder reported {other:?}"),
        }
    }
    assert!(
        answers <= sent.requests,
        "{answers} answers to {} requests",
        sent.requests
    );
}
