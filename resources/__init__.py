"""Dagster resources, one concern each: ops-db, HPC backends, container runtime, staging.

Each module holds a plain implementation (testable without Dagster) and the
``dg.ConfigurableResource`` that configures it from settings.
"""
