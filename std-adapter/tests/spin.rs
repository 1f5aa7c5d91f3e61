//! A server whose readers spin before they block (`spin_before_sleep`) serves
//! requests and subscriptions as any other, and lets the process go idle once
//! the window has passed.

mod common;

use std::time::Duration;

use common::{bounded, start};
use microsocket_std::{Client, ServerConfig};

const LIMIT: Duration = Duration::from_secs(20);

fn spinning() -> ServerConfig {
    ServerConfig {
        spin_before_sleep: Duration::from_millis(1),
        ..ServerConfig::default()
    }
}

/// User plus system CPU time this process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command name (in parentheses), utime and stime are the 12th and
    // 13th fields, in clock ticks of 1/100 s.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
fn a_spinning_server_answers_and_publishes() {
    let server = start(spinning());
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = Client::connect_unix(&path).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let arg = format!("{t}-{i}");
                        assert_eq!(client.request("ECHO", [&arg]).unwrap(), [arg.as_str()]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut sub = client.subscribe_pattern("spin.>").unwrap();
        client.request("PUBLISH", ["spin.a", "1"]).unwrap();
        publisher.publish("spin.b", ["2"]).unwrap();
        assert_eq!(sub.recv_timeout(LIMIT).unwrap().values, ["1"]);
        assert_eq!(sub.recv_timeout(LIMIT).unwrap().values, ["2"]);
    });
}

#[test]
fn a_spinning_server_goes_idle_after_the_window() {
    let server = start(spinning());
    let path = server.path.clone();
    let used = bounded(LIMIT, move || {
        let client = Client::connect_unix(&path).unwrap();
        for _ in 0..1000 {
            client.request("ECHO", ["x"]).unwrap();
        }
        // Nothing to read for 500 ms: spinning all along would cost about as
        // much CPU; the window is 1 ms.
        let before = cpu_time();
        client.request("SLEEP", ["500"]).unwrap();
        cpu_time() - before
    });
    assert!(
        used < Duration::from_millis(150),
        "{used:?} of CPU during a 500 ms wait"
    );
}
