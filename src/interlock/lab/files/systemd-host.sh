#!/bin/sh
# Boots one systemd lab host. Started by the lab's keeper with the host's directory as its
# argument, which holds host.conf (HOST NETNS ADDRESS PREFIXLEN IMAGE CGROUP) and the host's
# overlay upper layer.
#
# First pass: join the host's own cgroup (before `ip netns exec` hides the machine's cgroup
# mounts), enter the host's network namespace, unshare mount, UTS, IPC, cgroup and PID namespaces
# and run the second pass as PID 1 of the new PID namespace. The keeper's child, through every
# exec, ends as that unshare, which dies of the signal that ended the host's init (SIGHUP when
# something inside the host reboots it, SIGINT when it powers it off).
#
# Second pass: mount the host's root file system (an overlay over the Debian image) with its own
# /proc (/proc/sys read-only), a read-only /sys, a fresh cgroup2 mount, its own /dev, /run and
# /tmp; make it the root; exec systemd. The machine's root file system is unmounted from the
# host's view before systemd starts, so systemd never sees it.
set -eu
umask 022
HOSTDIR=$1
. "$HOSTDIR/host.conf"

if [ "${2:-}" != boot ]; then
    mkdir -p "$CGROUP"
    echo $$ > "$CGROUP/cgroup.procs"
    exec ip netns exec "$NETNS" unshare --mount --uts --ipc --cgroup --pid --fork --kill-child --propagation private \
        /bin/sh "$0" "$HOSTDIR" boot
fi

hostname "$HOST"
ip -batch - <<NET
link set lo up
addr replace $ADDRESS/$PREFIXLEN dev eth0
link set eth0 up
NET

ROOT=$HOSTDIR/root
mkdir -p "$ROOT"
mount -t overlay overlay \
    -o "lowerdir=$IMAGE,upperdir=$HOSTDIR/upper,workdir=$HOSTDIR/work" "$ROOT"

mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
for path in sys sysrq-trigger; do
    [ -e "$ROOT/proc/$path" ] || continue
    mount --bind "$ROOT/proc/$path" "$ROOT/proc/$path"
    mount -o remount,bind,ro "$ROOT/proc/$path"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ROOT/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$ROOT/sys/fs/cgroup"

mount -t tmpfs -o mode=0755,size=4m,nosuid tmpfs "$ROOT/dev"
node() { mknod -m "$1" "$ROOT/dev/$2" c "$3" "$4"; }
node 666 null 1 3
node 666 zero 1 5
node 666 full 1 7
node 666 random 1 8
node 666 urandom 1 9
node 666 tty 5 0
mkdir -m 0755 "$ROOT/dev/pts"
mkdir -m 1777 "$ROOT/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$ROOT/dev/pts"
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmpfs "$ROOT/dev/shm"
ln -s pts/ptmx "$ROOT/dev/ptmx"
# systemd's console is the host's log file: what it cannot write to its journal lands there.
touch "$ROOT/dev/console"
mount --bind /proc/self/fd/1 "$ROOT/dev/console"
ln -s /proc/self/fd "$ROOT/dev/fd"
ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
ln -s /proc/self/fd/2 "$ROOT/dev/stderr"

mount -t tmpfs -o mode=0755,size=64m,nosuid,nodev tmpfs "$ROOT/run"
mount -t tmpfs -o mode=1777,size=256m,nosuid,nodev tmpfs "$ROOT/tmp"

cd "$ROOT"
pivot_root . mnt
# From here on only the image's programs exist; the machine's tree goes away before systemd runs.
exec /usr/sbin/chroot . /bin/sh -c \
    'umount -l /mnt && exec env -i container=interlock-lab /lib/systemd/systemd'
