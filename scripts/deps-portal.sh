#!/bin/sh
# What the user portal's in-browser desktop viewer and its browser tests need.
# Idempotent: installs only what is missing.
#
#   nodejs, npm     `npm ci` of src/qvd/portal/vendor (noVNC, served to the browser
#                   under /vendor/novnc/), pinned by its package-lock.json
#   chromium        Debian's browser, driven headless by Playwright in tests/portal/browser
#   xvfb, x11vnc, xterm, x11-utils
#                   the desktop the viewer's browser tests show: an xterm on an Xvfb
#                   display served by x11vnc; xprop reads and sets its cut buffer
set -eu
cd "$(dirname "$0")/.."

PACKAGES="chromium xvfb x11vnc xterm x11-utils"
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
    echo "deps-portal: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

VENDOR=src/qvd/portal/vendor
stamp="$VENDOR/node_modules/.qvd-lock"
want=$(sha256sum "$VENDOR/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "deps-portal: npm ci in $VENDOR"
    (cd "$VENDOR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi
echo "deps-portal: ready (noVNC $(cd "$VENDOR" && node -p 'require("./node_modules/@novnc/novnc/package.json").version' 2>/dev/null || echo '?'))"
