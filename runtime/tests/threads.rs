//! Waiting holds no thread: 500 invocations that each await a timer run at once on the engine's
//! two workers, each exactly once, and the process has no more threads while they wait than it
//! had before they came. (A test binary of its own: other tests would add threads of their own.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use functions_runtime::Engine;
use functions_runtime::EngineConfig;
use functions_runtime::Function;
use functions_runtime::Request;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_sleeping_invocations_hold_no_threads() {
    let engine = Arc::new(Engine::new(EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    }));
    let sleeper = Function::javascript(
        "sleeper",
        "export default async (event) => {
           await new Promise((resolve) => setTimeout(resolve, 1000));
           return event.n;
         }",
    );
    // V8's platform threads start with the first isolate.
    let first = engine.invoke(&sleeper, Request::json(r#"{"n":-1}"#)).await;
    assert!(first.result.is_ok(), "{:?}", first.result);
    let before = threads();

    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most, done) = (most.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                // This sampling thread is one more than `before` counted.
                most.fetch_max(threads() - 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let invocations = (0..500).map(|n| {
        let engine = engine.clone();
        let sleeper = sleeper.clone();
        tokio::spawn(async move {
            let outcome = engine
                .invoke(&sleeper, Request::json(format!(r#"{{"n":{n}}}"#)))
                .await;
            let body = outcome
                .result
                .expect("a sleeper answers")
                .body
                .bytes()
                .await;
            String::from_utf8(body.unwrap()).unwrap()
        })
    });
    let mut answers = Vec::new();
    for invocation in invocations.collect::<Vec<_>>() {
        answers.push(invocation.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    let distinct: BTreeSet<u32> = answers.iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(answers.len(), 500);
    assert_eq!(
        distinct,
        (0..500).collect(),
        "each invocation answered once"
    );
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= before,
        "{most} threads while the sleepers waited, {before} before"
    );
}
