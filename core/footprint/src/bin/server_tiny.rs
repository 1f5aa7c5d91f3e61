//! A server connection that answers requests (values and failures) and
//! publishes, with its machine in a plain static: its initial state is all
//! zero bytes, so it lands in .bss.
#![no_std]
#![no_main]

use core::cell::RefCell;

use cortex_m::interrupt::Mutex;
use cortex_m_rt::entry;
use microsocket_core::{ServerConnection, ServerEvent, ServerLimits};
use microsocket_footprint::{keep, receive, send};

type Machine = ServerConnection<256, 256, 4, 64>;

static CONNECTION: Mutex<RefCell<Machine>> = Mutex::new(RefCell::new(Machine::new(ServerLimits::DEFAULT)));

#[entry]
fn main() -> ! {
    cortex_m::interrupt::free(|cs| run(&mut CONNECTION.borrow(cs).borrow_mut()))
}

fn run(connection: &mut Machine) -> ! {
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
