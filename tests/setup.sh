#!/usr/bin/env bash
# What the tests need besides Rust: the npm packages of the end-to-end test apps (Hono,
# itty-router, esbuild) and the pinned web-platform-tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --prefix apps --no-audit --no-fund
wpt/fetch.sh
