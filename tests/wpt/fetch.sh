#!/usr/bin/env bash
# Fetches the pinned web-platform-tests this runner uses into tests/wpt/upstream: the copy of WPT
# that Firefox carries (testing/web-platform/tests, synced from upstream WPT), from Debian's
# source of firefox-esr 140.12.0 (bookworm), checked against its SHA-256. Only the directories
# the runner needs are unpacked, and mozilla-sync, which names the upstream WPT commit.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=140.12.0
TARBALL="firefox-esr_${VERSION}esr.orig.tar.xz"
URL="http://deb.debian.org/debian/pool/main/f/firefox-esr/${TARBALL}"
SHA256=5c72347381233dcc97cbd02c0324116258769d8b9b0f869fd0c6f1d59519ce2a
DIRS=(LICENSE.md resources common url encoding streams WebCryptoAPI dom/abort
      fetch/api fetch/data-urls/resources
      html/webappapis/structured-clone html/webappapis/atob html/webappapis/timers)
STAMP="$SHA256 ${DIRS[*]}"

if [ -f upstream/.complete ] && [ "$(cat upstream/.complete)" = "$STAMP" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 3 -o "$work/$TARBALL" "$URL"
echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet
prefix="firefox-${VERSION}/testing/web-platform/tests"
sync="firefox-${VERSION}/testing/web-platform/meta/mozilla-sync"
members=("$sync")
for dir in "${DIRS[@]}"; do members+=("$prefix/$dir"); done
xz -dc -T0 "$work/$TARBALL" | tar -x -C "$work" "${members[@]}"
rm -rf upstream
mv "$work/$prefix" upstream
mv "$work/$sync" upstream/mozilla-sync
echo "$STAMP" > upstream/.complete
echo "web-platform-tests from Firefox ESR ${VERSION} (Debian source) in tests/wpt/upstream"
