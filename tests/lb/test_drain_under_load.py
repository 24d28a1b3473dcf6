"""The reason drains exist: stopping a backend under load loses requests unless it is drained first.

Load runs through haproxy to three lab API backends (20 ms of work per request). One backend is
stopped gracefully (SIGTERM via its pidfile, as its init script would), either after a drain or
without one. The second test proves the load generator sees the failures the first one avoids.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from interlock.lab.load import LoadGenerator, LoadReport
from interlock.lb.drain import DrainReport, drain
from lb.haproxy_lab import Backend, Haproxy, Lab

CONCURRENCY = 30


def three_backends(lab: Lab) -> tuple[list[Backend], Haproxy]:
    backends = [lab.backend(f"web{i}", delay_ms=20) for i in (1, 2, 3)]
    proxy = lab.haproxy({"api": [(b.name, b.address) for b in backends]})
    return backends, proxy


def status_of(proxy: Haproxy, server: str) -> str:
    return asyncio.run(proxy.stat(server)).status


def wait_for(load: LoadGenerator, ok: int) -> None:
    deadline = time.monotonic() + 30
    while load.snapshot().ok < ok:
        assert time.monotonic() < deadline, f"load generator did not reach {ok} requests"
        time.sleep(0.05)


def stop_under_load(lab: Lab, *, drain_first: bool) -> tuple[LoadReport, DrainReport | None]:
    backends, proxy = three_backends(lab)
    drained: DrainReport | None = None
    with LoadGenerator([proxy.url()], concurrency=CONCURRENCY) as load:
        wait_for(load, 300)
        if drain_first:
            drained = asyncio.run(drain([proxy.client("lb")], "api", "web3", timeout=10))
        backends[2].terminate()
        # Keep the load on until haproxy's health checks have marked the stopped server DOWN,
        # then a little longer: every request that could reach it has been tried.
        deadline = time.monotonic() + 30
        while status_of(proxy, "web3") != "DOWN":
            assert time.monotonic() < deadline, "haproxy never marked web3 DOWN"
            time.sleep(0.1)
        mark = load.snapshot().ok
        wait_for(load, mark + 300)
    report = load.report()
    print(
        f"\n{'drain' if drain_first else 'no drain'}: {report.requests_per_second:.0f} req/s, "
        f"sent {report.sent}, ok {report.ok}, failed {report.failed} {dict(report.failures)}, "
        f"p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms"
        + (f", drain took {drained.seconds:.3f} s" if drained else "")
    )
    return report, drained


@pytest.mark.slow
def test_drain_then_stop_loses_no_request(lab: Lab) -> None:
    report, drained = stop_under_load(lab, drain_first=True)
    assert drained is not None and drained.complete and not drained.timed_out
    (result,) = drained.results
    assert result.before.status == "UP" and result.after.status == "DRAIN"
    assert report.ok >= 600
    assert report.failed == 0, report.failures
    assert report.sent == report.ok


@pytest.mark.slow
def test_stop_without_drain_loses_requests(lab: Lab) -> None:
    report, _ = stop_under_load(lab, drain_first=False)
    assert report.ok >= 600
    assert report.failed > 0
