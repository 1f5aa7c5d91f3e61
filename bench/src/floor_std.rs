//! The blocking floor: std threads and a std `UnixStream`, hand-written framing.

use std::io::{BufWriter, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;

use crate::contender::{histogram, Contender, Family, FAN_OUT_PAYLOAD, FAN_OUT_TOPIC};
use crate::wire::{check, put_frame, tag, FrameReader};

/// The blocking floor.
pub struct FloorStd;

/// Echoes every request on one connection until it closes, batching answers while
/// more requests are already buffered.
fn echo_server(stream: UnixStream) -> std::io::Result<()> {
    let mut reader = FrameReader::new(stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut out = Vec::new();
    while let Some(_sigil) = reader.next()? {
        out.clear();
        put_frame(&mut out, b')', &[reader.arg(0), reader.arg(2)]);
        writer.write_all(&out)?;
        if !reader.has_buffered() {
            writer.flush()?;
        }
    }
    Ok(())
}

/// Serves the echo on `path`, a thread per connection, until the process is
/// killed.
pub fn serve_forever(path: &std::path::Path) -> Result<()> {
    let listener = UnixListener::bind(path)?;
    loop {
        let (stream, _) = listener.accept()?;
        thread::spawn(move || echo_server(stream));
    }
}

fn listener() -> Result<(tempfile::TempDir, std::path::PathBuf, UnixListener)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("floor.sock");
    let listener = UnixListener::bind(&path)?;
    Ok((dir, path, listener))
}

fn spawn_echo(listener: UnixListener, connections: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..connections {
            if let Ok((stream, _)) = listener.accept() {
                workers.push(thread::spawn(move || {
                    let _ = echo_server(stream);
                }));
            }
        }
        for w in workers {
            let _ = w.join();
        }
    })
}

impl Contender for FloorStd {
    fn name(&self) -> &'static str {
        "floor (blocking)"
    }

    fn family(&self) -> Family {
        Family::Blocking
    }

    fn round_trip(&self, payload: usize, iterations: usize) -> Result<Option<Histogram<u64>>> {
        let (_dir, path, listener) = listener()?;
        let server = spawn_echo(listener, 1);
        let hist = round_trip_client(&path, payload, iterations)?;
        let _ = server.join();
        Ok(Some(hist))
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        let (_dir, path, listener) = listener()?;
        let server = spawn_echo(listener, connections);
        let rate = pipelined_clients(&path, connections, in_flight, requests)?;
        let _ = server.join();
        Ok(Some(rate))
    }

    fn fan_out(&self, subscribers: usize, messages: usize) -> Result<Option<f64>> {
        let (_dir, path, listener) = listener()?;
        let mut subs = Vec::new();
        for _ in 0..subscribers {
            let mut stream = UnixStream::connect(&path)?;
            let mut out = Vec::new();
            put_frame(&mut out, b'+', &[FAN_OUT_TOPIC]);
            stream.write_all(&out)?;
            subs.push(stream);
        }
        let mut conns = Vec::new();
        for _ in 0..subscribers {
            let (stream, _) = listener.accept()?;
            let mut reader = FrameReader::new(stream.try_clone()?);
            check(
                reader.next()? == Some(b'+') && reader.arg(0) == FAN_OUT_TOPIC,
                "subscribe",
            )?;
            conns.push(stream);
        }
        let readers: Vec<_> = subs
            .into_iter()
            .map(|stream| {
                thread::spawn(move || -> std::io::Result<()> {
                    let mut reader = FrameReader::new(stream);
                    for _ in 0..messages {
                        let sigil = reader.next()?;
                        check(
                            sigil == Some(b'!') && reader.arg(0) == FAN_OUT_TOPIC && reader.arg(1) == FAN_OUT_PAYLOAD,
                            "publication",
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        let start = Instant::now();
        let batch_len = 64;
        let mut batch = Vec::new();
        for _ in 0..batch_len {
            put_frame(&mut batch, b'!', &[FAN_OUT_TOPIC, &FAN_OUT_PAYLOAD]);
        }
        let mut one = Vec::new();
        put_frame(&mut one, b'!', &[FAN_OUT_TOPIC, &FAN_OUT_PAYLOAD]);
        let mut sent = 0;
        while sent < messages {
            let n = batch_len.min(messages - sent);
            for conn in &mut conns {
                if n == batch_len {
                    conn.write_all(&batch)?;
                } else {
                    for _ in 0..n {
                        conn.write_all(&one)?;
                    }
                }
            }
            sent += n;
        }
        for r in readers {
            r.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
        }
        Ok(Some((subscribers * messages) as f64 / start.elapsed().as_secs_f64()))
    }
}

/// The floor's round-trip client: `iterations` ECHO requests of `payload`
/// bytes, one at a time, to the server at `path` (after a tenth as many to
/// warm up); each sample in nanoseconds.
pub fn round_trip_client(path: &std::path::Path, payload: usize, iterations: usize) -> Result<Histogram<u64>> {
    let stream = UnixStream::connect(path)?;
    let mut reader = FrameReader::new(stream.try_clone()?);
    let mut writer = stream;
    let body = vec![0xab; payload];
    let mut hist = histogram();
    let mut out = Vec::new();
    let warmup = iterations / 10;
    for i in 0..warmup + iterations {
        let t = tag(i);
        out.clear();
        put_frame(&mut out, b'(', &[&t, b"ECHO", &body]);
        let start = Instant::now();
        writer.write_all(&out)?;
        let sigil = reader.next()?;
        let elapsed = start.elapsed();
        check(
            sigil == Some(b')') && reader.arg(0) == t && reader.arg(1) == body,
            "echo",
        )?;
        if i >= warmup {
            hist.record(elapsed.as_nanos() as u64)?;
        }
    }
    drop(writer);
    drop(reader);
    Ok(hist)
}

/// The floor's pipelining client: on each of `connections` connections to
/// `path`, one writer thread keeps `in_flight` ECHO requests outstanding and
/// one reader thread checks the answers; returns requests per second.
pub fn pipelined_clients(path: &std::path::Path, connections: usize, in_flight: usize, requests: usize) -> Result<f64> {
    let streams: Vec<UnixStream> = (0..connections)
        .map(|_| UnixStream::connect(path))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let mut clients = Vec::new();
    for stream in streams {
        let done = Arc::new(AtomicUsize::new(0));
        let mut reader = FrameReader::new(stream.try_clone()?);
        let done_r = Arc::clone(&done);
        let read = thread::spawn(move || -> std::io::Result<()> {
            for i in 0..requests {
                let sigil = reader.next()?;
                check(sigil == Some(b')') && reader.arg(0) == tag(i), "pipelined tag")?;
                check(reader.arg(1) == b"x", "pipelined value")?;
                done_r.store(i + 1, Ordering::Release);
            }
            Ok(())
        });
        let write = thread::spawn(move || -> std::io::Result<()> {
            let mut stream = stream;
            let mut out = Vec::new();
            let mut sent = 0;
            let mut spins = 0u64;
            while sent < requests {
                let outstanding = sent - done.load(Ordering::Acquire);
                let n = (in_flight - outstanding).min(requests - sent);
                if n == 0 {
                    spins += 1;
                    if spins > 200_000_000 {
                        return Err(std::io::Error::other("pipelined floor stalled"));
                    }
                    thread::yield_now();
                    continue;
                }
                out.clear();
                for i in sent..sent + n {
                    put_frame(&mut out, b'(', &[&tag(i), b"ECHO", b"x"]);
                }
                stream.write_all(&out)?;
                sent += n;
            }
            Ok(())
        });
        clients.push((read, write));
    }
    for (read, write) in clients {
        write.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        read.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    }
    let elapsed = start.elapsed();
    Ok((connections * requests) as f64 / elapsed.as_secs_f64())
}
