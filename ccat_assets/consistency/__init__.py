"""One truth: do Dagster and the ops-db tell the same story?

The pure comparison (``rules``) and the snapshots it compares, gathered from a Dagster
instance and the ops-db (``snapshot``); ``ccat-wm check`` and ``ccat-wm status`` use them.
"""
