"""functions-host's side of a Python function: imports it, picks its entry and calls it.

boot.js writes this module into every interpreter it boots from scratch, so it is part of every
memory snapshot. Results cross to JavaScript as strings: "R" and the JSON of the result, or
"E" and the JSON of the error (its type, message and traceback).
"""

import importlib
import inspect
import json
import os
import random
import sys
import traceback

# Where the function's files are (the interpreter's working directory).
HOME = "/function"

# Modules most functions import, loaded into the baseline snapshot so no restore pays for them.
WARM_MODULES = (
    "asyncio", "base64", "collections", "dataclasses", "datetime", "decimal", "functools",
    "hashlib", "itertools", "json", "math", "random", "re", "string", "time", "typing",
    "urllib.parse", "uuid",
)

_entry = None
_shape = None
_module = None


def warm_up():
    """Imports WARM_MODULES (while the baseline snapshot is made)."""
    for name in WARM_MODULES:
        importlib.import_module(name)


def load(module_name, entry_name):
    """Imports the function's module and picks its entry: `entry_name` when given, else
    `on_fetch`, else `handler`, else the module's only public function. Returns the shape
    ("fetch", "handler" or "call"), or "E" and the error's JSON."""
    global _entry, _shape, _module
    try:
        module = importlib.import_module(module_name)
        _entry, _shape = _pick(module, entry_name)
        _module = module
        return _shape
    except BaseException as error:  # noqa: BLE001 - every failure is the function's to see
        return _failure(error)


def shape():
    """The shape of the entry picked by `load`, if it ran (as in a function's own snapshot)."""
    return _shape


def _public_functions(module):
    """The functions `module` defines whose names do not start with `_`."""
    return [
        value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and inspect.isfunction(value)
        and value.__module__ == module.__name__
    ]


def _methods():
    """The functions other functions may call through a binding: the module's public ones,
    but `on_fetch` (the HTTP handler, which takes the host's request and env)."""
    if _module is None:
        return []
    return [f for f in _public_functions(_module) if f.__name__ != "on_fetch"]


def methods():
    """The JSON list of the names of `_methods()`."""
    return json.dumps([f.__name__ for f in _methods()])


def call_method(name, args_json):
    """Calls the module's public function `name` for a caller through a binding, with the
    JSON list of its arguments: one object is keyword arguments, anything else positional
    ones. Returns what `call_event` does."""
    try:
        method = next((f for f in _methods() if f.__name__ == name), None)
        if method is None:
            raise AttributeError(f"the function has no public function {name!r} to call")
        args = json.loads(args_json)
        if len(args) == 1 and isinstance(args[0], dict):
            result = method(**args[0])
        else:
            result = method(*args)
        if inspect.isawaitable(result):
            return _settle(result, _result)
        return _result(result)
    except BaseException as error:  # noqa: BLE001
        return _failure(error)


def _pick(module, entry_name):
    file = os.path.basename(getattr(module, "__file__", None) or module.__name__)
    if entry_name:
        entry = getattr(module, entry_name, None)
        if not callable(entry):
            raise LookupError(f"{file} has no function named {entry_name!r} (the entry)")
        return entry, "call"
    for name, kind in (("on_fetch", "fetch"), ("handler", "handler")):
        entry = getattr(module, name, None)
        if callable(entry):
            return entry, kind
    public = _public_functions(module)
    if len(public) == 1:
        return public[0], "call"
    found = ", ".join(f.__name__ for f in public) or "none"
    raise LookupError(
        f"{file} has no entry: define handler(event) or on_fetch(request, env), "
        f"or name the function to call (--entry); its public functions: {found}"
    )


def after_restore(env_json):
    """Runs once in every interpreter, before its first call: new random state (a snapshot
    holds the generator's state as it was when made) and the function's environment."""
    random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None
    os.environ.update(json.loads(env_json))


def call_event(event_json):
    """Calls the entry with a JSON event: `handler(event)`; a named function with an object's
    members as keyword arguments, a list's items as positional ones, or any other value as
    the one argument. Returns the result string, or a coroutine of it (async functions)."""
    try:
        event = json.loads(event_json)
        if _shape == "handler":
            result = _entry(event)
        elif isinstance(event, dict):
            result = _entry(**event)
        elif isinstance(event, list):
            result = _entry(*event)
        else:
            result = _entry(event)
        if inspect.isawaitable(result):
            return _settle(result, _result)
        return _result(result)
    except BaseException as error:  # noqa: BLE001
        return _failure(error)


async def _settle(awaitable, finish):
    """`finish` of what `awaitable` gives, or its failure as `_failure` reports it."""
    try:
        return finish(await awaitable)
    except BaseException as error:  # noqa: BLE001
        return _failure(error)


def call_fetch(request, env):
    """Calls `on_fetch(request, env)`: its `Response` (a JavaScript object), or a coroutine of
    it; an error as a string (the only string it returns)."""
    try:
        result = _entry(request, env)
        if inspect.isawaitable(result):
            return _settle(result, _response)
        return _response(result)
    except BaseException as error:  # noqa: BLE001
        return _failure(error)


def _response(value):
    if value is None or isinstance(value, (str, bytes, int, float, list, dict, tuple)):
        kind = type(value).__name__
        raise TypeError(f"on_fetch must return a Response (from js import Response), not {kind}")
    return value


def _result(value):
    try:
        return "R" + json.dumps(value)
    except (TypeError, ValueError) as error:
        kind = type(value).__name__
        return _failure(TypeError(f"the function returned a {kind}, which is not JSON: {error}"))


def _failure(error):
    """The error as "E" + JSON: its type, message and the traceback of the function's own
    frames (this module's are left out)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(error), error, tb)
    return "E" + json.dumps(
        {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(lines).rstrip("\n"),
        }
    )
