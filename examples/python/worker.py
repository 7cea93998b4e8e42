# An HTTP handler in Python, as in Python Workers: it gets the JavaScript Request and the
# function's env, and returns a JavaScript Response (Pyodide proxies both).
#   functions-host deploy examples/python/worker.py --env GREETING=Hi
#   curl http://127.0.0.1:8787/fn/worker/hello
from js import Response, URL


async def on_fetch(request, env):
    path = URL.new(request.url).pathname
    greeting = getattr(env, "GREETING", None) or "Hello"
    return Response.new(f"{greeting} from Python at {path}\n")
