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
. scripts/lib-deps.sh

PACKAGES="chromium fonts-dejavu-core"
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs"
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"

# shellcheck disable=SC2086 # one word a package
install_missing deps-wat $PACKAGES

VENDOR=src/qvd/wat/vendor
npm_ci_locked deps-wat "$VENDOR"
echo "deps-wat: ready (chromium $(chromium --version 2>/dev/null | cut -d' ' -f2), $(cd "$VENDOR" && node -p 'require("htmx.org/package.json").version' 2>/dev/null || echo '?'))"
