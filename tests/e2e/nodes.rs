//! Several nodes on one PostgreSQL (`serve --store postgres://...`): any node serves any
//! function, whichever node it was deployed on, and every node reads the same logs.

use std::time::Duration;
use std::time::Instant;

use crate::harness::Server;

/// `count` servers on one new database of the tests' throw-away PostgreSQL server, each with a
/// data directory of its own.
fn nodes(count: usize) -> (Vec<Server>, Vec<tempfile::TempDir>) {
    let url = functions_test_postgres::database();
    let dirs: Vec<_> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = dirs
        .iter()
        .map(|dir| Server::start_with(dir.path(), &["--store", &url], &[]))
        .collect();
    (servers, dirs)
}

/// Invokes `name` on `node` until it answers `expected`, for at most `within`; how long it took.
fn served_within(node: &Server, name: &str, expected: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let reply = node.post(&format!("/fn/{name}"), "{}");
        if reply.status == 200 && reply.json() == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} did not serve {expected:?} within {within:?}: {} {}",
            node.base,
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_deploy_on_one_node_is_served_by_every_node_within_a_second() {
    let (nodes, _dirs) = nodes(3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.deploy("greet", b"export default () => 'v1'");
    for node in [b, c] {
        served_within(node, "greet", "v1", Duration::from_secs(1));
    }
    c.deploy("greet", b"export default () => 'v2'");
    for node in [a, b] {
        served_within(node, "greet", "v2", Duration::from_secs(1));
    }
    // Every node lists it at its new version, with the same call token.
    let listed: Vec<_> = nodes
        .iter()
        .map(|node| {
            let list = node.get("/api/functions").json();
            let function = list["functions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "greet")
                .cloned()
                .unwrap();
            let url = function["call_url"].as_str().unwrap().to_owned();
            let token = url.split("/call/").nth(1).unwrap().to_owned();
            (function["version"].as_u64().unwrap(), token)
        })
        .collect();
    assert!(
        listed.iter().all(|l| *l == (2, listed[0].1.clone())),
        "{listed:?}"
    );
    // A deleted function is gone from every node; deployed again, every node serves it anew.
    assert_eq!(
        b.request("DELETE", "/api/functions/greet", None).status,
        200
    );
    for node in [a, c] {
        let start = Instant::now();
        while node.post("/fn/greet", "{}").status != 404 {
            assert!(start.elapsed() < Duration::from_secs(1), "still served");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    b.deploy("greet", b"export default () => 'again'");
    for node in [a, c] {
        served_within(node, "greet", "again", Duration::from_secs(1));
    }
}

#[test]
fn logs_from_every_node_are_read_in_one_place_in_order() {
    let (nodes, _dirs) = nodes(3);
    nodes[0].deploy(
        "say",
        b"export default ({ n }) => { console.log('line ' + n); return 'ok' }",
    );
    for node in &nodes {
        served_within(node, "say", "ok", Duration::from_secs(5));
    }
    for n in 0..30 {
        let node = &nodes[n % 3];
        let reply = node.post("/fn/say", &format!(r#"{{"n":{n}}}"#));
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let expected: Vec<String> = (0..30).map(|n| format!("line {n}")).collect();
    for node in &nodes {
        let lines: Vec<String> = node
            .log_lines("say")
            .into_iter()
            .filter(|line| line.starts_with("line ") && line != "line undefined")
            .collect();
        assert_eq!(lines, expected, "as read on {}", node.base);
    }
}
