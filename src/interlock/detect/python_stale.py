"""Python services whose code was upgraded under them, found without running any Python of theirs.

A Python process maps its interpreter and C extensions, but reads its `.py` modules and closes
them, so /proc/<pid>/maps cannot show an upgraded pure-Python package. This module finds what a
process imports by reading source, never by running code: the entry script (or `-m` module) from
its command line, then every module it imports, followed through packages (module by module,
relative imports included) to a fixed point, resolved on the interpreter's standard Debian search
path. Each file is matched to the dpkg package that installed it; a package counts as upgraded
when dpkg unpacked it after the process started (its `info/<package>.list` file's mtime). Files no
package owns count when they changed (ctime) after the start.

The process's environment is never read and its interpreter never run: the 2024 needrestart
local-root CVEs came from running the target's interpreter with the target's PYTHONPATH.
Source files are opened non-blocking, must be regular files, and are size-capped.
"""

from __future__ import annotations

import ast
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from interlock.detect.dpkg import FileOwners, unpacked_at

# Seconds of slack between a process's start and a later unpack: start times from /proc are
# estimates (clock ticks plus a computed boot time), and a false "outdated" costs a restart.
START_TOLERANCE = 1.0
MAX_SOURCE_BYTES = 4 << 20
MAX_MODULES = 4000  # per process: a bound, not an expectation
_VERSION = re.compile(r"python(3\.[0-9]+)$")
_OPTIONS_WITH_VALUE = frozenset("WXQ")


@dataclass(frozen=True)
class PythonEntry:
    """What the command line runs: a script path, a module (`-m`), or neither (`-c`, REPL)."""

    script: str | None = None
    module: str | None = None


def parse_command_line(argv: list[str]) -> PythonEntry:
    """Interpreter options are skipped as CPython parses them; the first operand is the entry."""
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--" and index + 1 < len(argv):
            return PythonEntry(script=argv[index + 1])
        if arg == "-" or not arg.startswith("-"):
            return PythonEntry(script=None if arg == "-" else arg)
        if arg.startswith("--"):
            index += 1  # --check-hash-based-pycs takes a value; others do not exist in argv[1:]
            if arg == "--check-hash-based-pycs":
                index += 1
            continue
        letters = arg[1:]
        for position, letter in enumerate(letters):
            rest = letters[position + 1 :]
            if letter == "c":
                return PythonEntry()
            if letter == "m":
                module = rest or (argv[index + 1] if index + 1 < len(argv) else "")
                return PythonEntry(module=module or None)
            if letter in _OPTIONS_WITH_VALUE:
                if not rest:
                    index += 1  # the value is the next argument
                break
        index += 1
    return PythonEntry()


def interpreter_version(exe: str) -> str | None:
    """`/usr/bin/python3.11` → `3.11`."""
    match = _VERSION.search(os.path.basename(exe))
    return match.group(1) if match else None


def search_path(version: str, exe: str, argv0: str | None, first: str | None) -> list[str]:
    """sys.path as the interpreter builds it without environment variables (Debian layout)."""
    prefix = os.path.dirname(os.path.dirname(exe))
    paths = [first] if first else []
    if prefix == "/usr":
        paths += [
            f"/usr/lib/python{version}",
            f"/usr/lib/python{version}/lib-dynload",
            f"/usr/local/lib/python{version}/dist-packages",
            "/usr/lib/python3/dist-packages",
        ]
    else:
        paths += [
            f"{prefix}/lib/python{version}",
            f"{prefix}/lib/python{version}/lib-dynload",
            f"{prefix}/lib/python{version}/site-packages",
        ]
    if argv0 and argv0.startswith("/"):
        venv = os.path.dirname(os.path.dirname(argv0))
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            paths.append(f"{venv}/lib/python{version}/site-packages")
    return paths


@dataclass(frozen=True)
class ImportRef:
    """`import a.b` → ("a.b", (), 0); `from ..x import y` → ("x", ("y",), 2)."""

    module: str
    names: tuple[str, ...]
    level: int


def imports_of(source: str | bytes) -> list[ImportRef]:
    """Every import statement in a module's source, at any depth (lazy imports too)."""
    tree = ast.parse(source)
    refs: list[ImportRef] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            refs.extend(ImportRef(alias.name, (), 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            refs.append(ImportRef(node.module or "", names, node.level))
    return refs


def read_source(path: str) -> bytes | None:
    """A regular file's bytes, without blocking on a FIFO or reading a huge file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_BYTES:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Found:
    file: str | None  # None: a namespace package
    package_dirs: tuple[str, ...]  # non-empty for packages


class ImportGraph:
    """Resolves modules and parses sources; caches are shared by every process of one scan."""

    def __init__(self) -> None:
        self._imports: dict[tuple[str, int, int], list[ImportRef]] = {}
        self._listings: dict[str, frozenset[str]] = {}

    def _listing(self, directory: str) -> frozenset[str]:
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return names

    def _find(self, directories: Iterable[str], name: str) -> _Found | None:
        portions = []
        for directory in directories:
            names = self._listing(directory)
            if name in names:
                base = os.path.join(directory, name)
                if "__init__.py" in self._listing(base):
                    return _Found(os.path.join(base, "__init__.py"), (base,))
                if os.path.isdir(base):
                    portions.append(base)
            if f"{name}.py" in names:
                return _Found(os.path.join(directory, f"{name}.py"), ())
            for entry in names:
                if entry.startswith(f"{name}.") and entry.endswith(".so"):
                    return _Found(os.path.join(directory, entry), ())
        return _Found(None, tuple(portions)) if portions else None

    def resolve(self, qualname: str, path: list[str]) -> list[tuple[str, _Found]]:
        """Every module `import qualname` runs: a.b.c → a, a.b, a.b.c (as far as they exist)."""
        chain: list[tuple[str, _Found]] = []
        directories: Iterable[str] = path
        parts = qualname.split(".")
        for depth, part in enumerate(parts):
            if not part:
                break
            found = self._find(directories, part)
            if found is None:
                break
            chain.append((".".join(parts[: depth + 1]), found))
            if not found.package_dirs:
                break
            directories = found.package_dirs
        return chain

    def imports(self, path: str) -> list[ImportRef]:
        try:
            info = os.stat(path)
        except OSError:
            return []
        key = (path, info.st_mtime_ns, info.st_size)
        refs = self._imports.get(key)
        if refs is None:
            source = read_source(path)
            try:
                refs = imports_of(source) if source is not None else []
            except (SyntaxError, ValueError, RecursionError):
                refs = []
            self._imports[key] = refs
        return refs

    def closure(self, entry: str | None, main_file: str | None, path: list[str]) -> set[str]:
        """The files a program whose entry is `main_file` (or module `entry`) may have run."""
        stdlib = next((p for p in path if p.startswith("/") and _is_stdlib_dir(p)), None)
        files: set[str] = set()
        seen: set[str] = set()
        queue: list[tuple[str, str]] = []  # (qualified name, file)
        if main_file is not None:
            queue.append(("__main__", main_file))
            files.add(main_file)
        if entry is not None:
            # `-m package` runs package/__main__.py after the package itself.
            for name in (entry, f"{entry}.__main__"):
                queue.extend(self._enqueue(name, path, files, seen))
        while queue and len(seen) < MAX_MODULES:
            qualname, file = queue.pop()
            if qualname != "__main__" and not file.endswith(".py"):
                continue  # an extension module: its mapping shows in /proc/<pid>/maps
            if stdlib and file.startswith(stdlib + "/"):
                continue  # the standard library counts by its package, not module by module
            is_package = file.endswith("/__init__.py")
            package = qualname if is_package else qualname.rpartition(".")[0]
            for ref in self.imports(file):
                for target in _targets(ref, package):
                    queue.extend(self._enqueue(target, path, files, seen))
        return files

    def _enqueue(
        self, qualname: str, path: list[str], files: set[str], seen: set[str]
    ) -> list[tuple[str, str]]:
        found = []
        for name, module in self.resolve(qualname, path):
            if name in seen:
                continue
            seen.add(name)
            if module.file is not None:
                files.add(module.file)
                found.append((name, module.file))
        return found


def _is_stdlib_dir(path: str) -> bool:
    return bool(re.fullmatch(r".*/lib/python3\.[0-9]+", path))


def _targets(ref: ImportRef, package: str) -> list[str]:
    """Absolute module names an import may load: the module and each `from` name as a module."""
    if ref.level:
        parts = package.split(".") if package else []
        if ref.level - 1 > len(parts):
            return []
        base_parts = parts[: len(parts) - (ref.level - 1)]
        base = ".".join(base_parts)
        module = f"{base}.{ref.module}" if base and ref.module else (base or ref.module)
    else:
        module = ref.module
    if not module:
        return []
    return [module, *(f"{module}.{name}" for name in ref.names)]


@dataclass(frozen=True)
class UpgradedCode:
    """Why a Python process runs outdated code: packages unpacked, or unowned files changed."""

    packages: tuple[str, ...]
    files: tuple[str, ...]


def outdated_code(
    files: Iterable[str], started_at: float, owners: FileOwners, admin_dir: str
) -> UpgradedCode:
    packages: set[str] = set()
    loose: set[str] = set()
    unpacked: dict[str, float | None] = {}
    for file in files:
        package = owners.owner(file)
        if package is not None:
            if package not in unpacked:
                unpacked[package] = unpacked_at(admin_dir, package)
            when = unpacked[package]
            if when is not None and when > started_at + START_TOLERANCE:
                packages.add(package)
            continue
        try:
            changed = os.stat(file).st_ctime
        except OSError:
            continue
        if changed > started_at + START_TOLERANCE:
            loose.add(file)
    return UpgradedCode(tuple(sorted(packages)), tuple(sorted(loose)))


def program_of(proc: str, pid: int) -> tuple[str, list[str], str] | None:
    """(interpreter, argv, cwd) of a process, from /proc: never its environment."""
    try:
        exe = os.readlink(f"{proc}/{pid}/exe").removesuffix(" (deleted)")
        cwd = os.readlink(f"{proc}/{pid}/cwd").removesuffix(" (deleted)")
        with open(f"{proc}/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    argv = [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]] if raw else []
    return (exe, argv, cwd) if argv else None


def python_files(proc: str, pid: int, graph: ImportGraph) -> set[str] | None:
    """The source files a Python process may have loaded; None if it is not a Python program."""
    program = program_of(proc, pid)
    if program is None:
        return None
    exe, argv, cwd = program
    version = interpreter_version(exe)
    if version is None:
        return None
    entry = parse_command_line(argv)
    if entry.script is not None:
        script = os.path.normpath(os.path.join(cwd, entry.script))
        path = search_path(version, exe, argv[0], os.path.dirname(script))
        return graph.closure(None, script, path)
    if entry.module is not None:
        return graph.closure(entry.module, None, search_path(version, exe, argv[0], cwd))
    return None
