//! A Rust function written as a plain function: `#[func]` (from the `functions-guest` crate in
//! `guest/rust/`) turns the JSON event into its arguments and its return value into the JSON
//! response.
//!
//! Deploy: `functions-host deploy examples/rust-func/main.rs --name hello-rust`, then
//! `curl -d '{"name":"Ada"}' localhost:8787/fn/hello-rust/` answers `"Hello, Ada!"`.
//! With cargo: `cargo build --release --target wasm32-wasip1` in a crate that depends on
//! `functions-guest` (`functions-host new NAME --lang rust` writes one).
use functions_guest::func;

#[func]
pub fn hello(name: String) -> String {
    format!("Hello, {name}!")
}
