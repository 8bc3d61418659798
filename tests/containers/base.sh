#!/usr/bin/env bash
# Make the local base image localhost/debian-py:bookworm from Debian's packages, for
# machines that reach no image registry (python:3.11-slim cannot be pulled there).
# The root filesystem is cached as a tarball OUTSIDE the checkout and made only when
# missing (debootstrap takes minutes); importing the cached tarball takes seconds.
set -euo pipefail

IMAGE=${BASE_IMAGE:-localhost/debian-py:bookworm}
CACHE=${TUSD_PY_CI_CACHE:-/var/cache/tusd-py-ci}
TARBALL="$CACHE/debian-py-bookworm.tar"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

if podman image exists "$IMAGE"; then
    echo "base image $IMAGE: present"
    exit 0
fi

mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ]; then
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    start=$(date +%s)
    echo "debootstrap bookworm into $root (minutes; cached in $TARBALL afterwards)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    # pip inside the build reaches the package index through a proxy that only the
    # machine's CA bundle trusts.
    cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . >"$TARBALL.part"
    mv "$TARBALL.part" "$TARBALL"
    echo "debootstrap took $(( $(date +%s) - start )) s"
fi
podman import "$TARBALL" "$IMAGE" >/dev/null
echo "base image $IMAGE: imported from $TARBALL"
