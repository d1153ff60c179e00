"""Where to connect over SSH, and how SSH operations fail: the parts without paramiko.

Why apart from :mod:`resources.backends.ssh`: staging names these in every run (its error
handling catches :class:`SSHError`), while only remote locations and the SLURM backend open a
connection. Importing paramiko costs about 0.2 s of CPU, paid by every run worker and code
server start, so it is imported where a connection is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class SSHError(RuntimeError):
    """An SSH operation failed for good (after retries, or for a non-transient reason)."""


class HostKeyError(SSHError):
    """The server's host key is unknown or does not match known_hosts: never retried."""


class CommandResult(NamedTuple):
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to connect. ``private_key``/``passphrase`` never show in ``repr``."""

    host: str
    user: str
    port: int = 22
    key_path: Path | None = None
    known_hosts: Path | None = None
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 10.0

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, address: str, *, default_user: str, default_port: int = 22,
              **credentials: object) -> SSHTarget:
        """``[user@]host[:port]`` (as in ``DataLocation.host``) plus the given credentials."""
        user, _, hostport = address.rpartition("@")
        host, sep, port = hostport.partition(":")
        if not host or (sep and not port.isdigit()):
            raise ValueError(f"SSH address {address!r} is not [user@]host[:port]")
        return cls(host=host, user=user or default_user,
                   port=int(port) if sep else default_port, **credentials)  # type: ignore[arg-type]
