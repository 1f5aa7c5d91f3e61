//! Many threads sharing one client: every request is written and answered, with
//! writes combined and answers handed over between threads.

mod common;

use std::time::Duration;

use common::{bounded, start};
use microsocket_std::{Client, ClientConfig, ServerConfig};

#[test]
fn as_many_threads_as_request_slots_share_one_client() {
    let server = start(ServerConfig::default());
    let path = server.path.clone();
    bounded(Duration::from_secs(120), move || {
        let client = Client::new(std::os::unix::net::UnixStream::connect(&path).unwrap(), {
            let mut config = ClientConfig::default();
            config.request_timeout = Some(Duration::from_secs(20));
            config
        })
        .unwrap();
        let threads: Vec<_> = (0..microsocket_std::MAX_IN_FLIGHT)
            .map(|t| {
                let client = client.clone();
                std::thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        for i in 0..100usize {
                            let arg = format!("{t}.{i}");
                            let values = client.request("ECHO", [&arg]).unwrap();
                            assert_eq!(values, [arg.as_str()]);
                        }
                    })
                    .unwrap()
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}
