//! Write a functions-host WebAssembly function as a plain Rust function.
//!
//! ```ignore
//! use functions_guest::func;
//!
//! #[func]
//! pub fn hello(name: String) -> String {
//!     format!("Hello, {name}!")
//! }
//! ```
//!
//! `#[func]` makes the file a complete WASI command (it supplies `main`, so put it in `main.rs`
//! and write no `main` of your own). Each call:
//! - reads the request body (stdin) as a JSON event and binds it to the parameters: an object by
//!   parameter name (`{"name":"Ada"}`), an array by position (`["Ada"]`), or, for a function of
//!   one parameter, the bare value (`"Ada"`); a body that is not JSON is, for one `String`
//!   parameter, the text itself. A parameter of type `Option<T>` may be left out.
//! - writes the return value as JSON to stdout (the response body). A function may return
//!   `Result<T, E>`: `Err(e)` fails the call with `e` as its message.
//! - A bad event or an `Err` exits with status 2 or 1 and the reason on stderr, so the call is an
//!   error carrying it. Deployed with the WAGI executor (`"executor": "wagi"`, which
//!   `functions-host deploy` picks for sources using this crate), the response instead has
//!   `Content-Type: application/json`, and a bad event is a 400 and an `Err` a 500, each with
//!   `{"error": message}`.
//!
//! Parameters and results are any of: `String`, `bool`, integers, floats, `Option`, `Vec`,
//! `BTreeMap<String, _>`/`HashMap<String, _>` and [`Value`] for any JSON (results also `&str`
//! and `()`).
//!
//! Builds with Rust 1.63 and no other crates: `functions-host deploy main.rs` compiles it with
//! the local `rustc` for `wasm32-wasip1` (or Debian's `wasm32-wasi`).

mod convert;
mod json;

pub use convert::FromJson;
pub use convert::IntoOutput;
pub use convert::ToJson;
pub use functions_guest_macros::func;
pub use json::ParseError;
pub use json::Value;

/// The machinery `#[func]` expands to; not for direct use.
#[doc(hidden)]
pub mod __private {
    use std::io::Read;
    use std::io::Write;

    use crate::FromJson;
    use crate::IntoOutput;
    use crate::Value;

    /// How one call ended.
    #[derive(Debug, PartialEq)]
    pub enum Outcome {
        /// The function's result.
        Returned(Value),
        /// The event does not fit the parameters.
        BadEvent(String),
        /// The function returned `Err` with this message.
        Failed(String),
    }

    /// The event as the parameters see it.
    enum Event {
        /// No body.
        Empty,
        /// An object naming at least one parameter.
        ByName(Vec<(String, Value)>),
        /// An array, for a function of more than one parameter.
        ByPosition(Vec<Value>),
        /// The whole event, for a function of one parameter.
        Bare(Value),
    }

    /// The arguments of one call, taken one by one in parameter order.
    pub struct Args<'a> {
        names: &'a [&'a str],
        event: Event,
    }

    impl Args<'_> {
        /// The argument for parameter `index`, converted to its type.
        pub fn take<T: FromJson>(&mut self, index: usize) -> Result<T, String> {
            let name = self.names[index];
            let value = match &mut self.event {
                Event::Empty => None,
                Event::ByName(members) => members
                    .iter()
                    .rposition(|(key, _)| key == name)
                    .map(|at| members.remove(at).1),
                Event::ByPosition(items) => items
                    .get_mut(index)
                    .map(|v| std::mem::replace(v, Value::Null)),
                Event::Bare(value) => {
                    let value = std::mem::replace(value, Value::Null);
                    // `["Ada"]` for `hello(name: String)`: the array, else its one item.
                    return match (T::from_json(value.clone()), value) {
                        (Ok(arg), _) => Ok(arg),
                        (Err(_), Value::Array(mut items)) if items.len() == 1 => {
                            T::from_json(items.remove(0)).map_err(|err| format!("`{name}`: {err}"))
                        }
                        // An object naming no parameter was meant to name this one.
                        (Err(_), Value::Object(_)) => Err(format!("missing argument `{name}`")),
                        (Err(err), _) => Err(format!("`{name}`: {err}")),
                    };
                }
            };
            match value {
                Some(value) => T::from_json(value).map_err(|err| format!("`{name}`: {err}")),
                None => T::absent().ok_or_else(|| format!("missing argument `{name}`")),
            }
        }
    }

    /// Binds `input` (the request body) to parameters called `names` and runs `function` on them.
    pub fn call<F>(input: &[u8], names: &[&str], function: F) -> Outcome
    where
        F: FnOnce(&mut Args<'_>) -> Result<Result<Value, String>, String>,
    {
        let event = match event(input, names) {
            Ok(event) => event,
            Err(err) => return Outcome::BadEvent(err),
        };
        let mut args = Args { names, event };
        match function(&mut args) {
            Ok(Ok(value)) => Outcome::Returned(value),
            Ok(Err(err)) => Outcome::Failed(err),
            Err(err) => Outcome::BadEvent(err),
        }
    }

    fn event(input: &[u8], names: &[&str]) -> Result<Event, String> {
        let text = std::str::from_utf8(input).map_err(|_| "the event is not UTF-8".to_owned())?;
        if text.trim().is_empty() || names.is_empty() {
            return Ok(Event::Empty);
        }
        let value = match Value::parse(text) {
            Ok(value) => value,
            // Plain text for a function of one parameter: `curl -d Ada`.
            Err(_) if names.len() == 1 => {
                let line = text.strip_suffix('\n').unwrap_or(text);
                return Ok(Event::Bare(Value::String(
                    line.strip_suffix('\r').unwrap_or(line).to_owned(),
                )));
            }
            Err(err) => return Err(format!("the event is not JSON: {err}")),
        };
        Ok(match value {
            Value::Object(members)
                if members.iter().any(|(key, _)| names.contains(&key.as_str())) =>
            {
                Event::ByName(members)
            }
            value if names.len() == 1 => Event::Bare(value),
            Value::Array(items) if items.len() <= names.len() => Event::ByPosition(items),
            Value::Array(items) => {
                return Err(format!(
                    "{} arguments for {} parameters",
                    items.len(),
                    names.len()
                ))
            }
            other => {
                return Err(format!(
                    "expected an object with {} or an array of them, got {}",
                    names.join(", "),
                    other.kind()
                ))
            }
        })
    }

    /// `main` of a `#[func]` binary: stdin is the event, stdout the result, the exit status says
    /// how it went. Under the WAGI executor (`GATEWAY_INTERFACE` is set) the output starts with
    /// CGI headers instead.
    pub fn main(entry: fn(&[u8]) -> Outcome) -> ! {
        let mut input = Vec::new();
        let outcome = match std::io::stdin().read_to_end(&mut input) {
            Ok(_) => entry(&input),
            Err(err) => Outcome::BadEvent(format!("reading the event: {err}")),
        };
        let cgi = std::env::var_os("GATEWAY_INTERFACE").is_some();
        let (status, body, code) = match outcome {
            Outcome::Returned(value) => (200, value, 0),
            Outcome::BadEvent(message) => {
                eprintln!("bad event: {message}");
                (400, error_body(message), 2)
            }
            Outcome::Failed(message) => {
                eprintln!("{message}");
                (500, error_body(message), 1)
            }
        };
        let mut stdout = std::io::stdout().lock();
        let written = if cgi {
            write!(
                stdout,
                "Content-Type: application/json\nStatus: {status}\n\n{body}"
            )
        } else if code == 0 {
            write!(stdout, "{body}")
        } else {
            Ok(())
        };
        if written.and_then(|_| stdout.flush()).is_err() {
            std::process::exit(1);
        }
        std::process::exit(if cgi { 0 } else { code })
    }

    fn error_body(message: String) -> Value {
        Value::object([("error", Value::String(message))])
    }

    /// The result of a `#[func]`'s body, for `call`.
    pub fn output<T: IntoOutput>(result: T) -> Result<Result<Value, String>, String> {
        Ok(result.into_output())
    }
}
