//! For comparison: the client's work done with minimq 0.13 (an async MQTT 5
//! client) instead of microsocket. It connects, subscribes to a topic and a
//! wildcard filter, publishes a request (a response topic and correlation
//! data, QoS 0) whenever messages arrived, and handles every message.
//!
//! minimq 0.13 drives an `embedded_io_async` byte stream (already connected:
//! `Session::connect` takes it) and reads the time through `embassy_time`, so
//! this image brings the rest: the stream is the UART register of the other
//! images (always connected, never pending), the time driver reads the
//! SysTick current value register, and a busy-polling `block_on` stands in for
//! an executor. minimq is built without its default `defmt` feature (its log
//! calls compile to nothing), and its buffers are the sizes of its README's
//! example: `RX` for the largest inbound packet, `TX` for outbound encoding
//! and packets in flight. The buffers and the session are in statics
//! (`cortex_m::singleton!`, zero-initialized storage in .bss), filled at start.
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use cortex_m_rt::entry;
use microsocket_footprint::{keep, receive, send};
use minimq::{Buffers, ConfigBuilder, ConnectEvent, Property, Publication, Session, TopicFilter};

const RX: usize = 256;
const TX: usize = 768;

type Machine = Session<'static>;

#[entry]
fn main() -> ! {
    let rx = cortex_m::singleton!(: [u8; RX] = [0; RX]).unwrap();
    let tx = cortex_m::singleton!(: [u8; TX] = [0; TX]).unwrap();
    let config = ConfigBuilder::new(Buffers::new(rx, tx)).client_id("device").unwrap();
    let session = cortex_m::singleton!(: Machine = Session::new(config)).unwrap();
    block_on(run(session))
}

async fn run(session: &mut Machine) -> ! {
    let topics = [TopicFilter::new("device/command"), TopicFilter::new("sensor/+/temp")];
    let request = [Property::ResponseTopic("device/command")];
    loop {
        let mut connection = match session.connect(Uart).await {
            Ok(connection) => connection,
            Err(error) => {
                keep(error);
                continue;
            }
        };
        if connection.connect_event() == ConnectEvent::Connected {
            keep(connection.subscribe(&topics, &[]).await);
        }
        loop {
            let answered = match connection.poll().await {
                Ok(Some(message)) => (message.topic().len() + message.payload().len()) as u32,
                Ok(None) => 0,
                Err(error) => {
                    keep(error);
                    break;
                }
            };
            if answered > 0 {
                let publication = Publication::bytes("sensor/1/read", b"READ")
                    .properties(&request)
                    .correlate(b"1");
                keep(connection.publish(publication).await);
            }
        }
    }
}

/// The transport: the UART register, one stream that is always connected.
struct Uart;

impl embedded_io_async::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io_async::Read for Uart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        Ok(receive(buf))
    }
}

impl embedded_io_async::Write for Uart {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, Infallible> {
        Ok(send(bytes))
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// The time driver: the SysTick current value register, read volatile.
struct SysTick;

impl embassy_time_driver::Driver for SysTick {
    fn now(&self) -> u64 {
        // SAFETY: a memory-mapped register, always present on a Cortex-M4.
        u64::from(unsafe { core::ptr::read_volatile(0xE000_E018 as *const u32) })
    }

    fn schedule_wake(&self, _at: u64, waker: &Waker) {
        // `block_on` polls again at once anyway.
        waker.wake_by_ref();
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTick = SysTick);

/// Polls `future` until it is ready: the smallest executor there is.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}
