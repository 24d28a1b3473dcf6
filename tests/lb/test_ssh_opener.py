"""The admin socket of a remote LB host through SSH stream-local forwarding, against a real sshd.

sshd (the `sshd` fixture) runs on 127.0.0.1 with a temporary host key and authorized key.
"""

from __future__ import annotations

import asyncio

import pytest

from interlock.lb.drain import drain, enable
from interlock.lb.runtime import LbUnreachable, RuntimeApiError, RuntimeClient, SshOpener
from lb.haproxy_lab import Lab, Sshd

pytestmark = pytest.mark.root  # sshd runs in its own mount namespace


def test_runtime_api_over_ssh(lab: Lab, sshd: Sshd) -> None:
    web1, web2 = lab.backend("web1"), lab.backend("web2")
    proxy = lab.haproxy({"api": [("web1", web1.address), ("web2", web2.address)]})

    async def scenario() -> None:
        opener = SshOpener("lb-host", sshd.connect, str(proxy.socket))
        client = RuntimeClient("lb-ssh", opener)
        try:
            assert opener.address == f"ssh:lb-host:{proxy.socket}"
            states = await client.show_servers_state()
            assert [(s.server, s.port) for s in states] == [
                ("web1", web1.port),
                ("web2", web2.port),
            ]
            report = await drain([client], "api", "web2", timeout=10)
            assert report.complete and report.results[0].after.status == "DRAIN"
            with pytest.raises(RuntimeApiError, match="No such server"):
                await client.set_server_state("api", "nosuch", "drain")
            enabled = await enable([client], "api", "web2", timeout=15)
            assert enabled.results[0].after.status == "UP"
        finally:
            await client.close()

        gone = RuntimeClient("lb-ssh", SshOpener("lb-host", sshd.connect, "/nonexistent.sock"))
        try:
            with pytest.raises(LbUnreachable, match="cannot connect to ssh:lb-host:/nonexistent"):
                await gone.show_stat()
        finally:
            await gone.close()

    asyncio.run(scenario())
