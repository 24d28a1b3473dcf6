"""The pure parsers of detection, on output captured from real processes and a real dpkg.

Captured on these machines: maps of a daemon whose shared library an upgrade replaced, of a
Python daemon, and of a process whose executable was replaced; stat of a process whose command
name holds spaces and parentheses; cmdline of a Python daemon started from its shebang; cgroup of
a process on a host without systemd; dpkg-query output including a removed-not-purged package.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interlock.detect.dpkg import parse_query, shipped_services
from interlock.detect.mapping import parse_cgroup, parse_stat, unit_from_cgroup_path
from interlock.detect.python_stale import (
    ImportGraph,
    ImportRef,
    PythonEntry,
    imports_of,
    interpreter_version,
    parse_command_line,
    search_path,
)
from interlock.detect.stale import MappedFile, judge, parse_maps

FIXTURES = Path(__file__).with_name("fixtures")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_maps_of_a_daemon_whose_library_was_replaced() -> None:
    files = parse_maps(fixture("maps-lib-replaced.txt"))
    by_path = {f.path: f for f in files}
    # Executable mappings only, one entry per file; [vdso] and anonymous maps are not files.
    assert sorted(by_path) == [
        "/usr/lib/ilt-test/libilt.so.1",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/sbin/ilt-cdaemon",
    ]
    lib = by_path["/usr/lib/ilt-test/libilt.so.1"]
    assert lib.deleted and lib.inode == 13410687
    assert lib.device == os.makedev(0xFE, 0x00)
    assert not by_path["/usr/sbin/ilt-cdaemon"].deleted


def test_maps_path_with_spaces_and_parentheses() -> None:
    files = parse_maps(fixture("maps-exe-replaced.txt"))
    exe = [f for f in files if f.path.endswith("x")]
    assert [(f.path, f.deleted) for f in exe] == [("/tmp/ilt-proto/odd (name) x", True)]


def test_maps_of_a_python_daemon_show_the_interpreter() -> None:
    paths = {f.path for f in parse_maps(fixture("maps-python-daemon.txt"))}
    assert "/usr/bin/python3.11" in paths
    assert not any(".py" in path and not path.endswith(".so") for path in paths)


@pytest.mark.parametrize(
    ("mapping", "on_disk", "why"),
    [
        (MappedFile("/usr/lib/a.so", 1, 10, True), None, "deleted"),
        (MappedFile("/usr/lib/a.so", 1, 10, True), 11, "replaced"),
        (MappedFile("/usr/lib/a.so", 1, 10, False), 11, "replaced"),
        (MappedFile("/usr/lib/a.so", 1, 10, False), 10, None),
        (MappedFile("/usr/lib/a.so", 1, 10, False), None, None),  # another mount namespace
        (MappedFile("/memfd:jit", 1, 10, True), None, None),
        (MappedFile("/dev/zero", 1, 10, True), None, None),
    ],
)
def test_judging_a_mapping(mapping: MappedFile, on_disk: int | None, why: str | None) -> None:
    verdict = judge(mapping, on_disk)
    assert (verdict.why if verdict else None) == why


def test_stat_with_an_odd_command_name() -> None:
    stat = parse_stat(fixture("stat-odd-command.txt").decode())
    assert stat.comm == "odd (name) x"
    assert stat.ppid == 1
    assert stat.start_ticks == 146804


def test_stat_of_a_python_daemon() -> None:
    stat = parse_stat(fixture("stat-python-daemon.txt").decode())
    assert (stat.comm, stat.ppid, stat.start_ticks) == ("ilt-pydaemon", 1, 144836)


def test_cgroup_of_a_process_on_a_sysv_host_names_no_unit() -> None:
    assert parse_cgroup(fixture("cgroup-sysv-host.txt").decode()) is None


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("0::/system.slice/nova-compute.service\n", "nova-compute.service"),
        ("0::/system.slice/openvswitch-switch.service/ovs\n", "openvswitch-switch.service"),
        ("0::/system.slice/system-getty.slice/getty@tty1.service\n", "getty@tty1.service"),
        ("12:pids:/\n1:name=systemd:/system.slice/cron.service\n0::/\n", "cron.service"),
        ("0::/user.slice/user-0.slice/session-4.scope\n", None),
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service\n", None),
        ("0::/init.scope\n", None),
        ("0::/machine.slice/libpod-abc.scope\n", None),
    ],
)
def test_systemd_cgroup_paths(text: str, unit: str | None) -> None:
    assert parse_cgroup(text) == unit


def test_cgroup_path_without_components() -> None:
    assert unit_from_cgroup_path("/") is None


def test_dpkg_query_keeps_packages_whose_files_are_installed() -> None:
    packages = parse_query(fixture("dpkg-query.txt").decode())
    assert packages["cron"].version == "3.0pl1-162"
    assert packages["libc6:amd64"].version == "2.36-9+deb12u14"  # Multi-Arch: same keeps :arch
    assert packages["python3-iltpy"].version == "1.0"
    assert "ilt-pydaemon" not in packages  # removed, only its configuration files remain (rc)
    assert all(p.status.startswith("ii") for p in packages.values())


def test_dpkg_query_ignores_malformed_lines() -> None:
    assert parse_query("broken line\n\t1.0\tii \nok\t1\tii \n") == {
        "ok": parse_query("ok\t1\tii \n")["ok"]
    }


def test_services_a_package_ships() -> None:
    shipped = shipped_services(
        [
            "/.",
            "/etc/init.d",
            "/etc/init.d/nova-compute",
            "/lib/systemd/system/nova-compute.service",
            "/usr/lib/systemd/system/nova-api-metadata.service",
            "/lib/systemd/system/nova@.service",
            "/lib/systemd/system/nova.socket",
            "/lib/systemd/system/nova-compute.service.d/override.conf",
            "/usr/share/doc/nova-compute/changelog.gz",
        ]
    )
    assert shipped.init_scripts == ("nova-compute",)
    assert shipped.units == ("nova-api-metadata.service", "nova-compute.service")
    assert shipped.names(systemd=False) == ["nova-compute"]
    assert shipped.names(systemd=True) == ["nova-api-metadata", "nova-compute"]


def test_python_command_line_of_a_captured_daemon() -> None:
    argv = [a.decode() for a in fixture("cmdline-python-daemon.bin").split(b"\0")[:-1]]
    assert argv == ["/usr/bin/python3", "/usr/sbin/ilt-pydaemon"]
    assert parse_command_line(argv) == PythonEntry(script="/usr/sbin/ilt-pydaemon")


@pytest.mark.parametrize(
    ("argv", "entry"),
    [
        (["python3", "-u", "-X", "dev", "app.py", "--flag"], PythonEntry(script="app.py")),
        (["python3", "-Wignore", "-Es", "app.py"], PythonEntry(script="app.py")),
        (["python3", "-I", "-m", "nova.cmd.compute"], PythonEntry(module="nova.cmd.compute")),
        (["python3", "-um", "http.server", "8000"], PythonEntry(module="http.server")),
        (["python3", "-mjson.tool"], PythonEntry(module="json.tool")),
        (["python3", "-c", "import os"], PythonEntry()),
        (["python3"], PythonEntry()),
        (["python3", "-"], PythonEntry()),
        (["python3", "--", "-odd.py"], PythonEntry(script="-odd.py")),
        (["python3", "--check-hash-based-pycs", "always", "x.py"], PythonEntry(script="x.py")),
    ],
)
def test_python_command_lines(argv: list[str], entry: PythonEntry) -> None:
    assert parse_command_line(argv) == entry


def test_interpreter_version() -> None:
    assert interpreter_version("/usr/bin/python3.11") == "3.11"
    assert interpreter_version("/usr/bin/python3") is None
    assert interpreter_version("/usr/bin/perl") is None


def test_search_path_on_debian_and_in_a_virtualenv(tmp_path: Path) -> None:
    assert search_path("3.11", "/usr/bin/python3.11", "/usr/bin/python3", "/srv/app") == [
        "/srv/app",
        "/usr/lib/python3.11",
        "/usr/lib/python3.11/lib-dynload",
        "/usr/local/lib/python3.11/dist-packages",
        "/usr/lib/python3/dist-packages",
    ]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    path = search_path("3.11", "/usr/bin/python3.11", str(venv / "bin" / "python"), None)
    assert path[-1] == f"{venv}/lib/python3.11/site-packages"


def test_imports_at_any_depth() -> None:
    source = (
        "import os, a.b as ab\n"
        "from . import sibling\n"
        "from ..pkg import x, y\n"
        "from m import *\n"
        "def f():\n    import lazy\n"
        "try:\n    import fast\nexcept ImportError:\n    fast = None\n"
    )
    assert sorted(imports_of(source), key=repr) == sorted(
        [
            ImportRef("os", (), 0),
            ImportRef("a.b", (), 0),
            ImportRef("", ("sibling",), 1),
            ImportRef("pkg", ("x", "y"), 2),
            ImportRef("m", (), 0),
            ImportRef("lazy", (), 0),
            ImportRef("fast", (), 0),
        ],
        key=repr,
    )


def _tree(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_import_closure_follows_packages_and_relative_imports(tmp_path: Path) -> None:
    site, app, stdlib = tmp_path / "site", tmp_path / "app", tmp_path / "lib" / "python3.11"
    _tree(
        site,
        {
            "top/__init__.py": "from .sub import helper\nfrom . import plugins\n",
            "top/sub/__init__.py": "from ..util import tool\n",
            "top/util.py": "import dep.inner\n",
            "top/plugins.py": "",
            "dep/__init__.py": "",
            "dep/inner.py": "import os\n",
            "ns_pkg/part.py": "",
            "unused/__init__.py": "",
            "fast.cpython-311-x86_64-linux-gnu.so": "",
        },
    )
    _tree(stdlib, {"os.py": "import unused\n"})
    _tree(app, {"main": "import top\nimport ns_pkg.part\nimport fast\nimport missing\n"})
    path = [str(app), str(stdlib), str(site)]
    files = ImportGraph().closure(None, str(app / "main"), path)
    assert sorted(os.path.relpath(f, tmp_path) for f in files) == [
        "app/main",
        "lib/python3.11/os.py",  # counted, but the standard library is not followed further
        "site/dep/__init__.py",
        "site/dep/inner.py",
        "site/fast.cpython-311-x86_64-linux-gnu.so",
        "site/ns_pkg/part.py",
        "site/top/__init__.py",
        "site/top/plugins.py",
        "site/top/sub/__init__.py",
        "site/top/util.py",
    ]


def test_import_closure_of_a_module_entry(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"svc/__init__.py": "", "svc/__main__.py": "from . import work\n", "svc/work.py": ""},
    )
    files = ImportGraph().closure("svc", None, [str(tmp_path)])
    assert sorted(os.path.relpath(f, tmp_path) for f in files) == [
        "svc/__init__.py",
        "svc/__main__.py",
        "svc/work.py",
    ]


def test_unparsable_or_special_sources_are_skipped(tmp_path: Path) -> None:
    _tree(tmp_path, {"bad.py": "def (:\n", "main": "import bad\nimport pipe\n"})
    os.mkfifo(tmp_path / "pipe.py")  # opening it for reading must not block the scan
    files = ImportGraph().closure(None, str(tmp_path / "main"), [str(tmp_path)])
    assert {os.path.basename(f) for f in files} == {"main", "bad.py", "pipe.py"}
