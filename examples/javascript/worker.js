// A Workers-style fetch handler: gets a Request, returns a Response.
//   functions-host deploy examples/javascript/worker.js
//   curl 'localhost:8787/fn/worker/greet?name=World'
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/greet") {
      return Response.json({ message: `Hello, ${url.searchParams.get("name") ?? "stranger"}!` });
    }
    return new Response("not found", { status: 404 });
  },
};
