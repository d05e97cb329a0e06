#!/bin/sh
# Host packages for the disk-image builder (qvd di), the VMA tests and bench/vma_session.py.
# Idempotent: installs only what is missing; runs `apt-get update` only when something is.
#
#   lxc            lxc-start/lxc-stop/lxc-info/lxc-attach (the test helper and, later, the HKD)
#   debootstrap    builds the image root file systems
#   zstd           packs and unpacks the .tar.zst images
#   nxproxy        the client side of an NX session (tests and benchmark)
#   xvfb           the client display the tests draw into
#   x11-apps       xwd, to take screenshots of that display (parsed in Python, no ImageMagick)
#   x11-utils      xwininfo / xdpyinfo, to wait for windows and for the display
#   iproute2       ip link/addr/route/netns for the test bridge
#   util-linux     nsenter / unshare; prlimit (bounds debugfs when a node takes a DI's boot files)
#   procps         ps / pkill-free process inspection helpers used while debugging
#   e2fsprogs      mkfs.ext4 -d makes a KVM image's root file system; debugfs reads it
#   qemu-utils     qemu-img: the KVM images (qcow2), per-VM overlays and home disks
#   qemu-system-x86  qemu-system-x86_64: the KVM backend and the image boot tests
#   dnsmasq-base   the per-node DHCP (and DNS) server of the VMs
set -eu

PACKAGES="lxc debootstrap zstd nxproxy xvfb x11-apps x11-utils iproute2 util-linux procps"
PACKAGES="$PACKAGES e2fsprogs qemu-utils qemu-system-x86 dnsmasq-base"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "deps-di: all present ($PACKAGES)"
    exit 0
fi

echo "deps-di: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing
