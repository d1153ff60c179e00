"""Ask a running Dagster webserver to reload the code location after the ops-db changed."""

from __future__ import annotations

from ccat_assets.settings import get_settings


def reload_code_location() -> str:
    """Reload through the webserver's GraphQL API; say what happened, never fail the apply."""
    settings = get_settings()
    try:
        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
    except ImportError:  # pragma: no cover - dagster-graphql is a dependency
        return "dagster-graphql is not installed: reload the code location in the UI"
    url = settings.dagster_webserver_url
    host, _, port = url.removeprefix("http://").removeprefix("https://").partition(":")
    client = DagsterGraphQLClient(host, port_number=int(port.rstrip("/") or 80), timeout=30,
                                  use_https=url.startswith("https://"))
    try:
        info = client.reload_repository_location(settings.code_location_name)
    except (DagsterGraphQLClientError, OSError, Exception) as exc:  # noqa: BLE001
        return (f"no Dagster webserver answered at {url} ({type(exc).__name__}); the code "
                "location picks the change up when it next loads")
    status = getattr(info, "status", None)
    name = getattr(status, "value", status)
    if name == "SUCCESS":
        return f"reloaded code location {settings.code_location_name!r} at {url}"
    return (f"reload of {settings.code_location_name!r} at {url} answered {name}: "
            f"{getattr(info, 'message', '')}")
