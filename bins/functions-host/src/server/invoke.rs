//! `ANY /fn/{name}/{path...}`: one invocation, its response, and its logs.

use std::sync::Arc;

use http::HeaderName;
use http::HeaderValue;
use http::Request;
use http::Response;
use http::StatusCode;
use http::header;
use hyper::body::Incoming;

use super::ApiError;
use super::AppState;
use super::HttpResponse;
use super::body::Body;
use super::read_body;
use crate::store::LogEntry;
use functions_runtime::InvokeError;
use functions_runtime::ResponseBody;

/// Runs function `name` with the request, stores its console output, answers its response.
pub async fn invoke(
    state: &Arc<AppState>,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let function = state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::not_found(name))?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, super::MAX_PAYLOAD_BYTES).await?;

    // The function sees the URL without the /fn/{name} prefix, host and query kept.
    let prefix = format!("/fn/{name}");
    let rest = parts.uri.path().strip_prefix(prefix.as_str()).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| state.listen.to_string());
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.push(("x-forwarded-prefix".into(), prefix.clone()));
    let request = functions_runtime::Request {
        method: parts.method.as_str().to_owned(),
        url: format!("http://{host}{rest}{query}"),
        headers,
        body: body.to_vec(),
        env: Default::default(),
    };

    let outcome = state.engine.invoke(&function, request).await;
    let mut logs = log_entries(outcome.logs, outcome.dropped_log_lines);
    if let Some(after_response) = outcome.after_response {
        // The function runs on (streaming its body, or `ctx.waitUntil`): its later lines are
        // stored when it is done, without holding up the response.
        let state = state.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let finished = after_response.await;
            let mut logs = log_entries(finished.logs, finished.dropped_log_lines);
            if let Some(err) = finished.error {
                logs.push(LogEntry::now("error", error_log_line(&err)));
            }
            if let Err(err) = tokio::task::block_in_place(|| state.store.append_logs(&name, &logs))
            {
                eprintln!("storing the logs of {name}: {err:#}");
            }
        });
    }
    let result = match outcome.result {
        Ok(response) => Ok(function_response(response)),
        Err(err) => {
            logs.push(LogEntry::now("error", error_log_line(&err)));
            Err(error_response(err))
        }
    };
    if !logs.is_empty() {
        tokio::task::block_in_place(|| state.store.append_logs(name, &logs))
            .map_err(ApiError::internal)?;
    }
    result
}

/// Log entries for an invocation's console lines, with a warning if some were dropped.
fn log_entries(lines: Vec<functions_runtime::LogLine>, dropped: usize) -> Vec<LogEntry> {
    let mut logs: Vec<LogEntry> = lines
        .into_iter()
        .map(|line| LogEntry {
            timestamp: line.timestamp,
            level: line.level.as_str(),
            message: line.message,
        })
        .collect();
    if dropped > 0 {
        logs.push(LogEntry::now(
            "warn",
            format!("{dropped} console lines dropped: one invocation may log at most 1 MiB"),
        ));
    }
    logs
}

/// How a failed invocation appears in the function's logs: the stack when there is one.
fn error_log_line(err: &InvokeError) -> String {
    match err {
        InvokeError::Threw { stack, .. } if !stack.is_empty() => stack.clone(),
        other => other.to_string(),
    }
}

/// The HTTP error for an invocation that produced no response.
fn error_response(err: InvokeError) -> ApiError {
    match err {
        InvokeError::Threw { message, stack } => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "function_error", message)
                .with("stack", stack)
        }
        InvokeError::Compile(err) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_error",
            err.to_string(),
        )
        .with("file", err.file)
        .with("line", err.line)
        .with("column", err.column),
        err @ InvokeError::Exited { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_error",
            err.to_string(),
        ),
        err @ InvokeError::TimeLimit { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "time_limit", err.to_string())
        }
        err @ InvokeError::MemoryLimit { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "memory_limit",
            err.to_string(),
        ),
        err @ InvokeError::OutputTooLarge { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "output_too_large",
            err.to_string(),
        ),
        err @ InvokeError::EngineStopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            err.to_string(),
        ),
    }
}

/// The HTTP form of a function's response; headers the HTTP layer cannot carry are dropped.
fn function_response(response: functions_runtime::Response) -> HttpResponse {
    let body = match response.body {
        ResponseBody::Full(bytes) => Body::full(bytes),
        ResponseBody::Stream(stream) => Body::Stream(stream),
    };
    let mut out = Response::new(body);
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            out.headers_mut().append(name, value);
        }
    }
    out
}
