#!/usr/bin/env bash
# `make test-containers`: build the image and run the compose topology with podman.
# Needs root and Debian's podman, runc and debootstrap (`.ci/run` installs them).
# Without them it says so in one line: a failure with CI=true, else nothing is run.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/containers

missing=""
[ "$(id -u)" = 0 ] || missing="root"
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "container tests not run: they need${missing:+ }$missing (apt-get install podman runc debootstrap, as root)"
    [ "${CI:-}" = true ] && exit 1
    exit 0
fi

# crun fails on this machine's cgroups; runc with cgroupfs, explicit ulimits and host
# networking work. Builds keep HEALTHCHECK only in the docker image format.
export CONTAINERS_CONF="$PWD/$here/containers.conf"
export BUILDAH_FORMAT=docker

seconds() { local start=$SECONDS; "$@"; echo "  ($(( SECONDS - start )) s: $*)"; }

echo "local base images"
seconds "$here/base.sh"
# Layers are cached: unchanged Containerfiles rebuild in a second.
seconds podman build --quiet --network host -t localhost/debian-redis:bookworm \
    -f "$here/redis.Containerfile" "$here"
seconds podman build --quiet --network host -t localhost/debian-node:bookworm \
    -f "$here/node.Containerfile" "$here"

TUSD_PY_CONTAINER_TESTS=1 exec .venv/bin/pytest "$here" -v -s -p no:cacheprovider
