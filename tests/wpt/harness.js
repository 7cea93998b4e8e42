// functions-host WPT runner: the entry module of every test function. The runner replaces
// SCRIPT (testharness.js, a call to __wptReport, the test's META scripts and the test itself,
// joined into one classic script so that their top-level declarations share one scope, as on a
// test page) and TEST_URL (where the test lives on the runner's file server), then invokes the
// function once.
const SCRIPT = __SCRIPT__;
const TEST_URL = __TEST_URL__;
const FILE_TIMEOUT_MS = 30_000;

export default async () => {
  // What a test page has and a function does not: its location, and fetch relative to it.
  globalThis.location = new URL(TEST_URL);
  const fetchAbsolute = globalThis.fetch;
  globalThis.fetch = (input, init) =>
    fetchAbsolute(typeof input === "string" ? new URL(input, TEST_URL).href : input, init);

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
  (0, eval)(SCRIPT);
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timed_out: true }), FILE_TIMEOUT_MS);
  });
  const end = await Promise.race([finished, timeout]);
  clearTimeout(timer);
  return { results, ...end };
};
