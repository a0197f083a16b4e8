"""Flow control: when a queued run may run. Named queues (``queues``), concurrency keys and rate
limits applied by the claim (``lexyjobs.claiming.claim_runs``, ``limits``), unique runs and
idempotent enqueue (``unique``), and why a queued run waits (``waiting``). What a definition
says is parsed in ``spec`` and fixed on the run at enqueue (``spec.flow_columns``)."""
