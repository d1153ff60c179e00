"""The ops-db as a Dagster resource: one engine per process, short sessions per phase."""

from __future__ import annotations

import dagster as dg
from sqlalchemy.orm import Session, sessionmaker

from ccat_assets.opsdb.session import session_factory
from ccat_assets.settings import get_settings


class OpsDBResource(dg.ConfigurableResource):
    """Connection to the ops-db; empty ``url`` means ``CCAT_OPS_DB_URL`` or the default."""

    url: str = ""

    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.url or get_settings().database_url)
