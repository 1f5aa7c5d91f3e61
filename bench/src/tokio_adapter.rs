//! microsocket's Tokio adapter, client and server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use microsocket_tokio::{handler_fn, Client, Failure, FnHandler, Reply, Request, Server, ServerConfig};

use crate::contender::{histogram, publish_in_batches, Contender, Family, FAN_OUT_PAYLOAD, FAN_OUT_TOPIC};
use crate::floor_tokio::{runtime, single_threaded, split};

/// `microsocket-tokio`.
pub struct TokioAdapter;

type EchoFuture = std::future::Ready<Result<Reply, Failure>>;

fn echo_handler() -> FnHandler<fn(Request) -> EchoFuture> {
    fn echo(request: Request) -> EchoFuture {
        std::future::ready(match &request.command[..] {
            b"ECHO" => Ok(request.args.into()),
            b"PING" => Ok(Reply::one("PONG")),
            _ => Err(Failure::new("no such command")),
        })
    }
    handler_fn(echo as fn(Request) -> EchoFuture)
}

fn config(max_queued_bytes: usize) -> ServerConfig {
    ServerConfig::default()
        .max_queued_bytes(max_queued_bytes)
        .max_connections(16_384)
}

async fn client(path: &std::path::Path) -> Result<Client> {
    Ok(Client::builder()
        .subscription_capacity(1 << 22)
        .subscription_max_bytes(usize::MAX)
        .max_in_flight(1024)
        .connect_unix(path)
        .await?)
}

impl Contender for TokioAdapter {
    fn name(&self) -> &'static str {
        "microsocket-tokio"
    }

    fn family(&self) -> Family {
        Family::Async
    }

    fn round_trip(&self, payload: usize, iterations: usize) -> Result<Option<Histogram<u64>>> {
        // Client and server each on a single-threaded runtime of their own thread,
        // as two processes would be (the floor runs the same way).
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tokio.sock");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_path = path.clone();
        let server = std::thread::spawn(move || -> Result<()> {
            single_threaded()?.block_on(async move {
                let server = Server::with_config(echo_handler(), config(1 << 20));
                let listening = server.listen_unix(&server_path);
                let _ = ready_tx.send(listening.is_ok());
                listening?;
                let _ = stop_rx.await;
                server.shutdown().await;
                Ok(())
            })
        });
        if !ready_rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false) {
            bail!("server did not start");
        }
        let measured = single_threaded()?.block_on(async move {
            let client = client(&path).await?;
            let body = bytes::Bytes::from(vec![0xab; payload]);
            let mut hist = histogram();
            let warmup = iterations / 10;
            for i in 0..warmup + iterations {
                let start = Instant::now();
                let values = client.request("ECHO", [&body]).await?;
                let elapsed = start.elapsed();
                if values.len() != 1 || values.first().as_ref() != Some(&body) {
                    bail!("wrong answer");
                }
                if i >= warmup {
                    hist.record(elapsed.as_nanos() as u64)?;
                }
            }
            Ok(hist)
        });
        let _ = stop_tx.send(());
        server.join().map_err(|_| anyhow::anyhow!("server panicked"))??;
        Ok(Some(measured?))
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        // Client and server on runtimes of their own, as two processes (the Tokio
        // floor runs the same way).
        let (_dir, path, listener) = std_listener()?;
        let server = move |stop: tokio::sync::oneshot::Receiver<()>| async move {
            let server = Server::with_config(echo_handler(), config(1 << 20));
            server.serve_unix_listener(tokio::net::UnixListener::from_std(listener)?);
            let _ = stop.await;
            server.shutdown().await;
            Ok(())
        };
        split(server, || async move {
            let mut clients = Vec::new();
            for _ in 0..connections {
                clients.push(client(&path).await?);
            }
            let start = Instant::now();
            let mut tasks = Vec::new();
            for c in &clients {
                for t in 0..in_flight {
                    let c = c.clone();
                    let share = requests / in_flight + usize::from(t < requests % in_flight);
                    tasks.push(tokio::spawn(async move {
                        for i in 0..share {
                            let arg = [(i % 251) as u8];
                            let values = c.request("ECHO", [&arg]).await?;
                            if values.len() != 1 || values.first().as_deref() != Some(&arg[..]) {
                                bail!("wrong answer");
                            }
                        }
                        Ok(())
                    }));
                }
            }
            for t in tasks {
                t.await??;
            }
            Ok(Some((connections * requests) as f64 / start.elapsed().as_secs_f64()))
        })
    }

    fn fan_out(&self, subscribers: usize, messages: usize) -> Result<Option<f64>> {
        publish(subscribers, messages, false).map(Some)
    }

    fn slow_subscriber(&self, fast: usize, messages: usize) -> Result<Option<f64>> {
        publish(fast, messages, true).map(Some)
    }

    fn idle_memory(&self, connections: usize) -> Result<Option<f64>> {
        crate::memory::per_connection("tokio", connections).map(Some)
    }
}

/// See the std twin: server-side publishing to `subscribers` clients; with `slow`
/// one more never reads and publishing is paced. The server runs on a runtime of
/// its own and the subscribers on another, as two processes would (the Tokio
/// floor runs the same way).
fn publish(subscribers: usize, messages: usize, slow: bool) -> Result<f64> {
    const PROGRESS_STEP: usize = 100;
    let (_dir, path, listener) = std_listener()?;
    let received = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let paced = Arc::clone(&received);
    let server = move |stop: tokio::sync::oneshot::Receiver<()>| async move {
        let server = Server::with_config(echo_handler(), config(if slow { 1 << 20 } else { 256 << 20 }));
        server.serve_unix_listener(tokio::net::UnixListener::from_std(listener)?);
        let published = async {
            if go_rx.await.is_err() {
                return Ok(());
            }
            let publisher = server.publisher();
            let batch = 1000;
            let mut sent = 0;
            while sent < messages {
                let n = batch.min(messages - sent);
                publish_in_batches(n, subscribers, slow, |k| {
                    Ok(publisher.publish_batch((0..k).map(|_| (FAN_OUT_TOPIC, [&FAN_OUT_PAYLOAD])))?)
                })?;
                sent += n;
                // Let the connection tasks write; with a slow subscriber also keep
                // the fast ones within one batch, so none of them lags.
                tokio::task::yield_now().await;
                if slow {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while paced.load(Ordering::Relaxed) < sent * subscribers {
                        if Instant::now() > deadline {
                            bail!("fast subscribers stalled");
                        }
                        tokio::task::yield_now().await;
                    }
                }
            }
            Ok(())
        };
        let outcome = published.await;
        let _ = stop.await;
        server.shutdown().await;
        outcome
    };
    split(server, || async move {
        let mut readers = Vec::new();
        for _ in 0..subscribers {
            let c = client(&path).await?;
            let mut sub = c.subscribe(FAN_OUT_TOPIC).await?;
            let received = Arc::clone(&received);
            // One deadline for the whole stream, as the floor's readers have none
            // per message; progress is shared in steps of PROGRESS_STEP (the paced
            // publisher waits for whole batches), so the readers do not all write
            // one counter per delivery.
            let read_all = async move {
                let _c = c;
                let mut unreported = 0;
                for _ in 0..messages {
                    let p = sub
                        .next()
                        .await
                        .ok_or_else(|| anyhow::anyhow!("subscription ended"))??;
                    if p.topic() != FAN_OUT_TOPIC
                        || p.values().len() != 1
                        || p.values().slice(0) != Some(&FAN_OUT_PAYLOAD[..])
                    {
                        bail!("wrong publication");
                    }
                    unreported += 1;
                    if unreported == PROGRESS_STEP {
                        received.fetch_add(unreported, Ordering::Relaxed);
                        unreported = 0;
                    }
                }
                received.fetch_add(unreported, Ordering::Relaxed);
                Ok(())
            };
            readers.push(tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(60), read_all).await?
            }));
        }
        let idle = if slow {
            let c = client(&path).await?;
            let sub = c.subscribe(FAN_OUT_TOPIC).await?;
            Some((c, sub))
        } else {
            None
        };
        let start = Instant::now();
        let _ = go_tx.send(());
        for r in readers {
            r.await??;
        }
        let rate = (subscribers * messages) as f64 / start.elapsed().as_secs_f64();
        drop(idle);
        Ok(rate)
    })
}

/// A bound UNIX listener in a fresh directory, ready for a runtime to adopt.
fn std_listener() -> Result<(tempfile::TempDir, std::path::PathBuf, std::os::unix::net::UnixListener)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tokio.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    Ok((dir, path, listener))
}

/// The server half of the idle-memory measurement, in a child process.
pub fn serve_idle(path: &std::path::Path) -> Result<()> {
    runtime()?.block_on(async move {
        let server = Server::with_config(echo_handler(), config(1 << 20));
        server.listen_unix(path)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        term.recv().await;
        server.shutdown().await;
        Ok(())
    })
}
