#!/usr/bin/env bash
# Fetches the pinned web-platform-tests this runner uses into tests/wpt/upstream: the WPT subset
# Node.js vendors (test/fixtures/wpt, with its versions.json of upstream commits), from Debian's
# source of nodejs 18.20.4 (bookworm), checked against its SHA-256.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=18.20.4
TARBALL="nodejs_${VERSION}+dfsg.orig.tar.xz"
URL="http://deb.debian.org/debian/pool/main/n/nodejs/${TARBALL}"
SHA256=6ce58062c71eae37d9c5ac31eeaeff9c2d48561d21c2849179d056c9c1bd9ebc
DIRS=(resources common url encoding streams WebCryptoAPI dom/abort fetch/data-urls/resources
      html/webappapis/structured-clone html/webappapis/atob html/webappapis/timers)
STAMP="$SHA256 ${DIRS[*]}"

if [ -f upstream/.complete ] && [ "$(cat upstream/.complete)" = "$STAMP" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --retry 3 -o "$work/$TARBALL" "$URL"
echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet
prefix="node-v${VERSION}/test/fixtures/wpt"
members=("$prefix/versions.json" "$prefix/LICENSE.md")
for dir in "${DIRS[@]}"; do members+=("$prefix/$dir"); done
tar -xJf "$work/$TARBALL" -C "$work" "${members[@]}"
rm -rf upstream
mv "$work/$prefix" upstream
echo "$STAMP" > upstream/.complete
echo "web-platform-tests from Node.js ${VERSION} (Debian source) in tests/wpt/upstream"
