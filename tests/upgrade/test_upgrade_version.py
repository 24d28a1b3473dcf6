"""Debian version comparison: interlock's answer equals `dpkg --compare-versions` on many pairs."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess

import pytest

from interlock.package_version import Version, compare_versions, is_newer

# Versions that exercise every rule: epochs, revisions, ~ before everything (even the end),
# letters before other characters, numbers compared as numbers, leading zeros, + and . runs.
CURATED = [
    "0",
    "1",
    "1.0",
    "1.00",
    "1.0-0",
    "1.0-1",
    "1.0-1ubuntu1",
    "1.0-1ubuntu1.1",
    "1.0-1+b1",
    "1.0-1~bpo12+1",
    "1.0~rc1",
    "1.0~rc1-1",
    "1.0~~",
    "1.0~~a",
    "1.0~",
    "1.0a",
    "1.0+a",
    "1.0.1",
    "1.0.10",
    "1.0.9",
    "1.01",
    "1:0.9",
    "1:1.0",
    "2:25.0.0-0ubuntu1",
    "2:25.2.1-0ubuntu1",
    "2:25.2.1-0ubuntu1~cloud0",
    "2:29.0.0-1~bpo12+1",
    "10:1",
    "3.11.2-1+b1",
    "2.36-9+deb12u14",
    "2.36-9+deb12u7",
    "1.21.22",
    "1.21.23",
    "0.9.8zh-1",
    "7.4.052",
    "1:7.4.052-1ubuntu3",
    "20240101.1-1",
    "a1",
    "1-1-1",
    "1:1:1-1",
]


def random_version(rng: random.Random) -> str:
    alphabet = "0123456789" * 3 + "abz.+~"
    upstream = rng.choice("0123456789") + "".join(
        rng.choice(alphabet) for _ in range(rng.randint(0, 7))
    )
    text = upstream
    if rng.random() < 0.5:
        text += "-" + "".join(rng.choice("0123456789.+~bu") for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.2:
        text = f"{rng.randint(0, 3)}:{text}"
    return text


def dpkg_answers(pairs: list[tuple[str, str]]) -> list[int]:
    script = (
        'while read -r a b; do if dpkg --compare-versions "$a" lt "$b"; then echo -1; '
        'elif dpkg --compare-versions "$a" eq "$b"; then echo 0; else echo 1; fi; done'
    )
    result = subprocess.run(
        ["sh", "-c", script],
        input="".join(f"{a} {b}\n" for a, b in pairs),
        capture_output=True,
        text=True,
        check=True,
    )
    return [int(line) for line in result.stdout.split()]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg")
def test_comparison_agrees_with_dpkg_on_many_pairs() -> None:
    rng = random.Random(20240601)
    pairs = list(itertools.combinations(CURATED, 2))
    randoms = [random_version(rng) for _ in range(400)]
    pairs += list(zip(randoms[::2], randoms[1::2], strict=True))
    # Near neighbours, where the rules matter most: a version against small edits of itself.
    for version in randoms[:100]:
        pairs.append((version, version + "~1"))
        pairs.append((version, version.replace(".", "+", 1)))
    valid = []
    for a, b in pairs:
        try:
            Version.parse(a)
            Version.parse(b)
        except ValueError:
            continue
        valid.append((a, b))
    assert len(valid) > 1000
    expected = dpkg_answers(valid)
    ours = [compare_versions(a, b) for a, b in valid]
    mismatches = [
        (a, b, want, got)
        for (a, b), want, got in zip(valid, expected, ours, strict=True)
        if want != got
    ]
    assert not mismatches, mismatches[:10]


def test_rules_that_matter_for_upgrades() -> None:
    assert compare_versions("2:25.0.0-0ubuntu1", "3.0") > 0  # the epoch wins
    assert compare_versions("1.0~rc1", "1.0") < 0  # a pre-release sorts before the release
    assert compare_versions("1.0", "1.00") == 0
    assert compare_versions("1.0", "1.0-0") == 0  # no revision equals revision 0
    assert compare_versions("1.0.10", "1.0.9") > 0  # numbers, not characters
    assert compare_versions("", "0") < 0  # no version at all is older than any
    assert is_newer("2:29.0.0-1", "2:28.0.0-1")
    assert not is_newer("2:28.0.0-1", "2:28.0.0-1")
    assert not is_newer("2.0", None) and not is_newer(None, "1.0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0-", "revision number is empty"),
        ("1:", "nothing after colon"),
        ("a:1.0", "epoch in version is not number"),
        ("1.0 1", "embedded spaces"),
        ("1.0_1", "invalid character"),
        ("", "empty"),
    ],
)
def test_bad_syntax_is_refused_as_dpkg_does(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Version.parse(text)


def test_parse_and_print_round_trip() -> None:
    version = Version.parse("2:25.2.1-0ubuntu1~cloud0")
    assert (version.epoch, version.upstream, version.revision) == (2, "25.2.1", "0ubuntu1~cloud0")
    assert str(version) == "2:25.2.1-0ubuntu1~cloud0"
    assert str(Version.parse("1:1:1-1")) == "1:1:1-1"
