#!/usr/bin/env bash
# install-deps.sh - install every package dspipe needs to build and test on Debian 12 (idempotent, non-interactive).
#
#   bash scripts/install-deps.sh          # as root, or as a user with sudo
#   bash scripts/install-deps.sh --check  # only list what is missing (exit 1 if any)
#
# Installs nothing and does not touch the network when every package is
# already there; otherwise runs apt-get update once, then apt-get install.
set -euo pipefail

PACKAGES=(
    build-essential autoconf automake libtool pkg-config check
    libjansson-dev libpng-dev libturbojpeg0-dev libjpeg62-turbo-dev libopenjp2-7-dev
    libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
    libdcmtk-dev dcmtk libopenblas-dev libpcre2-dev libutf8proc-dev
    libfreetype-dev fonts-dejavu-core   # image.overlay text: FreeType + DejaVuSansMono.ttf
    gstreamer1.0-tools valgrind graphviz python3 python3-numpy
    python3-pydicom             # DICOM test files read by tests/test_dicom.c
    dicom3tools                 # dciodvfy: validates the SC / SR files in tests/test_dicom_write.sh
)

say() { printf 'install-deps: %s\n' "$*"; }

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    *) say "usage: $0 [--check]"; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    say "this script is for Debian 12 (apt/dpkg not found); install these yourself:"
    printf '  %s\n' "${PACKAGES[@]}"
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    AS_ROOT=()
elif command -v sudo >/dev/null; then
    AS_ROOT=(sudo)
else
    AS_ROOT=()
fi

missing=()
for p in "${PACKAGES[@]}"; do
    # "install ok installed" is the only state in which a package is usable
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    say "all ${#PACKAGES[@]} packages are installed; nothing to do"
    exit 0
fi

if [ "$check_only" -eq 1 ]; then
    say "missing: ${missing[*]}"
    exit 1
fi

if [ "$(id -u)" -ne 0 ] && [ ${#AS_ROOT[@]} -eq 0 ]; then
    say "missing: ${missing[*]}"
    say "run this script as root (or install sudo) to install them"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
say "missing ${#missing[@]} package(s): ${missing[*]}"
say "running: apt-get update"
"${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
say "running: apt-get install -y --no-install-recommends ${missing[*]}"
"${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
say "done"
