"""A development PKI for the local broker: ``python -m identity.dev_pki <pki dir> <auth dir>``.

Creates, when missing: a device CA (``ca.crt``/``ca.key``, EC P-256, 10 years), the broker's
server certificate signed by it (``server.crt``/``server.key``, for ``localhost`` and
``127.0.0.1``), and an empty revocation list in the auth dir (``crl.pem``), which the API
rewrites on every certificate revocation. ``--client NAME`` also issues a client certificate
for a service user (e.g. a bridge connecting over TLS). ``deploy/services.sh`` runs it before
it starts Mosquitto; production brings its own CA and server certificate. Private keys are
written with mode 0600."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from identity.ca import DeviceCa


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    path.with_suffix(".tmp").replace(path)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ensure_ca(pki: Path, now: datetime) -> None:
    """The CA, when ``ca.crt`` is missing."""
    if (pki / "ca.crt").exists() and (pki / "ca.key").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Telemeter Dev Device CA"))
        .issuer_name(_name("Telemeter Dev Device CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pki / "ca.key", key)
    _write(pki / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))


def _leaf(
    pki: Path, name: str, cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
) -> None:
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(pki / f"{name}.key", key)
    _write(pki / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))


def ensure_server(pki: Path) -> None:
    """The broker's certificate, when missing."""
    if (pki / "server.crt").exists():
        return
    san: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(IPv4Address("127.0.0.1")),
    ]
    _leaf(pki, "server", "localhost", ExtendedKeyUsageOID.SERVER_AUTH, san)


def ensure_crl(pki: Path, auth_dir: Path, now: datetime) -> None:
    """An empty revocation list, when the auth dir has none yet."""
    path = auth_dir / "crl.pem"
    if path.exists():
        return
    ca = DeviceCa.load(pki / "ca.crt", pki / "ca.key")
    _write(path, ca.crl([], now))


def main(argv: list[str] | None = None) -> int:
    """Create what is missing; print nothing on success."""
    parser = argparse.ArgumentParser(prog="python -m identity.dev_pki", description=__doc__)
    parser.add_argument("pki_dir", type=Path)
    parser.add_argument("auth_dir", type=Path)
    parser.add_argument("--client", action="append", default=[], help="client cert for NAME")
    args = parser.parse_args(argv)
    args.pki_dir.mkdir(parents=True, exist_ok=True)
    args.auth_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ensure_ca(args.pki_dir, now)
    ensure_server(args.pki_dir)
    ensure_crl(args.pki_dir, args.auth_dir, now)
    for name in args.client:
        if not (args.pki_dir / f"{name}.crt").exists():
            _leaf(args.pki_dir, name, name, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
