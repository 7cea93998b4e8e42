// End-to-end test of the web dashboard (GET /) in headless Chromium, against a real server.
//
// Run by the Rust end-to-end tests (after `npm ci` here, which tests/setup.sh does):
//   FUNCTIONS_HOST_URL=http://127.0.0.1:PORT   the server (required)
//   FUNCTIONS_HOST_API_KEY=KEY                 its API key; empty or unset: a server without keys
//   DASHBOARD_FUNCTION=hello                   a deployed JavaScript function that answers
//                                              {message: "Hello, " + event.name + "!"} and
//                                              console.logs a line with the name (required)
//   SCREENSHOT_DIR=/some/dir                   optional: dashboard.png and dashboard-logs.png
//   CHROMIUM=/usr/bin/chromium                 optional: the browser to drive
//   node tests/dashboard/dashboard.test.mjs
//
// It exits 0 when every step passed, and 1 with "FAIL: <step>: <why>" on the first that did
// not (and, with SCREENSHOT_DIR, a dashboard-failure.png of the page at that moment). Any
// uncaught page error or console error fails it, except the 401s of the key checks.

import { mkdirSync } from "node:fs";
import { join } from "node:path";

const BASE = (process.env.FUNCTIONS_HOST_URL ?? "").replace(/\/+$/, "");
const KEY = process.env.FUNCTIONS_HOST_API_KEY ?? "";
const NAME = process.env.DASHBOARD_FUNCTION ?? "";
const SHOTS = process.env.SCREENSHOT_DIR ?? "";
const GREETING = "Hello, Dashboard!";
/** Synchronous invocations the test makes through the page. */
const SYNC_INVOCATIONS = 3;
/** How long the whole test may take. */
const OVERALL_MS = 240_000;

if (!BASE || !NAME) {
  console.error("FAIL: setup: FUNCTIONS_HOST_URL and DASHBOARD_FUNCTION must be set");
  process.exit(1);
}

const { chromium } = await import("playwright-core").catch((err) => {
  console.error(`FAIL: setup: playwright-core is not installed (run tests/setup.sh, or npm ci in tests/dashboard): ${err.message}`);
  process.exit(1);
});
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// ---- Harness: steps, page problems, failure ----------------------------------------------------

let current = "launch";
/** Page errors and console errors seen so far. */
const problems = [];
/** Whether a 401 console error is expected now (the key checks). */
let expect401 = true;

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Runs one step; a page or console error during it fails it too. */
async function step(name, body) {
  current = name;
  await body();
  check(problems.length === 0, `the page reported: ${problems.join(" | ")}`);
  console.log(`ok - ${name}`);
}

/** Waits for `predicate(arg)` in the page; on timeout fails with `message`. */
async function until(page, message, predicate, arg, timeout = 15_000) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 200 });
  } catch (err) {
    throw new Failure(`${message} (waited ${timeout / 1000} s${err?.name === "TimeoutError" ? "" : `: ${err.message}`})`);
  }
}

const text = (page, selector) => page.locator(selector).first().textContent({ timeout: 5000 });

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
}).catch((err) => {
  console.error(`FAIL: launch: could not start ${CHROMIUM} (tests/setup.sh installs Debian's chromium): ${err.message.split("\n")[0]}`);
  process.exit(1);
});
const watchdog = setTimeout(() => {
  console.error(`FAIL: ${current}: the test took more than ${OVERALL_MS / 1000} s`);
  process.exit(1);
}, OVERALL_MS);

const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(15_000);
page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
page.on("console", (message) => {
  if (message.type() !== "error") return;
  const line = message.text();
  if (expect401 && /status of 401/.test(line)) return;
  const where = message.location()?.url;
  problems.push(`console error: ${line}${where ? ` (${where})` : ""}`);
});

let exitCode = 0;
try {
  await run();
  console.log("ok - the dashboard works");
} catch (err) {
  exitCode = 1;
  // Our own checks and Playwright's timeouts say what failed; anything else is a bug here.
  const plain = err instanceof Failure || err?.name === "TimeoutError";
  const why = plain ? err.message : (err?.stack ?? String(err));
  // Playwright colours its call logs: no escape codes in a test's output.
  console.error(`FAIL: ${current}: ${why.replace(/\x1b\[[0-9;]*m/g, "")}`);
  if (problems.length) console.error(`page problems: ${problems.join(" | ")}`);
  if (SHOTS) {
    await page
      .screenshot({ path: join(SHOTS, "dashboard-failure.png"), fullPage: true })
      .catch(() => {});
  }
} finally {
  clearTimeout(watchdog);
  await browser.close().catch(() => {});
}
process.exit(exitCode);

// ---- The steps -------------------------------------------------------------------------------------

async function run() {
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });

  await step("the page loads", async () => {
    const response = await page.goto(`${BASE}/`);
    check(response?.ok(), `GET / answered ${response?.status()}`);
    await until(
      page,
      "neither the dashboard nor the key form appeared",
      () => !document.getElementById("app")?.hidden || !document.getElementById("key-section")?.hidden,
    );
  });

  if (KEY) {
    await step("the key form appears", async () => {
      check(await page.locator("#key-form").isVisible(), "the server has keys, but no key form is shown");
      check(await page.locator("#app").isHidden(), "the dashboard shows before a key was given");
    });

    await step("a wrong key is refused and the prompt shows again", async () => {
      await page.fill("#key-input", `wrong-${KEY}-wrong`);
      await page.click("#key-submit");
      await until(
        page,
        "no error was shown for a wrong key",
        () => {
          const error = document.getElementById("key-error");
          return error && !error.hidden && error.textContent.trim() !== "";
        },
      );
      check(await page.locator("#key-form").isVisible(), "the key form is gone after a wrong key");
      check(await page.locator("#app").isHidden(), "the dashboard shows after a wrong key");
    });

    await step("the right key opens the dashboard", async () => {
      await page.fill("#key-input", KEY);
      await page.click("#key-submit");
      await until(page, "the dashboard did not open with the key", () => !document.getElementById("app").hidden);
      check(await page.locator("#key-section").isHidden(), "the key form still shows");
      check(await page.locator("#forget-key").isVisible(), "no forget-key control");
      expect401 = false;
    });
  } else {
    await step("no key is asked for", async () => {
      await until(page, "the dashboard did not open", () => !document.getElementById("app").hidden);
      check(await page.locator("#key-section").isHidden(), "a key form shows on a server without keys");
      expect401 = false;
    });
  }

  const row = page.locator(`tr[data-function="${NAME}"]`);

  await step("the function is listed with its language and call address", async () => {
    await row.waitFor({ state: "visible" }).catch(() => {
      throw new Failure(`${NAME} is not in the functions table (waited 15 s)`);
    });
    const language = (await row.locator('[data-field="language"]').textContent()).trim();
    check(/^(javascript|typescript)$/.test(language), `language column says ${JSON.stringify(language)}`);
    const address = await row.locator('[data-field="call-url"]').inputValue();
    check(
      /^https?:\/\/[^/]+\/call\//.test(address) && address.includes(`/call/${NAME}/`),
      `call address is ${JSON.stringify(address)}`,
    );
    check(await row.locator('[data-testid="copy-call-url"]').isVisible(), "no copy button for the call address");
    const version = (await row.locator('[data-field="version"]').textContent()).trim();
    check(/^\d+$/.test(version), `version column says ${JSON.stringify(version)}`);
    for (const field of ["isolation", "limits", "access", "deployed"]) {
      const value = (await row.locator(`[data-field="${field}"]`).textContent()).trim();
      check(value !== "", `the ${field} column is empty`);
    }
  });

  await step("the header names the node and its health", async () => {
    await until(
      page,
      "no node id in the header",
      () => /^node-/.test(document.getElementById("node-id").textContent.trim()),
    );
    await until(page, "the header does not say the server is healthy", () => document.getElementById("health").dataset.status === "ok");
  });

  await step("selecting the function opens its panel", async () => {
    await row.locator('[data-field="name"]').click();
    await page.locator("#function-panel").waitFor({ state: "visible" });
    const name = (await text(page, "#panel-name")).trim();
    check(name === NAME, `the panel is for ${JSON.stringify(name)}`);
    check((await row.getAttribute("aria-selected")) === "true", "the row is not marked selected");
    // The tail has read the stored lines and waits for new ones.
    await until(page, "the log tail did not go live", () => document.getElementById("log-status").dataset.state === "live");
    // The charts are drawn from /api/metrics.
    await until(
      page,
      "the charts were not drawn",
      (name) =>
        document.getElementById("chart-invocations") &&
        document.getElementById("chart-latency") &&
        document.getElementById("chart-function-invocations")?.dataset.function === name,
      NAME,
    );
  });

  // What the charts counted before this test's invocations.
  const before = await page.evaluate(() => ({
    host: Number(document.getElementById("chart-invocations").dataset.totalInvocations),
    fn: Number(document.getElementById("chart-function-invocations").dataset.totalInvocations),
  }));
  check(Number.isFinite(before.host) && Number.isFinite(before.fn), `the charts' totals are ${JSON.stringify(before)}`);

  // The newest log line shown before invoking: the console line must come after it.
  const lastLogId = await page.evaluate(() =>
    Math.max(0, ...[...document.querySelectorAll("#log-tail .log-line")].map((l) => Number(l.dataset.id) || 0)),
  );

  let sequence = 0;
  /** Sends the form and waits for its answer; returns [status, body]. */
  async function send() {
    await page.click("#invoke-send");
    sequence += 1;
    await until(
      page,
      `no answer to invocation ${sequence} was shown`,
      (n) => Number(document.getElementById("invoke-result").dataset.sequence) >= n,
      sequence,
      30_000,
    );
    return [(await text(page, "#invoke-status")).trim(), await text(page, "#invoke-response")];
  }

  await step("invoking it shows the status and the answer", async () => {
    await page.selectOption("#invoke-method", "POST");
    await page.fill("#invoke-path", "");
    await page.fill("#invoke-content-type", "application/json");
    await page.fill("#invoke-body", JSON.stringify({ name: "Dashboard" }));
    const [status, body] = await send();
    check(status === "200", `status ${status}, body ${body}`);
    check(body.includes(GREETING), `the body shown is ${JSON.stringify(body)}`);
    const elapsed = (await text(page, "#invoke-elapsed")).trim();
    check(/^\d+(\.\d+)? ms$/.test(elapsed), `elapsed time shown as ${JSON.stringify(elapsed)}`);
    const headers = await page.locator("#invoke-headers").textContent();
    check(/content-type:/i.test(headers), `response headers shown: ${JSON.stringify(headers)}`);
  });

  await step("the log tail shows the function's console line", async () => {
    await until(
      page,
      "no log line containing Dashboard arrived",
      (after) =>
        [...document.querySelectorAll("#log-tail .log-line")].some(
          (line) =>
            Number(line.dataset.id) > after &&
            !line.dataset.event &&
            line.querySelector(".log-message")?.textContent.includes("Dashboard"),
        ),
      lastLogId,
      10_000,
    );
    const line = page.locator("#log-tail .log-line", { hasText: "Dashboard" }).last();
    check(/^\d\d:\d\d:\d\d\.\d{3}$/.test((await line.locator(".log-time").textContent()).trim()), "the line has no time");
    check((await line.locator(".log-level").textContent()).trim() !== "", "the line has no level");
    check((await line.locator(".log-source").textContent()).trim() !== "", "the line has no source");
  });

  let callId = "";
  await step("queueing a call shows its id and the queue numbers", async () => {
    await page.click("#queue-call");
    await until(
      page,
      "no call id was shown",
      () => (document.getElementById("call-id").textContent ?? "").trim() !== "",
    );
    callId = (await text(page, "#call-id")).trim();
    check(/^[\w-]+$/.test(callId), `the call id shown is ${JSON.stringify(callId)}`);
    await until(
      page,
      "the queue numbers are not numbers",
      () =>
        ["queue-pending", "queue-claimed", "fn-running", "fn-queued", "fn-invocations", "fn-errors"].every((id) =>
          /^\d[\d,]*$/.test(document.getElementById(id).textContent.trim()),
        ),
    );
  });

  await step("the call's lifecycle lines reach the log tail", async () => {
    for (const event of ["CALL", "RUNNING", "FINISHED"]) {
      await until(
        page,
        `no ${event} line for call ${callId}`,
        ([event, id]) =>
          [...document.querySelectorAll(`#log-tail .log-line[data-event="${event}"] .log-message`)].some((m) =>
            m.textContent.includes(id),
          ),
        [event, callId],
        10_000,
      );
    }
  });

  await step("the call's result can be fetched", async () => {
    await page.click("#call-result");
    await until(
      page,
      "no result of the call was shown",
      () => document.getElementById("call-output").dataset.status !== undefined,
      undefined,
      20_000,
    );
    const output = await text(page, "#call-output");
    check(
      (await page.locator("#call-output").getAttribute("data-status")) === "200" && output.includes(GREETING),
      `the result shown is ${JSON.stringify(output)}`,
    );
  });

  await step("more invocations answer too", async () => {
    for (let i = 1; i < SYNC_INVOCATIONS; i++) {
      const [status, body] = await send();
      check(status === "200" && body.includes(GREETING), `invocation ${i + 1}: status ${status}, body ${body}`);
    }
  });

  // The synchronous invocations and the queued call.
  const made = SYNC_INVOCATIONS + 1;
  await step(`the charts count the ${made} invocations`, async () => {
    // The server samples every step (10 s) and the page reads the metrics every 3 s.
    const host = before.host + made;
    const fn = before.fn + made;
    await until(
      page,
      `the host's invocation chart never reached ${host} (${before.host} before this test's ${made})`,
      (host) => Number(document.getElementById("chart-invocations")?.dataset.totalInvocations) >= host,
      host,
      40_000,
    );
    await until(
      page,
      `the function's invocation chart never reached ${fn} (${before.fn} before this test's ${made})`,
      ([fn, name]) => {
        const chart = document.getElementById("chart-function-invocations");
        return chart?.dataset.function === name && Number(chart.dataset.totalInvocations) >= fn;
      },
      [fn, NAME],
      10_000,
    );
    const chart = page.locator("#chart-invocations");
    check((await chart.locator("rect.bar-ok").count()) > 0, "the invocation chart draws no bars");
    check((await chart.locator("text.axis-label").count()) >= 4, "the invocation chart has no axis labels");
    const latency = page.locator("#chart-latency");
    check(
      Number(await latency.getAttribute("data-steps-with-latency")) >= 1,
      "the latency chart has no step with a latency",
    );
    check((await latency.locator("path.line-p50, circle.dot-p50").count()) > 0, "the latency chart draws no p50");
    const totals = (await text(page, "#host-totals")).trim();
    check(/\d/.test(totals) && !/NaN/.test(totals), `host totals say ${JSON.stringify(totals)}`);
  });

  if (SHOTS) {
    await page.screenshot({ path: join(SHOTS, "dashboard.png"), fullPage: true });
    await page.locator("#logs-card").screenshot({ path: join(SHOTS, "dashboard-logs.png") });
  }

  if (KEY) {
    await step("the key was kept in the page's memory, not in storage", async () => {
      const stored = await page.evaluate(() =>
        [sessionStorage, localStorage].flatMap((s) => Object.keys(s).map((k) => s.getItem(k))),
      );
      check(!stored.some((value) => value.includes(KEY)), "the key is in the origin's storage");
    });
    await step("forgetting the key asks for it again", async () => {
      expect401 = true;
      await page.click("#forget-key");
      await page.locator("#key-form").waitFor({ state: "visible" });
      check(await page.locator("#app").isHidden(), "the dashboard still shows without a key");
      check(
        (await page.evaluate(() => sessionStorage.length + localStorage.length)) === 0,
        "something was kept in the origin's storage",
      );
    });
  }

  check(problems.length === 0, `the page reported: ${problems.join(" | ")}`);
}
