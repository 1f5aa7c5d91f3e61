//! A server connection that answers requests (values and failures) and
//! publishes, with its machine in a static (`Option`, so in .bss).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use microsocket_core::{ServerConnection, ServerEvent, ServerLimits};
use microsocket_footprint::{keep, receive, send};

type Machine = ServerConnection<4096, 4096, 32, 2048>;

#[entry]
fn main() -> ! {
    let connection: &'static mut Machine =
        cortex_m::singleton!(: Machine = Machine::new(ServerLimits { max_in_flight: 8 })).unwrap();
    loop {
        let n = receive(connection.rx_buf());
        connection.commit_rx(n);
        while let Some(mut polled) = connection.poll_event() {
            if let ServerEvent::Request { tag, command, args } = polled.event {
                let answered = match command {
                    b"ECHO" => polled.outbox.respond(tag, args),
                    _ => polled.outbox.fail(tag, b"no such command", [b""; 0]),
                };
                keep(answered);
            } else {
                keep(polled.event);
            }
        }
        keep(connection.outbox().publish(b"sensor.kitchen.temp", [b"21.5"]));
        while let Some(bytes) = connection.poll_transmit() {
            let n = send(bytes);
            connection.advance_transmit(n);
        }
    }
}
