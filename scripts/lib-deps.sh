# Shared by the scripts/deps-*.sh that install a browser-side npm vendor tree (sourced,
# not run: named outside the deps-*.sh that qvd.sh runs one by one).
# Both steps are idempotent.
#
#   install_missing TAG PACKAGE...   apt-get install of those Debian packages not installed
#   npm_ci_locked TAG DIR            `npm ci` in DIR unless its package-lock.json is the one
#                                    last installed there (a stamp in node_modules says)

install_missing() {
    tag=$1
    shift
    missing=""
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        case "$status" in
            "install ok installed") ;;
            *) missing="$missing $pkg" ;;
        esac
    done
    if [ -n "$missing" ]; then
        echo "$tag: installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

npm_ci_locked() {
    tag=$1
    vendor=$2
    stamp="$vendor/node_modules/.qvd-lock"
    want=$(sha256sum "$vendor/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        echo "$tag: npm ci in $vendor"
        (cd "$vendor" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" > "$stamp"
    fi
}
