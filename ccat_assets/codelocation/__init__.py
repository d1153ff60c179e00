"""The code location: every pipeline's definitions assembled, one pipeline unable to take the
others down (``location``), and the spec gate that asks whether Dagster would load a spec
(``spec_dagster``). ``ccat_assets.definitions`` is its entry point for ``workspace.yaml``.
"""
