"""Ask a running Dagster webserver to reload the code location after the ops-db changed.

The ops-db is committed before this runs, so nothing here may fail the command: every
failure (a URL that cannot be read, no webserver, a refused reload) is a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ccat_assets.settings import get_settings


@dataclass(frozen=True)
class Endpoint:
    """Where the webserver's GraphQL API is, split as the GraphQL client wants it."""

    host: str
    port: int | None
    https: bool
    path_prefix: str


def endpoint(url: str) -> Endpoint:
    """``http://host:3000``, ``https://host`` (port 443), ``https://host/dagster/`` (a path
    prefix behind a proxy). Raises ValueError for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    return Endpoint(host=parts.hostname, port=parts.port, https=parts.scheme == "https",
                    path_prefix=parts.path.rstrip("/"))


def reload_code_location() -> str:
    """Reload through the webserver's GraphQL API; say what happened, never fail the apply."""
    settings = get_settings()
    url = settings.dagster_webserver_url
    try:
        from dagster_graphql import DagsterGraphQLClient

        where = endpoint(url)
        client = DagsterGraphQLClient(where.host, port_number=where.port, timeout=30,
                                      use_https=where.https,
                                      path_prefix=where.path_prefix)
        info = client.reload_repository_location(settings.code_location_name)
    except Exception as exc:  # noqa: BLE001 - the apply is committed; this is advice only
        return (f"warning: could not reload the code location through {url} "
                f"({type(exc).__name__}: {exc}); it picks the change up when it next loads "
                "(or reload it in the UI)")
    status = getattr(info, "status", None)
    name = getattr(status, "value", status)
    if name == "SUCCESS":
        return f"reloaded code location {settings.code_location_name!r} at {url}"
    return (f"warning: reload of {settings.code_location_name!r} at {url} answered {name}: "
            f"{getattr(info, 'message', '')}")
