//! microsocket's blocking adapter, client and server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use microsocket_std::{Client, ClientConfig, Request, Responder, RunningServer, Server, ServerConfig};

use crate::contender::{histogram, publish_in_batches, Contender, Family, FAN_OUT_PAYLOAD, FAN_OUT_TOPIC};

/// `microsocket-std`.
pub struct StdAdapter;

fn echo(request: Request<'_>, responder: Responder) {
    let _ = match request.command {
        b"ECHO" => responder.respond(request.args),
        b"PING" => responder.respond([b"PONG"]),
        _ => responder.fail("no such command", [b""; 0]),
    };
}

/// Queues large enough that a burst of publications is never dropped: every
/// delivery is counted.
fn roomy() -> ServerConfig {
    {
        let mut config = ServerConfig::default();
        config.max_queued_bytes = 256 << 20;
        config.max_connections = 16_384;
        config
    }
}

fn start(config: ServerConfig) -> Result<(tempfile::TempDir, std::path::PathBuf, RunningServer)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("std.sock");
    let server = Server::bind_unix(&path, echo, config)?.spawn()?;
    Ok((dir, path, server))
}

fn client(path: &std::path::Path) -> Result<Client> {
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    Ok(Client::new(stream, {
        let mut config = ClientConfig::default();
        config.subscription_capacity = 1 << 22;
        config.subscription_max_bytes = usize::MAX;
        config
    })?)
}

impl Contender for StdAdapter {
    fn name(&self) -> &'static str {
        "microsocket-std"
    }

    fn family(&self) -> Family {
        Family::Blocking
    }

    fn round_trip(&self, payload: usize, iterations: usize) -> Result<Option<Histogram<u64>>> {
        let (_dir, path, server) = start(ServerConfig::default())?;
        let client = client(&path)?;
        let body = vec![0xab; payload];
        let mut hist = histogram();
        let warmup = iterations / 10;
        for i in 0..warmup + iterations {
            let start = Instant::now();
            let values = client.request("ECHO", [&body])?;
            let elapsed = start.elapsed();
            if values.len() != 1 || values[0] != body {
                bail!("wrong answer");
            }
            if i >= warmup {
                hist.record(elapsed.as_nanos() as u64)?;
            }
        }
        drop(client);
        server.stop()?;
        Ok(Some(hist))
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        let (_dir, path, server) = start(ServerConfig::default())?;
        let clients: Vec<Client> = (0..connections).map(|_| client(&path)).collect::<Result<_>>()?;
        let start = Instant::now();
        let mut threads = Vec::new();
        for c in &clients {
            if in_flight == THREADS_SHARING {
                // Threads sharing one connection, one request each in flight.
                for t in 0..in_flight {
                    let c = c.clone();
                    let share = requests / in_flight + usize::from(t < requests % in_flight);
                    threads.push(
                        thread::Builder::new()
                            .stack_size(64 << 10)
                            .spawn(move || -> Result<()> {
                                for i in 0..share {
                                    let arg = [(i % 251) as u8];
                                    let values = c.request("ECHO", [&arg])?;
                                    if values.len() != 1 || values[0][..] != arg {
                                        bail!("wrong answer");
                                    }
                                }
                                Ok(())
                            })?,
                    );
                }
            } else {
                // One thread per connection keeping `in_flight` requests in
                // flight with tickets, topping the window up in batches.
                let c = c.clone();
                threads.push(thread::Builder::new().spawn(move || ticket_window(&c, in_flight, requests))?);
            }
        }
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        }
        let elapsed = start.elapsed();
        drop(clients);
        server.stop()?;
        Ok(Some((connections * requests) as f64 / elapsed.as_secs_f64()))
    }

    fn fan_out(&self, subscribers: usize, messages: usize) -> Result<Option<f64>> {
        publish(subscribers, messages, false).map(Some)
    }

    fn slow_subscriber(&self, fast: usize, messages: usize) -> Result<Option<f64>> {
        publish(fast, messages, true).map(Some)
    }

    fn idle_memory(&self, connections: usize) -> Result<Option<f64>> {
        crate::memory::per_connection("std", connections).map(Some)
    }
}

/// The pipelined workload in which threads share a connection, one request
/// each in flight (see `main.rs`); the others use one thread with tickets.
const THREADS_SHARING: usize = 8;

/// `requests` ECHO requests from one thread, `in_flight` at a time: the
/// window is topped up by a batch whenever half of it has been collected.
fn ticket_window(c: &Client, in_flight: usize, requests: usize) -> Result<()> {
    let mut window = std::collections::VecDeque::with_capacity(in_flight);
    let (mut sent, mut done) = (0, 0);
    while done < requests {
        if window.len() <= in_flight / 2 && sent < requests {
            let mut batch = c.batch();
            let first = sent;
            while window.len() + batch.len() < in_flight && sent < requests {
                batch.request("ECHO", [[(sent % 251) as u8]])?;
                sent += 1;
            }
            window.extend((first..).zip(batch.send()?));
        }
        let Some((i, ticket)) = window.pop_front() else {
            bail!("no request in flight");
        };
        let values = ticket.wait()?;
        if values.len() != 1 || values[0][..] != [(i % 251) as u8] {
            bail!("wrong answer");
        }
        done += 1;
    }
    Ok(())
}

/// Publishes from the server side to `subscribers` clients, each on its own
/// connection and thread; with `slow`, one more subscriber never reads and
/// publishing is paced so the fast ones never lag.
fn publish(subscribers: usize, messages: usize, slow: bool) -> Result<f64> {
    let config = if slow {
        {
            let mut config = ServerConfig::default();
            config.max_queued_bytes = 1 << 20;
            config
        }
    } else {
        roomy()
    };
    let (_dir, path, server) = start(config)?;
    let publisher = server.publisher();
    let received = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let c = client(&path)?;
        let mut sub = c.subscribe(FAN_OUT_TOPIC)?;
        let received = Arc::clone(&received);
        readers.push(thread::spawn(move || -> Result<()> {
            let _c = c;
            for _ in 0..messages {
                let p = sub.recv_timeout(Duration::from_secs(30))?;
                if p.topic() != FAN_OUT_TOPIC || p.values().len() != 1 || p.values()[0][..] != FAN_OUT_PAYLOAD {
                    bail!("wrong publication");
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let idle = if slow {
        let c = client(&path)?;
        let sub = c.subscribe(FAN_OUT_TOPIC)?;
        Some((c, sub))
    } else {
        None
    };
    let start = Instant::now();
    let batch = 1000;
    let mut sent = 0;
    while sent < messages {
        let n = batch.min(messages - sent);
        publish_in_batches(n, subscribers, slow, |k| {
            Ok(publisher.publish_batch((0..k).map(|_| (FAN_OUT_TOPIC, [&FAN_OUT_PAYLOAD])))?)
        })?;
        sent += n;
        if slow {
            let deadline = Instant::now() + Duration::from_secs(30);
            while received.load(Ordering::Relaxed) < sent * subscribers {
                if Instant::now() > deadline {
                    bail!("fast subscribers stalled");
                }
                thread::yield_now();
            }
        }
    }
    for r in readers {
        r.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
    }
    let rate = (subscribers * messages) as f64 / start.elapsed().as_secs_f64();
    drop(idle);
    server.stop()?;
    Ok(rate)
}

/// The server half of the idle-memory measurement, in a child process.
pub fn serve_idle(path: &std::path::Path) -> Result<()> {
    let server = Server::bind_unix(path, echo, roomy())?;
    server.run_until_signal()?;
    Ok(())
}
