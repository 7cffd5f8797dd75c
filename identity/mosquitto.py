"""``MosquittoAuthFiles``: the broker's users, written as Mosquitto's own files, then a SIGHUP.

The auth directory holds, per concern, one file each for Mosquitto's ``password_file``,
``acl_file`` and the TLS listener's ``crlfile``:

- ``service.passwd`` / ``service.acl``: the bridges' users (each may read telemetry and
  nothing else), written by whoever deploys the broker (``deploy/services.sh`` here);
- ``devices.passwd`` / ``devices.acl`` and ``crl.pem``: written here, from the credentials
  in the store;
- ``passwd`` / ``acl``: what Mosquitto reads, each the service part followed by the device
  part, rewritten (atomically, under a lock shared with ``services.sh``) whenever either
  part changes.

Each device gets a user (password credentials) and, for any unrevoked credential, ACL lines
of its own: write its telemetry topic and its command results, read its command topics,
nothing else. Per-device
lines rather than one ``%u`` pattern, so that a revoked certificate device -- still able to
finish a TLS handshake until the CRL reload catches it -- has no topic left at all.

After writing, Mosquitto is sent SIGHUP (only when a file changed): it reloads the files,
disconnects clients whose password is gone, applies the new ACL to every later message, and
keeps every other connection and every queued message (checked on Mosquitto 2.0.11) -- with
one exception in Mosquitto itself (2.0.11 and 2.0.21, ``mosquitto_security_apply_default``):
a session restored from disk after a broker restart has no password in memory until its
client reconnects, fails the reload's password check, loses its ACL, and every message for
it from then on is dropped (acknowledged to the publisher all the same). So an offline bridge
loses what is published after a reload that follows a broker restart, until it reconnects
(``tests/ingest/test_broker_restart.py``, README "Delivery guarantees")."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import structlog

from identity.errors import BrokerSyncFailed

log = structlog.get_logger(__name__)
_FILES = ("passwd", "acl")


def device_acl(device_id: str, topic_prefix: str) -> str:
    """The ACL block of one device."""
    base = f"{topic_prefix}devices/{device_id}"
    return (
        f"user {device_id}\ntopic write {base}/telemetry\ntopic read {base}/commands/#\n"
        f"topic write {base}/commands/result\n"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (flock, like ``services.sh``'s ``flock``)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically, readable by its owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


class MosquittoAuthFiles:
    """Writes the device part of the broker's auth files and reloads the broker."""

    def __init__(self, auth_dir: Path, pid_file: Path | None = None) -> None:
        self._dir = auth_dir
        self._pid_file = pid_file

    def service_users(self) -> set[str]:
        """The usernames of ``service.passwd`` (no device may take one of them)."""
        users = set()
        for line in _read(self._dir / "service.passwd").splitlines():
            name, sep, _ = line.partition(":")
            if sep and name.strip():
                users.add(name.strip())
        return users

    def current_crl(self) -> bytes | None:
        """The CRL the broker serves now, if any."""
        try:
            return (self._dir / "crl.pem").read_bytes()
        except OSError:
            return None

    async def publish(
        self,
        passwords: Mapping[str, str],
        acl_users: Set[str],
        topic_prefix: str,
        crl_pem: bytes | None = None,
    ) -> None:
        """Make the broker accept exactly these device users: ``passwords`` maps username
        to its ``$7$`` hash, ``acl_users`` are the devices with any unrevoked credential;
        then reload the broker."""
        try:
            await asyncio.to_thread(self._publish, passwords, acl_users, topic_prefix, crl_pem)
        except OSError as exc:
            raise BrokerSyncFailed(
                f"cannot write the broker's auth files in {self._dir}: {exc.strerror}"
            ) from exc

    def _publish(
        self,
        passwords: Mapping[str, str],
        acl_users: Set[str],
        topic_prefix: str,
        crl_pem: bytes | None,
    ) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        with _locked(self._dir / ".lock"):
            reserved = self.service_users()
            clash = sorted((set(passwords) | set(acl_users)) & reserved)
            if clash:
                log.warning(
                    "broker_device_user_skipped",
                    users=clash[:10],
                    count=len(clash),
                    reason="a service user of the same name exists",
                )
            _write(
                self._dir / "devices.passwd",
                "".join(f"{u}:{h}\n" for u, h in sorted(passwords.items()) if u not in reserved),
            )
            _write(
                self._dir / "devices.acl",
                "".join(
                    device_acl(u, topic_prefix) + "\n"
                    for u in sorted(acl_users)
                    if u not in reserved
                ),
            )
            changed = False
            if crl_pem is not None and crl_pem != self.current_crl():
                changed = True
                tmp = self._dir / ".crl.pem.tmp"
                tmp.write_bytes(crl_pem)
                tmp.replace(self._dir / "crl.pem")
            for name in _FILES:
                service = _read(self._dir / f"service.{name}")
                devices = _read(self._dir / f"devices.{name}")
                joined = service if service.endswith("\n") or not service else service + "\n"
                merged = joined + "\n" + devices
                if _read(self._dir / name) != merged:
                    _write(self._dir / name, merged)
                    changed = True
        # No reload when nothing changed (an API or aggregator starting writes the same
        # files): each reload is a moment when Mosquitto 2.0 stops queueing for an offline
        # session it restored from disk (the module's docstring), so none is sent for nothing.
        if changed:
            self.reload()
        log.info(
            "broker_auth_written",
            users=len(passwords),
            acl_users=len(acl_users),
            reloaded=changed,
        )

    def reload(self) -> bool:
        """SIGHUP the broker of ``pid_file`` if it runs; whether a signal was sent."""
        if self._pid_file is None:
            return False
        try:
            pid = int(self._pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            log.info("broker_not_running", pid_file=str(self._pid_file))
            return False
        if b"mosquitto" not in cmdline:  # a stale pid file naming another process
            log.warning("broker_pid_file_stale", pid_file=str(self._pid_file), pid=pid)
            return False
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise BrokerSyncFailed(f"not allowed to signal the broker (pid {pid})") from exc
        return True
