// functions-host: sample invocations run once while the base snapshot is built, so that V8
// compiles the dispatch path (and the web APIs it touches) then, and keeps the bytecode in the
// snapshot instead of compiling it lazily in every new isolate. `round` selects the handler shape;
// the host puts a matching request into OpState before each round.
(round) => {
  const { dispatch } = globalThis.__functionsHost;
  if (round === 0) {
    return dispatch({
      default: (event) => ({ ok: event.ok }),
    });
  }
  if (round === 2) {
    // A timer, run until it fires: the timer machinery is left as it was (no timer pending, none
    // due), with its code compiled. A timer still pending when the snapshot is taken would leave
    // every isolate made from it waiting for a wake-up that was never scheduled.
    return dispatch({
      default: {
        async fetch() {
          await new Promise((resolve) => setTimeout(resolve, 1));
          return new Response("ok");
        },
      },
    });
  }
  return dispatch({
    default: {
      async fetch(request, env, ctx) {
        const url = new URL(request.url);
        const body = await request.text();
        const bytes = new TextEncoder().encode(body);
        return new Response(new TextDecoder().decode(bytes), {
          headers: { "content-type": request.headers.get("content-type") ?? "text/plain", "x-path": url.pathname },
        });
      },
    },
  });
};
