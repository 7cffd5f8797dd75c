"""``DeviceCa``: the deployment's device certificate authority, with the ``cryptography``
package (no hand-written ASN.1, no openssl subprocess).

It signs a client certificate per device: common name = the device id (whatever the CSR
asked for, because the broker takes the certificate's CN as the MQTT username), extended
key usage clientAuth only, not a CA. It also writes the certificate revocation list the
broker's TLS listener checks at every handshake. Keys accepted in CSRs: EC P-256/384/521,
RSA of at least 2048 bits, Ed25519; new key pairs (when no CSR is sent) are EC P-256."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from identity.errors import CaUnavailable, InvalidCsr

CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
CRL_VALIDITY = timedelta(days=30)
"""How long a written CRL is valid. The broker refuses every TLS client once its CRL has
expired, so the API rewrites it at start, on every change and daily (``identity/service.py``)."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A signed device certificate; ``private_key_pem`` only when the CA made the key."""

    certificate_pem: str
    serial: int
    not_after: datetime
    private_key_pem: str | None = None


def _sign_hash(key: CaKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


class DeviceCa:
    """A CA certificate and its private key."""

    def __init__(self, certificate: x509.Certificate, key: CaKey) -> None:
        self._cert = certificate
        self._key = key

    @classmethod
    def load(cls, cert_file: Path | None, key_file: Path | None) -> DeviceCa:
        """Read the CA from PEM files, or raise CaUnavailable saying what is missing."""
        if cert_file is None or key_file is None:
            raise CaUnavailable(
                "no device CA configured (TELEMETER_BROKER__CA_CERT_FILE and "
                "TELEMETER_BROKER__CA_KEY_FILE)"
            )
        try:
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except (OSError, ValueError, UnsupportedAlgorithm) as exc:
            raise CaUnavailable(
                f"the device CA ({cert_file}, {key_file}) cannot be read: {type(exc).__name__}"
            ) from exc
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise CaUnavailable(f"unsupported device CA key type {type(key).__name__}")
        return cls(cert, key)

    @property
    def certificate_pem(self) -> str:
        """The CA certificate, which devices use to verify the broker too."""
        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self, device_id: str, *, csr_pem: str | None, now: datetime, validity: timedelta
    ) -> IssuedCertificate:
        """A client certificate for ``device_id``: for the CSR's key, or for a new EC key
        (then returned as PKCS#8 PEM, once)."""
        private_pem: str | None = None
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        if csr_pem is None:
            new_key = ec.generate_private_key(ec.SECP256R1())
            public_key = new_key.public_key()
            private_pem = new_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
        else:
            public_key = _csr_key(csr_pem)
        not_after = min(now + validity, self._cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))  # tolerate a device clock behind
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        cert = builder.sign(self._key, _sign_hash(self._key))
        return IssuedCertificate(
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            serial=cert.serial_number,
            not_after=not_after,
            private_key_pem=private_pem,
        )

    def crl(
        self,
        revoked: Sequence[tuple[int, datetime]],
        now: datetime,
        current: bytes | None = None,
    ) -> bytes:
        """The revocation list of these (serial, revoked at) pairs, valid for
        :data:`CRL_VALIDITY`, as PEM. ``current`` (the CRL served now) is returned as it is
        when this CA signed it, it lists exactly these serials and more than half its
        validity is left: the broker's files stay the same, so it is not reloaded for
        nothing, and the daily sync still renews the CRL long before it expires."""
        if current is not None and self._still_valid(current, {s for s, _ in revoked}, now):
            return current
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._cert.subject)
            .last_update(now)
            .next_update(now + CRL_VALIDITY)
        )
        for serial, at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
            )
        crl = builder.sign(self._key, _sign_hash(self._key))
        return crl.public_bytes(serialization.Encoding.PEM)

    def _still_valid(self, pem: bytes, serials: set[int], now: datetime) -> bool:
        try:
            crl = x509.load_pem_x509_crl(pem)
        except ValueError:
            return False
        next_update = crl.next_update_utc
        return (
            crl.issuer == self._cert.subject
            and crl.is_signature_valid(self._cert.public_key())  # type: ignore[arg-type]
            and next_update is not None
            and next_update - now > CRL_VALIDITY / 2
            and {r.serial_number for r in crl} == serials
        )


def _csr_key(
    csr_pem: str,
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    """The public key of a valid, self-signed CSR with an acceptable key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise InvalidCsr("csr is not a PEM certificate signing request") from exc
    if not csr.is_signature_valid:
        raise InvalidCsr("the CSR's signature does not verify with its own key")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidCsr(f"RSA keys need at least 2048 bits, this one has {key.key_size}")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise InvalidCsr(f"EC curve {key.curve.name} is not accepted (P-256, P-384, P-521)")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise InvalidCsr(f"key type {type(key).__name__} is not accepted (EC, RSA >= 2048, Ed25519)")
