//! `serve --nats` and `microsocket bridge` against a real `nats-server`
//! (Debian's `nats-server` package; `.ci/run` installs it and runs these
//! with `--ignored`): the README's two-host walkthrough, across processes.

mod common;
#[path = "../../nats/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, stderr, stdout, wait_timeout, Server, BIN};
use support::Nats;

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `microsocket ARGS` until it answers as `expect` says, for up to 10 s
/// (NATS interest takes a moment to spread).
fn until(args: &[&str], expect: impl Fn(&std::process::Output) -> bool) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(args);
        if expect(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs nats-server (Debian package nats-server)"]
fn two_hosts_share_a_publication_and_a_request_through_one_nats_server() {
    let nats = Nats::start();
    let url = nats.url();
    let metrics = support::free_port().to_string();
    let alpha = Server::start(&[
        "--nats",
        &url,
        "--nats-prefix",
        "alpha",
        "--nats-export",
        "sensor.>",
        "--metrics",
        &metrics,
    ]);
    let beta = Server::start(&[
        "--nats",
        &url,
        "--nats-prefix",
        "beta",
        "--nats-import",
        "alpha:sensor.>",
    ]);

    // A request from alpha's bus answered by beta's.
    let out = until(&["request", alpha.sock(), "@beta.ECHO", "across"], |o| {
        o.status.success()
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "across\n");

    // A publication on alpha's bus reaches a subscriber on beta's.
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", beta.sock(), "sensor.kitchen", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        run(&["publish", alpha.sock(), "sensor.kitchen", "21.5"]);
        if let Some(status) = wait_timeout(&mut subscriber, Duration::from_millis(200)) {
            break status;
        }
        assert!(Instant::now() < deadline, "the publication did not cross");
    };
    assert!(status.success());
    let mut line = String::new();
    std::io::Read::read_to_string(subscriber.stdout.as_mut().unwrap(), &mut line).unwrap();
    assert_eq!(line, "sensor.kitchen\t21.5\n");

    // Server commands do not cross; a host nobody serves fails at once.
    let out = run(&["request", alpha.sock(), "@beta.$STATS"]);
    assert!(
        stderr(&out).contains("not permitted across the bridge"),
        "{}",
        stderr(&out)
    );
    let out = run(&["request", alpha.sock(), "@gamma.PING"]);
    assert!(stderr(&out).contains("no responders"), "{}", stderr(&out));

    // The bridge's counters are among the metrics.
    let (_, body) = common::http_get(metrics.parse().unwrap(), "/metrics");
    assert!(body.contains("microsocket_nats_connected 1"), "{body}");
    let exported = body
        .lines()
        .find_map(|l| l.strip_prefix("microsocket_nats_exported_total "))
        .expect("microsocket_nats_exported_total");
    assert!(exported.parse::<u64>().unwrap() >= 1, "{body}");
}

#[test]
#[ignore = "needs nats-server (Debian package nats-server)"]
fn a_bridge_in_its_own_process_can_die_without_the_bus_noticing() {
    let nats = Nats::start();
    let url = nats.url();
    let bus = Server::start(&[]);
    let remote = Server::start(&[
        "--nats",
        &url,
        "--nats-prefix",
        "remote",
        "--nats-import",
        "local:news.>",
    ]);
    let mut bridge = KillOnDrop(
        Command::new(BIN)
            .args([
                "bridge",
                bus.sock(),
                "--nats",
                &url,
                "--nats-prefix",
                "local",
                "--nats-export",
                "news.>",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // NATS requests reach the bus through the bridge process...
    let out = until(&["request", remote.sock(), "@local.PING"], |o| o.status.success());
    assert_eq!(stdout(&out), "PONG\n", "{}", stderr(&out));
    // ... and its publications reach the other bus.
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", remote.sock(), "news.today", "--count", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        run(&["publish", bus.sock(), "news.today", "extra"]);
        if wait_timeout(&mut subscriber, Duration::from_millis(200)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the publication did not cross");
    }

    bridge.0.kill().unwrap();
    bridge.0.wait().unwrap();
    // The bus is unaffected: it answers, publishes, and lost one client.
    let out = run(&["request", bus.sock(), "PING"]);
    assert_eq!(stdout(&out), "PONG\n");
    let out = run(&["publish", bus.sock(), "news.today", "later"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // And the other side says the bus is gone.
    let out = until(&["request", remote.sock(), "@local.PING"], |o| !o.status.success());
    assert!(stderr(&out).contains("no responders"), "{}", stderr(&out));
}

#[test]
fn bad_bridge_settings_are_refused_before_serving() {
    let out = run(&[
        "serve",
        "/nonexistent/x.sock",
        "--nats",
        "nats://127.0.0.1:1",
        "--nats-export",
        "a.>.b",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a.>.b"), "{}", stderr(&out));
    let out = run(&[
        "serve",
        "/nonexistent/x.sock",
        "--nats",
        "nats://127.0.0.1:1",
        "--nats-import",
        "x y",
    ]);
    assert!(stderr(&out).contains("x y"), "{}", stderr(&out));
}

#[test]
fn the_bridge_is_configured_from_the_config_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bus.toml");
    std::fs::write(
        &file,
        "socket = \"/tmp/x.sock\"\nnats = \"nats://127.0.0.1:4222\"\nnats-prefix = \"kitchen\"\nnats-export = [\"sensor.>\"]\nnats-import = [\"attic:sensor.>\"]\nnats-timeout = \"2s\"\nnats-max-held = \"1MiB\"\n",
    )
    .unwrap();
    let out = run(&["serve", "--check-config", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(
        &file,
        "socket = \"/tmp/x.sock\"\nnats = \"nats://127.0.0.1:4222\"\nnats-timeout = \"soon\"\n",
    )
    .unwrap();
    let out = run(&["serve", "--check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 3, nats-timeout"), "{}", stderr(&out));
    std::fs::write(
        &file,
        "socket = \"/tmp/x.sock\"\nnats = \"nats://127.0.0.1:4222\"\nnats-export = [\"a.>.b\"]\n",
    )
    .unwrap();
    let out = run(&["serve", "--check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("a.>.b"), "{}", stderr(&out));
}
