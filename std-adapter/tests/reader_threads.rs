//! Reader threads release their resources when their connection ends, without
//! waiting for the server to accept another connection: a server that served
//! many connections keeps no stack of a finished reader mapped.
//!
//! Linux only: the test counts the reader stacks in `/proc/self/maps`, found by a
//! stack size no other thread of this test binary uses. It is the only test of
//! its binary, so no other server's threads run alongside.

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{bounded, start};
use microsocket_std::ServerConfig;

/// The readers' stack size: odd enough that only their stacks have it.
const STACK: usize = 1044 << 10;
/// Connections open at once, then closed.
const CONNECTIONS: usize = 200;

/// Writable mappings of a reader stack's size (the C library maps each thread's
/// stack on its own, with a guard page apart).
fn reader_stacks() -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                return false;
            };
            let Some((start, end)) = range.split_once('-') else {
                return false;
            };
            let size = usize::from_str_radix(end, 16).unwrap() - usize::from_str_radix(start, 16).unwrap();
            perms == "rw-p" && (STACK..STACK + (64 << 10)).contains(&size)
        })
        .count()
}

/// Threads of this process whose name starts as a reader's does.
fn reader_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("microsocket-con"))
        .count()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn finished_readers_leave_no_stack_behind() {
    let server = start({
        let mut config = ServerConfig::default();
        config.stack_size = STACK;
        config
    });
    let path = server.path.clone();
    let publisher = server.publisher.clone();
    bounded(Duration::from_secs(60), move || {
        let before = reader_stacks();
        let clients: Vec<UnixStream> = (0..CONNECTIONS).map(|_| UnixStream::connect(&path).unwrap()).collect();
        wait_until("every connection served", || {
            publisher.stats().connections == CONNECTIONS as u64
        });
        let live = reader_stacks();
        drop(clients);
        wait_until("every connection closed", || publisher.stats().connections == 0);
        wait_until("every reader thread ended", || reader_threads() == 0);
        // The stacks of ended threads go back to the C library, which keeps a
        // few (up to 40 MiB on glibc) for threads to come; nothing accepted
        // since, so stacks kept for their threads' sake would all be here.
        let after = reader_stacks();
        eprintln!("reader stacks: {before} before, {live} with {CONNECTIONS} connections, {after} after");
        assert!(live >= CONNECTIONS, "the stack size identifies reader stacks");
        assert!(
            after < CONNECTIONS / 2,
            "{after} stacks of {CONNECTIONS} finished reader threads still mapped"
        );
    });
    drop(server);
}
