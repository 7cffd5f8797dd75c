"""The broker's files: service part + device part, per-device ACL, SIGHUP."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from identity.mosquitto import MosquittoAuthFiles, device_acl


def test_device_acl_is_its_own_topics_only() -> None:
    """A device may write its telemetry and its command results and read its command
    topics, nothing else."""
    assert device_acl("door-1", "site1/") == (
        "user door-1\ntopic write site1/devices/door-1/telemetry\n"
        "topic read site1/devices/door-1/commands/#\n"
        "topic write site1/devices/door-1/commands/result\n"
    )


class TestPublish:
    """What the broker reads is the service part followed by the device part."""

    async def test_files_merge_and_reserve_service_users(self, tmp_path: Path) -> None:
        """Device users follow the bridges'; a device named like a service user is left
        out; the files are readable by their owner only."""
        (tmp_path / "service.passwd").write_text("bridge-0:$7$101$aaa$bbb\n")
        (tmp_path / "service.acl").write_text("user bridge-0\ntopic read devices/+/telemetry\n")
        files = MosquittoAuthFiles(tmp_path)
        assert files.service_users() == {"bridge-0"}
        await files.publish(
            {"door-1": "$7$101$ccc$ddd", "bridge-0": "$7$101$eee$fff"},
            {"door-1", "door-2", "bridge-0"},
            "",
            b"crl",
        )
        passwd = (tmp_path / "passwd").read_text()
        assert passwd.startswith("bridge-0:$7$101$aaa$bbb\n")
        assert "door-1:$7$101$ccc$ddd" in passwd
        assert "eee" not in passwd  # the impostor of the service user
        acl = (tmp_path / "acl").read_text()
        assert acl.startswith("user bridge-0\n")
        assert acl.count("user bridge-0") == 1
        assert "user door-2\ntopic write devices/door-2/telemetry" in acl
        assert (tmp_path / "crl.pem").read_bytes() == b"crl"
        assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o600

    async def test_a_revoked_device_disappears(self, tmp_path: Path) -> None:
        """Files are rendered from the full set each time, never patched."""
        files = MosquittoAuthFiles(tmp_path)
        await files.publish({"door-1": "h1", "door-2": "h2"}, {"door-1", "door-2"}, "")
        await files.publish({"door-2": "h2"}, {"door-2"}, "")
        assert "door-1" not in (tmp_path / "passwd").read_text()
        assert "door-1" not in (tmp_path / "acl").read_text()


class TestReload:
    """SIGHUP goes to the broker of the pid file, and to nothing else."""

    def test_signals_only_a_mosquitto(self, tmp_path: Path) -> None:
        """A pid file naming another process is stale: no signal is sent; a missing pid
        file is a broker not running."""
        other = subprocess.Popen(["sleep", "30"])
        try:
            (tmp_path / "pid").write_text(str(other.pid))
            assert MosquittoAuthFiles(tmp_path, tmp_path / "pid").reload() is False
            time.sleep(0.1)
            assert other.poll() is None  # not hung up
        finally:
            other.kill()
        assert MosquittoAuthFiles(tmp_path, tmp_path / "missing").reload() is False
        assert MosquittoAuthFiles(tmp_path, None).reload() is False

    def test_hups_the_broker(self, tmp_path: Path) -> None:
        """A pid file naming a mosquitto process gets SIGHUP."""
        fake = tmp_path / "mosquitto"
        fake.write_text("#!/bin/sh\ntrap 'echo hup; exit 0' HUP\nwhile :; do sleep 0.05; done\n")
        fake.chmod(0o755)
        proc = subprocess.Popen([str(fake)], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.2)
            (tmp_path / "pid").write_text(str(proc.pid))
            assert MosquittoAuthFiles(tmp_path, tmp_path / "pid").reload() is True
            out, _ = proc.communicate(timeout=5)
        finally:
            proc.kill()
        assert "hup" in out


class TestReloadOnlyOnChange:
    """A publish that changes nothing the broker reads sends no SIGHUP (each reload is a
    moment when Mosquitto stops queueing for an offline session it restored from disk)."""

    class Counting(MosquittoAuthFiles):
        """Counts the reloads instead of signalling."""

        reloads = 0

        def reload(self) -> bool:
            """Count one."""
            self.reloads += 1
            return True

    async def test_only_a_change_reloads(self, tmp_path: Path) -> None:
        """The same users twice: one reload; a new user, a revocation, a new CRL: one each."""
        files = self.Counting(tmp_path)
        await files.publish({"door-1": "h1"}, {"door-1"}, "", b"crl")
        await files.publish({"door-1": "h1"}, {"door-1"}, "", b"crl")
        assert files.reloads == 1
        await files.publish({"door-1": "h1", "door-2": "h2"}, {"door-1", "door-2"}, "", b"crl")
        await files.publish({"door-1": "h1", "door-2": "h2"}, {"door-1"}, "", b"crl")
        await files.publish({"door-1": "h1", "door-2": "h2"}, {"door-1"}, "", b"crl2")
        assert files.reloads == 4
        await files.publish({"door-1": "h1", "door-2": "h2"}, {"door-1"}, "", None)
        assert files.reloads == 4

    async def test_a_service_part_change_reloads(self, tmp_path: Path) -> None:
        """services.sh rewrote the service part: the next publish brings it in."""
        files = self.Counting(tmp_path)
        await files.publish({"door-1": "h1"}, {"door-1"}, "")
        (tmp_path / "service.passwd").write_text("bridge-9:h\n")
        await files.publish({"door-1": "h1"}, {"door-1"}, "")
        assert files.reloads == 2
        assert (tmp_path / "passwd").read_text().startswith("bridge-9:h\n")
