#!/usr/bin/env bash
# Fetches the pinned web-platform-tests this runner uses into tests/wpt/upstream: the copy of WPT
# that Firefox carries (testing/web-platform/tests, synced from upstream WPT), from the source of
# Firefox ESR 140.12.0. Only the directories the runner needs are unpacked, with mozilla-sync,
# which names the upstream WPT commit. What is pinned is the unpacked files' content (TREE_SHA256),
# so any of the sources below will do: Debian's orig tarball (bookworm, checked against its own
# SHA-256 too), the same file on snapshot.debian.org once Debian drops it, or Mozilla's tarball.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=140.12.0
DEBIAN_TARBALL="firefox-esr_${VERSION}esr.orig.tar.xz"
DEBIAN_SHA256=5c72347381233dcc97cbd02c0324116258769d8b9b0f869fd0c6f1d59519ce2a
SOURCES=(
  "http://deb.debian.org/debian/pool/main/f/firefox-esr/${DEBIAN_TARBALL}"
  # snapshot.debian.org by the file's SHA-1 (82cbe121…): it keeps every file Debian ever had.
  "https://snapshot.debian.org/file/82cbe121b83b5c4c6723181001bbe4136939e4fc"
  "https://archive.mozilla.org/pub/firefox/releases/${VERSION}esr/source/firefox-${VERSION}esr.source.tar.xz"
)
TREE_SHA256=51df7f1b5357a48b973780cfde4e780f876e5dee97cdc22f09786536f244c1e6
DIRS=(LICENSE.md resources common url encoding streams WebCryptoAPI dom/abort
      fetch/api fetch/data-urls/resources
      html/webappapis/structured-clone html/webappapis/atob html/webappapis/timers)
STAMP="$TREE_SHA256 ${DIRS[*]}"

if [ -f upstream/.complete ] && [ "$(cat upstream/.complete)" = "$STAMP" ]; then
  exit 0
fi

# The SHA-256 of every unpacked file, path and content, in one.
tree_sha256() {
  find upstream -type f ! -name .complete -print0 | LC_ALL=C sort -z | xargs -0 sha256sum |
    sha256sum | cut -d' ' -f1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="firefox-${VERSION}/testing/web-platform/tests"
sync="firefox-${VERSION}/testing/web-platform/meta/mozilla-sync"
members=("$sync")
for dir in "${DIRS[@]}"; do members+=("$prefix/$dir"); done
for url in "${SOURCES[@]}"; do
  echo "fetching $url"
  if ! curl -fsSL --retry 3 -o "$work/source.tar.xz" "$url"; then
    continue
  fi
  if [[ "$url" != *archive.mozilla.org* ]]; then
    echo "$DEBIAN_SHA256  $work/source.tar.xz" | sha256sum -c --quiet
  fi
  rm -rf "$work/firefox-${VERSION}"
  xz -dc -T0 "$work/source.tar.xz" | tar -x -C "$work" "${members[@]}"
  rm -f "$work/source.tar.xz"
  rm -rf upstream
  mv "$work/$prefix" upstream
  mv "$work/$sync" upstream/mozilla-sync
  actual=$(tree_sha256)
  if [ "$actual" != "$TREE_SHA256" ]; then
    echo "the tests unpacked from $url differ from the pinned ones (tree SHA-256 $actual)" >&2
    rm -rf upstream
    exit 1
  fi
  echo "$STAMP" > upstream/.complete
  echo "web-platform-tests from Firefox ESR ${VERSION} in tests/wpt/upstream"
  exit 0
done
echo "could not download Firefox ESR ${VERSION}'s source from any of: ${SOURCES[*]}" >&2
exit 1
