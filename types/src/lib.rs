//! What goes in and out of a functions-host invocation, whatever runs it: [`Request`],
//! [`Response`] with its [`ResponseBody`], and the function's console output ([`LogLine`]).
//! These types need neither V8 nor wasmtime, so an embedder of either engine alone can name them.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::time::SystemTime;

/// The request an invocation runs with.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Absolute URL as the function sees it.
    pub url: String,
    /// Header names and values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The function's environment variables, given to the handler as `env`.
    pub env: BTreeMap<String, String>,
}

impl Request {
    /// A `POST` of a JSON body to `http://localhost/`: the event of a plain-function handler.
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".into(),
            url: "http://localhost/".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            env: BTreeMap::new(),
        }
    }

    /// A `GET` of `url` without a body.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            ..Self::default()
        }
    }
}

/// The header that marks an error the host answered (its value is the error's code), as opposed
/// to a function's own response with the same status. Functions cannot set it: it is dropped
/// from their responses.
pub const HOST_ERROR_HEADER: &str = "x-functions-host-error";

/// The response an invocation produced.
#[derive(Debug, Default)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body: whole, or streamed while the function keeps running.
    pub body: ResponseBody,
}

/// A response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// The whole body (the handler's body was not a stream, or there was none).
    Full(Vec<u8>),
    /// Chunks of a `ReadableStream` body, as the function produces them.
    Stream(BodyStream),
}

impl Default for ResponseBody {
    fn default() -> Self {
        Self::Full(Vec::new())
    }
}

impl ResponseBody {
    /// The whole body, reading a stream to its end; `Err` with the reason if the stream failed.
    pub async fn bytes(self) -> Result<Vec<u8>, String> {
        self.bytes_within(usize::MAX)
            .await
            .map_err(|err| match err {
                BodyError::Failed(reason) => reason,
                BodyError::TooLarge => unreachable!("no body is larger than usize::MAX bytes"),
            })
    }

    /// The whole body if it is at most `limit` bytes. A stream is read until it ends or passes
    /// the limit, then dropped (cancelling it): a body without end costs `limit` bytes at most.
    pub async fn bytes_within(self, limit: usize) -> Result<Vec<u8>, BodyError> {
        match self {
            Self::Full(bytes) if bytes.len() > limit => Err(BodyError::TooLarge),
            Self::Full(bytes) => Ok(bytes),
            Self::Stream(mut stream) => {
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(BodyError::Failed)?;
                    if bytes.len() + chunk.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(bytes)
            }
        }
    }

    /// The body if it is whole already.
    pub fn as_full(&self) -> Option<&[u8]> {
        match self {
            Self::Full(bytes) => Some(bytes),
            Self::Stream(_) => None,
        }
    }
}

/// Why [`ResponseBody::bytes_within`] has no body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The function's stream failed, for this reason.
    Failed(String),
    /// The body is larger than the limit.
    TooLarge,
}

/// The chunks of a streamed response body. Dropping it tells the function its reader is gone
/// (its stream is cancelled).
#[derive(Debug)]
pub struct BodyStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>);

impl BodyStream {
    /// The stream whose chunks (or the reason it failed) arrive on `chunks`.
    pub fn new(chunks: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>) -> Self {
        Self(chunks)
    }

    /// The next chunk; `None` after the last, `Err` when the function's stream failed.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, String>> {
        self.0.recv().await
    }

    /// [`BodyStream::next`] for implementors of poll-based interfaces (such as `http_body::Body`).
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Vec<u8>, String>>> {
        self.0.poll_recv(cx)
    }
}

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
    /// The level of `console` level number `level` (0 debug, 1 info, 2 warn, else error).
    pub fn from_console(level: i32) -> Self {
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
    /// Written by the host about the invocation (a call it made to another function, say),
    /// not by the function.
    pub host: bool,
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
    /// Adds a line written now (see [`ConsoleOutput::push_at`]).
    pub fn push(&mut self, level: LogLevel, message: &str) {
        self.push_at(SystemTime::now(), level, message);
    }

    /// Adds a line written at `timestamp` (its trailing newline dropped), unless the output is
    /// full ([`MAX_OUTPUT_BYTES`]), in which case it is counted as dropped.
    pub fn push_at(&mut self, timestamp: SystemTime, level: LogLevel, message: &str) {
        self.add(timestamp, level, message, false);
    }

    /// Adds a line of the host's about the invocation, written now (see [`LogLine::host`]).
    pub fn push_host(&mut self, level: LogLevel, message: &str) {
        self.add(SystemTime::now(), level, message, true);
    }

    fn add(&mut self, timestamp: SystemTime, level: LogLevel, message: &str, host: bool) {
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
            host,
        });
    }
}
