//! Runs the built `microsocket` binary as a user would: a `serve` child process and
//! `request`, `subscribe`, `publish`, `bench` and `demo` against it.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

mod common;

use common::*;

#[test]
fn ping_echo_and_hex() {
    let server = Server::start(&[]);
    let o = run(&["request", server.sock(), "PING"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "PONG\n");
    let o = run(&["request", server.sock(), "ECHO", "a", "b c", ""]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "a\nb c\n\n");
    let o = run(&["request", "--hex", server.sock(), "ECHO", "ab"]);
    assert_eq!(stdout(&o), "6162\n");
}

#[test]
fn a_spinning_server_answers_as_any_other() {
    let server = Server::start(&["--spin-us", "50"]);
    for _ in 0..3 {
        let o = run(&["request", server.sock(), "ECHO", "spun"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), "spun\n");
    }
    let o = run(&["serve", "--spin-us", "soon", server.sock()]);
    assert_eq!(o.status.code(), Some(2), "a bad --spin-us is a usage error");
}

#[test]
fn a_server_on_several_threads_serves_requests_and_publications() {
    let server = Server::start(&["--threads", "2"]);
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", "--count", "1", server.sock(), "news"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    publish_until_reached(server.sock(), "news", "threaded", "1");
    let status = wait_timeout(&mut subscriber, Duration::from_secs(20)).unwrap();
    let mut got = String::new();
    subscriber.stdout.take().unwrap().read_to_string(&mut got).unwrap();
    assert!(status.success() && got.contains("threaded"), "{status}: {got:?}");
    let o = run(&["request", server.sock(), "ECHO", "a", "b"]);
    assert_eq!(stdout(&o), "a\nb\n", "{}", stderr(&o));
    let o = run(&["serve", "--threads", "0", server.sock()]);
    assert_eq!(o.status.code(), Some(2), "a server needs a thread: {}", stderr(&o));
}

#[test]
fn failures_exit_1_with_the_message_on_stderr() {
    let server = Server::start(&[]);
    let o = run(&["request", server.sock(), "FAIL", "it broke"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "it broke\n");
    assert_eq!(stdout(&o), "");
    let o = run(&["request", server.sock(), "NOSUCH", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("NOSUCH"), "{}", stderr(&o));
    let o = run(&["request", server.sock(), "SLEEP", "soon"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("SLEEP"), "{}", stderr(&o));
    let o = run(&["request", server.sock(), "PUBLISH"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn no_server_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let o = run(&["request", path.to_str().unwrap(), "PING"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).is_empty());
    let o = run(&["subscribe", path.to_str().unwrap(), "t"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sleep_does_not_hold_up_other_requests() {
    let server = Server::start(&[]);
    let mut slow = Command::new(BIN)
        .args(["request", server.sock(), "SLEEP", "1500", "late"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let o = run(&["request", server.sock(), "PING"]);
    assert_eq!(stdout(&o), "PONG\n");
    assert!(start.elapsed() < Duration::from_millis(1400), "PING waited for SLEEP");
    let status = wait_timeout(&mut slow, Duration::from_secs(20)).unwrap();
    assert!(status.success());
    let mut out = String::new();
    slow.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "late\n");
}

/// Publishes until the server reports `want` connections reached.
fn publish_until_reached(sock: &str, topic: &str, value: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(&["publish", sock, topic, value]);
        assert!(o.status.success(), "{}", stderr(&o));
        if stdout(&o).trim() == want {
            return;
        }
        assert!(Instant::now() < deadline, "subscriber never appeared");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn subscribe_prints_tab_separated_lines_and_stops_after_count() {
    let server = Server::start(&[]);
    let sub = Command::new(BIN)
        .args([
            "subscribe",
            server.sock(),
            "news",
            "--pattern",
            "sensor.*",
            "--count",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publish_until_reached(server.sock(), "news", "first", "1");
    let o = run(&["publish", server.sock(), "sensor.kitchen", "21.5", "C"]);
    assert_eq!(stdout(&o), "1\n");
    let o = run(&["publish", server.sock(), "other", "ignored"]);
    assert_eq!(stdout(&o), "0\n");
    let o = run(&["request", server.sock(), "PUBLISH", "news", "second"]);
    assert_eq!(stdout(&o), "1\n");
    let mut sub = sub;
    let status = wait_timeout(&mut sub, Duration::from_secs(20)).expect("subscriber did not stop");
    assert!(status.success());
    let mut out = String::new();
    sub.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "news\tfirst\nsensor.kitchen\t21.5\tC\nnews\tsecond\n");
}

/// One request frame: `(`, the argument count, then each argument as a u32 BE
/// length and its bytes.
fn request_frame(args: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![b'(', u8::try_from(args.len()).unwrap()];
    for a in args {
        out.extend_from_slice(&u32::try_from(a.len()).unwrap().to_be_bytes());
        out.extend_from_slice(a);
    }
    out
}

#[test]
fn subscribe_prints_a_mixed_burst_in_send_order_and_overlaps_once() {
    let server = Server::start(&[]);
    let sub = Command::new(BIN)
        .args([
            "subscribe",
            server.sock(),
            "alpha",
            "beta",
            "sensor.kitchen.temp",
            "--pattern",
            "sensor.*.temp",
            "--pattern",
            "sensor.>",
            "--count",
            "21",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Matched by all three of its subscriptions: one line, counted once.
    publish_until_reached(server.sock(), "sensor.kitchen.temp", "21.5", "1");
    // Twenty PUBLISH requests alternating two topics, pipelined in one write.
    let mut burst = Vec::new();
    for i in 0..20u8 {
        let topic: &[u8] = if i % 2 == 0 { b"alpha" } else { b"beta" };
        burst.extend(request_frame(&[&[i], b"PUBLISH", topic, i.to_string().as_bytes()]));
    }
    let mut raw = UnixStream::connect(server.sock()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::io::Write::write_all(&mut raw, &burst).unwrap();
    let mut sub = sub;
    let status = wait_timeout(&mut sub, Duration::from_secs(20)).expect("subscriber did not stop");
    assert!(status.success());
    let mut out = String::new();
    sub.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut expected = String::from("sensor.kitchen.temp\t21.5\n");
    for i in 0..20 {
        let topic = if i % 2 == 0 { "alpha" } else { "beta" };
        expected.push_str(&format!("{topic}\t{i}\n"));
    }
    assert_eq!(out, expected);
}

#[test]
fn buffered_topics_catch_up_new_subscribers() {
    let server = Server::start(&["--buffer", "log.*=2"]);
    for v in ["one", "two", "three"] {
        let o = run(&["publish", server.sock(), "log.app", v]);
        assert_eq!(stdout(&o), "0\n");
    }
    let o = run(&["subscribe", server.sock(), "log.app", "--count", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "log.app\ttwo\nlog.app\tthree\n");
}

/// A `SLEEP` request left running in a child `microsocket request`.
fn sleeping_request(sock: &str, ms: &str) -> Child {
    let child = Command::new(BIN)
        .args(["request", sock, "SLEEP", ms])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Time for the request to reach the server's handler.
    sleep(Duration::from_millis(300));
    child
}

#[test]
fn sigterm_exits_within_the_grace_period_with_a_request_in_flight() {
    let mut server = Server::start(&["--grace", "300ms"]);
    let mut request = sleeping_request(server.sock(), "10000");
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(!server.path.exists());
    let _ = request.kill();
    let _ = request.wait();
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Server::start(&["--grace", "30s"]);
    let mut request = sleeping_request(server.sock(), "10000");
    kill("-TERM", server.child.id());
    // The socket file goes at the first signal, before the grace period.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.path.exists() {
        assert!(Instant::now() < deadline, "socket file still there");
        sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    kill("-TERM", server.child.id());
    let status = wait_timeout(&mut server.child, Duration::from_secs(10)).expect("server did not exit");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let _ = request.kill();
    let _ = request.wait();
}

/// A `+` frame for `topic`.
fn subscribe_frame(topic: &[u8]) -> Vec<u8> {
    let mut frame = vec![b'+', 1];
    frame.extend_from_slice(&u32::try_from(topic.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(topic);
    frame
}

/// Writes `frames`, then a PING whose answer proves the server read them all.
fn send_then_ping(raw: &mut UnixStream, frames: &[u8]) {
    std::io::Write::write_all(raw, frames).unwrap();
    let mut ping = vec![b'(', 2, 0, 0, 0, 1, 9, 0, 0, 0, 4];
    ping.extend_from_slice(b"PING");
    std::io::Write::write_all(raw, &ping).unwrap();
    let mut answer = [0u8; 7];
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::io::Read::read_exact(raw, &mut answer).unwrap();
}

/// Stops the server (it must exit cleanly) and returns what it logged.
fn terminate_and_read_log(server: &mut Server) -> String {
    assert!(server.terminate().success());
    let mut log = String::new();
    server.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    log
}

#[test]
fn long_topics_do_not_flood_the_log() {
    let mut server = Server::start(&["-v"]);
    let mut raw = UnixStream::connect(server.sock()).unwrap();
    let frame = subscribe_frame(&vec![b'x'; 1 << 20]);
    send_then_ping(&mut raw, &frame.repeat(16));
    let log = terminate_and_read_log(&mut server);
    assert!(log.contains("subscription refused"), "{log}");
    assert!(log.len() < 64 << 10, "16 MiB of topics made {} bytes of log", log.len());
}

#[test]
fn repeated_refusals_do_not_flood_the_log() {
    let mut server = Server::start(&["-v"]);
    let mut raw = UnixStream::connect(server.sock()).unwrap();
    // 64 subscriptions fill the connection's table; the other 1,936 are refused.
    let frames: Vec<u8> = (0..2000)
        .flat_map(|i| subscribe_frame(format!("t{i}").as_bytes()))
        .collect();
    let started = Instant::now();
    send_then_ping(&mut raw, &frames);
    let seconds = started.elapsed().as_secs() + 1;
    let log = terminate_and_read_log(&mut server);
    let refusals = log.lines().filter(|l| l.contains("subscription refused")).count() as u64;
    assert!(refusals > 0, "{log}");
    assert!(
        refusals <= 10 * (seconds + 1),
        "{refusals} lines for 1,936 refusals in {seconds} s:\n{log}"
    );
}

#[test]
fn sleep_is_capped() {
    let server = Server::start(&[]);
    let o = run(&["request", server.sock(), "SLEEP", "18446744073709551615"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at most 60000 milliseconds"), "{}", stderr(&o));
}

#[test]
fn sigterm_exits_0_and_removes_the_socket_file() {
    let mut server = Server::start(&[]);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!server.path.exists());
}

#[test]
fn subscriber_exits_nonzero_when_the_server_goes_away() {
    let mut server = Server::start(&[]);
    let mut sub = Command::new(BIN)
        .args(["subscribe", server.sock(), "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publish_until_reached(server.sock(), "news", "x", "1");
    server.terminate();
    let status = wait_timeout(&mut sub, Duration::from_secs(20)).expect("subscriber hung");
    assert!(!status.success());
}

#[test]
fn stale_socket_file_is_replaced_and_live_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = Server::start_at(&path, &[]);
    let o = run(&["request", server.sock(), "PING"]);
    assert_eq!(stdout(&o), "PONG\n");
    // A second server on the live path refuses and leaves it alone.
    let o = run(&["serve", server.sock()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!stderr(&o).is_empty());
    let o = run(&["request", server.sock(), "PING"]);
    assert_eq!(stdout(&o), "PONG\n");
}

#[test]
fn tcp_addresses_work() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::start(&["--tcp", &addr]);
    let url = format!("tcp://{addr}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(&["request", &url, "PING"]);
        if o.status.success() {
            assert_eq!(stdout(&o), "PONG\n");
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&o));
        sleep(Duration::from_millis(20));
    }
    drop(server);
}

#[test]
fn bench_json_reports_sane_figures() {
    let server = Server::start(&[]);
    let o = run(&[
        "bench",
        server.sock(),
        "--connections",
        "2",
        "--in-flight",
        "4",
        "--duration",
        "0.5",
        "--subscribers",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["requests"];
    assert!(r["requests"].as_u64().unwrap() > 0);
    assert!(r["requests_per_second"].as_f64().unwrap() > 0.0);
    let l = &r["latency_us"];
    let (p50, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{l}");
    let f = &v["fan_out"];
    // Every publication is delivered to each subscriber or counted as dropped.
    let deliveries = f["deliveries"].as_u64().unwrap();
    assert!(deliveries > 0);
    assert_eq!(
        deliveries + f["dropped"].as_u64().unwrap(),
        f["publications"].as_u64().unwrap() * 3
    );
    assert!(f["deliveries_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn demo_runs_to_completion() {
    let o = run(&["demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in ["PONG", "failed", "catch-up", "requests/s"] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
}

/// CPU time a process has used (user + system), from `/proc/PID/stat`, in
/// clock ticks of 10 ms (`USER_HZ` is 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are the 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `microsocket serve` with 1,000 idle connections and 100 idle subscribers
/// uses under 1% of a core: nothing polls, nothing wakes on a timer.
#[test]
fn an_idle_bus_costs_almost_no_cpu() {
    let server = Server::start(&["--max-connections-per-user", "2000"]);
    let mut conns = Vec::new();
    for i in 0..1_100 {
        let mut raw = UnixStream::connect(server.sock()).unwrap();
        // Each connection has been busy once: a PING, and for the first 100
        // a subscription.
        let frames = if i < 100 {
            subscribe_frame(b"idle.news")
        } else {
            Vec::new()
        };
        send_then_ping(&mut raw, &frames);
        conns.push(raw);
    }
    // Any polling after that activity ends within microseconds.
    sleep(Duration::from_millis(500));
    let pid = server.child.id();
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(10);
    sleep(window);
    let spent = Duration::from_millis(10 * (cpu_ticks(pid) - before));
    eprintln!("idle for {window:?} with {} connections: {spent:?} of CPU", conns.len());
    assert!(spent < window / 100, "an idle bus used {spent:?} of CPU in {window:?}");
}
