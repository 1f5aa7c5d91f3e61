//! The two adapters in one program: a std (blocking) client talks to a Tokio
//! server, and a Tokio client talks to a std server, both over UNIX sockets.
//! The wire protocol is the same, so either client works with either server.
//!
//! ```text
//! cargo run -p microsocket-tests --example cross_adapter
//! ```

use std::time::Duration;

use microsocket_tokio::{handler_fn, Failure, Reply, Request};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // --- A Tokio server, and a std client on a plain thread ----------------
    let tokio_path = dir.path().join("tokio.sock");
    let tokio_server = microsocket_tokio::Server::new(handler_fn(|request: Request| async move {
        match &request.command[..] {
            b"ECHO" => Ok(Reply::from(request.args)),
            b"UPPER" => Ok(Reply::values(request.args.iter().map(|a| a.to_ascii_uppercase()))),
            _ => Err(Failure::new("no such command")),
        }
    }));
    {
        let _entered = rt.enter();
        tokio_server.listen_unix(&tokio_path)?;
    }
    let publisher = tokio_server.publisher();
    let std_side = std::thread::spawn(move || -> Result<(), microsocket_std::Error> {
        let client = microsocket_std::Client::connect_unix(&tokio_path)?;
        let got = client.request("UPPER", ["from", "std"])?;
        println!("[std client -> tokio server] UPPER: {got:?}");
        assert_eq!(got, ["FROM", "STD"]);
        let mut news = client.subscribe_pattern("news.*")?;
        publisher.publish("news.tokio", ["published by the Tokio server"])?;
        let p = news.recv_timeout(Duration::from_secs(5))?;
        println!("[std client -> tokio server] {:?}: {:?}", p.topic(), p.values());
        match client.request("NOPE", [b""; 0]) {
            Err(microsocket_std::Error::Failed { message, .. }) => {
                println!(
                    "[std client -> tokio server] NOPE failed: {}",
                    String::from_utf8_lossy(&message)
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        Ok(())
    });
    std_side.join().expect("std client thread panicked")?;

    // --- A std server, and a Tokio client ----------------------------------
    let std_path = dir.path().join("std.sock");
    let echo = |request: microsocket_std::Request<'_>, responder: microsocket_std::Responder| {
        let _ = match request.command {
            b"ECHO" => responder.respond(request.args),
            b"LEN" => responder.respond([request.args.map(<[u8]>::len).sum::<usize>().to_string()]),
            _ => responder.fail("no such command", [b""; 0]),
        };
    };
    let std_server =
        microsocket_std::Server::bind_unix(&std_path, echo, microsocket_std::ServerConfig::default())?.spawn()?;
    let std_publisher = std_server.publisher();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let client = microsocket_tokio::Client::connect_unix(&std_path).await?;
            let got = client.request("LEN", ["from", "tokio"]).await?;
            println!("[tokio client -> std server] LEN: {got:?}");
            assert_eq!(got, ["9"]);
            // Many requests in flight at once on one connection.
            let futures: Vec<_> = (0..100).map(|i| client.request("ECHO", [i.to_string()])).collect();
            for (i, f) in futures.into_iter().enumerate() {
                assert_eq!(f.await?, [i.to_string()]);
            }
            println!("[tokio client -> std server] 100 pipelined requests answered");
            let mut news = client.subscribe("news").await?;
            std_publisher.publish("news", ["published by the std server"])?;
            let p = news.next().await.ok_or(microsocket_tokio::Error::Closed)??;
            println!("[tokio client -> std server] {:?}: {:?}", p.topic_bytes(), p.values());
            Ok::<_, Box<dyn std::error::Error>>(())
        })
        .await?
    })?;

    std_server.stop()?;
    rt.block_on(tokio_server.shutdown());
    println!("done");
    Ok(())
}
