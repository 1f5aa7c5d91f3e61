//! The Tokio floor: tasks and a Tokio `UnixStream`, hand-written framing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{UnixListener, UnixStream};

use crate::contender::{histogram, Contender, Family, FAN_OUT_PAYLOAD, FAN_OUT_TOPIC};
use crate::wire::{check, put_frame, tag, AsyncFrameReader};

/// The Tokio floor.
pub struct FloorTokio;

/// A single-threaded runtime: a round trip's client and server each run on their
/// own, on their own thread, as two processes would.
pub fn single_threaded() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Runs `server` on a single-threaded runtime on a thread of its own and `client`
/// on another here, as two processes would; once the client is done, the server
/// gets its stop signal and is joined.
pub fn split<S, SF, C, CF, T>(server: S, client: C) -> Result<T>
where
    S: FnOnce(tokio::sync::oneshot::Receiver<()>) -> SF + Send + 'static,
    SF: std::future::Future<Output = Result<()>>,
    C: FnOnce() -> CF,
    CF: std::future::Future<Output = Result<T>>,
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let handle = std::thread::spawn(move || single_threaded()?.block_on(server(stop_rx)));
    let outcome = single_threaded()?.block_on(client());
    let _ = stop_tx.send(());
    handle.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    outcome
}

/// A runtime like the adapter's: multi-threaded, one worker per core.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn echo_server(stream: UnixStream) -> std::io::Result<()> {
    let (read, write) = stream.into_split();
    let mut reader = AsyncFrameReader::new(read);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let mut out = Vec::new();
    while let Some(_sigil) = reader.next().await? {
        out.clear();
        put_frame(&mut out, b')', &[reader.arg(0), reader.arg(2)]);
        writer.write_all(&out).await?;
        if !reader.has_buffered() {
            writer.flush().await?;
        }
    }
    Ok(())
}

/// Serves the echo on `path` on a single-threaded runtime until the process
/// is killed.
pub fn serve_forever(path: &std::path::Path) -> Result<()> {
    single_threaded()?.block_on(async {
        let listener = UnixListener::bind(path)?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(echo_server(stream));
        }
    })
}

fn serve_echo(listener: UnixListener, connections: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..connections {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(echo_server(stream));
            }
        }
    })
}

impl Contender for FloorTokio {
    fn name(&self) -> &'static str {
        "floor (tokio)"
    }

    fn family(&self) -> Family {
        Family::Async
    }

    fn round_trip(&self, payload: usize, iterations: usize) -> Result<Option<Histogram<u64>>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("floor.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let server = std::thread::spawn(move || -> Result<()> {
            single_threaded()?.block_on(async move {
                let listener = UnixListener::from_std(listener)?;
                let (stream, _) = listener.accept().await?;
                echo_server(stream).await?;
                Ok(())
            })
        });
        let hist = single_threaded()?.block_on(async move {
            let stream = UnixStream::connect(&path).await?;
            let (read, mut writer) = stream.into_split();
            let mut reader = AsyncFrameReader::new(read);
            let body = vec![0xab; payload];
            let mut hist = histogram();
            let mut out = Vec::new();
            let warmup = iterations / 10;
            for i in 0..warmup + iterations {
                let t = tag(i);
                out.clear();
                put_frame(&mut out, b'(', &[&t, b"ECHO", &body]);
                let start = Instant::now();
                writer.write_all(&out).await?;
                let sigil = reader.next().await?;
                let elapsed = start.elapsed();
                check(
                    sigil == Some(b')') && reader.arg(0) == t && reader.arg(1) == body,
                    "echo",
                )?;
                if i >= warmup {
                    hist.record(elapsed.as_nanos() as u64)?;
                }
            }
            anyhow::Ok(hist)
        })?;
        server.join().map_err(|_| anyhow::anyhow!("server panicked"))??;
        Ok(Some(hist))
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("floor.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let server = move |stop: tokio::sync::oneshot::Receiver<()>| async move {
            serve_echo(UnixListener::from_std(listener)?, connections);
            let _ = stop.await;
            Ok(())
        };
        split(server, || async move {
            let mut streams = Vec::new();
            for _ in 0..connections {
                streams.push(UnixStream::connect(&path).await?);
            }
            let start = Instant::now();
            let mut tasks = Vec::new();
            for stream in streams {
                let (read, mut write) = stream.into_split();
                let done = Arc::new(AtomicUsize::new(0));
                let notify = Arc::new(tokio::sync::Notify::new());
                let (done_r, notify_r) = (Arc::clone(&done), Arc::clone(&notify));
                tasks.push(tokio::spawn(async move {
                    let mut reader = AsyncFrameReader::new(read);
                    for i in 0..requests {
                        let sigil = reader.next().await?;
                        check(
                            sigil == Some(b')') && reader.arg(0) == tag(i) && reader.arg(1) == b"x",
                            "pipelined",
                        )?;
                        done_r.store(i + 1, Ordering::Release);
                        notify_r.notify_one();
                    }
                    std::io::Result::Ok(())
                }));
                tasks.push(tokio::spawn(async move {
                    let mut out = Vec::new();
                    let mut sent = 0;
                    while sent < requests {
                        let outstanding = sent - done.load(Ordering::Acquire);
                        let n = (in_flight - outstanding).min(requests - sent);
                        if n == 0 {
                            notify.notified().await;
                            continue;
                        }
                        out.clear();
                        for i in sent..sent + n {
                            put_frame(&mut out, b'(', &[&tag(i), b"ECHO", b"x"]);
                        }
                        write.write_all(&out).await?;
                        sent += n;
                    }
                    std::io::Result::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok(Some((connections * requests) as f64 / start.elapsed().as_secs_f64()))
        })
    }

    fn fan_out(&self, subscribers: usize, messages: usize) -> Result<Option<f64>> {
        // The publishing server on a runtime of its own, the subscribers on another
        // (as two processes would be; the adapter runs the same way).
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("floor.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let server = move |stop: tokio::sync::oneshot::Receiver<()>| async move {
            let listener = UnixListener::from_std(listener)?;
            let mut conns = Vec::new();
            for _ in 0..subscribers {
                let (conn, _) = listener.accept().await?;
                let (read, write) = conn.into_split();
                let mut reader = AsyncFrameReader::new(read);
                check(reader.next().await? == Some(b'+'), "subscribe")?;
                conns.push(write);
            }
            // One writer task per subscriber, as a server would have, fed the
            // same batches.
            let batch_len = 64;
            let mut batch = Vec::new();
            for _ in 0..batch_len {
                put_frame(&mut batch, b'!', &[FAN_OUT_TOPIC, &FAN_OUT_PAYLOAD]);
            }
            let batch = Arc::new(batch);
            let writers: Vec<_> = conns
                .into_iter()
                .map(|mut conn| {
                    let batch = Arc::clone(&batch);
                    tokio::spawn(async move {
                        let mut one = Vec::new();
                        put_frame(&mut one, b'!', &[FAN_OUT_TOPIC, &FAN_OUT_PAYLOAD]);
                        let mut sent = 0;
                        while sent < messages {
                            let n = batch_len.min(messages - sent);
                            if n == batch_len {
                                conn.write_all(&batch).await?;
                            } else {
                                for _ in 0..n {
                                    conn.write_all(&one).await?;
                                }
                            }
                            sent += n;
                        }
                        std::io::Result::Ok(())
                    })
                })
                .collect();
            for w in writers {
                w.await??;
            }
            let _ = stop.await;
            Ok(())
        };
        split(server, || async move {
            let mut subs = Vec::new();
            for _ in 0..subscribers {
                let mut stream = UnixStream::connect(&path).await?;
                let mut out = Vec::new();
                put_frame(&mut out, b'+', &[FAN_OUT_TOPIC]);
                stream.write_all(&out).await?;
                subs.push(stream);
            }
            let start = Instant::now();
            let readers: Vec<_> = subs
                .into_iter()
                .map(|stream| {
                    tokio::spawn(async move {
                        let mut reader = AsyncFrameReader::new(stream);
                        for _ in 0..messages {
                            let sigil = reader.next().await?;
                            check(
                                sigil == Some(b'!')
                                    && reader.arg(0) == FAN_OUT_TOPIC
                                    && reader.arg(1) == FAN_OUT_PAYLOAD,
                                "publication",
                            )?;
                        }
                        std::io::Result::Ok(())
                    })
                })
                .collect();
            for r in readers {
                r.await??;
            }
            Ok(Some((subscribers * messages) as f64 / start.elapsed().as_secs_f64()))
        })
    }
}
