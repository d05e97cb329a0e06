#!/bin/sh
# What the session's devices need on this machine, where the tests and benchmarks play
# the user's client machine (printing, sound, shared folders, USB; issue #16).
# Idempotent: installs only what is missing.
#
#   cups-daemon, cups-client   the client's CUPS: a private cupsd per test, with a
#                              file-backed queue the desktop's print job must reach
#   pulseaudio, pulseaudio-utils
#                              the client's sound server (a private one per test with
#                              a null sink whose monitor the test records)
#   gstreamer1.0-tools, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good,
#   gstreamer1.0-pulseaudio
#                              the client's Opus decoder (client.audio.compression.enable:
#                              gst-launch-1.0, opusdec, rtpstreamdepay, pulsesink)
#   openssh-sftp-server        the client's end of a shared folder (sftp-server on the
#                              slave channel; the desktop mounts it with sshfs)
#   sshfs                      mounts a desktop folder opened on the client
#                              (qvd-share-to-client → the client's slave server)
#   usbip                      the client's end of USB/IP (used where vhci-hcd loads)
#
# As a node, desktops with ``vm.lxc.fuse = 1`` get the host's /dev/fuse bound in; their
# user (an unmapped host uid) opens it only when it is 0666, Debian's udev default
# (a host without udev leaves it 0600).
set -eu
cd "$(dirname "$0")/.."
. scripts/lib-deps.sh

install_missing deps-devices cups-daemon cups-client pulseaudio pulseaudio-utils \
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    gstreamer1.0-pulseaudio \
    openssh-sftp-server bubblewrap openssh-client usbip sshfs
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
    chmod 0666 /dev/fuse
fi
echo "deps-devices: ready"
