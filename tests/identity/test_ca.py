"""The device CA: what it signs, what it refuses, the revocation list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from identity.ca import CRL_VALIDITY, DeviceCa
from identity.dev_pki import main as dev_pki
from identity.errors import CaUnavailable, InvalidCsr

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DeviceCa:
    """A dev CA made by identity.dev_pki."""
    pki = tmp_path_factory.mktemp("pki")
    assert dev_pki([str(pki), str(pki / "auth")]) == 0
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    return DeviceCa.load(pki / "ca.crt", pki / "ca.key")


def _csr(key: object, cn: str = "someone-else") -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]


class TestIssue:
    """A client certificate per device, for the device id only."""

    def test_new_key_pair(self, ca: DeviceCa) -> None:
        """Without a CSR: an EC key is made and returned once; the certificate names the
        device, is a client-auth leaf and not a CA."""
        issued = ca.issue("printer-0042", csr_pem=None, now=NOW, validity=timedelta(days=397))
        assert issued.private_key_pem is not None
        cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "printer-0042"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert cert.serial_number == issued.serial
        assert issued.not_after == NOW + timedelta(days=397)

    @pytest.mark.parametrize(
        "key",
        [
            ec.generate_private_key(ec.SECP384R1()),
            rsa.generate_private_key(65537, 2048),
            ed25519.Ed25519PrivateKey.generate(),
        ],
        ids=["ec-p384", "rsa-2048", "ed25519"],
    )
    def test_csr_keeps_the_key_and_forces_the_name(self, ca: DeviceCa, key: object) -> None:
        """With a CSR: no private key comes back, the certificate carries the CSR's key and
        the device id as CN, whatever name the CSR asked for."""
        issued = ca.issue("door-7", csr_pem=_csr(key), now=NOW, validity=timedelta(days=30))
        assert issued.private_key_pem is None
        cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "door-7"
        assert cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @pytest.mark.parametrize(
        ("csr", "problem"),
        [
            ("not a csr", "not a PEM"),
            (_csr(rsa.generate_private_key(65537, 1024)), "at least 2048"),  # noqa: S505 - refused
            (_csr(ec.generate_private_key(ec.SECP256K1())), "not accepted"),
        ],
        ids=["garbage", "rsa-1024", "secp256k1"],
    )
    def test_refused_csrs(self, ca: DeviceCa, csr: str, problem: str) -> None:
        """Unparseable CSRs and weak or unusual keys are refused with a reason."""
        with pytest.raises(InvalidCsr, match=problem):
            ca.issue("door-7", csr_pem=csr, now=NOW, validity=timedelta(days=30))

    def test_validity_never_outlives_the_ca(self, ca: DeviceCa) -> None:
        """A certificate ends no later than its CA."""
        issued = ca.issue("door-8", csr_pem=None, now=NOW, validity=timedelta(days=365 * 50))
        ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        assert issued.not_after == ca_cert.not_valid_after_utc


class TestRevocationList:
    """The CRL the broker's TLS listener checks."""

    def test_lists_the_revoked_serials(self, ca: DeviceCa) -> None:
        """Revoked serials are on the list, signed by the CA, valid for CRL_VALIDITY."""
        issued = ca.issue("door-9", csr_pem=None, now=NOW, validity=timedelta(days=30))
        crl = x509.load_pem_x509_crl(ca.crl([(issued.serial, NOW)], NOW))
        ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
        assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
        assert crl.next_update_utc == NOW + CRL_VALIDITY

    def test_the_current_list_is_kept_while_it_says_the_same(
        self, ca: DeviceCa, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """The CRL served now comes back unchanged (no broker reload) while it lists the
        same serials and more than half its validity is left; a new revocation, an old
        list, another CA's list or garbage gets a new one."""
        current = ca.crl([(11, NOW)], NOW)
        later = NOW + CRL_VALIDITY / 2 - timedelta(minutes=1)
        assert ca.crl([(11, NOW)], later, current=current) == current
        assert ca.crl([(11, NOW), (12, later)], later, current=current) != current
        assert ca.crl([], later, current=current) != current
        too_late = NOW + CRL_VALIDITY / 2 + timedelta(minutes=1)
        renewed = x509.load_pem_x509_crl(ca.crl([(11, NOW)], too_late, current=current))
        assert renewed.next_update_utc == too_late + CRL_VALIDITY
        other_pki = tmp_path_factory.mktemp("other-pki")
        assert dev_pki([str(other_pki), str(other_pki / "auth")]) == 0
        other = DeviceCa.load(other_pki / "ca.crt", other_pki / "ca.key")
        foreign = other.crl([(11, NOW)], NOW)  # the same issuer name, another key
        assert ca.crl([(11, NOW)], later, current=foreign) != foreign
        assert ca.crl([(11, NOW)], later, current=b"not a crl").startswith(b"-----BEGIN X509 CRL")


def test_missing_ca_is_unavailable(tmp_path: Path) -> None:
    """No configured or readable CA is CaUnavailable, naming what is missing."""
    with pytest.raises(CaUnavailable, match="no device CA configured"):
        DeviceCa.load(None, None)
    with pytest.raises(CaUnavailable, match="cannot be read"):
        DeviceCa.load(tmp_path / "ca.crt", tmp_path / "ca.key")
