"""schemathesis hooks for the fuzz test in tests/e2e/openapi.rs.

`functions_host_server_error` stands in for the stock `not_a_server_error` check: a 5xx passes
only when it is a function's fault, not the server's. A function's fault is one the host marks so
(`X-Functions-Host-Error` is `function_error`, `time_limit`, ... : it threw or ran past a limit),
answered where functions answer (an invocation, or the result of an asynchronous call), or a
response a function made itself (no mark, on an invocation). Every other 5xx fails the run.
"""

import schemathesis

# The codes of failures that are the function's, not the host's (host/src/error.rs).
FUNCTION_FAULTS = {
    "function_error",
    "time_limit",
    "memory_limit",
    "output_too_large",
    "function_hung",
}


def _answered_by_a_function(path):
    return path.startswith(("/fn/", "/call/"))


@schemathesis.check
def functions_host_server_error(ctx, response, case):
    """Only functions may answer 5xx: the host never does, whatever the request."""
    status = response.status_code
    if status < 500:
        return None
    marks = response.headers.get("x-functions-host-error") or []
    mark = marks[0] if marks else None
    path = case.operation.path
    if mark in FUNCTION_FAULTS and (
        _answered_by_a_function(path) or path == "/api/calls/{call_id}"
    ):
        return None
    if mark is None and _answered_by_a_function(path):
        return None
    raise AssertionError(
        f"the server answered {status} ({mark or 'unmarked'}) to {case.method} {path}"
    )
