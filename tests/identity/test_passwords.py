"""Device passwords and the hash the broker checks them with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from identity.passwords import ITERATIONS, PASSWORD_PREFIX, mosquitto_hash, new_password, verify
from telemeter.logs import Redactor


class TestMosquittoFormat:
    """Telemeter writes the broker's password file itself, in Mosquitto's own format."""

    def test_hash_shape(self) -> None:
        """$7$<iterations>$<base64 12-byte salt>$<base64 64-byte PBKDF2-SHA512>."""
        kind, iterations, salt, digest = mosquitto_hash("s3cret").split("$")[1:]
        assert (kind, int(iterations)) == ("7", ITERATIONS)
        assert len(salt) == 16
        assert len(digest) == 88

    def test_verifies_what_mosquitto_passwd_writes(self, tmp_path: Path) -> None:
        """A hash written by Debian's mosquitto_passwd verifies with our check, the same
        algorithm in both directions (the broker accepting ours is tested end to end)."""
        passwd = tmp_path / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "door-1", "pw-1"], check=True)
        hashed = passwd.read_text().strip().split(":", 1)[1]
        assert verify("pw-1", hashed)
        assert not verify("pw-2", hashed)

    def test_salted(self) -> None:
        """The same password hashes differently each time and verifies each time."""
        a, b = mosquitto_hash("same"), mosquitto_hash("same")
        assert a != b
        assert verify("same", a)
        assert verify("same", b)

    def test_malformed_hash_never_verifies(self) -> None:
        """A broken line is a failed check, not an exception."""
        assert not verify("x", "$6$nope")
        assert not verify("x", "garbage")


class TestPasswords:
    """Generated passwords are long, prefixed and recognised as secrets by the redactor."""

    def test_prefixed_random_and_redacted(self) -> None:
        """``tmd_<credential id>_<43 random characters>``, unique, and masked in logs."""
        one, two = new_password("9c2e41d07ab35f18"), new_password("9c2e41d07ab35f18")
        assert one != two
        prefix = f"{PASSWORD_PREFIX}_9c2e41d07ab35f18_"
        assert one.startswith(prefix)
        random_part = one.removeprefix(prefix)  # URL-safe base64: may itself hold "_" and "-"
        assert len(random_part) == 43
        assert random_part not in Redactor()(f"login with {one}")

    def test_random_part_with_underscores_and_dashes_is_redacted(self) -> None:
        """The random part's own ``_`` and ``-`` do not cut the redaction short."""
        password = (
            f"{PASSWORD_PREFIX}_9c2e41d07ab35f18_ab_cd-ef_gh-ij_kl-mn_op-qr_st-uv_wx-yz_0123456"
        )
        masked = Redactor()(f"login with {password}")
        assert "ab_cd" not in masked
        assert "0123456" not in masked
