"""Putting interlock on hosts: one self-contained zipapp, then the gate, idempotently.

The zipapp holds interlock and the pure-Python libraries its host commands use (PyYAML runs
without its C extension from a zip; rich and its dependencies are pure Python). It is copied to
`/usr/sbin/interlock` on each host, so `interlock status` works there under the system python3;
`interlock gate install` then points the gate at the zipapp. A host that already has the same
zipapp (by SHA-256) is not written again.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from interlock.host.gate_install import SYSTEM_PYTHON, package_root

if TYPE_CHECKING:
    from interlock.fleet.inventory import Host
    from interlock.fleet.transport import Transport

HOST_ZIPAPP = "/usr/sbin/interlock"
# What the host commands (cli/host_entry.py) import, relative to the interlock package: hosts do
# not get the fleet, rollout, upgrade, load-balancer, lab or demo code.
# The host's entry point: the zipapp holds it and every interlock module it imports, directly or
# not, at the top or inside a function (found by reading the sources, not by running them), so
# hosts do not get the fleet, rollout, upgrade, load-balancer, lab or demo code.
HOST_ENTRY = "interlock.cli.host_entry"
# Packages copied into the zipapp beside interlock (import names): rich's console and tables
# need neither pygments nor markdown-it.
BUNDLED = ("yaml", "rich")
MAIN = "import sys\nfrom interlock.cli.host_entry import main\nsys.exit(main())\n"
# Every member gets this timestamp, so the archive's digest changes only with its content and a
# host is rewritten only when interlock really changed.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _members() -> list[tuple[str, Path]]:
    """(name in the archive, source file) for interlock's host side and the bundled packages."""
    package = Path(package_root()) / "interlock"
    roots = [package / "py.typed", *host_modules(package)]
    for name in BUNDLED:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        roots.append(Path(module.__file__).parent)
    members = []
    for root in roots:
        top = package.parent if root.is_relative_to(package) else root.parent
        for path in [root] if root.is_file() else root.rglob("*"):
            # Compiled extensions cannot be imported from a zip; their packages fall back to
            # pure Python (PyYAML without libyaml).
            if path.suffix in {".pyc", ".so"} or "__pycache__" in path.parts:
                continue
            if path.is_file():
                members.append((path.relative_to(top).as_posix(), path))
    return sorted(set(members))


def host_modules(package: Path) -> list[Path]:
    """The source files of HOST_ENTRY and of every interlock module it imports, with the
    packages (`__init__.py`) on the way."""
    found: set[Path] = set()
    pending = [HOST_ENTRY, *_entry_groups(package)]
    while pending:
        name = pending.pop()
        parts = name.split(".")[1:]
        for depth in range(len(parts) + 1):
            base = package.joinpath(*parts[:depth])
            for candidate in (base / "__init__.py", base.with_suffix(".py")):
                if candidate.is_file() and candidate not in found:
                    found.add(candidate)
                    pending.extend(_imported(candidate))
    return sorted(found)


def _entry_groups(package: Path) -> list[str]:
    """The command groups the entry point loads by name (cli/host_entry.py's HOST_GROUPS)."""
    entry = package.joinpath(*HOST_ENTRY.split(".")[1:]).with_suffix(".py")
    for node in ast.walk(ast.parse(entry.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "HOST_GROUPS" for target in node.targets
        ):
            return [f"interlock.cli.{group}" for group in ast.literal_eval(node.value)]
    raise RuntimeError(f"{entry}: no HOST_GROUPS")


def _imported(source: Path) -> list[str]:
    """The interlock modules a source file imports anywhere in it (`from interlock.x import y`
    may name a module y too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in names if name == "interlock" or name.startswith("interlock.")]


def build_zipapp(destination: Path) -> str:
    """Write the zipapp (reproducibly: same sources, same bytes); return its SHA-256."""
    buffer = io.BytesIO()
    buffer.write(f"#!{SYSTEM_PYTHON}\n".encode())
    files = [(name, path.read_bytes()) for name, path in _members()]
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in [*files, ("__main__.py", MAIN.encode())]:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    data = buffer.getvalue()
    destination.write_bytes(data)
    destination.chmod(0o755)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class InstallResult:
    host: str
    copied: bool
    gate_output: str


async def install_on_host(
    transport: Transport,
    host: Host,
    archive: bytes,
    digest: str,
    chain: bool = True,
    on_policy_error: str = "deny",
    timeout: float = 120.0,
) -> InstallResult:
    current = await transport.run(
        host, ["sh", "-c", 'sha256sum "$1" 2>/dev/null || true', "sh", HOST_ZIPAPP], timeout=timeout
    )
    copied = current.stdout.decode(errors="replace").split(" ", 1)[0] != digest
    if copied:
        await transport.put_file(host, archive, HOST_ZIPAPP, mode=0o755)
    argv = [SYSTEM_PYTHON, HOST_ZIPAPP, "gate", "install", "--on-policy-error", on_policy_error]
    if not chain:
        argv.append("--no-chain")
    result = (await transport.run(host, argv, timeout=timeout)).check()
    return InstallResult(host.name, copied, result.stdout.decode(errors="replace").strip())
