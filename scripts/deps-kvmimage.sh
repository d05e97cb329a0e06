#!/bin/sh
# Host packages for KVM disk images (qcow2 DIs): the API checks their headers in Python,
# the node takes their boot files out with these tools (never by mounting the image).
# Idempotent: installs only what is missing; runs `apt-get update` only when something is.
#
#   qemu-utils     qemu-img: converts a checked DI to a sparse raw disk (and the tests make images)
#   e2fsprogs      debugfs (reads the DI's ext4 in userspace) and mkfs.ext4 -d (test images)
#   util-linux     prlimit (bounds debugfs's memory, CPU time and output size)
set -eu

PACKAGES="qemu-utils e2fsprogs util-linux"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "deps-kvmimage: all present ($PACKAGES)"
    exit 0
fi

echo "deps-kvmimage: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing
