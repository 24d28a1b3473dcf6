"""Fixtures of the coordination tests: a loopback etcd shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordination.local_etcd import local_etcd


@pytest.fixture(scope="module")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_etcd(tmp_path_factory.mktemp("etcd")) as url:
        yield url
