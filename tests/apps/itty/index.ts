// An itty-router app as written for Cloudflare Workers: routing, params, query, JSON bodies,
// crypto.subtle, streaming, thrown HTTP errors and the router's own 404s and 500s.
import { AutoRouter, StatusError, json } from "itty-router";

const router = AutoRouter();

router
  .get("/", () => ({ router: "itty" }))
  .get("/items/:id", ({ id, query }) => ({ id, q: query.q ?? null }))
  .post("/items", async (request) => json({ created: await request.json() }, { status: 201 }))
  .get("/digest/:input", async ({ input }) => {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(input));
    return btoa(String.fromCharCode(...new Uint8Array(digest)));
  })
  .get("/stream", () => {
    const encoder = new TextEncoder();
    let i = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (i < 3) controller.enqueue(encoder.encode(`part ${i++}\n`));
        else controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/plain" } });
  })
  .get("/forbidden", () => {
    throw new StatusError(403, "no entry");
  })
  .get("/boom", () => {
    throw new Error("unexpected");
  });

export default router;
