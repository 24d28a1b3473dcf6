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
import shutil
import tempfile
import zipapp
from dataclasses import dataclass
from pathlib import Path

from interlock.fleet.inventory import Host
from interlock.fleet.transport import Transport
from interlock.host.gate_install import SYSTEM_PYTHON, package_root

HOST_ZIPAPP = "/usr/sbin/interlock"
# Packages copied into the zipapp beside interlock (import names).
BUNDLED = ("yaml", "rich", "markdown_it", "mdurl", "pygments")
MAIN = "import sys\nfrom interlock.cli.main import main\nsys.exit(main())\n"


def build_zipapp(destination: Path) -> str:
    """Write the zipapp; return its SHA-256."""
    with tempfile.TemporaryDirectory(prefix="interlock-zipapp-") as tmp:
        staging = Path(tmp) / "app"
        staging.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
        shutil.copytree(Path(package_root()) / "interlock", staging / "interlock", ignore=ignore)
        for name in BUNDLED:
            module = importlib.import_module(name)
            assert module.__file__ is not None
            shutil.copytree(Path(module.__file__).parent, staging / name, ignore=ignore)
        (staging / "__main__.py").write_text(MAIN)
        zipapp.create_archive(staging, destination, interpreter=SYSTEM_PYTHON, compressed=True)
    return hashlib.sha256(destination.read_bytes()).hexdigest()


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
