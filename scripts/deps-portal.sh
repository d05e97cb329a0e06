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
. scripts/lib-deps.sh

PACKAGES="chromium xvfb x11vnc xterm x11-utils"
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs"
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"

# shellcheck disable=SC2086 # one word a package
install_missing deps-portal $PACKAGES

VENDOR=src/qvd/portal/vendor
npm_ci_locked deps-portal "$VENDOR"
echo "deps-portal: ready (noVNC $(cd "$VENDOR" && node -p 'require("./node_modules/@novnc/novnc/package.json").version' 2>/dev/null || echo '?'))"
