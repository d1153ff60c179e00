"""Execution backends implementing :class:`ccat_assets.jobs.Backend`."""
