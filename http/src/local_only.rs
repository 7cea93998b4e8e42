//! A server with no API keys is open to anyone who reaches it, so unless it is started as
//! public it serves this machine only: connections must come from it (a loopback address, or the
//! address they reached, when the server listens on every interface), requests must name a
//! loopback host (which defeats DNS rebinding: a browser sends the attacker's own name as
//! `Host`), and `/api` refuses requests a
//! browser sends on behalf of another site (a cross-origin form could rotate a token or queue a
//! call otherwise).

use std::net::SocketAddr;

use http::HeaderMap;
use http::StatusCode;
use http::header;

use super::ApiError;

/// Why a request to a local-only server is refused, if it is. `api` says whether it is for
/// `/api`; `public_host` is the host of the server's public URL, which is accepted too.
pub(crate) fn refusal(headers: &HeaderMap, api: bool, public_host: &str) -> Option<ApiError> {
    if let Some(host) = headers.get(header::HOST) {
        let host = String::from_utf8_lossy(host.as_bytes());
        let name = host_name(&host);
        if !is_loopback_name(name) && !name.eq_ignore_ascii_case(public_host) {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!(
                    "this server has no API keys, so it answers only requests for a loopback \
                     host (localhost, 127.0.0.1, [::1]), not {host:?}: configure API keys, or \
                     start it with --public"
                ),
            ));
        }
    }
    if api && let Some(site) = foreign_site(headers) {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "this server has no API keys, so /api refuses requests from other web sites \
                 ({site}): configure API keys, or start it with --public"
            ),
        ));
    }
    None
}

/// Whether a connection from `peer` to `local` comes from this machine: a loopback address, or
/// the very address it reached (a program here using one of the machine's own addresses).
pub(crate) fn from_this_machine(peer: SocketAddr, local: SocketAddr) -> bool {
    let peer = peer.ip().to_canonical();
    peer.is_loopback() || peer == local.ip().to_canonical()
}

/// The answer to a connection from another machine, which a local-only server closes at once.
pub(crate) fn refusal_of_another_machine() -> Vec<u8> {
    let body = serde_json::json!({
        "error": {
            "code": "not_this_machine",
            "message": "this server has no API keys, so it answers only programs on its own \
                        machine: configure API keys, or start it with --public",
        }
    })
    .to_string();
    format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nconnection: close\r\n\
         x-functions-host-error: not_this_machine\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The host of a `Host` header value (no port; IPv6 without brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

/// `localhost`, a name under `.localhost` (RFC 6761: always loopback), or a loopback address.
fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The other site a browser says the request comes from: an `Origin` whose host and port are
/// not the request's own `Host`, or a `Sec-Fetch-Site` other than same-origin or none.
fn foreign_site(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let host = headers
            .get(header::HOST)
            .map(|host| String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase());
        let same = origin
            .split_once("://")
            .is_some_and(|(_scheme, authority)| Some(authority.to_ascii_lowercase()) == host);
        if !same {
            return Some(format!("Origin: {origin}"));
        }
    }
    let site = headers.get("sec-fetch-site")?.to_str().ok()?;
    (!matches!(site, "same-origin" | "none")).then(|| format!("Sec-Fetch-Site: {site}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_from_loopback_or_the_address_reached_are_from_this_machine() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        let local = at("192.0.2.7:8787");
        for peer in [
            "127.0.0.1:5000",
            "127.8.9.10:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
            "192.0.2.7:5000",
            "[::ffff:192.0.2.7]:5000",
        ] {
            assert!(from_this_machine(at(peer), local), "{peer}");
        }
        for peer in ["192.0.2.8:5000", "10.0.0.1:80", "[2001:db8::1]:5000"] {
            assert!(!from_this_machine(at(peer), local), "{peer}");
        }
        let refusal = String::from_utf8(refusal_of_another_machine()).unwrap();
        let (head, body) = refusal.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "not_this_machine");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                )
            })
            .collect()
    }

    fn code(pairs: &[(&str, &str)], api: bool) -> Option<&'static str> {
        refusal(&headers(pairs), api, "functions.example").map(|err| err.code())
    }

    #[test]
    fn loopback_hosts_pass_and_other_names_do_not() {
        for host in [
            "127.0.0.1:8787",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:1",
            "app.localhost:8787",
            "[::1]:8787",
            "functions.example",
        ] {
            assert_eq!(code(&[("host", host)], true), None, "{host}");
        }
        for host in [
            "evil.example:8787",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]:80",
            "127.0.0.1.nip.io",
        ] {
            assert_eq!(
                code(&[("host", host)], false),
                Some("host_not_allowed"),
                "{host}"
            );
        }
        // No Host at all (HTTP/1.0) is no browser's request.
        assert_eq!(code(&[], true), None);
    }

    #[test]
    fn api_requests_from_other_sites_are_refused() {
        let host = ("host", "127.0.0.1:8787");
        assert_eq!(
            code(&[host, ("origin", "http://127.0.0.1:8787")], true),
            None
        );
        assert_eq!(code(&[host, ("sec-fetch-site", "same-origin")], true), None);
        assert_eq!(code(&[host, ("sec-fetch-site", "none")], true), None);
        for foreign in [
            ("origin", "https://evil.example"),
            ("origin", "http://127.0.0.1:9999"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            assert_eq!(
                code(&[host, foreign], true),
                Some("cross_origin"),
                "{foreign:?}"
            );
            // Functions answer their own callers, browsers included.
            assert_eq!(code(&[host, foreign], false), None, "{foreign:?}");
        }
    }
}
