"""CCAT Workflow Manager: the domain and the Dagster code location built from it.

One package per concept, in layers; a package imports only those below it (the contract is
``[tool.importlinter]`` in ``pyproject.toml``, checked by ``lint-imports``; the picture is
``docs/architecture.md``). From the top: ``cli`` and ``definitions``; the code location and
the consistency check (``codelocation``, ``consistency``); the top-level ``sensors`` package;
the Dagster face (``dagster_face``); the top-level ``resources`` package (the backends);
``execution``; ``automation``; ``results``; ``specs``; ``grouping``; ``opsdb``; and the shared
helpers ``settings``, ``paths``, ``hashing`` and ``fault_points``.
"""
