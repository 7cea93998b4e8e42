//! `ANY /fn/{name}/{path...}` and `ANY /call/{name}/{token}/{path...}`: one invocation, its
//! response, and its logs.

use functions_host::Caller;
use functions_host::MAX_PAYLOAD_BYTES;
use functions_runtime::ResponseBody;
use http::HeaderName;
use http::HeaderValue;
use http::Request;
use http::Response;
use http::StatusCode;
use http::header;
use hyper::body::Incoming;

use super::ApiError;
use super::HttpResponse;
use super::State;
use super::body::Body;
use super::presented_key;

/// The request a function sees: the URL without the `prefix` it was invoked under (`/fn/{name}`;
/// `/` when nothing follows), query kept, on the request's host (the server's public host when
/// the `Host` header is not a host and port), and the prefix in `X-Forwarded-Prefix`.
fn function_request(
    prefix: &str,
    parts: &http::request::Parts,
    body: Vec<u8>,
    public_url: &str,
) -> functions_runtime::Request {
    // The scheme and host of the server's public URL (`http://127.0.0.1:8787`, or that of a
    // proxy in front of it).
    let (scheme, authority) = public_url.split_once("://").unwrap_or(("http", public_url));
    let authority = authority.split('/').next().unwrap_or_default();
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
        .unwrap_or_else(|| authority.to_owned());
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
        url: format!("{scheme}://{host}{rest}{query}"),
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
pub(crate) async fn invoke(
    state: &State,
    name: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let prefix = format!("/fn/{name}");
    let (parts, body) = request.into_parts();
    let key = presented_key(&parts.headers).map(<[u8]>::to_vec);
    let caller = Caller::Public {
        key: key.as_deref(),
    };
    serve(state, name, caller, &prefix, parts, body).await
}

/// `ANY /call/{name}/{token}/...`: the function's key-less address.
pub(crate) async fn invoke_by_token(
    state: &State,
    name: &str,
    token: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let prefix = format!("/call/{name}/{token}");
    let (parts, body) = request.into_parts();
    serve(state, name, Caller::CallToken(token), &prefix, parts, body).await
}

/// Runs function `name` for `caller` with the request invoked under `prefix`, and answers its
/// response. If the client goes away first, hyper drops this future and the host cancels the
/// invocation (holding the function's place until it has ended).
async fn serve(
    state: &State,
    name: &str,
    caller: Caller<'_>,
    prefix: &str,
    parts: http::request::Parts,
    body: Incoming,
) -> Result<HttpResponse, ApiError> {
    let body = state.read_body(body, MAX_PAYLOAD_BYTES).await?;
    let request = function_request(prefix, &parts, body.to_vec(), &state.public_url);
    let response = state.host.invoke_as(name, caller, request).await?;
    Ok(function_response(response))
}

/// The HTTP form of a function's response.
fn function_response(response: functions_runtime::Response) -> HttpResponse {
    let body = match response.body {
        ResponseBody::Full(bytes) => Body::full(bytes),
        ResponseBody::Stream(stream) => Body::Stream(stream),
    };
    response_of(response.status, response.headers, body)
}

/// The header that would let a service worker control paths beyond its script's directory.
const SERVICE_WORKER_ALLOWED: HeaderName = HeaderName::from_static("service-worker-allowed");

/// A response with a function's status and headers (those the HTTP layer cannot carry, and
/// `Service-Worker-Allowed`, are dropped) and `body`.
pub(crate) fn response_of(status: u16, headers: Vec<(String, String)>, body: Body) -> HttpResponse {
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            // Functions share the server's origin with the dashboard and /api: a service
            // worker a function registers stays within the function's own path.
            && name != SERVICE_WORKER_ALLOWED
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

    #[test]
    fn a_function_cannot_widen_a_service_workers_scope() {
        let headers = vec![
            ("Service-Worker-Allowed".to_owned(), "/".to_owned()),
            ("x-kept".to_owned(), "yes".to_owned()),
        ];
        let response = response_of(200, headers, Body::full(""));
        assert!(!response.headers().contains_key("service-worker-allowed"));
        assert_eq!(response.headers()["x-kept"], "yes");
    }

    const LISTEN: &str = "127.0.0.1:8787";
    const PUBLIC_URL: &str = "http://127.0.0.1:8787";

    #[test]
    fn the_function_sees_its_own_path_on_the_requests_host() {
        let listen = PUBLIC_URL;
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
            let request = function_request("/fn/f", &parts, Vec::new(), PUBLIC_URL);
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
