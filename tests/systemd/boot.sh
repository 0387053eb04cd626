#!/bin/sh
# boot.sh SCRATCH REPO CGROUP: start the e2e namespace (see init.sh); its systemd gets
# CGROUP (an empty cgroup2 folder) as the root of its own cgroup namespace. The unshare
# process stays in the foreground until that systemd exits; --kill-child takes the whole
# namespace down if unshare itself is killed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec env -i E2E_SCRATCH="$1" E2E_REPO="$2" E2E_CGROUP="$3" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    unshare --pid --mount --uts --ipc --net --fork --mount-proc --propagation private \
    --kill-child "$here/init.sh"
