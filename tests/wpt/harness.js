// functions-host WPT runner: the entry module of every test function (a fetch handler, so the
// same module also runs in workerd, given an `UNSAFE_EVAL` binding). The runner replaces
// SCRIPT (testharness.js, a call to __wptReport, the test's META scripts and the test itself,
// joined into one classic script so that their top-level declarations share one scope, as on a
// test page) and TEST_URL (where the test lives on the runner's file server), then invokes the
// function once.
const SCRIPT = __SCRIPT__;
const TEST_URL = __TEST_URL__;
const FILE_TIMEOUT_MS = 30_000;

async function run(evaluate) {
  // A test runs in a worker located at TEST_URL: functions-host gives the test function that
  // location (Settings.location). workerd has no base URL; there only `location` and `fetch` of
  // a relative URL are emulated.
  if (globalThis.location === undefined) {
    globalThis.location = new URL(TEST_URL);
    const fetchAbsolute = globalThis.fetch;
    globalThis.fetch = (input, init) =>
      fetchAbsolute(typeof input === "string" ? new URL(input, TEST_URL).href : input, init);
  }

  // What WPT's generated wrapper of an .any.js test defines in a worker.
  globalThis.GLOBAL = { isWindow: () => false, isWorker: () => true, isShadowRealm: () => false };

  const results = [];
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  globalThis.__wptReport = () => {
    globalThis.add_result_callback((test) =>
      results.push({ name: test.name, status: test.status, message: test.message ?? null })
    );
    globalThis.add_completion_callback((_tests, status) =>
      finish({ harness_status: status.status, harness_message: status.message ?? null })
    );
  };
  // A classic script in the global scope.
  evaluate(SCRIPT);
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timed_out: true }), FILE_TIMEOUT_MS);
  });
  const end = await Promise.race([finished, timeout]);
  clearTimeout(timer);
  return { results, ...end };
}

export default {
  async fetch(_request, env) {
    // workerd forbids eval; its unsafeEval binding evaluates the same way (indirect, global).
    if (env?.UNSAFE_EVAL) {
      // In workerd testharness.js would take the global scope for a service worker's and wait
      // for an install event that never comes: hide the worker scopes so that it runs the tests
      // as it does here, in its shell environment.
      delete globalThis.ServiceWorkerGlobalScope;
      delete globalThis.WorkerGlobalScope;
      return Response.json(await run((code) => env.UNSAFE_EVAL.eval(code)));
    }
    return Response.json(await run((code) => (0, eval)(code)));
  },
};
