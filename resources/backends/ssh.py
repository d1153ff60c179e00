"""One reusable, verified SSH connection (paramiko) to a login node or a staging host.

Why a module of its own: the SLURM backend and the SFTP stager both talk SSH, and both need
the same guarantees. Host keys are verified against a known_hosts file (paramiko's
RejectPolicy: an unknown or changed key is an error, never trusted on first use); one
Transport is reused for every command and SFTP operation and re-opened when it drops;
commands are argv lists, turned into the remote shell's text only by ``shlex.join``
(quoting, never building commands from user data). Idempotent commands are retried across
reconnects; the caller decides what is idempotent (``sbatch`` is not).

Secrets (the private key's contents, its passphrase) live only in :class:`SSHTarget` fields
that are excluded from ``repr`` and never appear in a log line or an error message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shlex
import stat
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import paramiko

from resources.backends.ssh_target import CommandResult, HostKeyError, SSHError, SSHTarget

log = logging.getLogger("ccat.backends.ssh")

#: Errors after which a fresh connection may well succeed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.SSHException, EOFError, OSError,
)


class _Reject(paramiko.RejectPolicy):
    """RejectPolicy, raising our own error so that it is never mistaken for a transient one."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        raise HostKeyError(
            f"host key of {hostname} ({key.get_name()}) is not in the known_hosts file; "
            "add it after checking its fingerprint out of band"
        )


def _load_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """A private key from its contents (a secret), trying the key types paramiko knows."""
    errors = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(type(exc).__name__)
    raise SSHError(f"the configured private key could not be loaded ({', '.join(errors)})")


class SSHConnection:
    """A lazily opened, shared SSH connection with an SFTP channel on the same Transport."""

    def __init__(self, target: SSHTarget, *, retries: int = 3, retry_backoff_s: float = 0.5):
        self.target = target
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self.connects = 0  # how many times a Transport was opened (tests check reuse)

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> paramiko.SSHClient:
        target = self.target
        client = paramiko.SSHClient()
        if target.known_hosts is not None:
            if not Path(target.known_hosts).is_file():
                raise HostKeyError(f"known_hosts file {target.known_hosts} does not exist")
            client.load_host_keys(str(target.known_hosts))
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(_Reject())
        pkey = _load_key(target.private_key, target.passphrase) if target.private_key else None
        try:
            client.connect(
                target.host, port=target.port, username=target.user, pkey=pkey,
                key_filename=str(target.key_path) if target.key_path and not pkey else None,
                passphrase=target.passphrase, look_for_keys=False, allow_agent=False,
                timeout=target.connect_timeout_s, banner_timeout=target.connect_timeout_s,
                auth_timeout=target.connect_timeout_s,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(f"host key of {target.host} does not match known_hosts: "
                               "possible man-in-the-middle, refusing to connect") from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SSHError(f"SSH authentication as {target.label} failed") from exc
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        self.connects += 1
        return client

    def client(self) -> paramiko.SSHClient:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                self.close()
                self._client = self._connect()
            return self._client

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            client = self.client()
            if self._sftp is None or self._sftp.get_channel().closed:
                self._sftp = client.open_sftp()
            return self._sftp

    def close(self) -> None:
        with self._lock:
            for thing in (self._sftp, self._client):
                if thing is not None:
                    with contextlib.suppress(Exception):  # closing a dead connection
                        thing.close()
            self._sftp = self._client = None

    def _retrying(self, what: str, action, *, retry: bool):
        """Run ``action()``; on a transient error reconnect and try again (if allowed)."""
        attempts = self.retries if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return action()
            except (HostKeyError, SSHError):
                raise
            except TRANSIENT_ERRORS as exc:
                self.close()
                if attempt == attempts:
                    raise SSHError(f"{what} on {self.target.label} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
                log.warning("%s on %s failed (%s); reconnecting, attempt %d of %d", what,
                            self.target.label, type(exc).__name__, attempt + 1, attempts)
                time.sleep(self.retry_backoff_s * attempt)
        raise AssertionError("unreachable")

    # -- commands ---------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout_s: float = 120,
            retry: bool = True) -> CommandResult:
        """Run ``argv`` on the remote host; ``retry`` only for commands safe to repeat."""
        command = shlex.join(argv)
        return self._retrying(f"command {argv[0]!r}",
                              lambda: self._exec(command, stdin, timeout_s), retry=retry)

    def run_batch(self, argvs: Sequence[Sequence[str]], *, timeout_s: float = 120
                  ) -> list[CommandResult]:
        """Several read-only commands in one round trip; each one's stderr joins its stdout.

        The joined text is each argv quoted by ``shlex.join`` and a fixed marker between them.
        """
        marker = f"__ccat_{uuid.uuid4().hex}__"
        parts = [f"{shlex.join(argv)} 2>&1; echo {marker} $?" for argv in argvs]
        result = self._retrying("batched command", lambda: self._exec(
            "; ".join(parts), None, timeout_s), retry=True)
        out: list[CommandResult] = []
        rest = result.stdout
        for _argv in argvs:
            chunk, sep, rest = rest.partition(marker)
            if not sep:
                raise SSHError(f"batched command output was cut short: {result.stderr[-500:]}")
            status, _, rest = rest.lstrip(" ").partition("\n")
            out.append(CommandResult(int(status or 1), chunk, ""))
        return out

    def _exec(self, command: str, stdin: bytes | None, timeout_s: float) -> CommandResult:
        channel = self.client().get_transport().open_session(timeout=self.target.connect_timeout_s)
        try:
            channel.settimeout(timeout_s)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout, stderr = bytearray(), bytearray()
            deadline = time.monotonic() + timeout_s
            # Drain both streams as data comes (a full stderr window must never stall stdout),
            # until the exit status and EOF are in and nothing is left to read.
            while True:
                busy = False
                if channel.recv_ready():
                    stdout += channel.recv(65536)
                    busy = True
                if channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                    busy = True
                if busy:
                    continue
                if channel.exit_status_ready() and channel.eof_received:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer within {timeout_s:.0f} s")
                time.sleep(0.005)
            status = channel.recv_exit_status()
            return CommandResult(status, stdout.decode(errors="replace"),
                                 stderr.decode(errors="replace"))
        finally:
            channel.close()

    # -- files ------------------------------------------------------------------------------
    def makedirs(self, path: str, mode: int = 0o755) -> None:
        """``mkdir -p`` over SFTP."""
        def action() -> None:
            sftp = self.sftp()
            missing = []
            current = path.rstrip("/") or "/"
            while current not in ("", "/"):
                try:
                    if not stat.S_ISDIR(sftp.stat(current).st_mode):
                        raise SSHError(f"{current} exists on {self.target.host} and is not "
                                       "a directory")
                    break
                except FileNotFoundError:
                    missing.append(current)
                    current = current.rsplit("/", 1)[0]
            for directory in reversed(missing):
                try:
                    sftp.mkdir(directory, mode)
                except OSError:
                    if not stat.S_ISDIR(sftp.stat(directory).st_mode):
                        raise
        self._retrying(f"mkdir {path}", action, retry=True)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` atomically: a temporary name, then a POSIX rename."""
        def action() -> None:
            sftp = self.sftp()
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial"
            try:
                with sftp.open(tmp, "wb") as handle:
                    handle.write(data)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise
        self._retrying(f"write {path}", action, retry=True)

    def read_tail(self, path: str, max_bytes: int) -> str | None:
        """The last ``max_bytes`` of a remote file, None when it does not exist."""
        def action() -> str | None:
            sftp = self.sftp()
            try:
                size = sftp.stat(path).st_size or 0
            except FileNotFoundError:
                return None
            with sftp.open(path, "rb") as handle:
                handle.seek(max(0, size - max_bytes))
                return handle.read().decode(errors="replace")
        return self._retrying(f"read {path}", action, retry=True)


_CONNECTIONS: dict[SSHTarget, SSHConnection] = {}
_CONNECTIONS_LOCK = threading.Lock()


def shared_connection(target: SSHTarget) -> SSHConnection:
    """One SSH connection per target and process, reused by every backend or stager built
    for it (a run builds its services afresh; the Transport need not be)."""
    with _CONNECTIONS_LOCK:
        if target not in _CONNECTIONS:
            _CONNECTIONS[target] = SSHConnection(target)
        return _CONNECTIONS[target]
