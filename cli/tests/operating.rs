//! The operator's side of `microsocket serve`, through the real binary: the
//! configuration file, systemd, the server commands and what prints them.

mod common;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

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
        ("socket = \"/tmp/x.sock\"\nthreads = 0\n", 2, "threads"),
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
    // Every field, and the exact values of those the test knows.
    let uid = stdout(&Command::new("id").arg("-u").output().unwrap())
        .trim()
        .parse::<u64>()
        .unwrap();
    let mut known = listed.clone();
    for varying in ["id", "gid", "memory"] {
        assert!(known[varying].is_u64(), "{listed}");
        known.as_object_mut().unwrap().remove(varying);
    }
    assert_eq!(
        known,
        serde_json::json!({
            "pid": pid, "uid": uid, "process": "microsocket", "subscriptions": 1,
            "in_flight": 0, "queued": 0, "dropped": 0
        })
    );
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
    assert_eq!(
        json,
        serde_json::json!([
            {"kind": "topic", "selector": "news", "connections": 1},
            {"kind": "pattern", "selector": "sensor.>", "connections": 1},
        ])
    );
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}

/// Completion scripts and manual pages come from the same definitions as the
/// command line itself, so every command and flag is in them.
#[test]
fn completions_and_manual_pages_cover_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        for word in ["serve", "stats", "clients", "topics", "max-memory"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let page = stdout(&run(&["man"]));
    assert!(page.starts_with(".ie") && page.contains(".TH microsocket 1"), "{page}");
    assert!(page.contains("microsocket\\-serve(1)"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let serve = std::fs::read_to_string(dir.path().join("microsocket-serve.1")).unwrap();
    assert!(serve.contains("max\\-memory"), "{serve}");
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Starts `microsocket monitor SOCK EXTRA...`, returning once it says it is
/// monitoring.
fn start_monitor(
    sock: &str,
    extra: &[&str],
    stdout: Stdio,
) -> (std::process::Child, std::io::BufReader<std::process::ChildStderr>) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("monitor")
        .arg(sock)
        .args(extra)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("microsocket: monitoring"), "{line}");
    (child, stderr)
}

/// `microsocket monitor` prints each request, answer and publication in the
/// order they pass, with the connection they came from; `--json` names the
/// fields; a pattern shows only what matches.
#[test]
fn monitor_shows_requests_answers_and_publications_in_order() {
    let server = Server::start(&[]);
    let (all, _) = start_monitor(server.sock(), &["--count", "5"], Stdio::piped());
    let (json, _) = start_monitor(server.sock(), &["--json", "--count", "3"], Stdio::piped());
    let (news, _) = start_monitor(server.sock(), &["news.*", "--count", "1"], Stdio::piped());
    assert!(run(&["request", server.sock(), "ECHO", "a", "b c"]).status.success());
    assert!(run(&["publish", server.sock(), "news.local", "hi"]).status.success());
    let lines = |child: std::process::Child| {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        stdout(&o)
    };
    let text = lines(all);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    // kind, connection, tag, then the rest; tags are the clients' own.
    let without_tags: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| {
            if r[0] == "publication" {
                r.clone()
            } else {
                [&r[..2], &r[3..]].concat()
            }
        })
        .collect();
    let (first, second) = (rows[0][1], rows[2][1]);
    assert_ne!(first, second, "each request came on its own connection");
    assert_eq!(
        without_tags,
        [
            vec!["request", first, "ECHO", "a", "b c"],
            vec!["answer", first, "a", "b c"],
            vec!["request", second, "PUBLISH", "news.local", "hi"],
            vec!["publication", "0", "news.local", "hi"],
            vec!["answer", second, "0"],
        ],
        "{text}"
    );
    let objects: Vec<serde_json::Value> = lines(json).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects[0]["kind"], "request");
    assert_eq!(objects[0]["command"], "ECHO");
    assert_eq!(objects[0]["args"], serde_json::json!(["a", "b c"]));
    assert_eq!(objects[1]["values"], serde_json::json!(["a", "b c"]));
    assert_eq!(objects[1]["tag"], objects[0]["tag"]);
    assert_eq!(objects[2]["seq"], 2);
    assert_eq!(lines(news), "publication\t0\tnews.local\thi\n");
}

/// A monitor that stops reading (here: stopped by SIGSTOP) does not slow the
/// bus: a benchmark runs meanwhile, events are dropped for the monitor and
/// counted on its connection, and once it goes on it says how many it missed.
#[test]
fn a_stopped_monitor_does_not_stall_a_busy_bus() {
    let server = Server::start(&[]);
    let (mut monitor, said_by_monitor) = start_monitor(server.sock(), &[], Stdio::null());
    let pid = monitor.id();
    kill("-STOP", pid);
    let o = run(&["bench", server.sock(), "-d", "1", "-n", "0", "-p", "1024", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rate = report["requests"]["requests_per_second"].as_f64().unwrap_or_default();
    assert!(rate > 1000.0, "{report}");
    let clients: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["clients", server.sock(), "--json"]))).unwrap();
    let listed = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pid"] == pid)
        .cloned()
        .unwrap();
    assert!(listed["dropped"].as_u64().unwrap() > 1000, "{listed}");
    kill("-CONT", pid);
    // It reads on, sees the gap and says so.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in said_by_monitor.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The gap shows when the next event after it arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let said = loop {
        assert!(run(&["request", server.sock(), "PING"]).status.success());
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "no gap reported");
    };
    assert!(
        said.starts_with("microsocket: missed ") && said.ends_with("this monitor fell behind"),
        "{said}"
    );
    let _ = monitor.kill();
    let _ = monitor.wait();
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `--metrics` serves the server's counters and gauges and the handler's
/// latency per command in the Prometheus text format, which a Prometheus
/// parser reads back.
#[test]
fn metrics_are_served_for_prometheus() {
    let port = free_port();
    let server = Server::start(&["--metrics", &port.to_string()]);
    for _ in 0..3 {
        assert!(run(&["request", server.sock(), "PING"]).status.success());
    }
    assert_eq!(run(&["request", server.sock(), "NOPE"]).status.code(), Some(1));
    assert!(run(&["publish", server.sock(), "news", "hi"]).status.success());
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {body}"))
    };
    assert_eq!(value("microsocket_requests_total", &[]), 5.0);
    assert_eq!(value("microsocket_publications_total", &[]), 1.0);
    assert_eq!(value("microsocket_memory_limit", &[]), f64::from(256u32 << 20));
    assert_eq!(value("microsocket_connections", &[]), 0.0);
    let histogram = |command: &str, outcome: &str| {
        scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets)
                    if s.metric == "microsocket_request_duration_seconds"
                        && s.labels.get("command") == Some(command)
                        && s.labels.get("outcome") == Some(outcome) =>
                {
                    Some(buckets.last().unwrap().count)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no histogram for {command} {outcome} in {body}"))
    };
    assert_eq!(histogram("PING", "ok"), 3.0);
    assert_eq!(histogram("Other", "failed"), 1.0);
    assert_eq!(histogram("PUBLISH", "ok"), 1.0);
    let (status, _) = http_get(port, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

/// SIGHUP reads the configuration file again: limits, buffered topics and
/// the log level change at once, what needs a restart is named, and a bad
/// file changes nothing.
#[test]
fn sighup_reloads_what_can_change_and_names_what_cannot() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bus.sock");
    let s = sock.to_str().unwrap().to_owned();
    let conf = dir.path().join("bus.toml");
    let settings = |rest: &str| format!("socket = \"{s}\"\n{rest}");
    std::fs::write(&conf, settings("max-memory = \"64MiB\"\nbuffer = [\"log.>=5\"]\n")).unwrap();
    let mut server = Command::new(BIN)
        .args(["serve", "--config", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, said) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        sleep(Duration::from_millis(20));
    }
    let memory_limit = || {
        let json: serde_json::Value = serde_json::from_str(&stdout(&run(&["stats", &s, "--json"]))).unwrap();
        json["memory_limit"].as_u64().unwrap()
    };
    assert_eq!(memory_limit(), 64 << 20);
    // The next line of the server's own (not the log's) about a reload.
    let reloaded = |said: &std::sync::mpsc::Receiver<String>| loop {
        let line = said
            .recv_timeout(Duration::from_secs(20))
            .expect("the server said nothing of the reload");
        if line.starts_with("microsocket: ") {
            break line;
        }
    };
    std::fs::write(
        &conf,
        settings("max-memory = \"32MiB\"\nbuffer = [\"news=2\"]\nlog-level = \"debug\"\nmode = \"660\"\n"),
    )
    .unwrap();
    kill("-HUP", server.id());
    assert_eq!(
        reloaded(&said),
        format!(
            "microsocket: reloaded {}: changed memory limits, buffered topics, log level; not changed until a restart: mode",
            conf.display()
        )
    );
    assert_eq!(memory_limit(), 32 << 20);
    for v in ["one", "two", "three"] {
        assert!(run(&["publish", &s, "news", v]).status.success());
        assert!(run(&["publish", &s, "log.app", v]).status.success());
    }
    let sub = run(&["subscribe", &s, "news", "--count", "2"]);
    assert_eq!(stdout(&sub), "news\ttwo\nnews\tthree\n", "the new rule keeps 2");
    // The old rule (log.>) is gone: nothing is kept for it.
    let topics: serde_json::Value = serde_json::from_str(&stdout(&run(&["stats", &s, "--json"]))).unwrap();
    assert_eq!(topics["buffered_topics"], 1, "{topics}");
    // Debug logging is on now: the log tells of connections.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(run(&["request", &s, "PING"]).status.success());
        if said
            .recv_timeout(Duration::from_millis(200))
            .is_ok_and(|l| l.contains("connection opened"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no debug log after the reload");
    }
    std::fs::write(&conf, settings("max-memory = \"lots\"\n")).unwrap();
    kill("-HUP", server.id());
    let failed = loop {
        let line = reloaded(&said);
        if line.contains("reload") {
            break line;
        }
    };
    assert!(
        failed.starts_with("microsocket: reload failed, nothing changed: ") && failed.contains("line 2, max-memory"),
        "{failed}"
    );
    assert_eq!(memory_limit(), 32 << 20);
    let _ = server.kill();
    let _ = server.wait();
}

/// `microsocket top` renders its live view in a terminal (tmux here): the
/// server's rates, requests per command, publications per topic, and the
/// connections; it quits on `q`.
#[test]
#[ignore = "needs tmux (Debian package tmux); .ci/run installs it and runs this"]
fn top_renders_under_tmux_and_quits_on_q() {
    let server = Server::start(&[]);
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", server.sock(), "news"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A tmux server of this test's own.
    let socket = format!("microsocket-top-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("tmux")
    };
    let top = format!("{BIN} top {}", server.sock());
    assert!(tmux(&["new-session", "-d", "-s", "top", "-x", "120", "-y", "30", &top])
        .status
        .success());
    let screen = || stdout(&tmux(&["capture-pane", "-p", "-t", "top"]));
    let wait_for = |what: &dyn Fn(&str) -> bool, act: &dyn Fn()| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            act();
            let shown = screen();
            if what(&shown) {
                return shown;
            }
            assert!(Instant::now() < deadline, "not shown:\n{shown}");
            sleep(Duration::from_millis(300));
        }
    };
    wait_for(&|s| s.contains(&format!("microsocket top: {}", server.sock())), &|| {});
    let shown = wait_for(
        &|s| {
            let row = |name: &str| {
                s.lines()
                    .any(|l| l.split(|c: char| c.is_whitespace() || c == '│').any(|w| w == name))
            };
            row("PING") && row("news") && s.contains("requests") && s.contains("publications")
        },
        &|| {
            assert!(run(&["request", server.sock(), "PING"]).status.success());
            assert!(run(&["publish", server.sock(), "news", "hi"]).status.success());
        },
    );
    let pid = subscriber.id().to_string();
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == pid) && l.contains("microsocket")),
        "the subscriber's connection is listed:\n{shown}"
    );
    assert!(
        shown.contains("COMMAND") && shown.contains("TOPIC") && shown.contains("DROPPED"),
        "{shown}"
    );
    assert!(tmux(&["send-keys", "-t", "top", "q"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&["has-session", "-t", "top"]).status.success() {
        assert!(Instant::now() < deadline, "top did not quit on q");
        sleep(Duration::from_millis(50));
    }
    let _ = tmux(&["kill-server"]);
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}
