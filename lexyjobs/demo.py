"""Functions used by the demo jobs.toml: a job with progress and a pipeline on local fake data
(seed 000's keywords → keyword metrics + social metrics → corpus), written under ``LEXYJOBS_DEMO_DIR`` (default
``./demo-data``)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from lexyjobs.context import JobFailed, RunContext


def _data_dir() -> Path:
    path = Path(os.environ.get("LEXYJOBS_DEMO_DIR", "demo-data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def crunch_numbers(ctx: RunContext) -> dict[str, Any]:
    """Sum squares in ``steps`` steps, reporting progress; stops early when cancelled."""
    steps, pause = ctx.params.get("steps", 10), ctx.params.get("pause", 0.5)
    total = 0
    for step in range(1, steps + 1):
        ctx.sleep(pause)
        total += step * step
        ctx.progress(100 * step / steps, f"step {step} of {steps}")
        ctx.log.info("step %d: running total %d", step, total)
    return {"steps": steps, "sum_of_squares": total}


def collect_keywords(ctx: RunContext) -> dict[str, Any]:
    """Step 1: write a list of keywords."""
    words = ["job scheduler", "cron monitoring", "task queue", "python worker", "htmx dashboard"]
    (_data_dir() / "keywords.json").write_text(json.dumps(words))
    ctx.log.info("collected %d keywords", len(words))
    return {"keywords": len(words)}


def keyword_metrics(ctx: RunContext) -> dict[str, Any]:
    """Step 2: attach fake search volumes to the keywords of step 1."""
    source = _data_dir() / "keywords.json"
    if not source.exists():
        raise JobFailed("keywords.json is missing: run collect-keywords first")
    rng = random.Random(42)
    metrics = {word: rng.randint(100, 10_000) for word in json.loads(source.read_text())}
    (_data_dir() / "metrics.json").write_text(json.dumps(metrics))
    ctx.progress(100, f"{len(metrics)} keywords measured")
    return {"measured": len(metrics)}


def social_metrics(ctx: RunContext) -> dict[str, Any]:
    """Step 2b: attach fake social mention counts to the keywords of step 1."""
    source = _data_dir() / "keywords.json"
    if not source.exists():
        raise JobFailed("keywords.json is missing: run collect-keywords first")
    rng = random.Random(7)
    mentions = {word: rng.randint(0, 500) for word in json.loads(source.read_text())}
    (_data_dir() / "social.json").write_text(json.dumps(mentions))
    return {"measured": len(mentions)}


def ingest_corpus(ctx: RunContext) -> dict[str, Any]:
    """Step 3: ingest both metrics into the corpus file (the table that stayed empty in seed 000)."""
    metrics_file, social_file = _data_dir() / "metrics.json", _data_dir() / "social.json"
    for path, step in ((metrics_file, "keyword-metrics"), (social_file, "social-metrics")):
        if not path.exists():
            raise JobFailed(f"{path.name} is missing: run {step} first")
    metrics, social = json.loads(metrics_file.read_text()), json.loads(social_file.read_text())
    corpus = _data_dir() / "corpus.jsonl"
    with corpus.open("a") as out:
        for word, volume in metrics.items():
            out.write(json.dumps({"keyword": word, "volume": volume, "mentions": social.get(word, 0)}) + "\n")
    ctx.log.info("ingested %d rows into %s", len(metrics), corpus)
    return {"ingested": len(metrics)}
