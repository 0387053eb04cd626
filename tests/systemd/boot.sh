#!/bin/sh
# boot.sh SCRATCH REPO CGROUP: start the e2e namespace (see init.sh) inside CGROUP.
# The unshare process stays in the foreground until the namespace's systemd exits;
# --kill-child takes the whole namespace down if unshare itself is killed.
set -eu
scratch=$1 repo=$2 cgroup=$3
here=$(cd "$(dirname "$0")" && pwd)
echo $$ > "$cgroup/cgroup.procs"
exec env -i E2E_SCRATCH="$scratch" E2E_REPO="$repo" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    unshare --pid --mount --uts --ipc --net --cgroup --fork --mount-proc --propagation private \
    --kill-child "$here/init.sh"
