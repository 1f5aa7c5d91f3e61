//! `microsocket demo`: a tour of microsocket in one process.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use microsocket_socket::Address;
use microsocket_tokio::{Client, Error, Values};

use crate::bus::bus_server;
use crate::loadgen;

fn show(values: &Values) -> String {
    let parts: Vec<String> = values
        .iter_slices()
        .map(|v| format!("{:?}", String::from_utf8_lossy(v)))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Runs the tour.
pub(crate) async fn run() -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sock");
    let server = bus_server();
    server.set_buffer("log.>", 3).context("buffer rule")?;
    server.listen_unix(&path).context("cannot start the demo server")?;
    println!("server listening on {}", path.display());
    let client = Client::connect_unix(&path).await?;

    println!("\n== request/response");
    let pong = client.request("PING", [""; 0]).await?;
    println!("PING -> {}", show(&pong));
    let echo = client.request("ECHO", ["hello", "world"]).await?;
    println!("ECHO hello world -> {}", show(&echo));

    println!("\n== a failure");
    match client.request("FAIL", ["disk on fire"]).await {
        Err(Error::Failed { message, .. }) => println!("FAIL -> failed: {}", String::from_utf8_lossy(&message)),
        other => anyhow::bail!("FAIL answered {other:?}"),
    }

    println!("\n== out-of-order responses on one connection");
    let start = Instant::now();
    let slow = client.request("SLEEP", ["300", "slow (300 ms)"]);
    let medium = client.request("SLEEP", ["100", "medium (100 ms)"]);
    let fast = client.request("ECHO", ["fast (no wait)"]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (order, fut) in [(1, slow), (2, medium), (3, fast)] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((order, fut.await));
        });
    }
    drop(tx);
    while let Some((order, answer)) = rx.recv().await {
        println!(
            "  sent #{order}, answered after {:>3} ms: {}",
            start.elapsed().as_millis(),
            show(&answer?)
        );
    }

    println!("\n== a subscription");
    let mut news = client.subscribe("news").await?;
    let publisher = Client::connect_unix(&path).await?;
    for headline in ["microsocket ships", "tests pass"] {
        let reached = publisher.request("PUBLISH", ["news", headline]).await?;
        println!("PUBLISH news {headline:?} -> reached {}", show(&reached));
    }
    for _ in 0..2 {
        let p = next(&mut news).await?;
        println!(
            "  subscriber got {}: {}",
            String::from_utf8_lossy(p.topic()),
            show(p.values())
        );
    }

    println!("\n== a pattern subscription (sensor.*.temp)");
    let mut temps = client.subscribe_pattern("sensor.*.temp").await?;
    for (topic, value) in [
        ("sensor.kitchen.temp", "21.5"),
        ("sensor.kitchen.humidity", "40"),
        ("sensor.hall.temp", "19.0"),
    ] {
        let reached = publisher.request("PUBLISH", [topic, value]).await?;
        println!("PUBLISH {topic} {value} -> reached {}", show(&reached));
    }
    for _ in 0..2 {
        let p = next(&mut temps).await?;
        println!(
            "  subscriber got {}: {}",
            String::from_utf8_lossy(p.topic()),
            show(p.values())
        );
    }

    println!("\n== a buffered topic's catch-up (log.> keeps the last 3)");
    for i in 1..=5 {
        publisher.request("PUBLISH", ["log.app", &format!("line {i}")]).await?;
    }
    println!("published line 1..5 on log.app before anyone subscribed");
    let late = Client::connect_unix(&path).await?;
    let mut log = late.subscribe("log.app").await?;
    for _ in 0..3 {
        let p = next(&mut log).await?;
        println!("  late subscriber's catch-up: {}", show(p.values()));
    }

    println!("\n== a short bench (2 connections x 16 in flight, 10 subscribers, 1 s each)");
    let report = loadgen::run(
        &crate::connect::Target::Socket(Address::Unix(path.clone())),
        &loadgen::Settings {
            connections: 2,
            in_flight: 16,
            duration: Duration::from_secs(1),
            payload: 16,
            subscribers: 10,
            progress: false,
        },
    )
    .await?;
    print!("{}", loadgen::table(&report));
    println!("\nstats: {:?}", server.stats());
    drop((client, publisher, late));
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn next(sub: &mut microsocket_tokio::Subscription) -> Result<microsocket_tokio::Publication> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .context("no publication within 10 s")?
        .context("subscription ended")?
        .map_err(Into::into)
}
