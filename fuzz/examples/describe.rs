//! Prints what fuzz inputs mean: the operations `client_ops` or `server_ops`
//! would apply, or the frames `decode` would find.
//!
//! `cargo run --example describe -- client_ops corpus/client_ops/*`

use std::env;
use std::fs;

use arbitrary::{Arbitrary, Unstructured};
use microsocket_fuzz::{decode_one_piece, pick_max_frame, ClientOp, ServerOp};

fn main() {
    let mut args = env::args().skip(1);
    let target = args.next().expect("usage: describe <target> <file>...");
    for path in args {
        let data = fs::read(&path).expect("readable file");
        let mut u = Unstructured::new(&data);
        let config = u8::arbitrary(&mut u).unwrap_or(0);
        let text = match target.as_str() {
            "client_ops" => format!("config {config}: {:?}", Vec::<ClientOp>::arbitrary_take_rest(u)),
            "server_ops" => format!("config {config}: {:?}", Vec::<ServerOp>::arbitrary_take_rest(u)),
            _ => match data.split_first() {
                Some((&first, rest)) => format!("{:?}", decode_one_piece(rest, pick_max_frame(first))),
                None => "empty".to_owned(),
            },
        };
        println!("{path}: {text}");
    }
}
