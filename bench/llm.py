"""What lexyjobs adds to LLM requests: a batch run of ``openai`` chat items against the local
OpenAI-compatible server the tests use (``tests/openai_server.py``, answers at once), compared
with the same requests written by hand with the official client.

    python -m bench.llm [--items 300] [--repeat 3] [--db sqlite|postgres|all] [--json FILE]

- ``by hand, 1 at a time``: a loop of ``client.chat.completions.create`` (sync client);
- ``by hand, 8 at once``: ``asyncio.gather`` over the async client with a semaphore of 8;
- ``lexyjobs, parallel = 1 / 8``: the kind's ``run`` over the items as a worker calls it, on a
  real database (each item's outcome into ``run_items``, each request's usage into
  ``llm_usage_days``, the run's details), with a provider table limiting requests per minute
  (high enough never to wait: its window is counted and written for every request).

Items per second, best of ``--repeat`` (the server and the client share this machine's cores, so
the figures are the overhead's ceiling, not a provider's speed). ``--json`` writes
``{"items", "hand_1", "hand_8", "sqlite": {"parallel_1", "parallel_8"}, "postgres": {...}}``."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.drain import ROOT, fresh_database

sys.path.insert(0, str(ROOT / "tests"))
from openai_server import OpenAIServer  # noqa: E402  (the tests' server: bench measures against the same peer)

KEY = "sk-bench-0123456789abcdef"
PROVIDER = "[limits.bench-llm]\nrequests_per_minute = 10000000\n"


def by_hand(base_url: str, items: int) -> float:
    from openai import OpenAI

    client = OpenAI(api_key=KEY, base_url=base_url, max_retries=0)
    started = time.perf_counter()
    for n in range(items):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": f"Summarise {n}"}])
    took = time.perf_counter() - started
    client.close()
    return items / took


def by_hand_parallel(base_url: str, items: int, parallel: int) -> float:
    from openai import AsyncOpenAI

    async def main() -> float:
        gate = asyncio.Semaphore(parallel)
        async with AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0) as client:
            async def one(n: int) -> None:
                async with gate:
                    await client.chat.completions.create(model="gpt-test",
                                                         messages=[{"role": "user", "content": f"Summarise {n}"}])
            started = time.perf_counter()
            await asyncio.gather(*(one(n) for n in range(items)))
            return items / (time.perf_counter() - started)
    return asyncio.run(main())


def with_lexyjobs(url: str, base_url: str, items: int, parallel: int, repeat: int) -> float:
    from lexyjobs import registry, runs
    from lexyjobs.config import load_settings
    from lexyjobs.context import RunContext
    from lexyjobs.kinds import kind
    from lexyjobs.runtime import Runtime

    settings = load_settings({"database_url": url, "jobs_file": None, "workers": 0})
    lj = Runtime(settings)
    lj.prepare()
    toml = PROVIDER + ('\n[jobs.summaries]\nkind = "openai"\nmodel = "gpt-test"\nprompt = "Summarise {{ item }}"\n'
                       f'limits = ["bench-llm"]\nparallel = {parallel}\nparams = {{ items = {{ type = "json" }} }}\n')
    with tempfile.TemporaryDirectory(prefix="lexyjobs-bench-llm-") as folder:
        path = Path(folder) / "jobs.toml"
        path.write_text(toml)
        registry.sync_jobs(lj.db, jobs_file=str(path), archive_missing=True)
    definition = lj.catalog.get("summaries")
    runner = kind("openai")
    assert runner is not None
    best = 0.0
    for _ in range(repeat):
        params = {"items": [f"doc {n}" for n in range(items)]}
        run_id = runs.enqueue(lj.db, "summaries", params)
        ctx = RunContext(run_id=run_id, job_name="summaries", params=params, attempt=1, max_attempts=1)
        ctx.db, ctx.limits = lj.db, tuple(definition.flow.limits)
        started = time.perf_counter()
        result = runner.run(ctx, definition.config)
        best = max(best, items / (time.perf_counter() - started))
        assert len(result) == items
    lj.db.engine.dispose()
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument("--pg-url", default=os.environ.get("LEXYJOBS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
    os.environ["OPENAI_API_KEY"] = KEY
    server = OpenAIServer().start()
    os.environ["OPENAI_BASE_URL"] = server.base_url
    report: dict[str, Any] = {"items": args.items}
    try:
        report["hand_1"] = max(by_hand(server.base_url, args.items) for _ in range(args.repeat))
        report["hand_8"] = max(by_hand_parallel(server.base_url, args.items, 8) for _ in range(args.repeat))
        print(f"by hand: {report['hand_1']:,.0f} items/s one at a time, {report['hand_8']:,.0f} 8 at once")
        for db in (("sqlite", "postgres") if args.db == "all" else (args.db,)):
            report[db] = {}
            for parallel in (1, 8):
                with fresh_database(db, args.pg_url) as url:
                    rate = with_lexyjobs(url, server.base_url, args.items, parallel, args.repeat)
                report[db][f"parallel_{parallel}"] = rate
                print(f"lexyjobs {db}, parallel = {parallel}: {rate:,.0f} items/s "
                      f"({rate / report['hand_1' if parallel == 1 else 'hand_8']:.2f}× by hand)")
    finally:
        server.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
