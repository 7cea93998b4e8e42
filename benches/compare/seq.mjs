// Sequential requests 10 ms apart to each URL in turn (interleaved, so both see the same
// machine); prints each URL's median and 90th percentile latency.
import http from "node:http";
const urls = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const one = (url) => new Promise((resolve, reject) => {
  const started = performance.now();
  http.get(url, { agent }, (response) => {
    response.resume();
    response.on("end", () => resolve(performance.now() - started));
  }).on("error", reject);
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const times = Object.fromEntries(urls.map((u) => [u, []]));
for (let i = 0; i < 300; i++) {
  for (const url of urls) {
    times[url].push(await one(url));
    await sleep(10);
  }
}
for (const url of urls) {
  const t = times[url].slice(50).sort((a, b) => a - b);
  console.log(`${url}: p50 ${t[Math.floor(t.length / 2)].toFixed(3)} ms, p90 ${t[Math.floor(t.length * 0.9)].toFixed(3)} ms`);
}
