//! One thread with hundreds of requests in flight: tickets collected in any
//! order, batches written at once, dropped tickets cancelled, and ticket
//! holders that collect late holding up nobody.

mod common;

use std::time::{Duration, Instant};

use common::{bounded, start};
use microsocket_std::{Client, ClientConfig, Error, ServerConfig, MAX_IN_FLIGHT};

fn client(path: &std::path::Path) -> Client {
    Client::connect_unix_with(path, {
        let mut config = ClientConfig::default();
        config.request_timeout = Some(Duration::from_secs(20));
        config
    })
    .unwrap()
}

#[test]
fn one_thread_keeps_every_slot_in_flight_and_collects_in_any_order() {
    let server = start(ServerConfig::default());
    let path = server.path.clone();
    bounded(Duration::from_secs(60), move || {
        let client = client(&path);
        for round in 0..20 {
            let tickets: Vec<_> = (0..MAX_IN_FLIGHT)
                .map(|i| (i, client.send("ECHO", [format!("{round}.{i}")]).unwrap()))
                .collect();
            // Collected last first, and odd ones before even ones.
            let (odd, even): (Vec<_>, Vec<_>) = tickets.into_iter().rev().partition(|(i, _)| i % 2 == 1);
            for (i, ticket) in odd.into_iter().chain(even) {
                assert_eq!(ticket.wait().unwrap(), [format!("{round}.{i}")]);
            }
        }
    });
}

#[test]
fn a_batch_is_written_at_once_and_answered_in_order() {
    let server = start(ServerConfig::default());
    let path = server.path.clone();
    bounded(Duration::from_secs(60), move || {
        let client = client(&path);
        let mut batch = client.batch();
        for i in 0..200 {
            batch.request("ECHO", [i.to_string()]).unwrap();
        }
        assert_eq!(batch.len(), 200);
        let answers = client.wait_all(batch.send().unwrap());
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), [i.to_string()]);
        }
        // A batch dropped unsent cancels its requests: their slots are free
        // again once their late answers have come (and are discarded).
        let mut dropped = client.batch();
        for _ in 0..MAX_IN_FLIGHT {
            dropped.request("SLEEP", ["50"]).unwrap();
        }
        drop(dropped);
        std::thread::sleep(Duration::from_millis(300));
        let tickets: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| client.send("ECHO", ["again"]).unwrap())
            .collect();
        for answer in client.wait_all(tickets) {
            assert_eq!(answer.unwrap(), ["again"]);
        }
    });
}

#[test]
fn dropped_and_timed_out_tickets_free_their_slots() {
    let server = start(ServerConfig::default());
    let path = server.path.clone();
    bounded(Duration::from_secs(60), move || {
        let client = client(&path);
        // Requests the server never answers: dropping their tickets gives up
        // on them, but their slots stay taken (a late answer must not be
        // mistaken for a newer request's), and the client says why.
        let hung: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| client.send("HANG", ["x"]).unwrap())
            .collect();
        assert!(matches!(client.send("ECHO", ["x"]), Err(Error::InflightFull)));
        drop(hung);
        assert!(matches!(
            client.send("ECHO", ["x"]),
            Err(Error::Unresponsive { abandoned: 256 })
        ));
        drop(client);
        let client = self::client(&path);
        let slow = client.send("SLEEP", ["300"]).unwrap();
        let started = Instant::now();
        assert!(matches!(
            slow.wait_timeout(Duration::from_millis(50)),
            Err(Error::TimedOut)
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(400));
        let tickets: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|i| client.send("ECHO", [i.to_string()]).unwrap())
            .collect();
        for (i, answer) in client.wait_all(tickets).into_iter().enumerate() {
            assert_eq!(answer.unwrap(), [i.to_string()]);
        }
    });
}

/// A ticket whose answer has arrived but is not collected does not hold up
/// requests sent after it, on this thread or another.
#[test]
fn an_uncollected_answer_holds_up_nobody() {
    let server = start(ServerConfig::default());
    let path = server.path.clone();
    bounded(Duration::from_secs(60), move || {
        let client = client(&path);
        let first = client.send("ECHO", ["first"]).unwrap();
        // Its answer arrives while another request is answered.
        assert_eq!(client.request("ECHO", ["between"]).unwrap(), ["between"]);
        let second = client.send("ECHO", ["second"]).unwrap();
        let other = {
            let client = client.clone();
            std::thread::spawn(move || client.request("ECHO", ["other thread"]).unwrap())
        };
        assert_eq!(other.join().unwrap(), ["other thread"]);
        assert_eq!(second.wait().unwrap(), ["second"]);
        assert_eq!(first.wait().unwrap(), ["first"]);
    });
}
