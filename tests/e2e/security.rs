//! What a function, a caller and a key can and cannot reach (the security model in README).

#[test]
fn the_api_key_that_let_a_caller_in_never_reaches_the_function() {
    let data = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "platform-key")],
    );
    let source = "export default { fetch: (r) => Response.json({ authorization: r.headers.get('authorization') }) };";
    for (name, public) in [("private", false), ("open", true)] {
        let manifest = serde_json::json!({ "files": { "index.js": source }, "public": public });
        let reply = crate::harness::request_with_headers_and_body(
            &server.base,
            "PUT",
            &format!("/api/functions/{name}"),
            &[
                ("authorization", "Bearer platform-key"),
                ("content-type", "application/json"),
            ],
            Some(manifest.to_string().as_bytes()),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let seen = |name: &str, authorization: &str| {
        let reply = crate::harness::request_with_headers(
            &server.base,
            "GET",
            &format!("/fn/{name}/"),
            &[("authorization", authorization)],
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["authorization"].clone()
    };
    // The key a private function needs is the host's: the function never sees it.
    assert_eq!(
        seen("private", "Bearer platform-key"),
        serde_json::Value::Null
    );
    assert_eq!(seen("open", "Bearer platform-key"), serde_json::Value::Null);
    // The function's own clients' credentials are the function's.
    assert_eq!(seen("open", "Bearer app-token"), "Bearer app-token");
}
