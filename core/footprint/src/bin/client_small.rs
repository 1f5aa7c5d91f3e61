//! A client that subscribes (a topic and a pattern), requests, and handles
//! every event, with its machine in a static (`Option`, so in .bss).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microsocket_core::{Client, ClientEvent};
use microsocket_footprint::{keep, receive, send};

type Machine = Client<512, 512, 8, 4, 128>;

#[entry]
fn main() -> ! {
    let client: &'static mut Machine = cortex_m::singleton!(: Machine = Machine::new()).unwrap();
    keep(client.subscribe(b"device.command"));
    keep(client.subscribe_pattern(b"sensor.*.temp"));
    keep(client.barrier());
    loop {
        let n = receive(client.rx_buf());
        client.commit_rx(n);
        let mut answered = 0u32;
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Response { values, .. } => answered += values.count() as u32,
                ClientEvent::Failure { message, .. } => answered += message.len() as u32,
                ClientEvent::Publication { topic, values, .. } => answered += (topic.len() + values.count()) as u32,
                other => keep(other),
            }
        }
        if answered > 0 {
            keep(client.request(b"READ", [&b"sensor"[..], b"1"]));
        }
        while let Some(bytes) = client.poll_transmit() {
            let n = send(bytes);
            client.advance_transmit(n);
        }
    }
}
