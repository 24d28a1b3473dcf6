"""`interlock gate`: install the policy-rc.d gate, inspect it, check policies, explain answers."""

from __future__ import annotations

import argparse

from interlock.cli.host import paths_of
from interlock.cli.output import echo, emit_json, table, warn
from interlock.errors import UsageError
from interlock.host import gate
from interlock.host.gate_install import GateInstaller
from interlock.host.policy import load_policies

EXPLAIN_WORDS = {
    gate.ALLOWED: "allowed",
    gate.UNKNOWN_ACTION: "unknown action (callers allow it with a warning)",
    gate.FORBIDDEN: "forbidden: deferred and recorded",
    gate.UNCERTAIN: "uncertain (callers allow it with a warning)",
    gate.FALLBACK: "use the fallback actions",
}


def cmd_install(args: argparse.Namespace) -> int:
    done = GateInstaller(args.root).install(
        chain=not args.no_chain, on_policy_error=args.on_policy_error
    )
    for line in done:
        echo(line)
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    done = GateInstaller(args.root).uninstall()
    for line in done or ["the gate was not installed; nothing to do"]:
        echo(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = GateInstaller(args.root).status()
    if args.json:
        emit_json(status.as_dict())
    else:
        echo(f"/usr/sbin/policy-rc.d → {status.link_target or '(absent)'}")
        echo("interlock gate: " + ("active" if status.ours_active else "NOT active"))
        if status.chained:
            echo(f"chained to the previous policy-rc.d: {status.chained}")
    return 0 if status.ours_active else 1


def cmd_policies(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    policies, problems = load_policies(str(paths.policy_dir))
    if args.json:
        emit_json(
            {
                "policies": [
                    {
                        "path": p.path,
                        "requestor": f"{p.requestor_type}:{p.requestor_name}",
                        "blocked": {s: sorted(a) for s, a in p.blocked.items()},
                    }
                    for p in policies
                ],
                "problems": [str(problem) for problem in problems],
            }
        )
    else:
        table(
            f"Policies in {paths.policy_dir}",
            ["service", "blocked actions", "requestor", "file"],
            [
                (s, ", ".join(sorted(a)), f"{p.requestor_type}:{p.requestor_name}", p.path)
                for p in policies
                for s, a in sorted(p.blocked.items())
            ],
        )
        for problem in problems:
            warn(str(problem))
    return 1 if problems else 0


def cmd_explain(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    config = gate.GateConfig.load(str(paths.gate_config))
    config.policy_dir = str(paths.policy_dir)
    try:
        call = gate.parse_argv([args.service, " ".join(args.actions)])
    except gate.GateUsageError as exc:
        # Not a call the gate would get from invoke-rc.d: nothing to explain.
        raise UsageError(f"the gate would answer {exc.code}: {exc}") from None
    policies, problems = load_policies(config.policy_dir)
    decision = gate.decide(call, policies, problems, config.on_policy_error)
    if args.json:
        emit_json(
            {
                "exit_code": decision.code,
                "meaning": EXPLAIN_WORDS.get(decision.code, ""),
                "blocked_by": [
                    {
                        "requestor": f"{b.policy.requestor_type}:{b.policy.requestor_name}",
                        "policy": b.policy.path,
                        "blocked_action": b.blocked_action,
                        "requested": b.requested,
                    }
                    for b in decision.blockers
                ],
                "fallback": decision.fallback,
                "problems": [str(p) for p in problems],
            }
        )
        return 0
    echo(f"{decision.code}: {EXPLAIN_WORDS.get(decision.code, '')}")
    for blocker in decision.blockers:
        echo(
            f"  {blocker.requested} is blocked as '{blocker.blocked_action}' by "
            f"{blocker.policy.requestor_type}:{blocker.policy.requestor_name} "
            f"({blocker.policy.path})"
        )
    if decision.fallback:
        echo(f"  fallback: {decision.fallback}")
    for note in decision.notes:
        echo(f"  {note}")
    for problem in problems:
        warn(str(problem))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    group = commands.add_parser(
        "gate",
        help="the /usr/sbin/policy-rc.d gate: install, status, policies, explain",
        formatter_class=fmt,
        description="The gate is what invoke-rc.d and deb-systemd-invoke ask before they start, "
        "stop or restart a service during package operations. It refuses (and records) what the "
        "policies in /etc/policy-rc.d block.",
    )
    sub = group.add_subparsers(dest="gate_command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "install",
        help="make interlock's gate /usr/sbin/policy-rc.d (update-alternatives)",
        formatter_class=fmt,
        description="Install the gate through update-alternatives. A policy-rc.d already there "
        "(e.g. Docker's `exit 101`) is moved aside, kept as a lower-priority alternative and, "
        "unless --no-chain, still consulted: its refusals count. Idempotent.",
        epilog="fail modes (--on-policy-error), for restarts/stops while a policy file is broken:\n"
        "  deny       refuse and record them: nothing is lost (default)\n"
        "  allow      ignore the broken file\n"
        "  uncertain  answer 105: callers run the action with a warning",
    )
    p.add_argument("--no-chain", action="store_true", help="do not consult the previous gate")
    p.add_argument("--on-policy-error", choices=gate.FAIL_MODES, default="deny")
    p.set_defaults(handler=cmd_install)

    p = sub.add_parser("uninstall", help="remove the gate and restore what was there before")
    p.set_defaults(handler=cmd_uninstall)

    p = sub.add_parser("status", help="is the gate installed and active (exit 1 if not)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("policies", help="list the blocking policies; report broken files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_policies)

    p = sub.add_parser(
        "explain",
        help="what the gate would answer for SERVICE ACTION (records nothing)",
        epilog="example: interlock gate explain neutron-dhcp-agent.service '(restart)'",
    )
    p.add_argument("service")
    p.add_argument("actions", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_explain)
