//! `POST|GET /rpc/{name}`: the capnweb protocol, so that the npm `capnweb` package calls a
//! function's default export as its main object. `POST` is an HTTP batch (the body's lines are
//! the client's messages; the answer's lines are the function's); `GET` with a WebSocket upgrade
//! is a session of one text frame per message. A private function's API key comes as
//! `Authorization: Bearer KEY`, or as `?api_key=KEY` (a browser's or Node's `WebSocket` cannot
//! set headers).

use std::time::Duration;

use functions_host::Caller;
use functions_host::CapnwebSession;
use functions_host::CapnwebTransport;
use functions_host::MAX_PAYLOAD_BYTES;
use futures_util::SinkExt;
use futures_util::StreamExt;
use http::HeaderMap;
use http::HeaderValue;
use http::Method;
use http::Request;
use http::Response;
use http::StatusCode;
use http::header;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::ApiError;
use super::HttpResponse;
use super::State;
use super::body::Body;
use super::presented_key;

/// `POST|GET /rpc/{name}`.
pub(crate) async fn serve(
    state: &State,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let method = request.method().clone();
    if method == Method::POST {
        batch(state, name, request).await
    } else if method == Method::GET {
        websocket(state, name, request)
    } else {
        Err(ApiError::method_not_allowed("POST, GET"))
    }
}

/// The API key a capnweb client presents: `Authorization: Bearer`, else `?api_key=`.
fn key_of(headers: &HeaderMap, query: Option<&str>) -> Option<Vec<u8>> {
    if let Some(key) = presented_key(headers) {
        return Some(key.to_vec());
    }
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "api_key")
        .map(|(_, key)| key.into_owned().into_bytes())
}

/// Opens a session of function `name` for a client that sent `headers` and `query`: with the
/// key it presents, in the trace of its `traceparent`.
fn open_session(
    state: &State,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    transport: CapnwebTransport,
) -> Result<CapnwebSession, ApiError> {
    let key = key_of(headers, query);
    let caller = Caller::Public {
        key: key.as_deref(),
    };
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    Ok(state.host.capnweb(name, caller, transport, traceparent)?)
}

/// An HTTP batch: one session for the request's messages.
async fn batch(
    state: &State,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let body = state.read_body(body, MAX_PAYLOAD_BYTES).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("a capnweb batch must be UTF-8 text"))?;
    let session = open_session(
        state,
        name,
        &parts.headers,
        parts.uri.query(),
        CapnwebTransport::HttpBatch,
    )?;
    let messages = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(str::to_owned);
    let answers = session.batch(messages).await;
    let mut response = Response::new(Body::full(answers.join("\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// Whether a header lists `token` (comma-separated, any case).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// A WebSocket: the upgrade is answered, and the session runs in a task of its own.
fn websocket(
    state: &State,
    name: &str,
    mut request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let headers = request.headers();
    if !lists(headers, header::UPGRADE, "websocket")
        || !lists(headers, header::CONNECTION, "upgrade")
    {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "GET /rpc/{name} is a capnweb WebSocket session: upgrade to a WebSocket, or POST an \
             HTTP batch",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err(ApiError::bad_request(
            "only WebSocket version 13 is supported (Sec-WebSocket-Version: 13)",
        ));
    }
    let Some(accept) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| derive_accept_key(key.as_bytes()))
    else {
        return Err(ApiError::bad_request(
            "a WebSocket upgrade needs a Sec-WebSocket-Key",
        ));
    };
    let session = open_session(
        state,
        name,
        headers,
        request.uri().query(),
        CapnwebTransport::WebSocket,
    )?;
    let upgrade = hyper::upgrade::on(&mut request);
    let stopping = state.stopping.clone();
    tokio::spawn(async move {
        // A failed upgrade drops the session: it ends.
        let Ok(upgraded) = upgrade.await else { return };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_PAYLOAD_BYTES))
            .max_frame_size(Some(MAX_PAYLOAD_BYTES));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        relay(socket, session, stopping).await;
    });
    let mut response = Response::new(Body::full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a header value"),
    );
    Ok(response)
}

/// Carries a session's messages over `socket` until either side ends it, the client is idle
/// for the function's wall-clock limit, or the server stops.
async fn relay<S>(
    mut socket: WebSocketStream<S>,
    mut session: CapnwebSession,
    stopping: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let idle = session.idle_timeout();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let close = |code: CloseCode, reason: &str| {
        Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })
    };
    let closing = loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                    session.send(text.as_str().to_owned());
                }
                Some(Ok(Message::Binary(_))) => {
                    break close(CloseCode::Unsupported, "capnweb messages are text frames");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // The client closed (tungstenite answers its close) or the connection failed.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
            },
            outgoing = session.recv() => match outgoing {
                Some(text) => {
                    if socket.send(Message::text(text)).await.is_err() {
                        break None;
                    }
                }
                None => break close(CloseCode::Normal, "the RPC session has ended"),
            },
            () = &mut timer => {
                break close(CloseCode::Policy, &idle_reason(idle));
            }
            () = super::stopped(stopping.clone()) => {
                break close(CloseCode::Away, "the server is shutting down");
            }
        }
    };
    // The client sends nothing more: the session ends (if it had not).
    session.finish();
    if let Some(frame) = closing {
        let _ = socket.close(Some(frame)).await;
    } else {
        let _ = socket.flush().await;
    }
}

fn idle_reason(idle: Duration) -> String {
    format!(
        "no message for {} (the function's wall-clock limit)",
        humantime::format_duration(idle)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(key_of(&headers, None), None);
        assert_eq!(
            key_of(&headers, Some("x=1&api_key=a%20b")),
            Some(b"a b".to_vec())
        );
        assert_eq!(key_of(&headers, Some("key=k")), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(
            key_of(&headers, Some("api_key=q")),
            Some(b"from-header".to_vec())
        );
    }

    #[test]
    fn upgrade_headers_are_token_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(lists(&headers, header::CONNECTION, "upgrade"));
        assert!(!lists(&headers, header::UPGRADE, "websocket"));
    }
}
