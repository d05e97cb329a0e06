#!/bin/sh
# What the WAT (web administration tool) and its browser tests need.
# Idempotent: installs only what is missing.
#
#   nodejs, npm     `npm ci` of src/qvd/wat/vendor (htmx for the pages, axe-core for the
#                   accessibility checks), pinned by its package-lock.json; a machine
#                   whose Node.js already brings npm keeps it
#   chromium        Debian's browser, driven headless by Playwright in tests/wat/browser
#                   and bench/wat.py (Playwright downloads no browser of its own)
#   fonts-dejavu-core  a font for the screenshots the browser tests keep
set -eu
cd "$(dirname "$0")/.."

PACKAGES="chromium fonts-dejavu-core"
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs"
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done
if [ -n "$missing" ]; then
    echo "deps-wat: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

VENDOR=src/qvd/wat/vendor
stamp="$VENDOR/node_modules/.qvd-lock"
want=$(sha256sum "$VENDOR/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "deps-wat: npm ci in $VENDOR"
    (cd "$VENDOR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi
echo "deps-wat: ready (chromium $(chromium --version 2>/dev/null | cut -d' ' -f2), $(cd "$VENDOR" && node -p 'require("htmx.org/package.json").version' 2>/dev/null || echo '?'))"
