"""The upgrade's steps as the rollout engine's actions: commands run on the host over SSH.

Service holds work on systemd and sysv hosts alike; the scripts decide on the host, by whether
systemd runs there (/run/systemd/system):

- hold = stop + disable + mask, so that nothing starts the service while its package is
  upgraded (maintainer scripts call `invoke-rc.d NAME restart`), until the release.
  systemd: `systemctl stop`, `disable`, `mask`. sysv has no mask; it gets two things instead:
  `update-rc.d NAME disable` (no start link: invoke-rc.d refuses to start it when no
  policy-rc.d answers) and a blocking policy /etc/policy-rc.d/interlock-upgrade-NAME.policy
  (start and restart refused by interlock's gate and by the OpenStack charms' policy-rc.d, whose
  "allowed" answer would otherwise override the disabled links). Both kinds of host get the
  policy file. /var/lib/interlock/held/NAME keeps whether the service was enabled before. A
  person running `service NAME start` still can: sysv has nothing stronger.
- release = unmask + enable + start, as the service was before the hold: one that was disabled
  before stays disabled and stopped. The held marker goes last, so a release interrupted half-way
  is simply done again.

Every script takes its arguments as positional parameters (`sh -c SCRIPT sh ARG...`): nothing
from the recipe is ever pasted into shell text.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from interlock.rollout.plan import Action, RunCommand

HELD_DIR = "/var/lib/interlock/held"
POLICY_DIR = "/etc/policy-rc.d"

HOLD_SCRIPT = f"""\
set -eu
held={HELD_DIR}
mkdir -p "$held" {POLICY_DIR}
for name do
    if [ -d /run/systemd/system ]; then
        if [ ! -e "$held/$name" ]; then
            state=disabled
            if systemctl -q is-enabled "$name" 2>/dev/null; then state=enabled; fi
            echo "$state" > "$held/$name.new" && mv -f "$held/$name.new" "$held/$name"
        fi
    else
        [ -x "/etc/init.d/$name" ] || {{ echo "hold: no service $name" >&2; exit 1; }}
        if [ ! -e "$held/$name" ]; then
            state=disabled
            if ls /etc/rc[2345].d/S[0-9][0-9]"$name" >/dev/null 2>&1; then state=enabled; fi
            echo "$state" > "$held/$name.new" && mv -f "$held/$name.new" "$held/$name"
        fi
    fi
    policy="{POLICY_DIR}/interlock-upgrade-$name.policy"
    printf '%s\\n' "# interlock upgrade: $name is held until the upgrade releases it" \\
        "blocked_actions:" "  '$name': [start, restart, try-restart, reload, force-reload]" \\
        "policy_requestor_name: interlock-upgrade" "policy_requestor_type: interlock" \\
        > "$policy.new"
    mv -f "$policy.new" "$policy"
    if [ -d /run/systemd/system ]; then
        systemctl stop "$name"
        if [ "$(systemctl is-enabled "$name" 2>/dev/null)" != masked ]; then
            systemctl -q disable "$name" 2>/dev/null || true
            systemctl -q mask "$name"
        fi
    else
        service "$name" stop
        if [ "$(cat "$held/$name")" = enabled ]; then
            update-rc.d "$name" disable >/dev/null 2>&1 \\
                || {{ echo "hold: update-rc.d $name disable failed" >&2; exit 1; }}
        fi
    fi
done
"""

RELEASE_SCRIPT = f"""\
set -eu
held={HELD_DIR}
for name do
    state=enabled
    if [ -r "$held/$name" ]; then state=$(cat "$held/$name"); fi
    if [ -d /run/systemd/system ]; then
        systemctl -q unmask "$name"
        if [ "$state" = enabled ]; then systemctl -q enable "$name" 2>/dev/null || true; fi
    elif [ "$state" = enabled ]; then
        update-rc.d "$name" enable >/dev/null 2>&1 \\
            || {{ echo "release: update-rc.d $name enable failed" >&2; exit 1; }}
    fi
    rm -f "{POLICY_DIR}/interlock-upgrade-$name.policy"
    if [ "$state" != enabled ]; then
        echo "release: $name was disabled before the upgrade: it stays disabled and stopped" >&2
    elif [ -d /run/systemd/system ]; then
        systemctl start "$name"
    else
        service "$name" start
    fi
    rm -f "$held/$name"
done
"""

# apt-get install marks every package named on its command line as manually installed, even
# one that is only upgraded: packages that were automatic are marked automatic again, so
# `apt-get autoremove` keeps working after the upgrade.
INSTALL_SCRIPT = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
names=
for spec do names="$names ${spec%%=*}"; done
auto=$(apt-mark showauto $names)
apt-get install -y -q -o DPkg::Lock::Timeout=300 \\
    -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef "$@"
if [ -n "$auto" ]; then apt-mark auto $auto >/dev/null; fi
"""

# Exit 0 when every PACKAGE=VERSION argument is installed at exactly that version.
INSTALLED_SCRIPT = """\
for spec do
    got=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' "${spec%%=*}" 2>/dev/null) || exit 1
    [ "$got" = "ii ${spec#*=}" ] || exit 1
done
"""

WRITE_FILE_SCRIPT = """\
set -eu
printf '%s' "$2" > "$1.interlock-new"
chmod 644 "$1.interlock-new"
mv -f "$1.interlock-new" "$1"
"""

SAME_FILE_SCRIPT = """\
printf '%s' "$2" | cmp -s - "$1"
"""

# The names the plan's text gives the scripts, shown once at its top.
SCRIPTS = {
    "INTERLOCK_HOLD": HOLD_SCRIPT,
    "INTERLOCK_RELEASE": RELEASE_SCRIPT,
    "INTERLOCK_INSTALL": INSTALL_SCRIPT,
    "INTERLOCK_INSTALLED": INSTALLED_SCRIPT,
    "INTERLOCK_WRITE_FILE": WRITE_FILE_SCRIPT,
    "INTERLOCK_SAME_FILE": SAME_FILE_SCRIPT,
}


def script(text: str, args: Sequence[str]) -> tuple[str, ...]:
    return ("sh", "-c", text, "sh", *args)


def hold(services: Sequence[str]) -> RunCommand:
    return RunCommand(script(HOLD_SCRIPT, services), timeout=300.0)


def release(services: Sequence[str]) -> RunCommand:
    return RunCommand(script(RELEASE_SCRIPT, services), timeout=300.0)


def pinned(packages: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{name}={version}" for name, version in packages]


def install(packages: Sequence[tuple[str, str]]) -> RunCommand:
    """Install exactly these versions; done already when every one is installed at it."""
    specs = pinned(packages)
    return RunCommand(
        script(INSTALL_SCRIPT, specs),
        check=script(INSTALLED_SCRIPT, specs),
        timeout=1800.0,
    )


def write_sources(path: str, content: str) -> RunCommand:
    return RunCommand(
        script(WRITE_FILE_SCRIPT, [path, content]),
        check=script(SAME_FILE_SCRIPT, [path, content]),
        timeout=60.0,
    )


def apt_update() -> RunCommand:
    return RunCommand(("apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"), timeout=900.0)


def answer() -> RunCommand:
    return RunCommand(("true",), timeout=60.0)


def database(argv: Sequence[str]) -> RunCommand:
    return RunCommand(tuple(argv), timeout=7200.0)


def online_migrations(argv: Sequence[str], delay: float, limit: int) -> RunCommand:
    """Exit 0: all migrated; 1: some were, run again; 2: some need a person (the step fails)."""
    return RunCommand(
        tuple(argv), again_exits=(1,), again_delay=delay, again_limit=limit, timeout=7200.0
    )


def upgrade_check(argv: Sequence[str], ok_exits: Sequence[int]) -> RunCommand:
    return RunCommand(tuple(argv), ok_exits=tuple(ok_exits), timeout=600.0)


def shown_argv(argv: Sequence[str], values: Mapping[str, str] | None = None) -> str:
    """A command as the plan shows it: the shared scripts, and long values such as a sources
    file, by the names the plan's legend defines; everything else exactly as it runs."""
    named = {text: name for name, text in SCRIPTS.items()} | dict(values or {})
    words = [f'"${named[arg]}"' if arg in named else shlex.quote(arg) for arg in argv]
    return " ".join(words)


def shown_commands(action: Action, values: Mapping[str, str] | None = None) -> list[str]:
    """The lines under a step in the plan: its command (and its check), or the engine's text."""
    if isinstance(action, RunCommand):
        lines = [f"$ {shown_argv(action.argv, values)}"]
        if action.again_exits:
            codes = "/".join(str(code) for code in action.again_exits)
            lines[0] += f"   (again while it exits {codes}, every {action.again_delay:g} s, "
            lines[0] += f"≤ {action.again_limit} times; any other failure stops)"
        if action.ok_exits != (0,):
            lines.append("succeeds on exit " + "/".join(str(c) for c in action.ok_exits))
        if action.check:
            lines.append(f"done already when this exits 0: $ {shown_argv(action.check, values)}")
        return lines
    return action.commands()
