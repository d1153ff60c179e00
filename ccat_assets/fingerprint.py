"""The input fingerprint of a (step, sub-group): what its result depends on.

It covers the sub-group's raw packages (ids and checksums), the upstream products in its
scope (ids and checksums), the step config's hash, and the software version: the exact version
under ``version_policy: exact``, only the major version under ``compatible`` (a compatible
release does not reprocess). Gap evaluation and the executor compute it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from ccat_assets.hashing import content_hash
from ccat_assets.opsdb.enums import VersionPolicy


def version_token(policy: VersionPolicy | str, version: str) -> str:
    if VersionPolicy(policy) == VersionPolicy.EXACT:
        return f"exact:{version}"
    major = version.split(".", 1)[0].split("-", 1)[0]
    return f"major:{major}"


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
