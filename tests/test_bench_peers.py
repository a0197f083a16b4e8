"""The peer benchmark (``bench/peers.py``) on tiny numbers, so the harness never rots.

A peer's test skips when its package is not installed (``pip install -r bench/requirements.txt``);
the Postgres peers also skip without ``LEXYJOBS_TEST_POSTGRES_URL``."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from bench import peers

PG_URL = os.environ.get("LEXYJOBS_TEST_POSTGRES_URL")


def skip_unless_runnable(peer: str) -> None:
    if importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} is not installed: pip install -r bench/requirements.txt")
    if peer != "huey" and not PG_URL:
        pytest.skip(f"{peer} runs on Postgres: set LEXYJOBS_TEST_POSTGRES_URL")


@pytest.mark.parametrize("peer", peers.PEERS)
def test_the_peer_bench_measures_every_figure(peer: str, tmp_path: Path) -> None:
    skip_unless_runnable(peer)
    out = tmp_path / "peers.json"
    report = peers.main(["--peer", peer, "--runs", "20", "--repeat", "1", "--samples", "10",
                         "--gap", "0.01-0.05", "--json", str(out)])
    assert json.loads(out.read_text()) == report
    figures = report[peer]
    assert set(figures) == set(peers.FIGURES) - ({"enqueue_batch"} if peer == "huey" else set())
    for name, figure in figures.items():
        assert figure["unit"] == peers.FIGURES[name][1]
        assert 0 < figure["min"] <= figure["median"] <= figure["max"]
    assert report["versions"][peer]


@pytest.mark.parametrize("peer", peers.PEERS)
def test_a_peer_removes_its_store_when_closed(peer: str) -> None:
    skip_unless_runnable(peer)
    peer_bench = peers.open_peer(peer, PG_URL)
    peer_bench.enqueue_one()
    assert peer_bench.pending() == 1
    peer_bench.close()
    if peer == "huey":
        assert not Path(peer_bench.store).exists()
    else:
        import psycopg

        schema = peer_bench._schema.name  # type: ignore[attr-defined]
        with psycopg.connect(PG_URL) as conn:  # type: ignore[arg-type]
            assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None
