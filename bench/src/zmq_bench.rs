//! ZeroMQ over `ipc://`: REQ/REP for latency, DEALER/ROUTER for pipelined
//! throughput, PUB/SUB for fan-out. Links the system libzmq through the `zmq` crate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

use crate::contender::{histogram, Contender, Family, FAN_OUT_PAYLOAD, FAN_OUT_TOPIC};
use crate::wire::tag;

/// ZeroMQ 4 through the `zmq` crate.
pub struct Zmq;

const TIMEOUT_MS: i32 = 20_000;

fn endpoint(dir: &tempfile::TempDir) -> String {
    format!("ipc://{}", dir.path().join("zmq.sock").display())
}

impl Contender for Zmq {
    fn name(&self) -> &'static str {
        "ZeroMQ"
    }

    fn family(&self) -> Family {
        Family::Blocking
    }

    fn round_trip(&self, payload: usize, iterations: usize) -> Result<Option<Histogram<u64>>> {
        let dir = tempfile::tempdir()?;
        let ctx = zmq::Context::new();
        let rep = ctx.socket(zmq::REP)?;
        rep.set_rcvtimeo(TIMEOUT_MS)?;
        rep.bind(&endpoint(&dir))?;
        let warmup = iterations / 10;
        let total = warmup + iterations;
        let server = thread::spawn(move || -> Result<()> {
            for _ in 0..total {
                let parts = rep.recv_multipart(0)?;
                let [t, _cmd, body] = &parts[..] else {
                    bail!("bad request")
                };
                rep.send_multipart([&t[..], &body[..]], 0)?;
            }
            Ok(())
        });
        let req = ctx.socket(zmq::REQ)?;
        req.set_rcvtimeo(TIMEOUT_MS)?;
        req.connect(&endpoint(&dir))?;
        let body = vec![0xab; payload];
        let mut hist = histogram();
        for i in 0..total {
            let t = tag(i);
            let start = Instant::now();
            req.send_multipart([&t[..], b"ECHO", &body[..]], 0)?;
            let parts = req.recv_multipart(0)?;
            let elapsed = start.elapsed();
            if parts.len() != 2 || parts[0] != t || parts[1] != body {
                bail!("wrong answer");
            }
            if i >= warmup {
                hist.record(elapsed.as_nanos() as u64)?;
            }
        }
        server.join().map_err(|_| anyhow::anyhow!("server panicked"))??;
        Ok(Some(hist))
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        let dir = tempfile::tempdir()?;
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_rcvtimeo(TIMEOUT_MS)?;
        router.set_sndhwm(0)?;
        router.set_rcvhwm(0)?;
        router.bind(&endpoint(&dir))?;
        let total = connections * requests;
        let server = thread::spawn(move || -> Result<()> {
            for _ in 0..total {
                let parts = router.recv_multipart(0)?;
                let [id, t, _cmd, body] = &parts[..] else {
                    bail!("bad request")
                };
                router.send_multipart([&id[..], &t[..], &body[..]], 0)?;
            }
            Ok(())
        });
        let start = Instant::now();
        let clients: Vec<_> = (0..connections)
            .map(|_| {
                let ctx = ctx.clone();
                let endpoint = endpoint(&dir);
                thread::spawn(move || -> Result<()> {
                    let dealer = ctx.socket(zmq::DEALER)?;
                    dealer.set_rcvtimeo(TIMEOUT_MS)?;
                    dealer.set_sndhwm(0)?;
                    dealer.set_rcvhwm(0)?;
                    dealer.connect(&endpoint)?;
                    let (mut sent, mut done) = (0, 0);
                    while done < requests {
                        while sent < requests && sent - done < in_flight {
                            dealer.send_multipart([&tag(sent)[..], b"ECHO", b"x"], 0)?;
                            sent += 1;
                        }
                        let parts = dealer.recv_multipart(0)?;
                        if parts.len() != 2 || parts[0] != tag(done) || parts[1] != b"x" {
                            bail!("wrong answer");
                        }
                        done += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        for c in clients {
            c.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        }
        let elapsed = start.elapsed();
        server.join().map_err(|_| anyhow::anyhow!("server panicked"))??;
        Ok(Some(total as f64 / elapsed.as_secs_f64()))
    }

    fn fan_out(&self, subscribers: usize, messages: usize) -> Result<Option<f64>> {
        self.publish(subscribers, messages, false)
    }

    fn slow_subscriber(&self, fast: usize, messages: usize) -> Result<Option<f64>> {
        self.publish(fast, messages, true)
    }
}

impl Zmq {
    fn publish(&self, subscribers: usize, messages: usize, with_slow: bool) -> Result<Option<f64>> {
        let dir = tempfile::tempdir()?;
        let ctx = zmq::Context::new();
        let publisher = without_linger(&ctx, zmq::PUB)?;
        // No high-water mark: ZeroMQ would otherwise drop publications for fast
        // subscribers too once they lag by 1,000. With a slow subscriber this
        // buffers its share without bound, which the report notes.
        publisher.set_sndhwm(0)?;
        publisher.bind(&endpoint(&dir))?;
        let ready = Arc::new(AtomicUsize::new(0));
        let mut slow = None;
        if with_slow {
            let s = without_linger(&ctx, zmq::SUB)?;
            s.set_subscribe(FAN_OUT_TOPIC)?;
            s.connect(&endpoint(&dir))?;
            slow = Some(s);
        }
        let readers: Vec<_> = (0..subscribers)
            .map(|_| {
                let ctx = ctx.clone();
                let endpoint = endpoint(&dir);
                let ready = Arc::clone(&ready);
                thread::spawn(move || -> Result<()> {
                    let sub = ctx.socket(zmq::SUB)?;
                    sub.set_rcvtimeo(TIMEOUT_MS)?;
                    sub.set_rcvhwm(0)?;
                    sub.set_subscribe(FAN_OUT_TOPIC)?;
                    sub.connect(&endpoint)?;
                    let mut synced = false;
                    let mut got = 0;
                    while got < messages {
                        let parts = sub.recv_multipart(0)?;
                        match &parts[..] {
                            [t, body] if t == FAN_OUT_TOPIC && body == b"sync" => {
                                if !synced {
                                    synced = true;
                                    ready.fetch_add(1, Ordering::AcqRel);
                                }
                            }
                            [t, body] if t == FAN_OUT_TOPIC && body[..] == FAN_OUT_PAYLOAD => got += 1,
                            _ => bail!("wrong publication"),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        // ZeroMQ subscriptions arrive asynchronously: publish a marker until every
        // subscriber has seen one.
        let deadline = Instant::now() + Duration::from_secs(20);
        while ready.load(Ordering::Acquire) < subscribers {
            if Instant::now() > deadline {
                bail!("subscribers never joined");
            }
            publisher.send_multipart([FAN_OUT_TOPIC, b"sync"], 0)?;
            thread::sleep(Duration::from_millis(1));
        }
        let start = Instant::now();
        for _ in 0..messages {
            publisher.send_multipart([FAN_OUT_TOPIC, &FAN_OUT_PAYLOAD[..]], 0)?;
        }
        for r in readers {
            r.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
        }
        drop(slow);
        Ok(Some((subscribers * messages) as f64 / start.elapsed().as_secs_f64()))
    }
}

/// A socket that closes without waiting to deliver what it still holds: at
/// the end of a fan-out a slow subscriber leaves publications queued, and
/// the context's end would wait for them forever. (Not for a socket that
/// answers: linger 0 would drop its last answer.)
fn without_linger(ctx: &zmq::Context, kind: zmq::SocketType) -> Result<zmq::Socket> {
    let socket = ctx.socket(kind)?;
    socket.set_linger(0)?;
    Ok(socket)
}
