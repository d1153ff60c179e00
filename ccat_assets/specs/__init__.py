"""What the users declare: pipeline specs read, validated and applied to the ops-db, and raw
data packages ingested.

Owns the spec model and its validation (``spec``, ``specfile``, ``cron``), writing a spec to
the ops-db (``apply``) and registering RawDataPackages (``ingest``). Imports only the grouping
engine, the ops-db and the shared helpers.
"""
