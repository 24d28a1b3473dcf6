#!/bin/sh
# Re-captures the reboot parsers' fixtures from the real tools (run as root on Debian 12 with
# Debian's mirror in its apt sources; downloads one kernel package, about 26 MB).
#   kernel-uname-v.txt    what a Debian kernel says as `uname -v` (its image's version banner)
#   dpkg-query-kernels.txt  dpkg-query's listing of linux-image-* from a dpkg database holding
#                         two kernel images, the meta package and one removed kernel, with their
#                         control data from `apt-cache show`
#   boot-listing.txt      the /boot names that kernel package installs
#   proc-stat.txt, proc-1-stat.txt  /proc/stat and /proc/1/stat of this machine
set -eu
here=$(cd "$(dirname "$0")/fixtures" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
old=linux-image-6.1.0-50-cloud-amd64
new=linux-image-6.1.0-57-cloud-amd64
removed=linux-image-6.1.0-47-cloud-amd64
(cd "$work" && apt-get download -q "$old" >/dev/null 2>&1)
dpkg-deb --fsys-tarfile "$work"/"$old"_*.deb | tar -x -C "$work" ./boot
ls "$work/boot" > "$here/boot-listing.txt"
file -b "$work"/boot/vmlinuz-* | sed -n 's/.*, version [^ ]* ([^)]*) \(#[^,]*\),.*/\1/p' \
    > "$here/kernel-uname-v.txt"
mkdir -p "$work/admin/info" "$work/admin/updates"
: > "$work/admin/status"
stanza() {  # package, status
    apt-cache show "$1" | awk '/^$/ { exit } { print }' |
        grep -E '^(Package|Source|Version|Architecture|Maintainer|Installed-Size|Depends|Section|Priority|Description):' \
        > "$work/stanza"
    { echo "Status: $2"; cat "$work/stanza"; echo; } >> "$work/admin/status"
}
stanza "$old" "install ok installed"
stanza "$new" "install ok installed"
stanza linux-image-cloud-amd64 "install ok installed"
stanza "$removed" "deinstall ok config-files"
dpkg-query --admindir="$work/admin" -W -f='${Package}\t${Version}\t${db:Status-Abbrev}\n' \
    'linux-image-*' > "$here/dpkg-query-kernels.txt"
cp /proc/stat "$here/proc-stat.txt"
cp /proc/1/stat "$here/proc-1-stat.txt"
