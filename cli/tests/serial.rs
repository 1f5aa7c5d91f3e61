//! Serial lines through the real binary, with pseudo-terminals standing in
//! for devices: `serve --attach DEVICE` makes a device one more connection of
//! the bus, `serial:DEVICE` addresses a device that serves microsocket itself,
//! and a device that sends garbage or vanishes leaves the bus serving.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use microsocket_core::embedded::{BlockingClient, BlockingServer};
use microsocket_core::ServerEvent;

/// A pseudo-terminal: the device's side (a `File`), and the path the bus opens.
fn pty() -> (File, PathBuf) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    // Not inherited by the bus process, or it would keep the line open itself.
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    (File::from(master), PathBuf::from(name.to_str().unwrap()))
}

/// The device's side of the line as an `embedded_io` transport, as firmware's
/// UART driver would be.
struct Uart(File);

impl embedded_io::ErrorType for Uart {
    type Error = std::io::Error;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bus's connections over serial lines (no peer credentials), as
/// `clients --json` lists them.
fn serial_connections(sock: &str) -> Vec<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(&["clients", sock, "--json"]))).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("pid").is_none())
        .cloned()
        .collect()
}

/// Waits until `cond` holds (bounded).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        sleep(Duration::from_millis(20));
    }
}

/// A device attached with `--attach` is a client of the bus: it requests,
/// subscribes, and receives what others publish.
#[test]
fn an_attached_device_is_a_connection_of_the_bus() {
    let (uart, device) = pty();
    let server = Server::start(&["--attach", device.to_str().unwrap()]);
    let mut firmware: BlockingClient<Uart, 256, 256, 256, 2, 4, 64> = BlockingClient::new(Uart(uart));
    let pong = firmware
        .call(b"PING", [b""; 0], |mut v| v.next().map(<[u8]>::to_vec))
        .unwrap();
    assert_eq!(pong.unwrap(), b"PONG");
    let _commands = firmware.subscribe(b"device.command").unwrap();
    let o = run(&["publish", server.sock(), "device.command", "blink"]);
    assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));
    let (topic, value) = firmware
        .next_publication(|p| (p.topic.to_vec(), p.values.clone().next().unwrap_or_default().to_vec()))
        .unwrap();
    assert_eq!((&topic[..], &value[..]), (&b"device.command"[..], &b"blink"[..]));
    // The device publishes a reading through the bus; a host subscriber gets it.
    let mut subscriber = std::process::Command::new(BIN)
        .args(["subscribe", server.sock(), "device.reading", "--count", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the host subscriber", || {
        let reached = firmware
            .call(b"PUBLISH", [&b"device.reading"[..], b"21.5"], |mut v| {
                v.next().map(<[u8]>::to_vec)
            })
            .unwrap();
        reached.as_deref() == Some(b"1")
    });
    let mut line = String::new();
    subscriber.stdout.take().unwrap().read_to_string(&mut line).unwrap();
    assert_eq!(line, "device.reading\t21.5\n");
    let _ = subscriber.wait();
    // Listed among the connections, with no peer credentials (a serial line
    // has none).
    assert_eq!(serial_connections(server.sock())[0]["subscriptions"], 1);
}

/// A device that floods the line with garbage, then vanishes, leaves the bus
/// serving everyone else, and its connection is released.
#[test]
fn a_device_that_sends_garbage_and_vanishes_leaves_the_bus_serving() {
    let (mut uart, device) = pty();
    let server = Server::start(&["--attach", device.to_str().unwrap()]);
    eventually("the device's connection", || {
        serial_connections(server.sock()).len() == 1
    });
    // 64 KiB of pseudo-random bytes (xorshift), with some oversized frame
    // headers among them.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 4096 == 0 {
                b'('
            } else {
                x as u8
            }
        })
        .collect();
    for chunk in garbage.chunks(4096) {
        uart.write_all(chunk).unwrap();
        assert_eq!(stdout(&run(&["request", server.sock(), "PING"])), "PONG\n");
    }
    drop(uart);
    eventually("the vanished device's connection released", || {
        serial_connections(server.sock()).is_empty()
    });
    assert_eq!(
        stdout(&run(&["request", server.sock(), "ECHO", "still", "here"])),
        "still\nhere\n"
    );
}

/// `serial:DEVICE` talks to a device that serves microsocket itself.
#[test]
fn client_commands_talk_to_a_device_on_a_serial_line() {
    let (uart, device) = pty();
    // The line stays open between commands (as a real device's does): the
    // device's side then never sees it hang up.
    let _line = File::open(&device).unwrap();
    let firmware = std::thread::spawn(move || {
        let mut server: BlockingServer<Uart, 256, 256, 4, 64> = BlockingServer::new(Uart(uart));
        // Serves until the host side closes (EIO on the pty once it does).
        let _ = server.run(&mut |event, outbox| match event {
            ServerEvent::Request {
                tag, command: b"PING", ..
            } => outbox.respond(tag, ["PONG"]).map(drop),
            ServerEvent::Request {
                tag,
                command: b"ECHO",
                args,
            } => outbox.respond(tag, args).map(drop),
            ServerEvent::Request { tag, .. } => outbox.fail(tag, b"no such command", [b""; 0]).map(drop),
            _ => Ok(()),
        });
    });
    let address = format!("serial:{}", device.display());
    let o = run(&["request", &address, "PING"]);
    assert_eq!(stdout(&o), "PONG\n", "{}", stderr(&o));
    let o = run(&["request", &address, "ECHO", "a", "b c"]);
    assert_eq!(stdout(&o), "a\nb c\n", "{}", stderr(&o));
    let o = run(&["request", &address, "NOPE"]);
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(1), "no such command"));
    let o = run(&["request", "serial:/dev/null", "PING"]);
    assert_eq!(o.status.code(), Some(2), "not a terminal: {}", stderr(&o));
    drop(firmware);
}

/// A device that floods the line with requests and never reads its answers
/// leaves the bus serving everyone else: its answers back up on its own
/// connection only.
#[test]
fn a_device_that_floods_requests_without_reading_leaves_the_bus_serving() {
    let (mut uart, device) = pty();
    let server = Server::start(&["--attach", device.to_str().unwrap()]);
    eventually("the device's connection", || {
        serial_connections(server.sock()).len() == 1
    });
    let mut frame = Vec::new();
    microsocket_core::frame::encode_raw(b'(', [&b"1"[..], b"ECHO", &[b'z'; 200]], &mut frame).unwrap();
    let flood: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 5_000).collect();
    // Written from a thread: the line stops taking bytes once the bus stops
    // reading the device (its answers unread).
    let writer = std::thread::spawn(move || {
        let _ = uart.write_all(&flood);
        uart
    });
    for _ in 0..20 {
        assert_eq!(stdout(&run(&["request", server.sock(), "PING"])), "PONG\n");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(&["stats", server.sock(), "--json"]))).unwrap();
    assert!(json["requests"].as_u64().unwrap() >= 20, "{json}");
    // The device goes away; the writer's end closes with it.
    drop(server);
    let _ = writer.join();
}
