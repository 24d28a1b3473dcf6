"""Blocking policies: the `/etc/policy-rc.d/*.policy` files, as the OpenStack charms write them.

A policy file names, per service, the actions that must not run during package operations:

    # Managed by juju
    blocked_actions:
      neutron-dhcp-agent: [restart, stop, try-restart]
    policy_requestor_name: neutron-gateway
    policy_requestor_type: charm

interlock writes its own policies in the same format (requestor type ``interlock``) and adds two
optional extensions the charms ignore: the service key ``'*'`` (every service) and
``fallback_actions`` (per service, per blocked action, the actions to run instead; the gate answers
106 with them). A policy file is read only if root alone can change it, up to 1 MiB, without
YAML anchors or aliases (see `trusted_file`); anything else is a broken policy, handled by the
gate's fail mode. This module is on the gate's hot path: it imports only the standard library
modules Python loads at start-up.
"""

from __future__ import annotations

import os

from interlock.errors import FileFormatError
from interlock.host.trusted_file import (
    POLICY_MAX_BYTES,
    directory_problem,
    excerpt,
    quoted,
    read_bytes,
    read_text,
)

POLICY_DIR = "/etc/policy-rc.d"
POLICY_SUFFIX = ".policy"
ANY_SERVICE = "*"

# The actions Debian's policy-rc.d interface always knows.
KNOWN_ACTIONS = frozenset(
    ("start", "stop", "restart", "reload", "force-reload", "force-stop", "status", "try-restart")
)

# A blocked action also blocks the spellings that may perform it: force-reload restarts a
# service that cannot reload, try-restart restarts a running one, force-stop is a stop, and
# nginx's postinst asks `upgrade` (a new master process on the new binary) before `restart`.
COVERS = {
    "restart": frozenset(("restart", "try-restart", "force-reload", "upgrade")),
    "stop": frozenset(("stop", "force-stop")),
    "reload": frozenset(("reload", "force-reload")),
}

# What "auto restarts off" and the fail-safe modes refuse.
DISRUPTIVE_ACTIONS = ("restart", "stop", "try-restart")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._:+-\\")
_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_TOP_KEYS = frozenset(
    ("blocked_actions", "policy_requestor_name", "policy_requestor_type", "fallback_actions")
)


def is_valid_service_name(name: str) -> bool:
    """A sysv script name or a systemd unit name; nothing a path or a shell could misread."""
    return (
        0 < len(name) <= 256
        and name[0] not in "-."
        and all(char in _NAME_CHARS for char in name)
        and ".." not in name
    )


def is_valid_action(action: str) -> bool:
    return 0 < len(action) <= 64 and action[0] != "-" and all(c in _ACTION_CHARS for c in action)


def canonical_service(name: str) -> str:
    """`cron.service` and `cron` are the same service to a policy."""
    return name[:-8] if name.endswith(".service") and len(name) > 8 else name


def canonical_action(action: str) -> str:
    """`(restart)` is invoke-rc.d's out-of-runlevel spelling of `restart`."""
    if len(action) > 2 and action[0] == "(" and action[-1] == ")":
        return action[1:-1]
    return action


def covering_action(blocked: frozenset[str], action: str) -> str | None:
    """The blocked action (as the policy names it) that forbids `action`, if any."""
    for name in sorted(blocked):
        if action == name or action in COVERS.get(name, ()):
            return name
    return None


class Policy:
    """One policy file: who asked (requestor) and which actions of which services are blocked."""

    __slots__ = ("blocked", "fallbacks", "path", "requestor_name", "requestor_type")

    def __init__(
        self,
        path: str,
        requestor_name: str,
        requestor_type: str,
        blocked: dict[str, frozenset[str]],
        fallbacks: dict[str, dict[str, tuple[str, ...]]] | None = None,
    ) -> None:
        self.path = path
        self.requestor_name = requestor_name
        self.requestor_type = requestor_type
        self.blocked = blocked
        self.fallbacks = fallbacks or {}

    def __repr__(self) -> str:
        return f"Policy({self.path!r}, {self.requestor_type}:{self.requestor_name})"

    @property
    def requestor(self) -> tuple[str, str]:
        return (self.requestor_type, self.requestor_name)

    def blocked_for(self, service: str) -> frozenset[str]:
        """Actions blocked for a (canonical) service name, including the `'*'` entry."""
        own = self.blocked.get(service)
        anyone = self.blocked.get(ANY_SERVICE)
        if own is None:
            return anyone or frozenset()
        return own | anyone if anyone else own

    def fallback_for(self, service: str, action: str) -> tuple[str, ...] | None:
        per_service = self.fallbacks.get(service) or self.fallbacks.get(ANY_SERVICE)
        return per_service.get(action) if per_service else None

    def knows_action(self, action: str) -> bool:
        return any(action in actions for actions in self.blocked.values())


def _line_of(text: str, needle: str) -> int | None:
    """The first line that mentions `needle`: good enough to point an operator at a bad entry."""
    index = text.find(needle)
    return None if index < 0 else text.count("\n", 0, index) + 1


def _requestor_from_filename(path: str) -> tuple[str, str]:
    """`charm-neutron-gateway.policy` → (charm, neutron-gateway), for files lacking the keys."""
    stem = os.path.basename(path)[: -len(POLICY_SUFFIX)]
    kind, sep, name = stem.partition("-")
    return (kind, name) if sep and name else ("unknown", stem)


FULL_PARSER_MAX_CHARS = 64 << 10


def load_yaml(text: str, path: str) -> object:
    """Parse with the fast reader; fall back to PyYAML (when importable) for exotic YAML.

    Anchors and aliases are refused by both, before PyYAML builds anything; so is nesting deep
    enough to exhaust the interpreter's stack. The fallback is only for files up to 64 KiB.
    """
    from interlock.host import miniyaml

    try:
        try:
            return miniyaml.load(text)
        except miniyaml.RefusedYaml as refused:
            raise FileFormatError(path, refused.message, refused.line) from None
        except miniyaml.UnsupportedYaml as unsupported:
            if len(text) > FULL_PARSER_MAX_CHARS:
                # Pure-Python PyYAML (the zipapp's) takes seconds per MiB, on every gate call.
                raise FileFormatError(
                    path,
                    f"{unsupported.message} (a full YAML parser reads it only in files up to "
                    f"{FULL_PARSER_MAX_CHARS >> 10} KiB)",
                    unsupported.line,
                ) from None
            try:
                import yaml  # noqa: F401 - only to know whether the fallback exists
            except ImportError:
                raise FileFormatError(
                    path, f"{unsupported.message} (needs a full YAML parser)", unsupported.line
                ) from None
            return _load_with_pyyaml(text, path)
        except miniyaml.YamlError as exc:
            raise FileFormatError(path, f"invalid YAML: {exc.message}", exc.line) from None
    except RecursionError:
        raise FileFormatError(path, "invalid YAML: nested too deeply") from None


def _load_with_pyyaml(text: str, path: str) -> object:
    import yaml

    from interlock.host.miniyaml import ANCHORS_REFUSED

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if "&" in text or "*" in text:
            # Parsing is linear in the text; only building the structure expands aliases.
            for event in yaml.parse(text, Loader=loader):
                if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                    mark = event.start_mark
                    line = mark.line + 1 if mark is not None else None
                    raise FileFormatError(path, ANCHORS_REFUSED, line)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise FileFormatError(path, f"invalid YAML: {excerpt(problem)}", line) from None


def _action_list(text: str, path: str, where: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        kind = "a string" if isinstance(value, str) else type(value).__name__
        raise FileFormatError(
            path,
            f"{where}: {quoted(key)} must be a list of actions, not {kind}",
            _line_of(text, key),
        )
    actions = []
    for item in value:
        if not isinstance(item, str) or not is_valid_action(canonical_action(item)):
            raise FileFormatError(
                path,
                f"{where}: {quoted(key)}: {quoted(item)} is not an action name",
                _line_of(text, key),
            )
        actions.append(canonical_action(item))
    return tuple(actions)


def _service_key(text: str, path: str, where: str, key: object) -> str:
    if not isinstance(key, str) or not (key == ANY_SERVICE or is_valid_service_name(key)):
        raise FileFormatError(
            path, f"{where}: {quoted(key)} is not a valid service name", _line_of(text, str(key))
        )
    return canonical_service(key)


def parse_policy(text: str, path: str) -> Policy:
    """Read one policy file's text; raise FileFormatError naming the file, line and problem."""
    data = load_yaml(text, path)
    if data is None:
        raise FileFormatError(path, "empty policy file")
    if not isinstance(data, dict):
        raise FileFormatError(path, "a policy file must be a YAML mapping", 1)
    for key in data:
        if key not in _TOP_KEYS:
            raise FileFormatError(path, f"unknown key {quoted(key)}", _line_of(text, str(key)))
    blocked_raw = data.get("blocked_actions")
    if blocked_raw is None:
        blocked_raw = {}
    if not isinstance(blocked_raw, dict):
        raise FileFormatError(
            path,
            "blocked_actions must map service names to lists of actions",
            _line_of(text, "blocked_actions"),
        )
    blocked: dict[str, frozenset[str]] = {}
    for raw_service, raw_actions in blocked_raw.items():
        service = _service_key(text, path, "blocked_actions", raw_service)
        actions = _action_list(text, path, "blocked_actions", str(raw_service), raw_actions)
        blocked[service] = blocked.get(service, frozenset()) | frozenset(actions)

    fallbacks: dict[str, dict[str, tuple[str, ...]]] = {}
    fallback_raw = data.get("fallback_actions") or {}
    if not isinstance(fallback_raw, dict):
        raise FileFormatError(
            path,
            "fallback_actions must map services to {action: [fallback actions]}",
            _line_of(text, "fallback_actions"),
        )
    for raw_service, per_action in fallback_raw.items():
        service = _service_key(text, path, "fallback_actions", raw_service)
        if not isinstance(per_action, dict):
            raise FileFormatError(
                path,
                f"fallback_actions: {quoted(raw_service)} must map actions to lists of actions",
                _line_of(text, str(raw_service)),
            )
        fallbacks[service] = {}
        for action, alternatives in per_action.items():
            if not isinstance(action, str) or not is_valid_action(canonical_action(action)):
                raise FileFormatError(
                    path,
                    f"fallback_actions: {quoted(raw_service)}: {quoted(action)} "
                    "is not an action name",
                    _line_of(text, str(action)),
                )
            fallbacks[service][canonical_action(action)] = _action_list(
                text, path, "fallback_actions", action, alternatives
            )

    default_type, default_name = _requestor_from_filename(path)
    requestor = []
    for key, default in (
        ("policy_requestor_name", default_name),
        ("policy_requestor_type", default_type),
    ):
        value = data.get(key, default)
        if not isinstance(value, str) or not value or not is_valid_service_name(value):
            raise FileFormatError(path, f"{key} must be a simple name", _line_of(text, key))
        requestor.append(value)
    return Policy(path, requestor[0], requestor[1], blocked, fallbacks)


def load_policies(directory: str = POLICY_DIR) -> tuple[list[Policy], list[FileFormatError]]:
    """Every `*.policy` file in the directory (not recursive), and the problems met on the way.

    A broken file never hides the others: it is reported and the rest still apply. A directory
    or file that is not root's alone (see `trusted_file`) is reported and not read.
    """
    untrusted = directory_problem(directory)
    if untrusted is not None:
        return [], [untrusted]
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [FileFormatError(directory, f"cannot list policies: {exc.strerror}")]
    policies: list[Policy] = []
    problems: list[FileFormatError] = []
    for name in names:
        if not name.endswith(POLICY_SUFFIX) or name.startswith("."):
            continue
        path = os.path.join(directory, name)
        try:
            policies.append(parse_policy(read_text(path, POLICY_MAX_BYTES), path))
        except FileNotFoundError:
            continue  # removed between the listing and the read
        except FileFormatError as exc:
            problems.append(exc)
    return policies, problems


_CACHE_FORMAT = 2


CACHE_MAX_BYTES = 16 << 20

_Signature = tuple[tuple[int, int, int], tuple[tuple[str, int, int, int, int], ...]]


def _signature(directory: str) -> _Signature | None:
    """What identifies the policies: the directory's owner, mode and inode, and each file's
    name, inode, size, modification and change times (an owner or mode change moves ctime)."""
    try:
        st = os.stat(directory)
        entries = []
        with os.scandir(directory) as scan:
            for entry in scan:
                name = entry.name
                if name.endswith(POLICY_SUFFIX) and not name.startswith("."):
                    est = entry.stat(follow_symlinks=False)
                    entries.append(
                        (name, est.st_ino, est.st_size, est.st_mtime_ns, est.st_ctime_ns)
                    )
    except OSError:
        return None
    entries.sort()
    return (st.st_uid, st.st_mode, st.st_ino), tuple(entries)


def _to_cache(policies: list[Policy], problems: list[FileFormatError]) -> tuple[object, ...]:
    return (
        tuple(
            (
                p.path,
                p.requestor_name,
                p.requestor_type,
                {service: tuple(sorted(actions)) for service, actions in p.blocked.items()},
                p.fallbacks,
            )
            for p in policies
        ),
        tuple((e.path, e.message, e.line) for e in problems),
    )


def _from_cache(payload: tuple[object, ...]) -> tuple[list[Policy], list[FileFormatError]]:
    raw_policies, raw_problems = payload
    assert isinstance(raw_policies, tuple) and isinstance(raw_problems, tuple)
    policies = [
        Policy(path, name, kind, {s: frozenset(a) for s, a in blocked.items()}, fallbacks)
        for path, name, kind, blocked, fallbacks in raw_policies
    ]
    problems = [FileFormatError(path, message, line) for path, message, line in raw_problems]
    return policies, problems


CACHE_SETTLE_NS = 2_000_000_000


def _recently_changed(signature: _Signature) -> bool:
    """A file changed in the last two seconds might change again within the same timestamp tick
    (coarse on some kernels) with the same size: such a parse is used but not cached."""
    import time

    now = time.time_ns()
    return any(now - max(mtime, ctime) < CACHE_SETTLE_NS for _, _, _, mtime, ctime in signature[1])


def _write_cache(cache_path: str, data: bytes) -> None:
    """Best effort; a missing cache directory (a host where nothing made it yet) is created."""
    from interlock.host.atomic import write_atomic

    try:
        try:
            write_atomic(cache_path, data, 0o600)
        except FileNotFoundError:
            directory = os.path.dirname(cache_path)
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # noqa: S103 - like /var/lib, whatever the umask
            write_atomic(cache_path, data, 0o600)
    except OSError:
        pass


def load_policies_cached(
    directory: str, cache_path: str | None
) -> tuple[list[Policy], list[FileFormatError], bool]:
    """`load_policies`, skipping the parse when no policy file changed since the last call.

    Returns the policies, the problems, and whether they came from the cache. The cache (Python's
    builtin `marshal`) is keyed by the directory's and every file's status (see `_signature`);
    any difference, or any trouble reading the cache, means a fresh parse. The cache is trusted
    like a policy (root's alone, no symlink, size-capped). Writing it is best effort and atomic,
    and waits until every file has been still for two seconds.
    """
    if cache_path is None:
        return (*load_policies(directory), False)
    import marshal

    signature = _signature(directory)
    if signature is None:
        return (*load_policies(directory), False)
    key = (_CACHE_FORMAT, directory, signature)
    try:
        data = read_bytes(cache_path, CACHE_MAX_BYTES)  # root's alone, like a policy
        cached_key, payload = marshal.loads(data)  # noqa: S302 - written by the gate itself
        if cached_key == key:
            return (*_from_cache(payload), True)
    except (OSError, FileFormatError, EOFError, ValueError, TypeError, AssertionError):
        pass
    policies, problems = load_policies(directory)
    if _signature(directory) == signature and not _recently_changed(signature):
        payload = (key, _to_cache(policies, problems))
        _write_cache(cache_path, marshal.dumps(payload))  # type: ignore[arg-type]
    return policies, problems, False


def render_policy(
    requestor_name: str,
    requestor_type: str,
    blocked: dict[str, list[str]],
    comment: str = "Managed by interlock",
) -> str:
    """A policy file in the charms' block style (what current PyYAML writes)."""
    lines = [f"# {comment}", "blocked_actions:"] if blocked else [f"# {comment}"]
    if not blocked:
        lines.append("blocked_actions: {}")
    for service in sorted(blocked):
        key = f"'{service}'" if service == ANY_SERVICE else service
        lines.append(f"  {key}:")
        lines.extend(f"  - {action}" for action in blocked[service])
    lines.append(f"policy_requestor_name: {requestor_name}")
    lines.append(f"policy_requestor_type: {requestor_type}")
    return "\n".join(lines) + "\n"
