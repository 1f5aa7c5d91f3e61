//! Runs the built `microsocket` binary as a user would: a `serve` child process and
//! `request`, `subscribe`, `publish`, `bench` and `demo` against it.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_microsocket");

/// A `microsocket serve` child, killed on drop.
struct Server {
    child: Child,
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.sock");
        let mut s = Self::start_at(&path, extra);
        s._dir = Some(dir);
        s
    }

    fn start_at(path: &Path, extra: &[&str]) -> Self {
        let child = Command::new(BIN)
            .arg("serve")
            .arg(path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            path: path.to_path_buf(),
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(path).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            sleep(Duration::from_millis(20));
        }
        server
    }

    fn sock(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("server did not exit after SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        sleep(Duration::from_millis(10));
    }
}

/// Runs the binary to completion (bounded by `--timeout`s and a 60 s guard).
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        panic!("microsocket {args:?} did not finish");
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

/// Sends `signal` to a process.
fn kill(signal: &str, pid: u32) {
    assert!(Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success());
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

/// Writes `text` to a configuration file in a new directory.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_config_file_sets_what_the_flags_set_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("from-file.sock");
    let (_conf_dir, conf) = config_file(&format!(
        "socket = \"{}\"\nbuffer = [\"news=2\"]\nmax-memory = \"64MiB\"\nmode = \"600\"\ngrace = \"1s\"\n",
        sock.display()
    ));
    let check = run(&["serve", "--check-config", conf.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("valid"), "{}", stdout(&check));
    // The socket comes from the file; `--buffer` on the command line replaces
    // the file's rules.
    let mut server = Command::new(BIN)
        .args(["serve", "--config", conf.to_str().unwrap(), "--buffer", "news=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "server did not start on the file's socket");
        sleep(Duration::from_millis(20));
    }
    let s = sock.to_str().unwrap();
    for v in ["one", "two", "three"] {
        assert!(run(&["publish", s, "news", v]).status.success());
    }
    let sub = run(&["subscribe", s, "news", "--count", "1"]);
    assert_eq!(
        stdout(&sub),
        "news\tthree\n",
        "the flag's depth (1) won over the file's (2)"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn the_example_config_file_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/microsocket.toml");
    let o = run(&["serve", "--check-config", example]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_bad_config_file_is_refused_with_its_line_and_key() {
    for (text, line, words) in [
        ("socket = \"/tmp/x.sock\"\nmax-memroy = \"1MiB\"\n", 2, "max-memroy"),
        ("socket = \"/tmp/x.sock\"\n\nmax-memory = \"lots\"\n", 3, "max-memory"),
        ("socket = \"/tmp/x.sock\"\nmode = \"999\"\n", 2, "mode"),
        ("socket = \"/tmp/x.sock\"\nbuffer = [\"news\"]\n", 2, "buffer"),
        ("socket = \"/tmp/x.sock\"\nspin-us = \"fast\"\n", 2, "spin-us"),
    ] {
        let (_dir, conf) = config_file(text);
        let o = run(&["serve", "--check-config", conf.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{text:?}: {err}");
        assert!(err.contains(conf.to_str().unwrap()), "{text:?}: names the file: {err}");
        assert!(
            err.contains(&format!("line {line}")),
            "{text:?}: names line {line}: {err}"
        );
        assert!(err.contains(words), "{text:?}: names {words}: {err}");
    }
}

/// Datagrams systemd's notify protocol would get, received on `socket` until
/// one contains `want` (or 20 s pass).
fn notifications_until(socket: &std::os::unix::net::UnixDatagram, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if got.last().is_some_and(|m| m.lines().any(|l| l == want)) {
                return got;
            }
        }
    }
    panic!("no {want} among {got:?}");
}

/// Under systemd (`Type=notify`): `READY=1` with a status line once the bus
/// serves, `WATCHDOG=1` when a watchdog is set, `STOPPING=1` on SIGTERM.
#[test]
fn serve_tells_systemd_it_is_ready_alive_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let sock = dir.path().join("bus.sock");
    let mut server = Command::new(BIN)
        .arg("serve")
        .arg(&sock)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = notifications_until(&socket, "READY=1");
    assert!(
        ready.last().unwrap().contains("STATUS=serving; 0 connections"),
        "{ready:?}"
    );
    // Serving by then: the socket answers at once.
    assert_eq!(stdout(&run(&["request", sock.to_str().unwrap(), "PING"])), "PONG\n");
    notifications_until(&socket, "WATCHDOG=1");
    kill("-TERM", server.id());
    notifications_until(&socket, "STOPPING=1");
    assert!(wait_timeout(&mut server, Duration::from_secs(20)).is_some_and(|s| s.success()));
}

/// Socket activation: systemd (here `systemd-socket-activate`) binds the
/// socket and hands it over; the bus serves on it and leaves the file, which
/// is systemd's, in place when it exits.
#[test]
#[ignore = "needs systemd-socket-activate (Debian package systemd); .ci/run installs it and runs this"]
fn serve_takes_its_socket_from_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("activated.sock");
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .args([BIN, "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "systemd-socket-activate did not listen");
        sleep(Duration::from_millis(20));
    }
    // The first connection starts the bus, which then serves it.
    let o = run(&["request", sock.to_str().unwrap(), "PING"]);
    assert_eq!(stdout(&o), "PONG\n", "{}", stderr(&o));
    assert_eq!(
        stdout(&run(&["request", sock.to_str().unwrap(), "ECHO", "again"])),
        "again\n"
    );
    kill("-TERM", activator.id());
    let status = wait_timeout(&mut activator, Duration::from_secs(20)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(sock.exists(), "the socket file is systemd's and stays");
}

/// `microsocket stats` prints the server's counters (its `$STATS`), as a
/// table or JSON; `$` commands the server lacks fail.
#[test]
fn stats_prints_the_servers_counters() {
    let server = Server::start(&[]);
    assert!(run(&["request", server.sock(), "PING"]).status.success());
    let table = stdout(&run(&["stats", server.sock()]));
    assert!(
        table.lines().any(|l| l.split_whitespace().eq(["requests", "1"])),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(&["stats", server.sock(), "--json"]))).unwrap();
    assert_eq!(json["requests"], 1, "{json}");
    assert_eq!(json["memory_limit"], 256 << 20, "{json}");
    let o = run(&["request", server.sock(), "$NOPE"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), "no such server command");
}

/// `microsocket clients` lists the server's connections (its
/// `$CONNECTIONS`), with each peer's process name.
#[test]
fn clients_lists_the_connections_and_their_processes() {
    let server = Server::start(&[]);
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", server.sock(), "news"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = subscriber.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&run(&["clients", server.sock(), "--json"]))).unwrap();
        let found = json
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pid"] == pid && c["subscriptions"] == 1)
            .cloned();
        if let Some(c) = found {
            break c;
        }
        assert!(Instant::now() < deadline, "the subscriber is not listed: {json}");
        sleep(Duration::from_millis(20));
    };
    assert_eq!(listed["process"], "microsocket", "{listed}");
    let table = stdout(&run(&["clients", server.sock()]));
    assert!(table.starts_with("ID  PID"), "{table}");
    let pid = pid.to_string();
    assert!(
        table.lines().any(|l| l.split_whitespace().nth(1) == Some(pid.as_str())),
        "{table}"
    );
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}

/// `microsocket topics` lists the subscription table (its `$TOPICS`).
#[test]
fn topics_lists_the_subscription_table() {
    let server = Server::start(&[]);
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", server.sock(), "news", "--pattern", "sensor.>"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = stdout(&run(&["topics", server.sock()]));
        if table.contains("sensor.>") {
            assert!(
                table.lines().any(|l| l.split_whitespace().eq(["topic", "news", "1"])),
                "{table}"
            );
            assert!(
                table
                    .lines()
                    .any(|l| l.split_whitespace().eq(["pattern", "sensor.>", "1"])),
                "{table}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not listed: {table}");
        sleep(Duration::from_millis(20));
    }
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(&["topics", server.sock(), "--json"]))).unwrap();
    assert_eq!(json[0]["selector"], "news", "{json}");
    assert_eq!(json[1]["connections"], 1, "{json}");
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}
