//! `console`: each call becomes one timestamped [`LogLine`] of the running invocation.

use deno_core::OpState;
use deno_core::op2;

pub use functions_types::ConsoleOutput;
pub use functions_types::LogLevel;
pub use functions_types::LogLine;
pub use functions_types::MAX_OUTPUT_BYTES;

#[op2(fast)]
fn op_console_write(state: &mut OpState, #[string] message: &str, level: i32) {
    state
        .borrow_mut::<ConsoleOutput>()
        .push(LogLevel::from_console(level), message);
}

deno_core::extension!(
    console,
    deps = [deno_web],
    ops = [op_console_write],
    state = |state| state.put(ConsoleOutput::default()),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_counts_what_it_drops() {
        let mut out = ConsoleOutput::default();
        out.push(LogLevel::Info, "hello\n");
        assert_eq!(out.lines[0].message, "hello");
        let big = "x".repeat(MAX_OUTPUT_BYTES);
        out.push(LogLevel::Warn, &big);
        out.push(LogLevel::Error, "still fits");
        assert_eq!(out.lines.len(), 2);
        assert_eq!(out.dropped, 1);
        assert_eq!(out.lines[1].level, LogLevel::Error);
    }
}
