//! `console`: each call becomes one timestamped [`LogLine`] of the running invocation.

use std::time::SystemTime;

use deno_core::OpState;
use deno_core::op2;

/// How much console output one invocation may produce; past it lines are dropped and counted.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Severity of a console line, from the `console` method that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// `console.debug`
    Debug,
    /// `console.log`, `console.info`
    Info,
    /// `console.warn`
    Warn,
    /// `console.error`, `console.trace`
    Error,
}

impl LogLevel {
    fn from_console(level: i32) -> Self {
        match level {
            0 => Self::Debug,
            1 => Self::Info,
            2 => Self::Warn,
            _ => Self::Error,
        }
    }

    /// The level's lower-case name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One line of console output.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// When the function wrote it.
    pub timestamp: SystemTime,
    /// The console method's level.
    pub level: LogLevel,
    /// The formatted message, without its trailing newline.
    pub message: String,
}

/// The console output of the invocation running in an isolate (kept in its `OpState`).
#[derive(Debug, Default)]
pub struct ConsoleOutput {
    /// Lines in the order they were written.
    pub lines: Vec<LogLine>,
    /// Bytes of `lines`' messages.
    pub bytes: usize,
    /// Lines dropped because the output passed [`MAX_OUTPUT_BYTES`].
    pub dropped: usize,
}

impl ConsoleOutput {
    fn push(&mut self, level: LogLevel, message: &str) {
        self.push_at(SystemTime::now(), level, message);
    }

    /// Adds a line written at `timestamp` (its trailing newline dropped), unless the output is
    /// full ([`MAX_OUTPUT_BYTES`]), in which case it is counted as dropped.
    pub fn push_at(&mut self, timestamp: SystemTime, level: LogLevel, message: &str) {
        let message = message.strip_suffix('\n').unwrap_or(message);
        if self.bytes + message.len() > MAX_OUTPUT_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine {
            timestamp,
            level,
            message: message.to_owned(),
        });
    }
}

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
