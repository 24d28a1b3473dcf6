"""Prometheus text exposition format, for node_exporter's textfile collector."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def label_value(value: str) -> str:
    """A label value with the three characters the format escapes escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def family(
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[Mapping[str, str], float | int]],
) -> list[str]:
    """One metric family: its HELP and TYPE lines, then a line per (labels, value) sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{key}="{label_value(text)}"' for key, text in sorted(labels.items()))
        lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")
    return lines
