//! The protocol core alone: a client machine and a server machine joined by an
//! in-memory pipe, in one thread. The ceiling for what any adapter can reach.

use std::time::Instant;

use anyhow::Result;
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{ClientEvent, ClientProtocol, ServerEvent, ServerLimits, ServerProtocol, SubscriptionSet};

use crate::contender::{Contender, Family};

/// The core's machines with no I/O.
pub struct CorePipe;

impl Contender for CorePipe {
    fn name(&self) -> &'static str {
        "core (in-memory)"
    }

    fn family(&self) -> Family {
        Family::Blocking
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        let start = Instant::now();
        for _ in 0..connections {
            run_connection(in_flight, requests)?;
        }
        Ok(Some((connections * requests) as f64 / start.elapsed().as_secs_f64()))
    }
}

fn run_connection(in_flight: usize, requests: usize) -> Result<()> {
    let mut client: ClientProtocol<256, 1, 16> = ClientProtocol::new();
    let mut server: ServerProtocol<SubscriptionSet<1, 16>> = ServerProtocol::new(ServerLimits { max_in_flight: 256 });
    let (mut up, mut down) = (Vec::with_capacity(64 * 1024), Vec::with_capacity(64 * 1024));
    let (mut server_decoder, mut client_decoder) = (Decoder::new(1 << 20), Decoder::new(1 << 20));
    let mut done = 0;
    let mut sent = 0;
    while done < requests {
        while sent < requests && sent - done < in_flight.min(256) {
            let _id = client.request(b"ECHO", [b"x"], &mut up)?;
            sent += 1;
        }
        let mut at = 0;
        while let Decoded::Frame { frame, consumed } = server_decoder.decode(&up[at..]) {
            at += consumed;
            if let Some(ServerEvent::Request { tag, args, .. }) = server.handle_frame(frame, &mut down)? {
                server.respond(tag, args, &mut down)?;
            }
        }
        up.clear();
        let mut at = 0;
        while let Decoded::Frame { frame, consumed } = client_decoder.decode(&down[at..]) {
            at += consumed;
            match client.handle_frame(frame) {
                Some(ClientEvent::Response { values, .. }) if values.clone().eq([&b"x"[..]]) => done += 1,
                other => anyhow::bail!("wrong answer: {other:?}"),
            }
        }
        down.clear();
    }
    Ok(())
}
