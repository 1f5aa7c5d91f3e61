//! The blocking `embedded-io` drivers over a serial-like byte pipe, with fixed
//! buffers of a few hundred bytes: what a microcontroller talking to a host over a
//! UART would run.
//!
//! A "device" thread serves `LED`, `READ` and `SAMPLE` on its end of the line with
//! a [`BlockingServer`]; the host uses a [`BlockingClient`] on the other end. The
//! line moves at most 32 bytes at a time in each direction, so every frame crosses
//! it in pieces.
//!
//! ```text
//! cargo run -p microsocket-core --example serial_pipe --features embedded-io
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use microsocket_core::embedded::{BlockingClient, BlockingServer, Error};
use microsocket_core::ServerEvent;

/// Bytes one direction of the line holds, like a UART's FIFO.
const FIFO: usize = 32;
/// How long a read waits for a byte before giving up.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One direction of the line.
#[derive(Default)]
struct Fifo {
    bytes: Mutex<(VecDeque<u8>, bool)>,
    changed: Condvar,
}

/// One end of the serial line.
struct Port {
    rx: Arc<Fifo>,
    tx: Arc<Fifo>,
}

fn serial_line() -> (Port, Port) {
    let (a, b) = (Arc::new(Fifo::default()), Arc::new(Fifo::default()));
    (
        Port {
            rx: a.clone(),
            tx: b.clone(),
        },
        Port { rx: b, tx: a },
    )
}

impl Drop for Port {
    fn drop(&mut self) {
        // Hanging up: the other end reads the end of the stream.
        for fifo in [&self.rx, &self.tx] {
            fifo.bytes.lock().unwrap().1 = true;
            fifo.changed.notify_all();
        }
    }
}

impl ErrorType for Port {
    type Error = ErrorKind;
}

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.rx.bytes.lock().unwrap();
        while state.0.is_empty() && !state.1 {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(ErrorKind::TimedOut)?;
            state = self.rx.changed.wait_timeout(state, left).unwrap().0;
        }
        let n = buf.len().min(state.0.len());
        for (slot, byte) in buf.iter_mut().zip(state.0.drain(..n)) {
            *slot = byte;
        }
        self.rx.changed.notify_all();
        Ok(n)
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let deadline = Instant::now() + TIMEOUT;
        let mut state = self.tx.bytes.lock().unwrap();
        while state.0.len() >= FIFO && !state.1 {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(ErrorKind::TimedOut)?;
            state = self.tx.changed.wait_timeout(state, left).unwrap().0;
        }
        if state.1 {
            return Err(ErrorKind::BrokenPipe);
        }
        let n = buf.len().min(FIFO - state.0.len());
        state.0.extend(&buf[..n]);
        self.tx.changed.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// The device: 256-byte buffers, 4 subscriptions in 64 bytes.
type Device = BlockingServer<Port, 256, 256, 4, 64>;
/// The host: 256-byte buffers and publication queue, 2 requests in flight,
/// 4 subscriptions in 64 bytes.
type Host = BlockingClient<Port, 256, 256, 256, 2, 4, 64>;

fn device(port: Port) -> Result<(), Error<ErrorKind>> {
    let mut server: Device = BlockingServer::new(port);
    let mut led = false;
    let mut temperature = 215u16; // tenths of a degree
    server.run(&mut |event, outbox| match event {
        ServerEvent::Request { tag, command, mut args } => match command {
            b"LED" => {
                led = args.next() == Some(b"on");
                outbox.respond(tag, [if led { &b"on"[..] } else { b"off" }]).map(drop)
            }
            b"READ" => {
                let mut text = [0u8; 8];
                let value = format_tenths(temperature, &mut text);
                outbox.respond(tag, [value]).map(drop)
            }
            b"SAMPLE" => {
                // Publish three readings, then answer: the readings arrive first.
                for _ in 0..3 {
                    temperature += 3;
                    let mut text = [0u8; 8];
                    let value = format_tenths(temperature, &mut text);
                    outbox.publish(b"sensor.temp", [value])?;
                }
                outbox.respond(tag, [b"3"]).map(drop)
            }
            _ => outbox.fail(tag, b"no such command", [command]).map(drop),
        },
        ServerEvent::Subscribed { topic, .. } => {
            println!("device: host subscribed to {}", String::from_utf8_lossy(topic));
            Ok(())
        }
        _ => Ok(()),
    })
}

/// Writes `tenths` as a decimal like `21.5` into `out`, without allocating.
fn format_tenths(tenths: u16, out: &mut [u8; 8]) -> &[u8] {
    let mut n = 0;
    let whole = tenths / 10;
    let mut digits = [0u8; 5];
    let mut len = 0;
    let mut rest = whole;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for d in digits[..len].iter().rev() {
        out[n] = *d;
        n += 1;
    }
    out[n] = b'.';
    out[n + 1] = b'0' + (tenths % 10) as u8;
    &out[..n + 2]
}

fn main() -> Result<(), Error<ErrorKind>> {
    let (host_port, device_port) = serial_line();
    let device = thread::spawn(move || device(device_port));

    let mut host: Host = BlockingClient::new(host_port);
    let state = host.call(b"LED", [b"on"], |mut v| v.next().map(<[u8]>::to_vec))?;
    println!("host: LED is {}", String::from_utf8_lossy(&state.unwrap_or_default()));

    let mut buf = [0u8; 32];
    let reading = host.request(b"READ", [b""; 0], &mut buf)?;
    for value in reading {
        println!("host: temperature {} C", String::from_utf8_lossy(value));
    }

    let _sensors = host.subscribe_pattern(b"sensor.*")?;
    host.call(b"SAMPLE", [b""; 0], |_| ())?;
    println!("host: {} readings queued while SAMPLE ran", host.queued_publications());
    for _ in 0..3 {
        host.next_publication(|p| {
            let value = p.values.clone().next().unwrap_or_default();
            println!(
                "host: {} = {}",
                String::from_utf8_lossy(p.topic),
                String::from_utf8_lossy(value)
            );
        })?;
    }

    match host.call(b"REBOOT", [b""; 0], |_| ()) {
        Err(Error::Failed(failure)) => println!("host: REBOOT failed: {failure}"),
        other => panic!("REBOOT should fail, got {other:?}"),
    }

    drop(host); // hang up; the device's loop ends
    device.join().expect("device thread")?;
    println!("device: host hung up, done");
    Ok(())
}
