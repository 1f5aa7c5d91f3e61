//! A client that subscribes (a topic and a pattern), requests, and handles
//! every event, with its machine in a plain static: its initial state is all
//! zero bytes, so it lands in .bss.
#![no_std]
#![no_main]

use core::cell::RefCell;

use cortex_m::interrupt::Mutex;
use cortex_m_rt::entry;
use microsocket_core::{Client, ClientEvent};
use microsocket_footprint::{keep, receive, send};

type Machine = Client<256, 256, 4, 4, 64>;

static CLIENT: Mutex<RefCell<Machine>> = Mutex::new(RefCell::new(Machine::new()));

#[entry]
fn main() -> ! {
    cortex_m::interrupt::free(|cs| run(&mut CLIENT.borrow(cs).borrow_mut()))
}

fn run(client: &mut Machine) -> ! {
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
