//! What a host's operations fail with: a kind a program can match on, a message for people, and
//! details (a compile error's file and position, a function's stack). No transport in it: the
//! HTTP layer chooses each kind's status.

use std::time::Duration;

use functions_runtime::CompileError;
use functions_runtime::InvokeError;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

/// The kinds of failure, by their stable codes (the `code` of an HTTP error body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is wrong: a bad name, manifest, setting or parameter.
    BadRequest,
    /// Deployed code does not compile or link.
    CompileError,
    /// No such function, call or call address.
    NotFound,
    /// No valid API key.
    Unauthorized,
    /// The function's queue of waiting calls is full.
    QueueFull,
    /// The API key's request quota is spent (see [`Error::retry_after`]).
    QuotaExceeded,
    /// A call's result was rotated out of its function's result cache before it was fetched.
    Gone,
    /// A payload over the size limit.
    PayloadTooLarge,
    /// The function threw, failed to load, or its guest exited with an error.
    FunctionError,
    /// The function ran past its CPU or wall-clock limit.
    TimeLimit,
    /// The function ran out of memory.
    MemoryLimit,
    /// The function produced more output than a response may carry.
    OutputTooLarge,
    /// The function's handler can never settle: it would never respond.
    FunctionHung,
    /// The invocation was cancelled (its client went away).
    Cancelled,
    /// The engine is shutting down.
    Unavailable,
    /// A call was running when its host stopped; it was not run again.
    HostRestarted,
    /// The host failed (its store, most often).
    Internal,
}

impl ErrorKind {
    /// The stable code (`not_found`, `compile_error`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::CompileError => "compile_error",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::QueueFull => "queue_full",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Gone => "gone",
            Self::PayloadTooLarge => "payload_too_large",
            Self::FunctionError => "function_error",
            Self::TimeLimit => "time_limit",
            Self::MemoryLimit => "memory_limit",
            Self::OutputTooLarge => "output_too_large",
            Self::FunctionHung => "function_hung",
            Self::Cancelled => "cancelled",
            Self::Unavailable => "unavailable",
            Self::HostRestarted => "host_restarted",
            Self::Internal => "internal",
        }
    }
}

/// A failed host operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Extra facts (`file`, `line`, `column` of a compile error; `stack` of a throw).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    details: serde_json::Map<String, Value>,
    /// When a spent quota renews.
    #[serde(skip)]
    retry_after: Option<Duration>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// A [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// No function `name`.
    pub fn function_not_found(name: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("no function named {name:?}"))
    }

    /// The host itself failed.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, format!("{err:#}"))
    }

    /// The store failed: [`ErrorKind::Unavailable`] while it cannot be reached (a shared
    /// database restarting, say: worth trying again shortly), else [`ErrorKind::Internal`].
    pub fn store(err: anyhow::Error) -> Self {
        if crate::store::is_unreachable(&err) {
            return Self::new(
                ErrorKind::Unavailable,
                format!("the store cannot be reached now: try again shortly ({err:#})"),
            );
        }
        Self::internal(err)
    }

    /// A request without a valid API key.
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            "this server requires an API key: Authorization: Bearer KEY \
             (the CLI sends FUNCTIONS_HOST_API_KEY)",
        )
    }

    /// A function whose queue holds `max` waiting calls already.
    pub fn queue_full(name: &str, max: usize) -> Self {
        let mut err = Self::new(
            ErrorKind::QueueFull,
            format!("{max} calls of {name:?} are waiting already: try again later"),
        );
        err.retry_after = Some(Duration::from_secs(1));
        err
    }

    /// A request whose key's request quota is spent for the next `retry_after`.
    pub fn quota_spent(retry_after: Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let mut err = Self::new(
            ErrorKind::QuotaExceeded,
            format!("this API key's request quota is spent: retry in {seconds} s"),
        );
        err.retry_after = Some(Duration::from_secs(seconds.max(1)));
        err
    }

    /// A payload over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// Code of function `name` that does not compile or link, its file named by its path in
    /// the function.
    pub fn compile(name: &str, err: CompileError) -> Self {
        let root = format!("file:///{name}/");
        let file = err.file.strip_prefix(&root).unwrap_or(&err.file).to_owned();
        let message = err.message.replace(&root, "");
        Self::new(ErrorKind::CompileError, message)
            .with("file", file)
            .with("line", err.line)
            .with("column", err.column)
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Extra facts: `file`, `line`, `column`, `stack`.
    pub fn details(&self) -> &serde_json::Map<String, Value> {
        &self.details
    }

    /// When to try again, for a spent quota.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// What kind of error an invocation that produced no response is.
pub(crate) fn kind_of(err: &InvokeError) -> ErrorKind {
    match err {
        InvokeError::Threw { .. } | InvokeError::Compile(_) | InvokeError::Exited { .. } => {
            ErrorKind::FunctionError
        }
        InvokeError::TimeLimit { .. } => ErrorKind::TimeLimit,
        InvokeError::MemoryLimit { .. } => ErrorKind::MemoryLimit,
        InvokeError::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
        InvokeError::Hung => ErrorKind::FunctionHung,
        InvokeError::Cancelled { .. } => ErrorKind::Cancelled,
        InvokeError::EngineStopped => ErrorKind::Unavailable,
        InvokeError::WorkerFailed => ErrorKind::Internal,
    }
}

impl From<InvokeError> for Error {
    /// An invocation that produced no response.
    fn from(err: InvokeError) -> Self {
        let kind = kind_of(&err);
        match err {
            InvokeError::Threw { message, stack } => Self::new(kind, message).with("stack", stack),
            InvokeError::Compile(err) => Self::new(kind, err.to_string())
                .with("file", err.file)
                .with("line", err.line)
                .with("column", err.column),
            other => Self::new(kind, other.to_string()),
        }
    }
}
