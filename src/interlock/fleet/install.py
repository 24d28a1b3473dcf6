"""Putting interlock on hosts: one self-contained zipapp, then the gate, idempotently.

The zipapp holds interlock and the pure-Python libraries its host commands use (PyYAML runs
without its C extension from a zip; rich and its dependencies are pure Python). It is copied to
`/usr/sbin/interlock` on each host, so `interlock status` works there under the system python3;
`interlock gate install` then points the gate at the zipapp. A host that already has the same
zipapp (by SHA-256) is not written again.
"""

from __future__ import annotations

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
HOST_PARTS = (
    "__init__.py",
    "py.typed",
    "errors.py",
    "host",
    "detect",
    "observe",
    "cli/__init__.py",
    "cli/main.py",
    "cli/host_entry.py",
    "cli/host.py",
    "cli/gate.py",
    "cli/detect.py",
    "cli/output.py",
)
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
    roots = [package / part for part in HOST_PARTS]
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
    return sorted(members)


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
