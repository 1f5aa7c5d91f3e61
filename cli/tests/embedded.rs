//! The core's async client driver, as firmware would use it, against the
//! real `microsocket serve` over a UNIX socket, run by a small executor
//! (`embassy_futures::block_on`).

mod common;

use std::os::unix::net::UnixStream;

use common::*;
use embassy_futures::block_on;
use microsocket_core::embedded::{AsyncClient, Error};

/// A UNIX socket as an `embedded_io_async` transport (each call completes at
/// once or blocks, which `block_on` allows).
struct Socket(UnixStream);

impl embedded_io_async::ErrorType for Socket {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for Socket {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.0, buf)
    }
}

impl embedded_io_async::Write for Socket {
    async fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::Write::write(&mut self.0, buf)
    }
}

#[test]
fn the_async_driver_requests_and_subscribes_on_a_real_bus() {
    let server = Server::start(&[]);
    let socket = UnixStream::connect(server.sock()).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    // A small configuration, as on a microcontroller.
    let mut client: AsyncClient<Socket, 256, 256, 256, 2, 4, 64> = AsyncClient::new(Socket(socket));
    block_on(async {
        let pong = client
            .call(b"PING", [b""; 0], |mut v| v.next().map(<[u8]>::to_vec))
            .await;
        assert_eq!(pong.unwrap().unwrap(), b"PONG");
        let mut buf = [0u8; 64];
        let echoed = client.request(b"ECHO", [&b"a"[..], b"b c"], &mut buf).await.unwrap();
        assert_eq!(echoed.collect::<Vec<_>>(), [&b"a"[..], b"b c"]);
        match client.call(b"FAIL", [b"disk full"], |_| ()).await {
            Err(Error::Failed(f)) => assert_eq!(f.message(), b"disk full"),
            other => panic!("{other:?}"),
        }
        let _commands = client.subscribe_pattern(b"device.*.command").await.unwrap();
        // Another process publishes on the bus.
        let o = run(&["publish", server.sock(), "device.7.command", "reboot"]);
        assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));
        let (topic, value) = client
            .next_publication(|p| (p.topic.to_vec(), p.values.clone().next().unwrap_or_default().to_vec()))
            .await
            .unwrap();
        assert_eq!((&topic[..], &value[..]), (&b"device.7.command"[..], &b"reboot"[..]));
        // Through the bus's PUBLISH: the publication arrives while the client
        // waits for the answer, and is queued for it.
        let reached = client
            .call(b"PUBLISH", [&b"device.7.command"[..], b"stop"], |mut v| {
                v.next().map(<[u8]>::to_vec)
            })
            .await;
        assert_eq!(reached.unwrap().unwrap(), b"1");
        let value = client
            .next_publication(|p| p.values.clone().next().unwrap_or_default().to_vec())
            .await
            .unwrap();
        assert_eq!(value, b"stop");
    });
}
