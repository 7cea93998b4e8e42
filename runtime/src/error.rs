//! Errors of deploying and invoking functions.

#[cfg(feature = "js")]
use deno_core::error::CoreError;
#[cfg(feature = "js")]
use deno_core::error::CoreErrorKind;
#[cfg(feature = "js")]
use deno_core::error::JsError;

/// A module that does not compile (or does not link): where, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {file}:{line}:{column}")]
pub struct CompileError {
    /// V8's message, e.g. `SyntaxError: Unexpected token '}'`.
    pub message: String,
    /// The module's URL (`file:///{function}/{entry}`).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

/// Why an invocation produced no response.
#[derive(Clone, Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function threw, or its handler's promise rejected.
    #[error("{message}")]
    Threw {
        /// The exception's message, e.g. `Uncaught Error: boom`.
        message: String,
        /// The stack trace as V8 formats it.
        stack: String,
    },
    /// The function's module failed to compile or link.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A WebAssembly guest exited with a status other than 0.
    #[error("the function exited with status {code}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Exited {
        /// The exit status.
        code: i32,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The function ran past its time limit and was stopped.
    #[error("the function ran past its time limit of {} ms and was stopped", limit.as_millis())]
    TimeLimit {
        /// The limit it ran past.
        limit: std::time::Duration,
    },
    /// The function needed more memory than its limit allows and was stopped.
    #[error("the function ran out of memory: it may use at most {limit} bytes")]
    MemoryLimit {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The function's response body is over the size limit.
    #[error("the function's output is larger than the limit of {limit} bytes")]
    OutputTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The handler's promise can never settle: nothing it could wait for is left (no timer,
    /// fetch or other work pending), so the function would never respond.
    #[error(
        "the function hung: its handler returned a promise that can never settle (nothing is left for it to wait on: no timer, fetch or other pending work), so it would never respond"
    )]
    Hung,
    /// The invocation was cancelled by its caller (for instance, the client disconnected) and
    /// its isolate stopped.
    #[error("the invocation was cancelled: {reason}")]
    Cancelled {
        /// Why, as the caller said.
        reason: String,
    },
    /// The engine's workers are gone (the engine was dropped).
    #[error("the engine is not running")]
    EngineStopped,
    /// The worker thread running the invocation failed (a bug in the host, not the function);
    /// it was replaced.
    #[error("the host failed while running this invocation (its worker was replaced)")]
    WorkerFailed,
}

#[cfg(feature = "js")]
impl InvokeError {
    /// Classifies an error of loading or running a module.
    pub(crate) fn from_core(err: CoreError) -> Self {
        match *err.0 {
            CoreErrorKind::Js(js) => Self::from_js(*js),
            other => Self::Threw {
                message: other.to_string(),
                stack: String::new(),
            },
        }
    }

    pub(crate) fn from_js(js: JsError) -> Self {
        let stack = js.stack.clone().unwrap_or_else(|| js.to_string());
        // The host's own frames (`ext:` modules, Pyodide's `pyodide:` glue) say nothing about
        // the function.
        let stack = stack
            .lines()
            .filter(|line| !line.contains("(ext:") && !line.contains("(pyodide:"))
            .collect::<Vec<_>>()
            .join("\n");
        Self::Threw {
            message: js.exception_message.clone(),
            stack,
        }
    }
}

#[cfg(feature = "js")]
impl CompileError {
    /// The compile error in `err`, if it is one (a syntax or link error of a module).
    pub(crate) fn from_core(err: &CoreError, fallback_file: &str) -> Option<Self> {
        let CoreErrorKind::Js(js) = &*err.0 else {
            return None;
        };
        let is_compile_error = matches!(js.name.as_deref(), Some("SyntaxError" | "ReferenceError"))
            || js.exception_message.contains("SyntaxError");
        if !is_compile_error {
            return None;
        }
        let frame = js.frames.first();
        Some(Self {
            message: js
                .exception_message
                .trim_start_matches("Uncaught ")
                .to_owned(),
            file: frame
                .and_then(|f| f.file_name.clone())
                .unwrap_or_else(|| fallback_file.to_owned()),
            line: frame.and_then(|f| f.line_number).unwrap_or(0) as u32,
            column: frame.and_then(|f| f.column_number).unwrap_or(0) as u32,
        })
    }
}
