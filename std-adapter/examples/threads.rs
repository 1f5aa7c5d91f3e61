//! A std-threads server and several client threads sharing one [`Client`]: each
//! thread counts on its own counter and watches every counter through one
//! pattern subscription, while a slow request is answered from another thread.
//! Runs in a moment and exits by itself.
//!
//! ```text
//! cargo run -p microsocket-std --example threads
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use microsocket_std::{
    Client, Error, Handler, Publisher, Request, RequestContext, Responder, Server, ServerConfig, SubscriptionKind,
};

/// Named counters; `INCR name` adds one and publishes the new value on
/// `counter.<name>`; `SLOW ms` answers after `ms` milliseconds from a thread
/// of its own (the connection goes on meanwhile).
#[derive(Debug, Default)]
struct Counters {
    counts: Mutex<HashMap<Vec<u8>, u64>>,
    publisher: OnceLock<Publisher>,
}

/// The handler: the counters, shared with `main`.
#[derive(Debug, Clone, Default)]
struct App(Arc<Counters>);

impl Handler for App {
    fn handle(&self, request: Request<'_>, responder: Responder) {
        let mut args = request.args.clone();
        let _ = match (request.command, args.next()) {
            (b"INCR", Some(name)) => {
                let value = {
                    let mut counts = self.0.counts.lock().unwrap();
                    let n = counts.entry(name.to_vec()).or_default();
                    *n += 1;
                    *n
                };
                let value = value.to_string();
                if let Some(p) = self.0.publisher.get() {
                    let _ = p.publish([b"counter.", name].concat(), [&value]);
                }
                responder.respond([value])
            }
            (b"SLOW", Some(ms)) => {
                let ms: u64 = std::str::from_utf8(ms).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(ms));
                    let _ = responder.respond(["slept"]);
                });
                Ok(())
            }
            _ => responder.fail("no such command", [request.command]),
        };
    }

    fn authorize_subscription(&self, context: &RequestContext, kind: SubscriptionKind, topic: &[u8]) -> bool {
        let allowed = topic.starts_with(b"counter.");
        println!(
            "[server] connection {} {} {kind:?} {}",
            context.connection,
            if allowed {
                "subscribes to"
            } else {
                "may not subscribe to"
            },
            String::from_utf8_lossy(topic)
        );
        allowed
    }
}

const THREADS: usize = 4;
const ROUNDS: u64 = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("counters.sock");
    let app = App::default();
    let server = Server::bind_unix(&path, app.clone(), ServerConfig::default())?;
    app.0.publisher.set(server.publisher()).expect("set once");
    let server = server.spawn()?; // acceptor, readers and flusher on their own threads
    println!("[server] listening on {}", path.display());

    // One connection, shared by every thread.
    let client = Client::connect_unix(&path)?;
    // Watches every counter (subscribed before the workers start, so it misses nothing).
    let mut all = client.subscribe_pattern("counter.*")?;

    let slow = {
        let client = client.clone();
        thread::spawn(move || client.request("SLOW", ["300"]))
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || -> Result<(), Error> {
                let name = format!("worker{t}");
                let mut mine = client.subscribe(format!("counter.{name}"))?;
                for round in 1..=ROUNDS {
                    let value = client.request("INCR", [&name])?;
                    assert_eq!(value, [round.to_string()]);
                    // The publication of our own increment arrives on our subscription.
                    let seen = mine.recv_timeout(Duration::from_secs(5))?;
                    assert_eq!(*seen.values(), [round.to_string()]);
                }
                println!("[{name}] counted to {ROUNDS}");
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked")?;
    }
    assert_eq!(slow.join().expect("slow request panicked")?, ["slept"]);
    println!("[main] the slow request was answered from its own thread");

    // The pattern subscription saw every increment of every worker, in order per counter.
    let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
    for _ in 0..THREADS as u64 * ROUNDS {
        let p = all.recv_timeout(Duration::from_secs(5))?;
        let value: u64 = std::str::from_utf8(&p.values()[0])?.parse()?;
        let previous = last.insert(p.topic().to_vec(), value).unwrap_or(0);
        assert_eq!(value, previous + 1, "in order per counter");
    }
    println!("[main] saw all {} increments on counter.*", THREADS as u64 * ROUNDS);

    // A subscription the server refuses fails, with its reason; an unknown
    // command fails too.
    match client.subscribe("secrets") {
        Err(Error::SubscriptionRefused { reason }) => {
            println!("[main] secrets refused: {}", String::from_utf8_lossy(&reason));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client.request("DELETE", ["everything"]) {
        Err(Error::Failed { message, details }) => {
            println!(
                "[main] DELETE failed: {} {details:?}",
                String::from_utf8_lossy(&message)
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    println!("[main] stats: {:?}", server.publisher().stats());
    server.stop()?; // graceful; removes the socket file
    assert!(!path.exists());
    Ok(())
}
