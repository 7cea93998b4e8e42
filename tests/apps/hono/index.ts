// A Hono app as written for Cloudflare Workers: routing, params, query, JSON and form bodies,
// cors and etag middleware, crypto.subtle, streaming, HTTP errors and a custom 404.
import { Hono } from "hono";
import { cors } from "hono/cors";
import { etag } from "hono/etag";
import { HTTPException } from "hono/http-exception";
import { stream } from "hono/streaming";

type Bindings = { GREETING?: string };

const app = new Hono<{ Bindings: Bindings }>();

app.use("*", cors({ origin: "https://example.com", exposeHeaders: ["ETag"] }));
app.use("/etag/*", etag());

app.get("/", (c) => c.json({ hello: c.env.GREETING ?? "world" }));

app.get("/users/:id", (c) => c.json({ id: c.req.param("id"), q: c.req.query("q") ?? null }));

app.post("/echo", async (c) => {
  const body = await c.req.json();
  return c.json({ received: body }, 201);
});

app.post("/form", async (c) => c.json(await c.req.parseBody()));

app.get("/etag/data", (c) => c.text("cached content"));

app.get("/digest/:text", async (c) => {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(c.req.param("text")));
  return c.text([...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""));
});

app.get("/stream", (c) =>
  stream(c, async (s) => {
    for (let i = 0; i < 3; i++) await s.write(`chunk ${i}\n`);
  }),
);

app.get("/teapot", () => {
  throw new HTTPException(418, { message: "I'm a teapot" });
});

app.get("/boom", () => {
  throw new Error("unexpected");
});

app.notFound((c) => c.json({ error: "not found", path: c.req.path }, 404));

app.onError((err, c) =>
  err instanceof HTTPException ? err.getResponse() : c.json({ error: err.message }, 500),
);

export default app;
