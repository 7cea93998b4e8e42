// Fires N requests at once at URL (one connection each) and prints how long until all answered.
import http from "node:http";
const [url, n, rounds = 3] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 3)];
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const one = () => new Promise((resolve, reject) => {
  const request = http.request(url, { method: "POST", agent, headers: { "content-type": "application/json" } }, (response) => {
    response.resume();
    response.on("end", () => resolve(response.statusCode));
  });
  request.on("error", reject);
  request.end('{"n":1}');
});
const times = [];
for (let round = 0; round < rounds; round++) {
  const started = performance.now();
  const codes = await Promise.all(Array.from({ length: n }, one));
  times.push(performance.now() - started);
  const ok = codes.filter((c) => c === 200).length;
  if (ok !== n) console.log(`only ${ok} of ${n} answered 200`);
}
times.sort((a, b) => a - b);
console.log(`${url} ${n} at once: median ${Math.round(times[Math.floor(times.length / 2)])} ms (${times.map(Math.round).join(", ")})`);
