//! Many isolates on few threads: limits stay exact while other isolates share the thread,
//! invocations can be cancelled and held at their start, isolates are prepared before their
//! invocations arrive, and the event loop behaves as Workers users expect (unhandled rejections,
//! a handler that can never settle, `scheduler.wait`).

mod common;

use std::time::Duration;
use std::time::Instant;

use common::limited;
use common::run;
use common::text;
use functions_runtime::Cancel;
use functions_runtime::Controls;
use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::InvokeError;
use functions_runtime::Isolation;
use functions_runtime::Limits;
use functions_runtime::LogLevel;
use functions_runtime::Request;
use futures::future::join_all;

/// One worker: every isolate of the test shares its thread.
fn one_worker() -> Engine {
    Engine::new(EngineConfig {
        workers: 1,
        ..EngineConfig::default()
    })
}

const SLEEPER: &str = "export default async (event) => {
  await new Promise((resolve) => setTimeout(resolve, 300));
  return event.n;
}";

#[tokio::test(flavor = "multi_thread")]
async fn a_loop_is_stopped_at_its_cpu_time_while_fifty_sleepers_on_its_thread_answer() {
    let engine = one_worker();
    let spin = limited(
        "spin",
        "export default () => { for (;;) {} }",
        Limits {
            cpu_time: Duration::from_millis(200),
            ..Limits::default()
        },
        Isolation::Invocation,
    );
    let sleeper = Function::javascript("sleeper", SLEEPER);
    let started = Instant::now();
    let spinning = async {
        let outcome = engine.invoke(&spin, Request::json("{}")).await;
        (outcome, started.elapsed())
    };
    let sleepers = join_all((0..50).map(|n| {
        let (engine, sleeper) = (&engine, &sleeper);
        async move {
            let response = run(engine, sleeper, Request::json(format!(r#"{{"n":{n}}}"#))).await;
            text(&response).to_owned()
        }
    }));
    let ((outcome, took), answers) = tokio::join!(spinning, sleepers);
    assert!(
        matches!(outcome.result, Err(InvokeError::TimeLimit { limit }) if limit == Duration::from_millis(200)),
        "{:?}",
        outcome.result
    );
    assert!(took < Duration::from_secs(5), "the loop ran {took:?}");
    let expected: Vec<String> = (0..50).map(|n| n.to_string()).collect();
    assert_eq!(answers, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_time_is_charged_only_for_the_isolates_own_slices() {
    let engine = one_worker();
    // 150 ms of work in three slices, with waits between them, under a 250 ms budget, while
    // other isolates burn CPU on the same thread between its slices.
    let worker = limited(
        "worker",
        "const busy = (ms) => { const end = Date.now() + ms; while (Date.now() < end) {} };
         export default async () => {
           for (let i = 0; i < 3; i++) {
             busy(50);
             await new Promise((resolve) => setTimeout(resolve, 100));
           }
           return 'done';
         }",
        Limits {
            cpu_time: Duration::from_millis(250),
            ..Limits::default()
        },
        Isolation::Invocation,
    );
    let burner = Function::javascript(
        "burner",
        "export default () => { const end = Date.now() + 80; while (Date.now() < end) {} return 1; }",
    );
    let burners = join_all((0..6).map(|_| {
        let (engine, burner) = (&engine, &burner);
        async move { run(engine, burner, Request::json("{}")).await }
    }));
    let (response, _) = tokio::join!(run(&engine, &worker, Request::json("{}")), burners);
    assert_eq!(text(&response), "\"done\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhandled_rejection_is_logged_and_dispatched_but_does_not_fail_the_response() {
    let engine = one_worker();
    let careless = Function::javascript(
        "careless",
        "export default async () => {
           Promise.reject(new Error('nobody listens'));
           await new Promise((resolve) => setTimeout(resolve, 10));
           return 'fine';
         }",
    );
    let outcome = engine.invoke(&careless, Request::json("{}")).await;
    let response = outcome.result.expect("the response stands");
    assert_eq!(text(&response), "\"fine\"");
    let errors: Vec<_> = outcome
        .logs
        .iter()
        .filter(|line| line.level == LogLevel::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", outcome.logs);
    assert!(
        errors[0]
            .message
            .starts_with("Uncaught (in promise) Error: nobody listens"),
        "{:?}",
        errors[0]
    );

    let listening = Function::javascript(
        "listening",
        "addEventListener('unhandledrejection', (event) => {
           event.preventDefault();
           console.log('saw', event.reason.message);
         });
         export default async () => {
           Promise.reject(new Error('handled here'));
           await new Promise((resolve) => setTimeout(resolve, 10));
           return 'fine';
         }",
    );
    let outcome = engine.invoke(&listening, Request::json("{}")).await;
    assert_eq!(text(&outcome.result.unwrap()), "\"fine\"");
    let lines: Vec<_> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(lines, ["saw handled here"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_can_never_settle_is_reported_as_hung() {
    let engine = one_worker();
    let stuck = Function::javascript("stuck", "export default () => new Promise(() => {})");
    let started = Instant::now();
    let outcome = engine.invoke(&stuck, Request::json("{}")).await;
    assert!(
        matches!(outcome.result, Err(InvokeError::Hung)),
        "{:?}",
        outcome.result
    );
    let message = InvokeError::Hung.to_string();
    assert!(message.contains("would never respond"), "{message}");
    // Known at once, not at the wall-clock limit.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_wait_resolves_after_its_delay_and_rejects_when_aborted() {
    let engine = one_worker();
    let waiter = Function::javascript(
        "waiter",
        "export default async () => {
           const start = Date.now();
           await scheduler.wait(50);
           const waited = Date.now() - start;
           const controller = new AbortController();
           const aborted = scheduler.wait(10_000, { signal: controller.signal }).catch((e) => e.name);
           controller.abort();
           return { waited: waited >= 45, aborted: await aborted };
         }",
    );
    let response = run(&engine, &waiter, Request::json("{}")).await;
    assert_eq!(text(&response), r#"{"waited":true,"aborted":"AbortError"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_invocation_stops_and_says_why() {
    let engine = one_worker();
    let sleeper = Function::javascript(
        "long-sleeper",
        "export default async () => {
           console.log('started');
           await new Promise((resolve) => setTimeout(resolve, 20_000));
           return 'woke';
         }",
    );
    let cancel = Cancel::new();
    let controls = Controls {
        cancel: Some(cancel.clone()),
        ..Controls::default()
    };
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(
        engine.invoke_with(&sleeper, Request::json("{}"), controls),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel.cancel("the test lost interest");
        }
    );
    match outcome.result {
        Err(InvokeError::Cancelled { reason }) => assert_eq!(reason, "the test lost interest"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let lines: Vec<_> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(lines, ["started"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gated_invocation_starts_only_when_let_go() {
    let engine = one_worker();
    let stamp = Function::javascript("stamp", "export default () => Date.now()");
    let (gate, starting) = functions_runtime::start_gate();
    let controls = Controls {
        start: Some(gate),
        ..Controls::default()
    };
    let (outcome, released_at) = tokio::join!(
        engine.invoke_with(&stamp, Request::json("{}"), controls),
        async {
            let go = starting.ready().await.expect("the handler is about to run");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let released_at = std::time::SystemTime::now();
            go.go();
            released_at
        }
    );
    let ran_at: u128 = text(&outcome.result.unwrap()).parse().unwrap();
    let released_at = released_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        ran_at >= released_at,
        "ran at {ran_at}, released at {released_at}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_isolates_are_prepared_before_their_invocations_and_used_once() {
    let engine = one_worker();
    // The module's top-level code stamps when it ran and counts invocations of this isolate.
    let stamped = Function::javascript(
        "stamped",
        "const loadedAt = Date.now();
         let invocations = 0;
         export default () => ({ age: Date.now() - loadedAt, invocations: ++invocations });",
    );
    let mut ages = Vec::new();
    for _ in 0..4 {
        let response = run(&engine, &stamped, Request::json("{}")).await;
        let value: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
        assert_eq!(value["invocations"], 1, "an isolate served two invocations");
        ages.push(value["age"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first invocation loaded its module on arrival; the later ones found it loaded well
    // before they came (during the 200 ms pause between them; a loaded machine may take a
    // while to get to it, so half the pause is enough: made on arrival, it would be ~0).
    assert!(
        ages[1..].iter().all(|age| *age >= 100),
        "module ages at invocation: {ages:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn functions_of_the_same_name_and_version_never_share_prepared_isolates() {
    let engine = one_worker();
    let one = Function::javascript("same", "export default () => 1");
    let two = Function::javascript("same", "export default () => 2");
    for _ in 0..3 {
        for (function, answer) in [(&one, "1"), (&two, "2")] {
            let response = run(&engine, function, Request::json("{}")).await;
            assert_eq!(text(&response), answer);
            // Time for the worker to prepare an isolate of the function it just ran.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
