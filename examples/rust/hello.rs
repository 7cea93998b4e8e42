//! A WebAssembly function in Rust: reads a name from stdin (the request body), writes a greeting
//! to stdout (the response body).
//!
//! Build: `rustc --target wasm32-wasip1 -C opt-level=s -o hello.wasm hello.rs` (after
//! `rustup target add wasm32-wasip1`; Debian's rustc 1.63 with libstd-rust-dev-wasm32 names the
//! target `wasm32-wasi`), or let the CLI build and deploy it:
//! `functions-host deploy examples/rust/hello.rs`.
use std::io::{self, Read, Write};

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).expect("reading stdin");
    let name = match input.trim() {
        "" => "World",
        name => name,
    };
    writeln!(io::stdout(), "Hello, {}!", name).expect("writing stdout");
}
