//! A client machine and a server machine driven by one hand-written loop over a
//! non-blocking UNIX socket pair: no runtime, no adapter crate, just the contract
//! of `microsocket-core` (read into `rx_buf`, `commit_rx`, drain `poll_event`,
//! write `poll_transmit`, `advance_transmit`).
//!
//! The client subscribes to `news`, confirms it with the empty-command barrier,
//! asks the server to `ECHO` and to `PUBLISH` on `news`, and stops once it has every
//! answer and the publication.
//!
//! ```text
//! cargo run -p microsocket-core --example hand_loop
//! ```

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use microsocket_core::{Client, ClientEvent, RequestId, ServerConnection, ServerEvent};

/// Reads what the socket has into `rx` and commits it. Returns the bytes read, or
/// `None` at the end of the stream.
fn read_into(socket: &mut UnixStream, rx: &mut [u8]) -> io::Result<Option<usize>> {
    match socket.read(rx) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Writes as much of `bytes` as the socket takes now.
fn write_some(socket: &mut UnixStream, bytes: &[u8]) -> io::Result<usize> {
    match socket.write(bytes) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

fn main() -> io::Result<()> {
    let (mut client_sock, mut server_sock) = UnixStream::pair()?;
    client_sock.set_nonblocking(true)?;
    server_sock.set_nonblocking(true)?;

    // Small fixed buffers: the machines never allocate.
    let mut client: Client<512, 512> = Client::new();
    let mut server: ServerConnection<512, 512> = ServerConnection::default();

    // Commands only queue bytes; the loop below moves them.
    let news = client.subscribe(b"news").expect("room for a subscription");
    let barrier = client.barrier().expect("room for the barrier");
    let mut echo: Option<RequestId> = None;
    let mut publish: Option<RequestId> = None;
    let mut echo_answered = false;
    let mut publish_answered = false;
    let mut publication_seen = false;

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rounds = 0u32;
    loop {
        rounds += 1;
        let mut progress = false;

        // ---- client: read, drain events ----
        match read_into(&mut client_sock, client.rx_buf())? {
            None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server hung up")),
            Some(n) => {
                client.commit_rx(n);
                progress |= n > 0;
            }
        }
        while let Some(event) = client.poll_event() {
            progress = true;
            match event {
                ClientEvent::Response { id, values } if id == barrier => {
                    println!("client: subscription to news is in place ({} values)", values.len());
                    // Now that the server has the subscription, ask for the rest.
                    echo = Some(client.request(b"ECHO", [&b"hello"[..], b"world"]).expect("room"));
                    publish = Some(client.request(b"PUBLISH", [&b"news"[..], b"extra!"]).expect("room"));
                }
                ClientEvent::Response { id, values } if Some(id) == echo => {
                    let words: Vec<_> = values.map(String::from_utf8_lossy).collect();
                    println!("client: ECHO answered {words:?}");
                    echo_answered = true;
                }
                ClientEvent::Response { id, .. } if Some(id) == publish => {
                    println!("client: PUBLISH answered");
                    publish_answered = true;
                }
                ClientEvent::Publication {
                    topic,
                    values,
                    mut subscriptions,
                } => {
                    assert_eq!(subscriptions.next(), Some(news));
                    let values: Vec<_> = values.map(String::from_utf8_lossy).collect();
                    println!("client: publication on {} {values:?}", String::from_utf8_lossy(topic));
                    publication_seen = true;
                }
                ClientEvent::Failure { message, .. } => {
                    return Err(io::Error::other(String::from_utf8_lossy(message).into_owned()));
                }
                other => println!("client: {other:?}"),
            }
        }

        // ---- server: read, drain events, answer ----
        match read_into(&mut server_sock, server.rx_buf())? {
            None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client hung up")),
            Some(n) => {
                server.commit_rx(n);
                progress |= n > 0;
            }
        }
        while let Some(mut polled) = server.poll_event() {
            progress = true;
            match polled.event {
                ServerEvent::Request { tag, command, args } => {
                    println!("server: request {}", String::from_utf8_lossy(command));
                    let answered = match command {
                        b"ECHO" => polled.outbox.respond(tag, args),
                        b"PUBLISH" => {
                            let mut args = args;
                            let topic = args.next().unwrap_or_default();
                            // Publications made while handling a request go out
                            // before its response.
                            let sent = polled.outbox.publish(topic, args).expect("room");
                            polled.outbox.respond(tag, [if sent { &b"1"[..] } else { b"0" }])
                        }
                        _ => polled.outbox.fail(tag, b"no such command", [b""; 0]),
                    };
                    answered.expect("room for the answer");
                }
                ServerEvent::Subscribed { topic, .. } => {
                    println!("server: subscribed to {}", String::from_utf8_lossy(topic));
                }
                other => println!("server: {other:?}"),
            }
        }

        // ---- both: write what the machines queued ----
        while let Some(bytes) = client.poll_transmit() {
            let n = write_some(&mut client_sock, bytes)?;
            if n == 0 {
                break;
            }
            client.advance_transmit(n);
            progress = true;
        }
        while let Some(bytes) = server.poll_transmit() {
            let n = write_some(&mut server_sock, bytes)?;
            if n == 0 {
                break;
            }
            server.advance_transmit(n);
            progress = true;
        }

        if echo_answered && publish_answered && publication_seen {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the exchange did not finish"));
        }
        if !progress {
            // What a poll(2) on both sockets would do, without the system call.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    println!("done in {rounds} rounds");
    Ok(())
}
