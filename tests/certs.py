"""Throw-away X.509 certificates for TLS/mTLS tests, generated per test (never committed)."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pem:
    pem = Pem(directory / f"{stem}.crt", directory / f"{stem}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.key.chmod(0o600)
    return pem


def make_pki(directory: Path) -> tuple[Pem, Pem, Pem]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    ca, server, clients = make_pki_with_clients(directory, ("orders-svc",))
    return ca, server, clients[0]


def make_pki_with_clients(directory: Path, names: Sequence[str]) -> tuple[Pem, Pem, list[Pem]]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate (its
    common name the identity) for each of `names`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("authsvc test CA"))
        .issuer_name(_name("authsvc test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server = leaf(
        "authsvc",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    clients = [leaf(name, ExtendedKeyUsageOID.CLIENT_AUTH, []) for name in names]
    return (
        _write(directory, "ca", ca, ca_key),
        _write(directory, "server", *server),
        [_write(directory, f"client{i}", *client) for i, client in enumerate(clients)],
    )


def mtls_settings(ca: Pem, server: Pem) -> dict[str, Any]:
    """Settings overrides that serve TLS with `server` and require client certificates
    from `ca` (mTLS)."""
    return {
        "tls_cert_file": str(server.cert),
        "tls_key_file": str(server.key),
        "tls_client_ca_file": str(ca.cert),
    }
