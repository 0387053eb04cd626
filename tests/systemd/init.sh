#!/bin/sh
# PID 1 of the e2e namespace: fence the host off, then exec a real systemd.
#
# Run by boot.sh as `unshare --pid --mount --uts --ipc --net --fork --mount-proc
# --propagation private init.sh` with E2E_SCRATCH (a scratch folder, writable),
# E2E_REPO (the agentd checkout) and E2E_CGROUP (an empty cgroup2 folder) in the
# environment. Every write systemd, the installer or agentd makes lands in E2E_SCRATCH
# or in a tmpfs that dies with the namespace:
#   /etc /var /usr /opt /root  overlays whose upper layers live in $E2E_SCRATCH/upper
#   /run /tmp /home /dev        private tmpfs (the /dev one gets a few bound device nodes)
#   / /sys /proc/sys            read-only (per-mount flag: the host's mounts stay as they are)
#   /sys/fs/cgroup              cgroup2 of a cgroup namespace rooted at E2E_CGROUP
set -eu

# First into E2E_CGROUP and a cgroup namespace rooted there (exec keeps us PID 1), so
# systemd manages that subtree only, and the unshare process outside is not in it.
if [ -z "${E2E_IN_CGNS:-}" ]; then
    echo $$ > "${E2E_CGROUP:?}/cgroup.procs"
    E2E_IN_CGNS=1 exec unshare --cgroup "$0"
fi

S=${E2E_SCRATCH:?}
REPO=${E2E_REPO:?}
say() { echo "e2e-init: $*"; }
fail() { echo "e2e-init: FATAL: $*" >&2; exit 1; }

[ "$$" = 1 ] || fail "must run as PID 1 of a new PID namespace"
# Nothing we mount may reach the host, whatever the parent's propagation was.
mount --make-rprivate /

# -- 1. overlays: the installer, systemd and agentd write into the upper layers -------
for d in etc var usr opt root; do
    mkdir -p "$S/upper/$d" "$S/work/$d"
    mount -t overlay "e2e-$d" -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "/$d" \
        || fail "overlay on /$d"
done

# -- 2. private tmpfs; the scratch share and the repo are bound under /run ---------------
mount -t tmpfs -o mode=0755,nosuid,nodev e2e-run /run
mkdir -p /run/agentd-e2e
mount --bind "$S/share" /run/agentd-e2e
mkdir -p /run/agentd-e2e/src
mount --bind "$REPO" /run/agentd-e2e/src
mount -o remount,bind,ro /run/agentd-e2e/src
mount -t tmpfs -o mode=1777,nosuid,nodev e2e-tmp /tmp
mount -t tmpfs -o mode=0755,nosuid,nodev e2e-home /home

# -- 3. a private /dev with the few nodes services need -------------------------------
mkdir -p /run/e2e-dev
mount -t tmpfs -o mode=0755,nosuid,noexec e2e-dev /run/e2e-dev
for n in null zero full random urandom tty; do
    touch "/run/e2e-dev/$n"
    mount --bind "/dev/$n" "/run/e2e-dev/$n"
done
touch /run/e2e-dev/console
mount --bind /run/agentd-e2e/console.log /run/e2e-dev/console
mkdir -p /run/e2e-dev/pts /run/e2e-dev/shm
mount --move /run/e2e-dev /dev
rmdir /run/e2e-dev
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 e2e-devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev e2e-shm /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr

# -- 4. kernel interfaces read-only; a cgroup2 tree of our own ------------------------
mount --bind /sys /sys
mount -o remount,bind,ro,nosuid,nodev,noexec /sys
mount -t cgroup2 -o nosuid,nodev,noexec e2e-cgroup /sys/fs/cgroup
for p in /proc/sys /proc/sysrq-trigger; do
    [ -e "$p" ] || continue
    mount --bind "$p" "$p"
    mount -o remount,bind,ro "$p"
done
# The root mount last: everything not overlaid above is now read-only to us, and so is
# any other mount of the host's (a separate /boot, /srv, /mnt/...). Mounts hidden under
# an overlay or a tmpfs of ours are out of reach anyway.
mount -o remount,bind,ro /
findmnt -rn -o TARGET | while read -r target; do
    case $target in
        /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*|/tmp|/tmp/*|/home|/home/*) continue ;;
        /etc|/etc/*|/var|/var/*|/usr|/usr/*|/opt|/opt/*|/root|/root/*) continue ;;
    esac
    mount -o remount,bind,ro "$target" || fail "cannot make $target read-only"
done

# -- 5. what this boot runs: a minimal target, host-touching units masked ----------------
U=/etc/systemd/system
cat > "$U/agentd-e2e.target" <<'UNIT'
[Unit]
Description=agentd e2e: basic system, no more
Requires=basic.target
After=basic.target
AllowIsolate=yes
UNIT
for unit in \
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service \
    systemd-sysctl.service procps.service systemd-modules-load.service kmod-static-nodes.service \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
    systemd-remount-fs.service systemd-fsck-root.service systemd-firstboot.service \
    systemd-machine-id-commit.service systemd-random-seed.service systemd-repart.service \
    systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-pstore.service \
    systemd-timesyncd.service hwclock.service systemd-logind.service systemd-user-sessions.service \
    getty.target getty-static.service console-getty.service getty@.service serial-getty@.service \
    container-getty@.service systemd-networkd.service systemd-networkd.socket \
    systemd-network-generator.service systemd-resolved.service systemd-journald-audit.socket \
    systemd-ask-password-console.path systemd-ask-password-wall.path \
    systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.timer timers.target \
    cryptsetup.target veritysetup.target integritysetup.target remote-fs.target \
    postgresql.service postgresql@.service e2scrub_reap.service \
    rc-local.service cryptdisks.service cryptdisks-early.service x11-common.service \
    dbus.socket dbus.service; do
    ln -sfn /dev/null "$U/$unit"
done
# No generators: fstab, gpt-auto, getty, sysv and the rest describe the host.
mkdir -p /etc/systemd/system-generators
for g in /usr/lib/systemd/system-generators/* /lib/systemd/system-generators/*; do
    [ -e "$g" ] && ln -sfn /dev/null "/etc/systemd/system-generators/${g##*/}"
done
# A machine id of our own, so the journal is ours too.
tr -d '-' < /proc/sys/kernel/random/uuid > /etc/machine-id
echo agentd-e2e > /etc/hostname
hostname agentd-e2e

# -- 6. verify the fence before handing over --------------------------------------------
for d in /etc /var /usr /opt /root; do
    [ "$(findmnt -n -o FSTYPE --mountpoint "$d" | tail -n 1)" = overlay ] || fail "$d is not an overlay"
done
for d in /run /tmp /home /dev; do
    [ "$(findmnt -n -o FSTYPE --mountpoint "$d" | tail -n 1)" = tmpfs ] || fail "$d is not a tmpfs"
done
findmnt -n -o OPTIONS --mountpoint / | tail -n 1 | grep -q '^ro' || fail "/ is not read-only"
touch /.e2e-write-probe 2>/dev/null && fail "/ is still writable"
[ "$(findmnt -n -o FSTYPE --mountpoint /sys/fs/cgroup | tail -n 1)" = cgroup2 ] || fail "no cgroup2"
if findmnt -n -o PROPAGATION | grep -qv private; then fail "a shared mount is left"; fi
say "fence up; exec systemd"

exec env -i container=agentd-e2e PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    /usr/lib/systemd/systemd --system --unit=agentd-e2e.target
