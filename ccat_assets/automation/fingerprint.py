"""The input fingerprint of a (step, sub-group): what its result depends on.

It covers the sub-group's raw packages (ids and checksums), the upstream products in its
scope (ids and checksums), the step config's hash, and the software version: the exact version
under ``version_policy: exact``, only the major version under ``compatible`` (a compatible
release does not reprocess). Gap evaluation and the executor compute it the same way.

The version part of a stored fingerprint depends on the policy the run ran under, which is not
recorded, so a changed hash alone cannot say whether a run is still good after the step's
policy was switched. Whether a completed run is current is therefore judged by component
(:func:`is_current`): same config, a version the step's policy accepts now
(:func:`accepts`), and the same inputs, found by recomputing the run's fingerprint with the
current inputs and each token its version may have been recorded with
(:func:`recorded_tokens`). Gap evaluation and the executor's reuse of a completed run both use
it, so they never disagree, and stored fingerprints stay valid without a migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ccat_assets.hashing import content_hash
from ccat_assets.opsdb.enums import VersionPolicy


def version_token(policy: VersionPolicy | str, version: str) -> str:
    """The version component of a fingerprint: what of ``version`` matters under ``policy``."""
    if VersionPolicy(policy) == VersionPolicy.EXACT:
        return f"exact:{version}"
    major = version.split(".", 1)[0].split("-", 1)[0]
    return f"major:{major}"


def accepts(policy: VersionPolicy | str, wanted: str, used: str) -> bool:
    """Whether a run built with version ``used`` counts as built with ``wanted`` (the version
    a run would use now) under ``policy``: ``exact`` the same version, ``compatible`` the same
    major version. Judged under the current policy, whatever policy the run ran under."""
    return version_token(policy, used) == version_token(policy, wanted)


def recorded_tokens(version: str) -> tuple[str, ...]:
    """The version tokens a run of ``version`` may carry in its stored fingerprint: one per
    policy, since the policy it ran under is not recorded with the run."""
    return tuple(dict.fromkeys(version_token(p, version) for p in VersionPolicy))


def input_fingerprint(
    *,
    packages: Iterable[tuple[int, str]],
    upstream_products: Iterable[tuple[int, str]],
    config_hash: str,
    version: str,
) -> str:
    return content_hash({
        "raw": sorted(packages),
        "upstream": sorted(upstream_products),
        "config": config_hash,
        "version": version,
    })


def same_inputs(stored: str, used_version: str, fingerprint_with: Callable[[str], str]) -> bool:
    """Whether a run's ``stored`` fingerprint is the one of the inputs ``fingerprint_with``
    hashes (given a version token), whichever policy the run of ``used_version`` ran under."""
    return any(fingerprint_with(token) == stored for token in recorded_tokens(used_version))


def is_current(stored: str, used_version: str, *, policy: VersionPolicy | str, version: str,
               fingerprint_with: Callable[[str], str]) -> bool:
    """Whether a completed run (``stored`` fingerprint, built with ``used_version``) is the
    result a run would produce now: the policy accepts its version and its fingerprint is the
    current inputs' and config's (``fingerprint_with`` hashes them with a version token)."""
    return accepts(policy, version, used_version) and same_inputs(
        stored, used_version, fingerprint_with)


def step_code_version(config_hash: str, policy: VersionPolicy | str,
                      version: str | None) -> str | None:
    """The code version of a step's Dagster asset: what of the step itself its fingerprint
    covers, the version token under the step's policy of now and the config hash.

    A materialization records the code version of its definition, and Dagster marks a
    partition unsynced when the two differ. Under one policy, two such strings are equal
    exactly when gap evaluation would accept the run's config and version (:func:`accepts`),
    so the UI marks what ``ccat-wm gaps`` reprocesses for those two components. Across a
    switch of policy no static string can: see docs/automation.md. None without a version to
    run (the step waits with ``no_version``; Dagster then judges no code version).
    """
    if version is None:
        return None
    digest = config_hash.split(":", 1)[-1][:16]
    return f"{version_token(policy, version)} config:{digest}"
