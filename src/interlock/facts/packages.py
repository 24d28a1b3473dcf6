"""Installed and candidate versions of named packages on a host.

Candidates are read against a repository *before* it is switched on the host: the command copies
the host's apt sources into a scratch directory, puts the given sources file in it, and runs
`apt-get update` and `apt-cache policy` on that copy (Dir::Etc::SourceParts, Dir::State::Lists, no
package cache). The host's own sources, lists and locks are not touched, so a plan shows the
versions a run will install.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from interlock.package_version import compare_versions, is_newer

SCRIPT = """\
set -eu
export LC_ALL=C
file=$1 content=$2
shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/interlock-facts.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial"
for source in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -e "$source" ] && [ "$source" != "$file" ]; then cp "$source" "$work/parts/"; fi
done
printf '%s' "$content" > "$work/parts/${file##*/}"
echo '#installed'
dpkg-query -W -f='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n' "$@" 2>/dev/null || true
if ! apt-get -q -o "Dir::Etc::SourceParts=$work/parts" -o "Dir::State::Lists=$work/lists" \\
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root \\
    update > "$work/update.log" 2>&1; then
    tail -n 5 "$work/update.log" >&2
    exit 1
fi
echo '#candidates'
apt-cache -o "Dir::Etc::SourceParts=$work/parts" -o "Dir::State::Lists=$work/lists" \\
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy "$@"
"""

_POLICY_HEADER = re.compile(r"^(\S+):$")
_POLICY_FIELD = re.compile(r"^\s+(Installed|Candidate):\s*(\S+)\s*$")


@dataclass(frozen=True)
class PackageFact:
    name: str
    installed: str | None = None  # dpkg says installed (ii) at this version
    candidate: str | None = None  # what apt would install from the release's sources

    @property
    def upgradable(self) -> bool:
        """Installed, with a newer candidate: what the upgrade installs."""
        return is_newer(self.candidate, self.installed)


def command(file: str, content: str, packages: Sequence[str]) -> list[str]:
    return ["sh", "-c", SCRIPT, "sh", file, content, *packages]


def parse_dpkg_query(text: str) -> dict[str, str]:
    """`dpkg-query -W -f='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`: the packages
    fully installed (state `i`); half-installed ones and config files left behind are not."""
    installed: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        name, version, status = parts
        name = name.partition(":")[0]
        if len(status) >= 2 and status[1] == "i" and version:
            known = installed.get(name)
            if known is None or compare_versions(version, known) > 0:
                installed[name] = version
    return installed


def parse_policy(text: str) -> dict[str, tuple[str | None, str | None]]:
    """`LC_ALL=C apt-cache policy PKG...`: package -> (installed, candidate), None for (none)."""
    result: dict[str, tuple[str | None, str | None]] = {}
    current: str | None = None
    fields: dict[str, str | None] = {}
    for line in text.splitlines():
        header = _POLICY_HEADER.match(line)
        if header:
            current = header[1].partition(":")[0]
            fields = {"Installed": None, "Candidate": None}
            result[current] = (None, None)
            continue
        match = _POLICY_FIELD.match(line)
        if match and current is not None:
            value = match[2]
            fields[match[1]] = None if value == "(none)" else value
            result[current] = (fields["Installed"], fields["Candidate"])
    return result


def parse(text: str, packages: Sequence[str]) -> dict[str, PackageFact]:
    """The command's output: the installed versions from dpkg, the candidates from apt."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line in ("#installed", "#candidates"):
            current = line[1:]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if "installed" not in sections or "candidates" not in sections:
        raise ValueError("the package probe's output is incomplete")
    installed = parse_dpkg_query("\n".join(sections["installed"]))
    policy = parse_policy("\n".join(sections["candidates"]))
    return {
        name: PackageFact(name, installed.get(name), policy.get(name, (None, None))[1])
        for name in packages
    }
