#!/bin/sh
# Host packages for the L7R tests and bench/l7r.py.
# Idempotent: installs only what is missing; runs `apt-get update` only when something is.
#
#   slapd        a throwaway LDAP server started by the LDAP plugin tests (no system
#                instance: slapd/no_configuration is preseeded)
#   ldap-utils   slappasswd / ldapwhoami, used to seed and probe that server
#   socat        the plain relay bench/l7r.py compares the L7R relay with
#   iproute2     `ip route get`, the L7R's route check before it relays to a VM
#   nxproxy      the client side of NX sessions (qvd-client starts it)
#   x11vnc, xterm, xdotool
#                tests/l7r/test_vnc.py: the real VNC server the L7R authenticates to, on
#                an Xvfb (scripts/deps-di.sh), an xterm that shows which keys arrive
set -eu

PACKAGES="slapd ldap-utils socat iproute2 nxproxy x11vnc xterm xdotool"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "deps-l7r: all present ($PACKAGES)"
    exit 0
fi

echo "deps-l7r: installing$missing"
export DEBIAN_FRONTEND=noninteractive
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing
