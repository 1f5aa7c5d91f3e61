//! microsocket on a microcontroller: `microsocket-core`'s machines over the
//! UART of an LM3S6965 (a Cortex-M3 that QEMU emulates as `lm3s6965evb`),
//! driven by one polled loop, with no heap and no RTOS.
//!
//! - The default build is a *server connection*: it answers `PING`, `ECHO` and
//!   `READ` (the simulated sensor's reading) and publishes a reading on
//!   `sensor.temperature` every 300 ms to a client that subscribes.
//! - The `client` build joins a host's bus (`microsocket serve`, its UART
//!   connected to the bus's socket): it subscribes to `device.command` and
//!   acknowledges each command by publishing it on `device.ack` through the
//!   bus's `PUBLISH`.
//!
//! ```text
//! cargo build --release                      # in firmware/
//! qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic \
//!     -semihosting-config enable=on,target=native \
//!     -serial unix:/tmp/uart.sock,server=on,wait=off \
//!     -kernel target/thumbv7m-none-eabi/release/microsocket-firmware
//! microsocket request /tmp/uart.sock READ
//! ```

#![no_std]
#![no_main]

mod uart;

use core::panic::PanicInfo;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;

/// SysTick reloads per 100 ms at the emulated core clock (12 MHz).
const TICK_RELOAD: u32 = 1_200_000 - 1;
/// A reading every this many ticks.
#[cfg(not(feature = "client"))]
const READING_EVERY: u32 = 3;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    hprintln!("microsocket firmware panicked: {}", info);
    cortex_m::asm::udf()
}

#[entry]
fn main() -> ! {
    let mut peripherals = cortex_m::Peripherals::take().expect("taken once, at start");
    let syst = &mut peripherals.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(TICK_RELOAD);
    syst.clear_current();
    syst.enable_counter();
    let uart = uart::Uart0::new();
    #[cfg(not(feature = "client"))]
    {
        hprintln!("microsocket firmware: server connection on UART0");
        server::run(uart, syst)
    }
    #[cfg(feature = "client")]
    {
        hprintln!("microsocket firmware: client of the bus on UART0");
        client::run(uart)
    }
}

/// A simulated temperature sensor: tenths of a degree, drifting.
#[cfg(not(feature = "client"))]
struct Sensor {
    tenths: u32,
}

#[cfg(not(feature = "client"))]
impl Sensor {
    fn next(&mut self) -> u32 {
        self.tenths = 200 + (self.tenths * 7 + 3) % 50;
        self.tenths
    }
}

/// `tenths` as text (`21.5`) in `buf`; returns it.
#[cfg(not(feature = "client"))]
fn format_tenths(tenths: u32, buf: &mut [u8; 8]) -> &[u8] {
    let whole = tenths / 10;
    let mut n = 0;
    let mut digits = [0u8; 6];
    let mut w = whole;
    loop {
        digits[n] = b'0' + (w % 10) as u8;
        n += 1;
        w /= 10;
        if w == 0 {
            break;
        }
    }
    let mut len = 0;
    for d in digits[..n].iter().rev() {
        buf[len] = *d;
        len += 1;
    }
    buf[len] = b'.';
    buf[len + 1] = b'0' + (tenths % 10) as u8;
    &buf[..len + 2]
}

#[cfg(not(feature = "client"))]
mod server {
    use cortex_m::peripheral::SYST;
    use microsocket_core::{ServerConnection, ServerEvent, ServerLimits};

    use crate::uart::Uart0;
    use crate::{format_tenths, Sensor, READING_EVERY};

    /// Serves the UART forever.
    pub fn run(mut uart: Uart0, syst: &mut SYST) -> ! {
        let mut connection: ServerConnection<512, 512, 4, 64> =
            ServerConnection::new(ServerLimits { max_in_flight: 8 });
        let mut sensor = Sensor { tenths: 215 };
        let mut last = sensor.next();
        let mut ticks = 0u32;
        loop {
            let n = uart.read_available(connection.rx_buf());
            if n > 0 {
                connection.commit_rx(n);
            }
            while let Some(mut polled) = connection.poll_event() {
                if let ServerEvent::Request { tag, command, args } = polled.event {
                    let mut text = [0u8; 8];
                    let answered = match command {
                        b"PING" => polled.outbox.respond(tag, [b"PONG"]),
                        b"ECHO" => polled.outbox.respond(tag, args),
                        b"READ" => polled.outbox.respond(tag, [format_tenths(last, &mut text)]),
                        _ => polled.outbox.fail(tag, b"no such command", [b""; 0]),
                    };
                    // An answer that does not fit is failed instead.
                    if answered.is_err() {
                        let _ = polled
                            .outbox
                            .fail(tag, microsocket_core::UNENCODABLE_RESPONSE, [b""; 0]);
                    }
                }
            }
            while let Some(bytes) = connection.poll_transmit() {
                let n = uart.write_available(bytes);
                if n == 0 {
                    break;
                }
                connection.advance_transmit(n);
            }
            if syst.has_wrapped() {
                ticks += 1;
                if ticks.is_multiple_of(READING_EVERY) && connection.poll_transmit().is_none() {
                    last = sensor.next();
                    let mut text = [0u8; 8];
                    // Sent only if the client subscribes to it.
                    let _ = connection
                        .outbox()
                        .publish(b"sensor.temperature", [format_tenths(last, &mut text)]);
                }
            }
        }
    }
}

#[cfg(feature = "client")]
mod client {
    use microsocket_core::{Client, ClientEvent};

    use crate::uart::Uart0;

    /// Joins the bus on the UART forever.
    pub fn run(mut uart: Uart0) -> ! {
        let mut client: Client<512, 512, 4, 4, 64> = Client::new();
        let _ = client.subscribe(b"device.command");
        let _ = client.barrier();
        loop {
            let n = uart.read_available(client.rx_buf());
            if n > 0 {
                client.commit_rx(n);
            }
            // The command to acknowledge, copied out of the receive buffer.
            let mut command = [0u8; 64];
            let mut len = None;
            while let Some(event) = client.poll_event() {
                if let ClientEvent::Publication { mut values, .. } = event {
                    let value = values.next().unwrap_or_default();
                    let n = value.len().min(command.len());
                    command[..n].copy_from_slice(&value[..n]);
                    len = Some(n);
                    break;
                }
            }
            if let Some(n) = len {
                let _ = client.request(b"PUBLISH", [&b"device.ack"[..], &command[..n]]);
            }
            while let Some(bytes) = client.poll_transmit() {
                let n = uart.write_available(bytes);
                if n == 0 {
                    break;
                }
                client.advance_transmit(n);
            }
        }
    }
}
