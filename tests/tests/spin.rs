//! Polling before sleep: servers with `spin_before_sleep` (std and Tokio) and
//! the clients' own bounded polling. A spinning server answers and publishes
//! as any other; once a window has passed the process goes idle, though a
//! request is still waiting; subscribers receiving publications never make
//! either side poll; a paused Tokio clock still reaches a deadline.

mod common;

use std::time::{Duration, Instant};

use common::{bounded, cpu_time, std_config, tokio_config, tokio_server, StdServer, TokioServer, LIMIT, STEP};

/// The spin windows under test.
const WINDOW: Duration = Duration::from_millis(1);
/// How long a request is held while the process should be idle.
const HELD: Duration = Duration::from_millis(500);
/// CPU the process may use meanwhile: spinning all along would use about
/// `HELD` (more with two spinning sides on two CPUs).
const IDLE_CPU: Duration = Duration::from_millis(150);

/// A window long enough that polling after each publication would keep a CPU
/// busy all along, publications coming every `PUBLISH_EVERY`.
const LONG_WINDOW: Duration = Duration::from_millis(20);
const PUBLISH_EVERY: Duration = Duration::from_millis(5);
/// Publications sent over `HELD`.
const TICKS: usize = (HELD.as_millis() / PUBLISH_EVERY.as_millis()) as usize;

/// The CPU figures are the whole process's: the tests here take turns, so one
/// test's load does not count against another's idle wait.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A std client whose reading thread polls within `window` before it blocks.
fn std_client_polling(path: &std::path::Path, window: Duration) -> microsocket_std::Client {
    microsocket_std::Client::new(std::os::unix::net::UnixStream::connect(path).unwrap(), {
        let mut config = microsocket_std::ClientConfig::default();
        config.spin_before_sleep = window;
        config
    })
    .unwrap()
}

/// Sends `RELEASE` on a connection of its own after `HELD`, from another thread.
fn release_later(path: std::path::PathBuf) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(HELD);
        let other = microsocket_std::Client::connect_unix(&path).unwrap();
        other.request("RELEASE", [b""; 0]).unwrap();
    })
}

#[test]
fn a_spinning_std_server_answers_publishes_and_goes_idle() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = StdServer::start({
        let mut config = std_config();
        config.spin_before_sleep = WINDOW;
        config
    });
    let path = server.path.clone();
    let used = bounded(LIMIT, move || {
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for i in 0..300 {
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
        assert_eq!(client.request("PUBLISH", ["spin.a", "1"]).unwrap(), ["1"]);
        assert_eq!(sub.recv_timeout(STEP).unwrap().values(), ["1"]);

        let started = Instant::now();
        let release = release_later(path.clone());
        let before = cpu_time(std::process::id());
        assert_eq!(client.request("HOLD", ["held"]).unwrap(), ["held"]);
        let used = cpu_time(std::process::id()) - before;
        assert!(started.elapsed() >= HELD);
        release.join().unwrap();
        used
    });
    assert!(used < IDLE_CPU, "{used:?} of CPU while a request was held for {HELD:?}");
}

#[test]
fn a_spinning_std_client_answers_many_threads_and_goes_idle() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = StdServer::start(std_config());
    let path = server.path.clone();
    let used = bounded(LIMIT, move || {
        let client = std_client_polling(&path, WINDOW);
        let echo = |t: usize| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let arg = format!("{t}-{i}");
                    assert_eq!(client.request("ECHO", [&arg]).unwrap(), [arg.as_str()]);
                }
            })
        };
        for t in (0..8).map(echo).collect::<Vec<_>>() {
            t.join().unwrap();
        }

        // Two requests wait at once, so the thread reading for both polls
        // within its window before it blocks; then the process is idle.
        let started = Instant::now();
        let release = release_later(path.clone());
        let before = cpu_time(std::process::id());
        let other = {
            let client = client.clone();
            std::thread::spawn(move || client.request("HOLD", ["first"]).unwrap())
        };
        assert_eq!(client.request("HOLD", ["second"]).unwrap(), ["second"]);
        assert_eq!(other.join().unwrap(), ["first"]);
        let used = cpu_time(std::process::id()) - before;
        assert!(started.elapsed() >= HELD);
        release.join().unwrap();
        used
    });
    assert!(
        used < IDLE_CPU,
        "{used:?} of CPU while two requests were held for {HELD:?}"
    );
}

#[test]
fn a_spinning_tokio_server_answers_publishes_and_goes_idle() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = TokioServer::start(tokio_config().spin_before_sleep(WINDOW));
    let path = server.path.clone();
    let used = bounded(LIMIT, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = microsocket_tokio::Client::builder()
                .spin_before_sleep(WINDOW)
                .connect_unix(&path)
                .await
                .unwrap();
            let tasks: Vec<_> = (0..64)
                .map(|t| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        for i in 0..50 {
                            let arg = format!("{t}-{i}");
                            let values = client.request("ECHO", [&arg]).await.unwrap();
                            assert_eq!(values.first().as_deref(), Some(arg.as_bytes()));
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let mut sub = client.subscribe_pattern("spin.>").await.unwrap();
            client.request("PUBLISH", ["spin.a", "1"]).await.unwrap();
            let p = tokio::time::timeout(STEP, sub.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(p.values().first().as_deref(), Some(&b"1"[..]));

            let started = Instant::now();
            let release = release_later(path.clone());
            let before = cpu_time(std::process::id());
            let values = client.request("HOLD", ["held"]).await.unwrap();
            let used = cpu_time(std::process::id()) - before;
            assert_eq!(values.first().as_deref(), Some(&b"held"[..]));
            assert!(started.elapsed() >= HELD);
            tokio::task::spawn_blocking(move || release.join().unwrap())
                .await
                .unwrap();
            used
        })
    });
    assert!(used < IDLE_CPU, "{used:?} of CPU while a request was held for {HELD:?}");
}

#[test]
fn a_paused_clock_still_reaches_a_deadline_while_spinning() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let timed_out = bounded(LIMIT, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let server = tokio_server(tokio_config().spin_before_sleep(WINDOW));
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            server.serve_stream(ours);
            let client = microsocket_tokio::Client::builder()
                .spin_before_sleep(WINDOW)
                .request_timeout(Some(Duration::from_secs(5)))
                .connect_stream(theirs);
            // `HOLD` is never released. The paused clock advances only once every
            // task is idle: after the spin windows end, in real time.
            matches!(
                client.request("HOLD", [b""; 0]).await,
                Err(microsocket_tokio::Error::TimedOut)
            )
        })
    });
    assert!(timed_out, "expected the held request to time out");
}

#[test]
fn a_tokio_server_does_not_poll_for_subscribers() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = TokioServer::start(tokio_config().spin_before_sleep(LONG_WINDOW));
    let path = server.path.clone();
    let publisher = server.server.publisher();
    let used = bounded(LIMIT, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // Each subscription arrives with its barrier: two frames in a read.
            let mut subs = Vec::new();
            for _ in 0..8 {
                let client = microsocket_tokio::Client::connect_unix(&path).await.unwrap();
                subs.push(client.subscribe("tick").await.unwrap());
            }
            let before = cpu_time(std::process::id());
            for i in 0..TICKS {
                let tick = i.to_string();
                assert_eq!(publisher.publish("tick", [&tick]).unwrap(), 8);
                for sub in &mut subs {
                    let p = tokio::time::timeout(STEP, sub.next()).await.unwrap().unwrap().unwrap();
                    assert_eq!(p.values().first().as_deref(), Some(tick.as_bytes()));
                }
                tokio::time::sleep(PUBLISH_EVERY).await;
            }
            cpu_time(std::process::id()) - before
        })
    });
    assert!(
        used < IDLE_CPU,
        "{used:?} of CPU for {TICKS} publications to 8 subscribers over {HELD:?}"
    );
}

#[test]
fn a_std_client_does_not_poll_for_subscription_waiters() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = StdServer::start(std_config());
    let path = server.path.clone();
    let publisher = server.publisher.clone();
    let used = bounded(LIMIT, move || {
        let client = std_client_polling(&path, LONG_WINDOW);
        // Two threads wait in `recv`, one of them reading for both; no
        // request is due, so it blocks rather than polls.
        let receive = |topic: &'static str| {
            let mut sub = client.subscribe(topic).unwrap();
            std::thread::spawn(move || {
                for i in 0..TICKS {
                    assert_eq!(sub.recv_timeout(STEP).unwrap().values(), [i.to_string()]);
                }
            })
        };
        let receivers = [receive("tick"), receive("tock")];
        let before = cpu_time(std::process::id());
        for i in 0..TICKS {
            let tick = i.to_string();
            assert_eq!(publisher.publish("tick", [&tick]).unwrap(), 1);
            assert_eq!(publisher.publish("tock", [&tick]).unwrap(), 1);
            std::thread::sleep(PUBLISH_EVERY);
        }
        for r in receivers {
            r.join().unwrap();
        }
        cpu_time(std::process::id()) - before
    });
    assert!(
        used < IDLE_CPU,
        "{used:?} of CPU for {TICKS} publications to two waiting threads over {HELD:?}"
    );
}
