//! The dashboard at `/`, driven in headless Chromium by Playwright (`tests/dashboard`) against a
//! real server with API keys: the key prompt, the functions, an invocation, the live log tail,
//! a queued call and the charts.

use crate::harness::Server;
use crate::harness::command;
use crate::harness::fixture;
use crate::harness::repository;
use crate::harness::request_with_headers_and_body;

#[test]
fn the_dashboard_shows_functions_invokes_them_and_tails_their_logs_in_a_browser() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        data.path(),
        &[],
        &[("FUNCTIONS_HOST_API_KEYS", "dashboard-key admin")],
    );
    // The page's answers carry a policy that allows no script or style but its own files.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert_eq!(server.get("/dashboard/app.js").status, 200);
    assert_eq!(server.get("/dashboard/nothing.js").status, 404);
    // Not public: invoking it from the page needs the key too.
    let reply = request_with_headers_and_body(
        &server.base,
        "PUT",
        "/api/functions/hello",
        &[
            ("authorization", "Bearer dashboard-key"),
            ("content-type", "application/json"),
        ],
        Some(
            serde_json::json!({
                "files": {"index.js": String::from_utf8(fixture("hello.js")).unwrap()},
                "public": false,
            })
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    // Screenshots go to DASHBOARD_SCREENSHOTS when set (docs/ holds the README's), else away.
    let shots = tempfile::tempdir().unwrap();
    let shots_dir = std::env::var("DASHBOARD_SCREENSHOTS")
        .unwrap_or_else(|_| shots.path().to_string_lossy().into_owned());
    let output = command("node")
        .arg(repository().join("tests/dashboard/dashboard.test.mjs"))
        .env("FUNCTIONS_HOST_URL", &server.base)
        .env("FUNCTIONS_HOST_API_KEY", "dashboard-key")
        .env("DASHBOARD_FUNCTION", "hello")
        .env("SCREENSHOT_DIR", &shots_dir)
        .output()
        .expect("node");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the browser test failed:\n{printed}"
    );
    for shot in ["dashboard.png", "dashboard-logs.png"] {
        let bytes = std::fs::read(std::path::Path::new(&shots_dir).join(shot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
}
