#!/usr/bin/env bash
# What the tests need besides Rust and the guest toolchains (.ci/run installs those): the npm
# packages of the end-to-end test apps (Hono, itty-router, esbuild) and of the AssemblyScript
# example, and the pinned web-platform-tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --prefix apps --no-audit --no-fund
npm ci --prefix ../examples/assemblyscript --no-audit --no-fund
wpt/fetch.sh
