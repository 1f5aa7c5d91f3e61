//! What the CLI tests share: the built binary, a `serve` child process, and
//! running a command to completion.
#![allow(dead_code)] // each test file uses its own part

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_microsocket");

/// A `microsocket serve` child, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub(crate) fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.sock");
        let mut s = Self::start_at(&path, extra);
        s._dir = Some(dir);
        s
    }

    pub(crate) fn start_at(path: &Path, extra: &[&str]) -> Self {
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

    pub(crate) fn sock(&self) -> &str {
        self.path.to_str().unwrap()
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
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

pub(crate) fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
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
pub(crate) fn run(args: &[&str]) -> Output {
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

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends `signal` (`-TERM`) to a process.
pub(crate) fn kill(signal: &str, pid: u32) {
    assert!(Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Fetches `path` from an HTTP server on loopback: the status line and body.
pub(crate) fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write as _};
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "no metrics listener: {e}"),
        }
        sleep(Duration::from_millis(20));
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}
