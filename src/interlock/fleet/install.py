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
# Packages copied into the zipapp beside interlock (import names).
BUNDLED = ("yaml", "rich", "markdown_it", "mdurl", "pygments")
MAIN = "import sys\nfrom interlock.fleet.install import zipapp_main\nsys.exit(zipapp_main())\n"
# Every member gets this timestamp, so the archive's digest changes only with its content and a
# host is rewritten only when interlock really changed.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _members() -> list[tuple[str, Path]]:
    """(name in the archive, source file) for interlock and the bundled packages, sorted."""
    roots = [Path(package_root()) / "interlock"]
    for name in BUNDLED:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        roots.append(Path(module.__file__).parent)
    members = []
    for root in roots:
        for path in root.rglob("*"):
            # Compiled extensions cannot be imported from a zip; their packages fall back to
            # pure Python (PyYAML without libyaml).
            if path.suffix in {".pyc", ".so"} or "__pycache__" in path.parts:
                continue
            if path.is_file():
                members.append((path.relative_to(root.parent).as_posix(), path))
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


def zipapp_main() -> int:
    """The zipapp's entry point on a host: every command group whose libraries it carries.

    Groups that need compiled libraries (asyncssh's cryptography) cannot run from a zip; they
    are left out rather than breaking the host commands.
    """
    from interlock.cli import main as cli

    available = []
    for group in cli.GROUP_MODULES:
        try:
            importlib.import_module(f"interlock.cli.{group}")
        except ImportError:
            continue
        available.append(group)
    cli.GROUP_MODULES = tuple(available)
    return cli.main()


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
