"""The gate: what `/usr/sbin/policy-rc.d` answers when invoke-rc.d or deb-systemd-invoke ask.

Interface (Debian's README.policy-rc.d):

    policy-rc.d [--quiet] <initscript ID> <actions> [<runlevel>]
    policy-rc.d [--quiet] --list <initscript ID> [<runlevel> ...]

Exit codes: 0 allowed, 1 unknown action, 100 unknown initscript ID, 101 forbidden by policy,
103 syntax error, 105 uncertain (only in the ``uncertain`` fail mode), 106 use the fallback actions
printed on stdout. 102 and 104 are never returned: deb-systemd-invoke treats anything but 0, 101
and 104 as "run it", so an error must never come out as 102.

Before it answers 101 the gate records the deferral in the ledger. Nothing goes to stdout except
106's fallback actions and `--list` output; diagnostics go to stderr and one line per decision to
the gate log. This module runs under ``python3 -I -S`` for every service action of every package
install, so it imports only what the decision needs.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from interlock.errors import FileFormatError
from interlock.host.policy import (
    COVERS,
    DISRUPTIVE_ACTIONS,
    KNOWN_ACTIONS,
    POLICY_DIR,
    Policy,
    canonical_action,
    canonical_service,
    covering_action,
    is_valid_action,
    is_valid_service_name,
    load_policies_cached,
)
from interlock.host.trusted_file import excerpt, quoted, read_text

TYPE_CHECKING = False  # the `typing` module costs the hot path more than the whole decision
if TYPE_CHECKING:
    from interlock.host.ledger import DeferredEvent

ALLOWED = 0
UNKNOWN_ACTION = 1
UNKNOWN_ID = 100
FORBIDDEN = 101
SYNTAX_ERROR = 103
UNCERTAIN = 105
FALLBACK = 106

CONFIG_PATH = "/etc/interlock/gate.conf"
LEDGER_DIR = "/var/lib/policy-rc.d"  # the ledger module's default, without importing it here
CACHE_FILE = "/var/lib/interlock/gate-policy.cache"
LOG_FILE = "/var/log/interlock/gate.log"
LOG_MAX_BYTES = 1 << 20
CONFIG_MAX_BYTES = 64 << 10
# Who an event records when the gate refused because something went wrong, not a policy.
FAIL_SAFE_REQUESTOR = ("interlock", "gate-error")  # (type, name)
CONFIG_ERROR_REQUESTOR = ("interlock", "gate-config")
FAIL_MODES = ("deny", "allow", "uncertain")


class GateConfig:
    """`/etc/interlock/gate.conf`: `key = value` lines, `#` comments. Every key is optional."""

    __slots__ = (
        "cache_file",
        "chain",
        "ledger_dir",
        "log_file",
        "log_max_bytes",
        "on_policy_error",
        "policy_dir",
    )

    def __init__(self) -> None:
        self.policy_dir = POLICY_DIR
        self.ledger_dir = LEDGER_DIR
        self.log_file = LOG_FILE
        self.log_max_bytes = LOG_MAX_BYTES
        self.on_policy_error = "deny"
        self.chain: str | None = None
        self.cache_file: str | None = CACHE_FILE

    @classmethod
    def read(cls, path: str) -> tuple[GateConfig, list[FileFormatError]]:
        """The configuration and its problems: a bad line is reported and skipped and the good
        lines still apply, so a typo never sends refusals to another ledger or loses them. A file
        that is not root's alone is ignored as a whole (it could name the program to chain to)."""
        config = cls()
        try:
            text = read_text(path, CONFIG_MAX_BYTES)
        except FileNotFoundError:
            return config, []
        except FileFormatError as exc:
            return config, [exc]
        problems = []
        for number, raw in enumerate(text.splitlines(), 1):
            try:
                config._apply(path, number, raw)
            except FileFormatError as exc:
                problems.append(exc)
        return config, problems

    @classmethod
    def load(cls, path: str) -> GateConfig:
        """The configuration, or its first problem raised (for commands an operator runs)."""
        config, problems = cls.read(path)
        if problems:
            raise problems[0]
        return config

    def _apply(self, path: str, number: int, raw: str) -> None:
        line = raw.split("#", 1)[0].strip()
        if not line:
            return
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise FileFormatError(path, "expected 'key = value'", number)
        if key == "cache_file" and value == "none":
            self.cache_file = None
        elif key in ("policy_dir", "ledger_dir", "log_file", "chain", "cache_file"):
            if not value.startswith("/"):
                raise FileFormatError(path, f"{key} must be an absolute path", number)
            setattr(self, key, value)
        elif key == "on_policy_error":
            if value not in FAIL_MODES:
                raise FileFormatError(
                    path, f"on_policy_error must be one of {', '.join(FAIL_MODES)}", number
                )
            self.on_policy_error = value
        elif key == "log_max_bytes":
            if not value.isdigit():
                raise FileFormatError(path, "log_max_bytes must be a number", number)
            self.log_max_bytes = int(value)
        else:
            raise FileFormatError(path, f"unknown key {quoted(key)}", number)

    def render(self) -> str:
        lines = [
            "# interlock gate configuration (see `interlock gate --help`)",
            f"policy_dir = {self.policy_dir}",
            f"ledger_dir = {self.ledger_dir}",
            f"log_file = {self.log_file}",
            f"log_max_bytes = {self.log_max_bytes}",
            "# parsed policies, reused while no policy file changes ('none' to disable)",
            f"cache_file = {self.cache_file or 'none'}",
            "# what to do about restarts/stops while a policy file cannot be read:",
            "#   deny = refuse and record them (nothing lost); allow = ignore the broken file;",
            "#   uncertain = answer 105 (callers run the action with a warning)",
            f"on_policy_error = {self.on_policy_error}",
        ]
        if self.chain:
            lines.append("# the policy-rc.d that was here before interlock: its refusals count")
            lines.append(f"chain = {self.chain}")
        return "\n".join(lines) + "\n"


class GateUsageError(Exception):
    """The call itself is wrong: carries the exit code the interface assigns to it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Call:
    """One parsed invocation."""

    __slots__ = ("actions", "list_mode", "quiet", "runlevels", "service")

    def __init__(
        self,
        service: str,
        actions: list[str],
        runlevels: list[str],
        quiet: bool = False,
        list_mode: bool = False,
    ) -> None:
        self.service = service
        self.actions = actions
        self.runlevels = runlevels
        self.quiet = quiet
        self.list_mode = list_mode


def parse_argv(argv: list[str]) -> Call:
    """Parse `[--quiet] [--list] <id> <actions> [<runlevel>]` (options before the ID)."""
    quiet = list_mode = False
    index = 0
    while index < len(argv) and argv[index].startswith("--"):
        option = argv[index]
        if option == "--quiet":
            quiet = True
        elif option == "--list":
            list_mode = True
        elif option == "--":
            index += 1
            break
        else:
            raise GateUsageError(SYNTAX_ERROR, f"unknown option {option!r}")
        index += 1
    rest = argv[index:]
    if not rest:
        raise GateUsageError(SYNTAX_ERROR, "missing initscript ID")
    service = rest[0]
    if not is_valid_service_name(service):
        raise GateUsageError(UNKNOWN_ID, f"{service!r} is not a valid initscript ID")
    if list_mode:
        return Call(service, [], rest[1:], quiet, True)
    if len(rest) < 2:
        raise GateUsageError(SYNTAX_ERROR, f"missing actions for {service}")
    if len(rest) > 3:
        raise GateUsageError(SYNTAX_ERROR, "too many arguments (actions go in one argument)")
    actions = rest[1].split()
    if not actions:
        raise GateUsageError(SYNTAX_ERROR, f"empty action list for {service}")
    for action in actions:
        if not is_valid_action(canonical_action(action)):
            raise GateUsageError(SYNTAX_ERROR, f"{action!r} is not an action name")
    return Call(service, actions, rest[2:], quiet)


class Blocker:
    """A requestor that forbids an action: the policy, what it blocks, what was asked."""

    __slots__ = ("blocked_action", "policy", "requested")

    def __init__(self, policy: Policy, blocked_action: str, requested: str) -> None:
        self.policy = policy
        self.blocked_action = blocked_action
        self.requested = requested


class Decision:
    __slots__ = ("blockers", "code", "fallback", "notes")

    def __init__(self, code: int) -> None:
        self.code = code
        self.blockers: list[Blocker] = []
        self.fallback: str | None = None
        self.notes: list[str] = []


def _broken_policy_stand_ins(problems: list[FileFormatError]) -> list[Policy]:
    """In `deny` mode an unreadable policy file blocks disruptive actions of every service.

    Its services are unknown, so refusing them all (and recording each) is the only choice that
    loses nothing; the requestor is taken from the file name (`charm-x.policy` → charm:x).
    """
    stand_ins = []
    for problem in problems:
        name = os.path.basename(problem.path)
        stem = name[: -len(".policy")] if name.endswith(".policy") else name
        kind, sep, rest = stem.partition("-")
        requestor = (
            (kind, rest)
            if sep and rest and is_valid_service_name(rest)
            else (
                "unknown",
                stem if is_valid_service_name(stem) else "policy-error",
            )
        )
        blocked = {"*": frozenset(DISRUPTIVE_ACTIONS)}
        stand_ins.append(Policy(problem.path, requestor[1], requestor[0], blocked))
    return stand_ins


def _broken_config_stand_in(config_path: str) -> Policy:
    """While gate.conf has a bad line, disruptive actions of every service are refused (and
    recorded): the line might have named the policies, the ledger or the chained gate."""
    kind, name = CONFIG_ERROR_REQUESTOR
    return Policy(config_path, name, kind, {"*": frozenset(DISRUPTIVE_ACTIONS)})


def decide(
    call: Call, policies: list[Policy], problems: list[FileFormatError], on_policy_error: str
) -> Decision:
    """The answer for one call: pure, so every rule is testable without touching a file."""
    service = canonical_service(call.service)
    effective = list(policies)
    if problems and on_policy_error == "deny":
        effective.extend(_broken_policy_stand_ins(problems))

    blockers: list[Blocker] = []
    seen_requestors: set[tuple[str, str]] = set()
    unknown: list[str] = []
    for raw_action in call.actions:
        action = canonical_action(raw_action)
        known = action in KNOWN_ACTIONS or any(p.knows_action(action) for p in effective)
        if not known:
            unknown.append(action)
        for policy in effective:
            blocked = policy.blocked_for(service)
            if not blocked:
                continue
            covering = covering_action(blocked, action)
            if covering is None or policy.requestor in seen_requestors:
                continue
            seen_requestors.add(policy.requestor)
            blockers.append(Blocker(policy, covering, action))

    if blockers:
        fallback = _fallback(service, blockers, effective)
        if fallback is not None:
            decision = Decision(FALLBACK)
            decision.fallback = fallback
            decision.blockers = blockers
            return decision
        decision = Decision(FORBIDDEN)
        decision.blockers = blockers
        return decision
    if unknown:
        decision = Decision(UNKNOWN_ACTION)
        decision.notes.append(f"unknown action(s): {' '.join(unknown)}")
        return decision
    if problems and on_policy_error == "uncertain":
        decision = Decision(UNCERTAIN)
        decision.notes.append("a policy file is unreadable; policy undefined")
        return decision
    return Decision(ALLOWED)


def _fallback(service: str, blockers: list[Blocker], policies: list[Policy]) -> str | None:
    """Fallback actions, only if every blocking policy offers them and none of them is blocked."""
    offered: tuple[str, ...] | None = None
    for blocker in blockers:
        choice = blocker.policy.fallback_for(service, blocker.blocked_action)
        if not choice:
            return None
        offered = offered or choice
    if not offered:
        return None
    for action in offered:
        for policy in policies:
            if covering_action(policy.blocked_for(service), action) is not None:
                return None
    return " ".join(offered)


def listing(call: Call, policies: list[Policy], problems: list[FileFormatError]) -> list[str]:
    """`--list`: the policies that apply to the ID, the known actions and their fallbacks."""
    service = canonical_service(call.service)
    lines = []
    for policy in policies:
        blocked = policy.blocked_for(service)
        if not blocked:
            continue
        names = []
        for action in sorted(blocked):
            extra = sorted(COVERS.get(action, frozenset()) - {action})
            names.append(f"{action} (also {', '.join(extra)})" if extra else action)
        lines.append(
            f"{service}: blocks {'; '.join(names)} "
            f"[{policy.requestor_type}:{policy.requestor_name} {policy.path}]"
        )
        for action in sorted(blocked):
            fallback = policy.fallback_for(service, action)
            if fallback:
                lines.append(f"{service}: fallback for {action}: {' '.join(fallback)}")
    for problem in problems:
        lines.append(f"{service}: unreadable policy {problem}")
    if not lines:
        lines.append(f"{service}: no policy blocks any action")
    runlevels = " ".join(call.runlevels) if call.runlevels else "all"
    lines.append(f"runlevels: {runlevels}")
    lines.append(f"known actions: {' '.join(sorted(KNOWN_ACTIONS))}")
    return lines


def _run_chained(path: str, argv: list[str]) -> tuple[int, str]:
    """Ask the policy-rc.d that was installed before interlock; return (exit code, stdout)."""
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(
            path,
            [path, *argv],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end)],
        )
    finally:
        os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as stream:
        chunks.append(stream.read(4096))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def _append(path: str, line: str) -> int:
    """Append to a regular file reached without a symbolic link; return its new size."""
    fd = os.open(
        path,
        os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
        0o644,
    )
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise OSError(errno.EINVAL, "not a regular file")
        data = line.encode("utf-8", "backslashreplace")
        os.write(fd, data)
        return st.st_size + len(data)
    finally:
        os.close(fd)


def _log(config: GateConfig, message: str) -> str | None:
    """Append one line to the gate log, rotating it past the size bound. Never raises."""
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} [{os.getpid()}] {message}\n"
    try:
        try:
            size = _append(config.log_file, line)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(config.log_file), mode=0o755, exist_ok=True)
            size = _append(config.log_file, line)
        if size > config.log_max_bytes:
            os.replace(config.log_file, config.log_file + ".1")
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        return f"cannot write the gate log {config.log_file}: {reason}"
    except Exception as exc:  # noqa: BLE001 - a log line must never change the answer
        return f"cannot write the gate log {config.log_file}: {type(exc).__name__}"
    return None


def _caller() -> str:
    package = os.environb.get(b"DPKG_MAINTSCRIPT_PACKAGE")
    try:
        with open(f"/proc/{os.getppid()}/comm", "rb") as handle:
            parent = handle.read(64).strip()
    except OSError:
        parent = b"?"
    shown = f"caller={excerpt(parent.decode('utf-8', 'backslashreplace'))}"
    if package:
        shown += f" package={excerpt(package.decode('utf-8', 'backslashreplace'))}"
    return shown


def _record(config: GateConfig, events: list[DeferredEvent]) -> list[str]:
    """Write the events (or refresh the same pending ones); one note per event."""
    from interlock.host.ledger import Ledger

    ledger = Ledger(config.ledger_dir)
    notes = []
    for event in events:
        stored, created = ledger.record(event)
        notes.append(("recorded " if created else "pending ") + str(stored.path))
    return notes


def _deferrals(call: Call, decision: Decision) -> list[DeferredEvent]:
    """One event per blocking requestor, before the refusal is answered."""
    from interlock.host.ledger import PACKAGE_UPDATE, DeferredEvent

    now = int(time.time())
    return [
        DeferredEvent(
            service=call.service,
            action=blocker.blocked_action,
            reason=PACKAGE_UPDATE,
            timestamp=now,
            requestor_name=blocker.policy.requestor_name,
            requestor_type=blocker.policy.requestor_type,
        )
        for blocker in decision.blockers
    ]


class Attempt:
    """How far one call got: the fail-safe path finishes what an internal error interrupted."""

    __slots__ = ("call", "config", "recorded")

    def __init__(self) -> None:
        self.call: Call | None = None
        self.config: GateConfig | None = None
        self.recorded = False


def run(argv: list[str], config_path: str = CONFIG_PATH, attempt: Attempt | None = None) -> int:
    """Answer one call; every path out of here is a documented exit code."""
    quiet = "--quiet" in argv[:2]
    attempt = attempt or Attempt()

    def warn(message: str, always: bool = False) -> None:
        if always or not quiet:
            sys.stderr.write(f"policy-rc.d (interlock): {message}\n")

    try:
        call = parse_argv(argv)
    except GateUsageError as exc:
        warn(str(exc))
        _log(GateConfig.read(config_path)[0], f"argv={argv!r} answer={exc.code} ({exc})")
        return exc.code
    attempt.call = call

    config, config_problems = GateConfig.read(config_path)
    attempt.config = config
    notes = []
    for problem in config_problems:
        warn(f"{problem} (line ignored; disruptive actions refused)")
        notes.append(str(problem))
    policies, problems, cached = load_policies_cached(config.policy_dir, config.cache_file)
    for problem in problems:
        warn(f"{problem} (on_policy_error={config.on_policy_error})")
    if config_problems:
        policies = [*policies, _broken_config_stand_in(config_path)]

    if call.list_mode:
        sys.stdout.write("\n".join(listing(call, policies, problems)) + "\n")
        return ALLOWED

    decision = decide(call, policies, problems, config.on_policy_error)
    notes.extend(decision.notes)
    if decision.code == FORBIDDEN:
        try:
            notes.extend(_record(config, _deferrals(call, decision)))
        except OSError as exc:
            # Still refuse: letting a blocked restart through is the outcome that cannot be undone.
            # Said even with --quiet: a deferral nobody recorded is one nobody will apply.
            message = f"could not record the deferral in {config.ledger_dir}: {exc}"
            warn(message, always=True)
            notes.append(message)
        attempt.recorded = True  # or said why not; any other error leaves it to the fail-safe
        for blocker in decision.blockers:
            warn(
                f"{blocker.requested} of {call.service} deferred by "
                f"{blocker.policy.requestor_type}:{blocker.policy.requestor_name}"
            )
    elif decision.code in (ALLOWED, UNKNOWN_ACTION, UNCERTAIN) and config.chain:
        chained_code, chained_out = _run_chained(config.chain, argv)
        notes.append(f"chained {config.chain} answered {chained_code}")
        if chained_code == FORBIDDEN:
            decision.code = FORBIDDEN
        elif chained_code == FALLBACK and chained_out.strip():
            decision.code = FALLBACK
            decision.fallback = chained_out.splitlines()[0].strip()

    if decision.code == FALLBACK and decision.fallback:
        sys.stdout.write(decision.fallback + "\n")
        notes.append(f"fallback={decision.fallback}")
    blockers = ",".join(
        f"{b.policy.requestor_type}:{b.policy.requestor_name}" for b in decision.blockers
    )
    log_problem = _log(
        config,
        f"{_caller()} argv={argv!r} answer={decision.code}"
        + (f" blocked_by={blockers}" if blockers else "")
        + f" policies={'cached' if cached else 'read'}"
        + ("; " + "; ".join(notes) if notes else ""),
    )
    if log_problem:
        warn(log_problem)
    return decision.code


def _fail_safe_action(argv: list[str]) -> str | None:
    """The disruptive action (as a policy would name it) the call asks for, if any."""
    for word in " ".join(argv).split():
        action = canonical_action(word)
        for blocked in ("restart", "stop"):
            if action in COVERS[blocked]:
                return blocked
    return None


def fail_safe_code(argv: list[str]) -> int:
    """The answer after an internal error: refuse what could disrupt, allow the rest.

    A crash must neither let a blocked restart through nor make dpkg fail; 101 and 0 are the
    two answers every caller understands.
    """
    return FORBIDDEN if _fail_safe_action(argv) else ALLOWED


def _fail_safe_event(attempt: Attempt, argv: list[str]) -> DeferredEvent:
    """The event a fail-safe refusal records, under interlock's own requestor."""
    from interlock.host.ledger import PACKAGE_UPDATE, DeferredEvent

    service = attempt.call.service if attempt.call else None
    if service is None:
        words = [word for word in argv if not word.startswith("--")]
        if words and is_valid_service_name(words[0]):
            service = words[0]
    action = _fail_safe_action(argv)
    if service is None or action is None:
        raise ValueError("no initscript ID in the call")
    kind, name = FAIL_SAFE_REQUESTOR
    return DeferredEvent(service, action, PACKAGE_UPDATE, int(time.time()), name, kind)


def _fail_safe(argv: list[str], config_path: str, attempt: Attempt, exc: Exception) -> int:
    """After an internal error: answer 0 or 101, and record the refusal if nothing did yet.

    Everything here is guarded: no error of ours may reach dpkg as a failed maintainer script.
    """
    code = fail_safe_code(argv)
    try:
        detail = excerpt(str(exc), 200)
    except Exception:  # noqa: BLE001 - an exception whose text cannot even be made
        detail = "?"
    messages = [f"internal error {type(exc).__name__}: {detail}; answering {code}"]
    failed_record = False
    config = attempt.config
    if config is None:
        try:
            config = GateConfig.read(config_path)[0]
        except Exception:  # noqa: BLE001 - the defaults still name a ledger and a log
            config = GateConfig()
    if code == FORBIDDEN and not attempt.recorded:
        try:
            messages.extend(_record(config, [_fail_safe_event(attempt, argv)]))
        except Exception as record_exc:  # noqa: BLE001
            failed_record = True
            messages.append(
                f"could not record the deferral in {config.ledger_dir}: "
                f"{excerpt(str(record_exc), 200)}"
            )
    if failed_record or "--quiet" not in argv[:2]:
        try:
            sys.stderr.write("".join(f"policy-rc.d (interlock): {m}\n" for m in messages))
        except Exception:  # noqa: BLE001, S110 - a closed stderr must not change the answer
            pass
    _log(config, f"argv={argv!r} answer={code} " + "; ".join(messages))
    return code


def main(argv: list[str] | None = None, config_path: str = CONFIG_PATH) -> int:
    args = sys.argv[1:] if argv is None else argv
    attempt = Attempt()
    try:
        return run(args, config_path, attempt)
    except Exception as exc:  # noqa: BLE001 - the gate must answer, whatever went wrong
        return _fail_safe(args, config_path, attempt, exc)
