//! Server resident memory per idle connection: the server runs in a child process
//! (this binary, `serve-idle`), the connections are opened from this one.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::wire::put_frame;

/// Resident set size of process `pid`, in bytes.
fn rss(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: f64 = line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?;
    Ok(kib * 1024.0)
}

/// Raises this process's open-file limit to its hard limit.
fn raise_fd_limit() -> Result<()> {
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    rlimit::Resource::NOFILE.set(hard, hard)?;
    Ok(())
}

fn ping(stream: &mut UnixStream) -> Result<()> {
    let mut out = Vec::new();
    put_frame(&mut out, b'(', &[b"\x01", b"PING"]);
    stream.write_all(&out)?;
    // `)` argc=2, tag, "PONG": 2 + 5 + 8 bytes.
    let mut answer = [0u8; 15];
    stream.read_exact(&mut answer)?;
    if answer[0] != b')' || &answer[11..] != b"PONG" {
        bail!("wrong answer to PING");
    }
    Ok(())
}

/// Starts `serve-idle <flavour>`, opens `connections` connections that each send
/// one PING and then stay idle, and returns the growth of the server's resident
/// memory per connection.
pub fn per_connection(flavour: &str, connections: usize) -> Result<f64> {
    raise_fd_limit()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("idle.sock");
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve-idle")
        .arg(flavour)
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()?;
    let outcome = (|| -> Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut first = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                Err(e) => return Err(e).context("server did not start"),
            }
        };
        ping(&mut first)?;
        sleep(Duration::from_millis(200));
        let before = rss(child.id())?;
        let mut open = Vec::with_capacity(connections);
        for _ in 0..connections {
            let mut s = UnixStream::connect(&path)?;
            ping(&mut s)?;
            open.push(s);
        }
        sleep(Duration::from_millis(500));
        let after = rss(child.id())?;
        drop(open);
        Ok((after - before) / connections as f64)
    })();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    outcome
}
