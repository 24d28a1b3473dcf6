#!/bin/sh
# Boots one interlock lab host. Runs in the host's network namespace and in fresh mount and UTS
# (and optionally PID) namespaces, then becomes the host's sshd. Argument: the host's directory,
# holding host.conf (HOST ADDRESS PREFIXLEN PIDNS SERVICES HAPROXY AWAIT OVERLAYS) and the
# overlay layers.
set -eu
umask 022
HOSTDIR=$1
. "$HOSTDIR/host.conf"

hostname "$HOST"
# `replace`: after a reboot (this script started again) the namespace still has the address.
ip -batch - <<NET
link set lo up
addr replace $ADDRESS/$PREFIXLEN dev eth0
link set eth0 up
NET

if [ "$PIDNS" = 1 ]; then
    # A /proc of this PID namespace, so pidfiles and process scans inside the host agree.
    mount -t proc proc /proc
fi
overlay() {
    mount -t overlay overlay -o "lowerdir=$3,upperdir=$HOSTDIR/upper/$2,workdir=$HOSTDIR/work/$2" "$1"
}
# OVERLAYS lists TREE:LAYER:LOWER: /etc, /var/lib, /var/log and /usr/sbin over the machine's, or
# with package overlays also /usr, /opt, /var/cache, and /var/lib/dpkg over a snapshot, so dpkg
# and apt-get change only this host.
for entry in $OVERLAYS; do
    tree=${entry%%:*}
    rest=${entry#*:}
    [ -d "$tree" ] || continue
    overlay "$tree" "${rest%%:*}" "${rest#*:}"
done
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
# A clean home: the machine's root dotfiles (shell init) stay out of every SSH command.
mount -t tmpfs -o mode=0700,size=16m tmpfs /root
mkdir -p /run/sshd /run/lock /run/haproxy

# Services start from here, not through invoke-rc.d: the host's policy-rc.d decides later actions.
for service in $SERVICES; do
    "/etc/init.d/$service" start || echo "host-init: $HOST: $service did not start" >&2
done
touch "$HOSTDIR/services-started"

# Wait (bounded) for the hosts this one depends on, so haproxy's first health checks pass.
tries=0
for other in $AWAIT; do
    while [ ! -e "$other/services-started" ] && [ "$tries" -lt 200 ]; do
        tries=$((tries + 1))
        sleep 0.05
    done
done
if [ "$HAPROXY" = 1 ]; then
    haproxy -D -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid \
        || echo "host-init: $HOST: haproxy did not start" >&2
fi
exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config -E /var/log/sshd.log
