"""CCAT Workflow Manager: the domain (ops-db, specs, grouping, gaps, contract) and the
Dagster code location built from it.

Domain modules never import Dagster-facing modules; `factory` and `definitions` sit at the edge.
"""
