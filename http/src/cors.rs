//! CORS for `/api` on a server with API keys: a web page on any origin may call the API, with a
//! key. The key is a bearer token the page must hold, never a cookie, so no ambient authority
//! crosses origins. A server without keys answers no CORS (a public one would otherwise let any
//! page deploy and delete; a local-only one refuses cross-site `/api` requests outright, see
//! `local_only.rs`), and `/fn` answers are the functions' own.

use http::HeaderMap;
use http::HeaderName;
use http::HeaderValue;
use http::Method;
use http::Response;
use http::StatusCode;
use http::header;

use super::HttpResponse;
use super::body::Body;

/// Headers a page may send: the key and the body's type.
const ALLOW_HEADERS: &str = "authorization, content-type";

/// Methods the API takes.
const ALLOW_METHODS: &str = "GET, PUT, POST, DELETE";

/// Response headers a page may read besides the safelisted ones.
const EXPOSE_HEADERS: &str =
    "x-functions-host-error, x-call-id, x-call-state, retry-after, www-authenticate, allow";

/// How long a browser may cache a preflight's answer, in seconds.
const MAX_AGE: &str = "86400";

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), if `method` and `headers` make one.
pub(crate) fn preflight(method: &Method, headers: &HeaderMap) -> Option<HttpResponse> {
    if method != Method::OPTIONS
        || !headers.contains_key(header::ORIGIN)
        || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut response = Response::new(Body::full(""));
    *response.status_mut() = StatusCode::NO_CONTENT;
    set(
        &mut response,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, MAX_AGE),
        ],
    );
    Some(response)
}

/// Lets any origin read `response` (to a request that came with an `Origin`).
pub(crate) fn allow(response: &mut HttpResponse) {
    set(
        response,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS),
            // Answered only to requests with an `Origin`: a cache must tell them apart.
            (header::VARY, "origin"),
        ],
    );
}

fn set<const N: usize>(response: &mut HttpResponse, headers: [(HeaderName, &'static str); N]) {
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_preflight_gets_a_preflight_answer() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert!(preflight(&Method::OPTIONS, &headers).is_none());
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert!(preflight(&Method::GET, &headers).is_none());
        let response = preflight(&Method::OPTIONS, &headers).unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
            ALLOW_HEADERS
        );
    }
}
