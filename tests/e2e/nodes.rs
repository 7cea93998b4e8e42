//! Several nodes on one PostgreSQL (`serve --store postgres://...`): any node serves any
//! function, whichever node it was deployed on, and every node reads the same logs.

use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;

use crate::calls::all_log_lines;
use crate::calls::assert_at_most_running;
use crate::calls::call;
use crate::calls::deploy;
use crate::harness::Server;

/// `count` servers on one new database of the tests' throw-away PostgreSQL server, each with a
/// data directory of its own.
fn nodes(count: usize) -> (Vec<Server>, Vec<tempfile::TempDir>) {
    nodes_on(&functions_test_postgres::database(), count)
}

/// `count` servers on the database at `url`, each with a data directory of its own.
fn nodes_on(url: &str, count: usize) -> (Vec<Server>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers = dirs
        .iter()
        .map(|dir| Server::start_with(dir.path(), &["--store", url], &[]))
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
    // Calls made the moment a function is deployed run, though the other nodes (which claim
    // some of them) have not loaded it yet.
    deploy(
        a,
        "fresh",
        "export default (e) => e.n",
        json!({ "concurrency": 9 }),
    );
    let calls: Vec<String> = (0..30)
        .map(|n| call(a, "fresh", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    for (n, id) in calls.iter().enumerate() {
        let reply = c.get(&format!("/api/calls/{id}?wait=60"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
        assert_eq!(reply.json(), json!(n));
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

/// Waits until every node serves `name` (invoked with `payload`).
fn served_everywhere(nodes: &[Server], name: &str, payload: &str) {
    for node in nodes {
        let start = Instant::now();
        while node.post(&format!("/fn/{name}"), payload).status != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{} does not serve {name}",
                node.base
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `node`'s name on the store, once it counts `count` live nodes.
fn node_id_once_it_sees(node: &Server, count: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = node.get("/healthz").json();
        if health["node"]["nodes"] == count {
            return health["node"]["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{} never saw {count} nodes: {health}",
            node.base
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(call id, node id)` of each `RUNNING` line (`RUNNING id on node`), in log order.
fn runs(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("RUNNING "))
        .map(|rest| {
            let (id, node) = rest
                .split_once(" on ")
                .expect("a node in each RUNNING line");
            (id.to_owned(), node.to_owned())
        })
        .collect()
}

#[test]
fn a_thousand_calls_over_three_nodes_run_once_within_the_concurrency_in_order() {
    let (nodes, _dirs) = nodes(3);
    let ids: Vec<String> = nodes.iter().map(|n| node_id_once_it_sees(n, 3)).collect();
    deploy(
        &nodes[0],
        "double",
        "export default (e) => { console.log('ran', e.n); return { n: e.n * 2 }; }",
        json!({ "concurrency": 4 }),
    );
    deploy(
        &nodes[1],
        "one-by-one",
        "export default async (e) => { console.log('ran', e.n); await new Promise((r) => setTimeout(r, 2)); return e.n; }",
        json!({ "concurrency": 1 }),
    );
    served_everywhere(&nodes, "double", r#"{"n":-1}"#);
    served_everywhere(&nodes, "one-by-one", r#"{"n":-1}"#);
    // Each call made on one node, its result fetched from the next.
    let calls: Vec<(usize, String)> = (0..1000)
        .map(|n| {
            (
                n % 3,
                call(&nodes[n % 3], "double", &format!(r#"{{"n":{n}}}"#)),
            )
        })
        .collect();
    let in_line: Vec<(usize, String)> = (0..150)
        .map(|n| {
            (
                n % 3,
                call(&nodes[n % 3], "one-by-one", &format!(r#"{{"n":{n}}}"#)),
            )
        })
        .collect();
    for (n, (made_on, id)) in calls.iter().enumerate() {
        let reply = nodes[(made_on + 1) % 3].get(&format!("/api/calls/{id}?wait=120"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
        assert_eq!(reply.json(), json!({ "n": n * 2 }));
    }
    for (n, (made_on, id)) in in_line.iter().enumerate() {
        let reply = nodes[(made_on + 2) % 3].get(&format!("/api/calls/{id}?wait=120"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
        assert_eq!(reply.json(), json!(n));
    }

    let lines = all_log_lines(&nodes[2], "double");
    let mut ran: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        if let Some(n) = line.strip_prefix("ran ").filter(|n| *n != "-1") {
            *ran.entry(n).or_default() += 1;
        }
    }
    assert_eq!(ran.len(), 1000, "every call ran");
    assert!(ran.values().all(|count| *count == 1), "each exactly once");
    // Never more than four at once, on all nodes together.
    assert_at_most_running(&lines, 4);
    // Every node ran some, each in arrival order.
    let order: HashMap<&str, usize> = calls
        .iter()
        .enumerate()
        .map(|(n, (_, id))| (id.as_str(), n))
        .collect();
    let runs = runs(&lines);
    assert_eq!(runs.len(), 1000);
    for node in &ids {
        let mine: Vec<usize> = runs
            .iter()
            .filter(|(_, ran_on)| ran_on == node)
            .map(|(id, _)| order[id.as_str()])
            .collect();
        assert!(!mine.is_empty(), "{node} ran none");
        assert!(mine.is_sorted(), "{node} started calls out of order");
    }
    // One at a time: in arrival order exactly, whichever node ran each.
    let lines = all_log_lines(&nodes[0], "one-by-one");
    let ran: Vec<String> = lines
        .iter()
        .filter(|line| line.starts_with("ran ") && *line != "ran -1")
        .cloned()
        .collect();
    let expected: Vec<String> = (0..150).map(|n| format!("ran {n}")).collect();
    assert_eq!(ran, expected);
}

#[test]
fn a_node_killed_mid_call_loses_no_call_and_its_started_ones_fail_as_restarted() {
    let (mut nodes, _dirs) = nodes(3);
    let node_ids: Vec<String> = nodes.iter().map(|n| node_id_once_it_sees(n, 3)).collect();
    // Call 0 takes long: whichever node starts it is still running it when node A dies.
    deploy(
        &nodes[0],
        "slow",
        "export default async (e) => {
           console.log('ran', e.n);
           await new Promise((r) => setTimeout(r, e.n === 0 ? 30000 : 300));
           return { n: e.n };
         }",
        json!({ "concurrency": 3, "wall_clock_ms": 60000 }),
    );
    served_everywhere(&nodes, "slow", r#"{"n":-1}"#);
    let calls: Vec<String> = (0..30)
        .map(|n| call(&nodes[0], "slow", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    // Until node A has started some of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started_on_a = loop {
        let started: Vec<String> = runs(&all_log_lines(&nodes[1], "slow"))
            .into_iter()
            .filter(|(_, node)| *node == node_ids[0])
            .map(|(id, _)| id)
            .collect();
        if !started.is_empty() {
            break started;
        }
        assert!(Instant::now() < deadline, "node A started no call");
        std::thread::sleep(Duration::from_millis(20));
    };
    let a = nodes.remove(0);
    drop(a); // SIGKILL
    // Every call ends: those A had started as restarted (unless A finished one just before it
    // died), the others with their result, each run once.
    let lines_before: Vec<String> = all_log_lines(&nodes[0], "slow");
    let mut restarted = Vec::new();
    for (n, id) in calls.iter().enumerate() {
        let reply = nodes[n % 2].get(&format!("/api/calls/{id}?wait=120"));
        if reply.status == 500 {
            assert_eq!(reply.json()["error"]["code"], "host_restarted", "call {n}");
            restarted.push(id.clone());
        } else {
            assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
            assert_eq!(reply.json(), json!({ "n": n }));
        }
    }
    let lines = all_log_lines(&nodes[0], "slow");
    assert!(lines.len() > lines_before.len());
    for id in &restarted {
        assert!(
            started_on_a.contains(id)
                || runs(&lines)
                    .iter()
                    .any(|(run, node)| run == id && *node == node_ids[0]),
            "{id} failed as restarted but A never started it"
        );
    }
    assert!(
        !restarted.is_empty(),
        "A's 30-second call 0 or its others failed as restarted"
    );
    for (n, id) in calls.iter().enumerate() {
        if restarted.contains(id) {
            continue;
        }
        let count = lines.iter().filter(|l| **l == format!("ran {n}")).count();
        assert_eq!(count, 1, "call {n} ran {count} times");
    }
}

#[test]
fn a_database_restart_under_load_loses_no_call_and_the_nodes_reconnect() {
    let cluster = functions_test_postgres::Cluster::start();
    let url = cluster.create_database();
    let (nodes, _dirs) = nodes_on(&url, 2);
    deploy(
        &nodes[0],
        "count",
        "export default (e) => { console.log('ran', e.n); return e.n; }",
        json!({ "concurrency": 4 }),
    );
    served_everywhere(&nodes, "count", r#"{"n":-1}"#);
    let accepted = std::sync::Mutex::new(Vec::<(u64, String)>::new());
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let count = |list: &std::sync::Mutex<Vec<(u64, String)>>| list.lock().unwrap().len();
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let node = &nodes[n as usize % 2];
                let reply = node.post("/api/functions/count/calls", &format!(r#"{{"n":{n}}}"#));
                match reply.status {
                    202 => {
                        let id = reply.json()["call_id"].as_str().unwrap().to_owned();
                        accepted.lock().unwrap().push((n, id));
                    }
                    // Refused cleanly while the database is down: a host error, worth a retry.
                    503 => {
                        assert_eq!(reply.json()["error"]["code"], "unavailable");
                        assert_eq!(reply.header("x-functions-host-error"), Some("unavailable"));
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    status => panic!("call {n}: {status} {}", reply.text()),
                }
                // Synchronous invocations go on whatever the database does.
                assert_eq!(node.post("/fn/count", r#"{"n":-1}"#).status, 200);
                n += 1;
            }
        });
        // The load stops however this ends (a failed wait must not leave it running forever).
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);
        wait_until("calls accepted before", &|| count(&accepted) >= 50);
        cluster.stop();
        wait_until("calls refused while the database is down", &|| {
            refused.load(std::sync::atomic::Ordering::SeqCst) > 0
        });
        cluster.start_server();
        let before = count(&accepted);
        wait_until("calls accepted after", &|| count(&accepted) >= before + 50);
    });
    // Every call accepted ran once, and its result is there.
    let accepted = accepted.into_inner().unwrap();
    for (n, id) in &accepted {
        let reply = nodes[(*n as usize + 1) % 2].get(&format!("/api/calls/{id}?wait=120"));
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text());
        assert_eq!(reply.json(), json!(n));
    }
    let lines = all_log_lines(&nodes[1], "count");
    for (n, _) in &accepted {
        let runs = lines.iter().filter(|l| **l == format!("ran {n}")).count();
        assert_eq!(runs, 1, "call {n} ran {runs} times");
    }
    // Both nodes hear of changes again.
    nodes[1].deploy("after", b"export default () => 'back'");
    served_within(&nodes[0], "after", "back", Duration::from_secs(5));
}
