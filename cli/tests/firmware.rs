//! The example firmware (`firmware/`, microsocket-core on a Cortex-M3) booted
//! in QEMU's `lm3s6965evb`, its UART connected to the host: as a server
//! connection it answers host clients and publishes readings; as a client
//! it joins a `microsocket serve` bus and acknowledges the commands
//! published there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

/// Builds the firmware (`client`: the client build) and returns its image.
fn firmware(client: bool) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware");
    let target_dir = root.join("target").join(if client { "client" } else { "server" });
    let mut cargo = Command::new(env!("CARGO"));
    // From its directory, so that its `.cargo/config.toml` (target, linker
    // script) applies.
    cargo
        .current_dir(&root)
        .args(["build", "--release", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    if client {
        cargo.args(["--features", "client"]);
    }
    let status = cargo.status().expect("cargo");
    assert!(status.success(), "the firmware did not build");
    target_dir.join("thumbv7m-none-eabi/release/microsocket-firmware")
}

/// QEMU running `image` with UART0 on the UNIX socket `serial` (QEMU's
/// `-serial unix:` syntax), killed on drop.
struct Qemu(Child);

impl Qemu {
    fn boot(image: &Path, serial: &str) -> Self {
        let child = Command::new("qemu-system-arm")
            .args([
                "-cpu",
                "cortex-m3",
                "-machine",
                "lm3s6965evb",
                "-display",
                "none",
                "-monitor",
                "none",
            ])
            .args([
                "-semihosting-config",
                "enable=on,target=native",
                "-serial",
                serial,
                "-kernel",
            ])
            .arg(image)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-arm");
        Self(child)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `args` until it succeeds (the firmware or QEMU may still be
/// starting), within 30 s.
fn until_it_works(args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = run(args);
        if o.status.success() {
            return stdout(&o);
        }
        assert!(Instant::now() < deadline, "{args:?}: {}", stderr(&o));
        sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7m-none-eabi target; .ci/run installs both and runs this"]
fn the_firmware_serves_requests_and_publishes_readings_from_qemu() {
    let image = firmware(false);
    let dir = tempfile::tempdir().unwrap();
    let uart = dir.path().join("uart.sock");
    let uart_str = uart.to_str().unwrap();
    let _qemu = Qemu::boot(&image, &format!("unix:{uart_str},server=on,wait=off"));
    assert_eq!(
        until_it_works(&["request", uart_str, "PING", "--timeout", "5"]),
        "PONG\n"
    );
    assert_eq!(until_it_works(&["request", uart_str, "ECHO", "a", "b c"]), "a\nb c\n");
    let reading = until_it_works(&["request", uart_str, "READ"]);
    let value: f64 = reading
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a reading: {reading:?}"));
    assert!((20.0..25.0).contains(&value), "{value}");
    let o = run(&["request", uart_str, "NOPE"]);
    assert_eq!((o.status.code(), stderr(&o).trim()), (Some(1), "no such command"));
    // At least five readings, one every 300 ms.
    let readings = until_it_works(&["subscribe", uart_str, "sensor.temperature", "--count", "5"]);
    let lines: Vec<&str> = readings.lines().collect();
    assert_eq!(lines.len(), 5, "{readings}");
    for line in lines {
        let (topic, value) = line.split_once('\t').unwrap();
        assert_eq!(topic, "sensor.temperature");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7m-none-eabi target; .ci/run installs both and runs this"]
fn the_client_firmware_acknowledges_commands_published_on_the_bus() {
    let image = firmware(true);
    let server = Server::start(&[]);
    let _qemu = Qemu::boot(&image, &format!("unix:{}", server.sock()));
    // The device is connected and subscribed once the bus lists its subscription.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topics = stdout(&run(&["topics", server.sock()]));
        if topics.contains("device.command") {
            break;
        }
        assert!(Instant::now() < deadline, "the device did not subscribe: {topics}");
        sleep(Duration::from_millis(100));
    }
    let clients = stdout(&run(&["clients", server.sock()]));
    assert!(clients.contains("qemu-system-arm"), "{clients}");
    let mut acks = Command::new(BIN)
        .args(["subscribe", server.sock(), "device.ack", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Published until the acknowledgement's subscriber is in place and the
    // device has answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no acknowledgement");
        assert_eq!(
            stdout(&run(&["publish", server.sock(), "device.command", "blink"])),
            "1\n"
        );
        sleep(Duration::from_millis(200));
    }
    let o = acks.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "device.ack\tblink\n");
}
