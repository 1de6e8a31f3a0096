"""Stage 2, measure: the parent's runner, the worker process, the timing protocol, host facts, process helpers."""
