//! `ANY /fn/{name}/{path...}` and `ANY /call/{name}/{token}/{path...}`: one invocation, its
//! response, and its logs.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

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
use super::auth::constant_time_eq;
use super::body::Body;
use super::lanes::Ticket;
use super::read_body;
use super::registry::Deployed;
use crate::store::LogEntry;
use functions_runtime::Cancel;
use functions_runtime::Controls;
use functions_runtime::InvokeError;
use functions_runtime::ResponseBody;

/// The request a function sees: the URL without the `prefix` it was invoked under (`/fn/{name}`;
/// `/` when nothing follows), query kept, on the request's host (this server's address when the
/// `Host` header is not a host and port), and the prefix in `X-Forwarded-Prefix`.
fn function_request(
    prefix: &str,
    parts: &http::request::Parts,
    body: Vec<u8>,
    listen: SocketAddr,
) -> functions_runtime::Request {
    let rest = parts.uri.path().strip_prefix(prefix).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    // A Host such as `evil/x?` must not move the path: only a host and port that the URL parser
    // functions use reads as one (no path, user, query or invalid address) is taken.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            url::Url::parse(&format!("http://{h}/"))
                .ok()
                .filter(|url| plain_authority(url, h))
        })
        .and_then(|url| {
            let host = url.host_str()?.to_owned();
            Some(
                url.port()
                    .map_or(host.clone(), |port| format!("{host}:{port}")),
            )
        })
        .unwrap_or_else(|| listen.to_string());
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
    headers.push(("x-forwarded-prefix".into(), prefix.to_owned()));
    functions_runtime::Request {
        method: parts.method.as_str().to_owned(),
        url: format!("http://{host}{rest}{query}"),
        headers,
        body,
        env: Default::default(),
    }
}

/// Whether `url`, parsed from `http://{host}/`, is that host and port alone.
fn plain_authority(url: &url::Url, host: &str) -> bool {
    url.path() == "/"
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && !host.is_empty()
        // `@a` parses as host `a` with an empty user name.
        && !host.contains('@')
}

/// `ANY /fn/{name}/...`: a function deployed with `"public": false` needs an API key too.
pub async fn invoke(
    state: &Arc<AppState>,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deployed = state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::not_found(name))?;
    if !deployed.public {
        state
            .api_keys
            .admit(request.headers())
            .map_err(ApiError::refused)?;
    }
    serve(state, &deployed, &format!("/fn/{name}"), request).await
}

/// `ANY /call/{name}/{token}/...`: the function's key-less address (an unknown name and a wrong
/// token look the same).
pub async fn invoke_by_token(
    state: &Arc<AppState>,
    name: &str,
    token: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let deployed = state
        .registry
        .get(name)
        .filter(|d| constant_time_eq(d.call_token.as_bytes(), token.as_bytes()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no function has this call address",
            )
        })?;
    serve(state, &deployed, &format!("/call/{name}/{token}"), request).await
}

/// Runs `deployed` with the request invoked under `prefix`, in its turn, and answers its
/// response.
async fn serve(
    state: &Arc<AppState>,
    deployed: &Deployed,
    prefix: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, super::MAX_PAYLOAD_BYTES).await?;
    let request = function_request(prefix, &parts, body.to_vec(), state.listen);
    let permit = queue_ticket(state, deployed)?.await;
    let cancel = Cancel::new();
    let controls = Controls {
        cancel: Some(cancel.clone()),
        start: None,
    };
    let invocation = {
        let state = state.clone();
        let function = deployed.function.clone();
        async move { execute(&state, &function, request, controls, permit).await }
    };
    let result = RunToEnd::new(invocation, cancel).await;
    Ok(function_response(result?))
}

/// Runs an invocation in place; if it is dropped first (the client disconnected, so hyper drops
/// the request), the invocation is cancelled and finished in a task of its own, which stores its
/// logs and keeps the function's place until the isolate is gone.
struct RunToEnd<T: 'static> {
    invocation: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    cancel: Cancel,
}

impl<T: 'static> RunToEnd<T> {
    fn new(invocation: impl Future<Output = T> + Send + 'static, cancel: Cancel) -> Self {
        Self {
            invocation: Some(Box::pin(invocation)),
            cancel,
        }
    }
}

impl<T: 'static> Future for RunToEnd<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let invocation = self.invocation.as_mut().expect("polled after completion");
        let output = std::task::ready!(invocation.as_mut().poll(cx));
        self.invocation = None;
        Poll::Ready(output)
    }
}

impl<T: 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        if let Some(invocation) = self.invocation.take() {
            self.cancel.cancel("the client disconnected");
            tokio::spawn(async move {
                invocation.await;
            });
        }
    }
}

/// A place in the function's FIFO lane (its concurrency limit); 429 when its queue is full.
pub(super) fn queue_ticket(state: &AppState, deployed: &Deployed) -> Result<Ticket, ApiError> {
    let name = deployed.function.name();
    let max_queued = state.calls.max_queued;
    if state.lanes.waiting(name) >= max_queued {
        return Err(ApiError::queue_full(name, max_queued));
    }
    Ok(state.lanes.enqueue(name, deployed.concurrency))
}

/// Runs one invocation with `controls`, holding `permit` (a place in line, kept until a
/// streamed body or `ctx.waitUntil` is done too), stores its console output, and returns its
/// response or the error to answer.
pub(super) async fn execute(
    state: &Arc<AppState>,
    function: &functions_runtime::Function,
    request: functions_runtime::Request,
    controls: Controls,
    permit: impl Send + 'static,
) -> Result<functions_runtime::Response, ApiError> {
    let name = function.name();
    let outcome = state.engine.invoke_with(function, request, controls).await;
    let mut logs = log_entries(outcome.logs, outcome.dropped_log_lines);
    if let Some(after_response) = outcome.after_response {
        // The function runs on (streaming its body, or `ctx.waitUntil`): its later lines are
        // stored when it is done, without holding up the response.
        let state = state.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let finished = after_response.await;
            drop(permit);
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
        Ok(response) => Ok(response),
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
        err @ InvokeError::Hung => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function_hung",
            err.to_string(),
        ),
        err @ InvokeError::Cancelled { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cancelled",
            err.to_string(),
        ),
        err @ InvokeError::EngineStopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            err.to_string(),
        ),
    }
}

/// The HTTP form of a function's response.
fn function_response(response: functions_runtime::Response) -> HttpResponse {
    let body = match response.body {
        ResponseBody::Full(bytes) => Body::full(bytes),
        ResponseBody::Stream(stream) => Body::Stream(stream),
    };
    response_of(response.status, response.headers, body)
}

/// A response with a function's status and headers (those the HTTP layer cannot carry are
/// dropped) and `body`.
pub(super) fn response_of(status: u16, headers: Vec<(String, String)>, body: Body) -> HttpResponse {
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            out.headers_mut().append(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> http::request::Parts {
        let mut request = Request::builder().method("POST").uri(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        request.body(()).unwrap().into_parts().0
    }

    const LISTEN: &str = "127.0.0.1:8787";

    #[test]
    fn the_function_sees_its_own_path_on_the_requests_host() {
        let listen = LISTEN.parse().unwrap();
        let request = function_request(
            "/fn/hello",
            &parts("/fn/hello/a/b?x=1", Some("example.com:8080")),
            Vec::new(),
            listen,
        );
        assert_eq!(request.url, "http://example.com:8080/a/b?x=1");
        assert!(
            request
                .headers
                .contains(&("x-forwarded-prefix".into(), "/fn/hello".into()))
        );
        let bare = function_request("/fn/hello", &parts("/fn/hello", None), Vec::new(), listen);
        assert_eq!(bare.url, "http://127.0.0.1:8787/");
        for (host, url) in [
            ("[::1]:9000", "http://[::1]:9000/x"),
            ("[::1]", "http://[::1]/x"),
            ("Example.COM:", "http://example.com/x"),
        ] {
            let request = function_request(
                "/fn/hello",
                &parts("/fn/hello/x", Some(host)),
                Vec::new(),
                listen,
            );
            assert_eq!(request.url, url);
        }
        for host in [
            "evil.com/admin?",
            "user@evil.com",
            "a b",
            "",
            "a:99999",
            "1.2.3.999",
        ] {
            let request = function_request(
                "/fn/hello",
                &parts("/fn/hello/x", Some(host)),
                Vec::new(),
                listen,
            );
            assert_eq!(request.url, "http://127.0.0.1:8787/x", "Host: {host:?}");
        }
    }

    proptest! {
        /// Whatever the path, query and Host header, the function gets a URL that parses, on
        /// the request's host or this server's, whose path is the request's after the prefix.
        #[test]
        fn any_request_becomes_a_url_with_the_same_path(
            rest in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){0,4}",
            query in proptest::option::of("[a-zA-Z0-9._~%!$&'()*+,;=:@/?-]{0,20}"),
            host in proptest::option::of("[ -~]{0,24}"),
        ) {
            let uri = match &query {
                Some(query) => format!("/fn/f{rest}?{query}"),
                None => format!("/fn/f{rest}"),
            };
            let Ok(uri) = uri.parse::<http::Uri>() else { return Ok(()) };
            let mut builder = Request::builder().uri(uri);
            if let Some(value) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
                builder = builder.header(header::HOST, value);
            }
            let parts = builder.body(()).unwrap().into_parts().0;
            let request = function_request("/fn/f", &parts, Vec::new(), LISTEN.parse().unwrap());
            let url = url::Url::parse(&request.url).expect("a URL");
            let expected = url::Url::parse(&format!("http://x{}", if rest.is_empty() { "/" } else { &rest })).unwrap();
            prop_assert_eq!(url.path(), expected.path());
            let server = url::Url::parse(&format!("http://{LISTEN}/")).unwrap();
            let from_header = host.as_deref().and_then(|h| url::Url::parse(&format!("http://{h}/")).ok());
            prop_assert!(
                url.host() == server.host()
                    || from_header.is_some_and(|h| h.host() == url.host()),
                "{} for Host {:?}", request.url, host
            );
        }
    }
}
