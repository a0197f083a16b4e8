"""LLM work for the ``openai`` kind (``lexyjobs.kinds.openai_kind``), against any
OpenAI-compatible server through the official client:

- ``definition``: the job's fields, checked;
- ``templates``: prompts and inputs rendered in Jinja2's sandbox;
- ``calls``: the client on an event loop of the run's own thread, cancel and timeout, a 429's
  wait, the client's errors as run failures;
- ``chat``: one chat completion, streamed into the run's log; ``embeddings``: vectors;
- ``items``: a run over a list of items, each item's outcome kept across attempts.

The client package is imported only when a run starts (it costs 0.4 s and 25 MB)."""
