"""What must run, and why: the gap rule over the ops-db.

Owns the pure gap evaluation (``gaps``), the state it reads and caches for the sensors
(``gapstate``), cutting gaps into batches (``gap_batches``), input fingerprints and code
versions (``fingerprint``), and planning a pair's inputs (``inputs``). Knows nothing of
Dagster or of the backends.
"""
