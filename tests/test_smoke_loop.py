"""The basic loop on both databases: enqueue, a worker claims and runs, the outcome is stored."""
from __future__ import annotations

from conftest import wait_for

from lexyjobs import runs, store


def test_a_queued_run_is_executed_and_its_result_stored(db, make_job, start_worker):
    make_job("adder", params={"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}}, func="jobfuncs:add")
    start_worker()
    run_id = runs.enqueue(db, "adder", {"a": 40})
    run = wait_for(lambda: (r := runs.get_run(db, run_id)).status == "succeeded" and r)
    assert run.result == 42
    assert run.params == {"a": 40, "b": 2}
    assert run.attempt == 1
    with db.read() as session:
        events = [(e.from_status, e.to_status) for e in store.run_events(session, run_id)]
    assert events == [("queued", "running"), ("running", "succeeded")]
