//! Polling before sleep (`spin_before_sleep`) is bounded: a client and a server
//! that both spin let the process go idle while a request waits, and a paused
//! Tokio clock still advances.

use std::time::Duration;

use microsocket_tokio::{handler_fn, Client, Error, Failure, Reply, Request, Server, ServerConfig};

/// User plus system CPU time this process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses): utime and stime
    // are the 12th and 13th of them, in clock ticks of 1/100 s.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn spinning_server() -> Server<impl microsocket_tokio::Handler> {
    let handler = handler_fn(|request: Request| async move {
        if &request.command[..] == b"SLOW" {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok::<_, Failure>(Reply::one("done"))
    });
    Server::with_config(
        handler,
        ServerConfig::default().spin_before_sleep(Duration::from_millis(1)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_costs_the_spin_window_not_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.sock");
    let server = spinning_server();
    server.listen_unix(&path).unwrap();
    let client = Client::builder()
        .spin_before_sleep(Duration::from_millis(1))
        .connect_unix(&path)
        .await
        .unwrap();
    // Busy first, so both sides have just been active when the slow request
    // starts its wait.
    for _ in 0..1000 {
        client.request("FAST", [b""; 0]).await.unwrap();
    }
    let before = cpu_time();
    let answer = client.request("SLOW", [b""; 0]).await.unwrap();
    let used = cpu_time() - before;
    assert_eq!(answer.first().as_deref(), Some(&b"done"[..]));
    // Spinning through the whole 500 ms wait would take about 500 ms of CPU
    // (two spinning tasks on two workers, up to 1 s); the windows are 1 ms each.
    assert!(
        used < Duration::from_millis(150),
        "{used:?} of CPU during a 500 ms wait"
    );
    server.shutdown().await;
}

#[test]
fn a_paused_clock_still_reaches_a_deadline_while_spinning() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let outcome = rt.block_on(async {
            let never = handler_fn(|_: Request| std::future::pending::<Result<Reply, Failure>>());
            let server = Server::with_config(
                never,
                ServerConfig::default().spin_before_sleep(Duration::from_millis(1)),
            );
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            server.serve_stream(ours);
            let client = Client::builder()
                .spin_before_sleep(Duration::from_millis(1))
                .request_timeout(Some(Duration::from_secs(5)))
                .connect_stream(theirs);
            // The paused clock advances only once every task is idle: after
            // the spin windows end, in real time.
            client.request("PING", [b""; 0]).await
        });
        let _ = done_tx.send(matches!(outcome, Err(Error::TimedOut)));
    });
    let timed_out = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the request never reached its deadline: spinning kept the runtime busy");
    assert!(timed_out, "expected the request to time out");
}
