"""A throwaway PKI for the TLS/mTLS tests: two EC P-256 CAs, a server and client certificates."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_A = "CN=ingest-7,O=lineage-audit tests"
CLIENT_B = "CN=ingest-8,O=lineage-audit tests"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lineage-audit tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _certificate(subject, key, issuer, issuer_key, *, ca=False, eku=None, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(folder: Path, stem: str, cert: x509.Certificate, key) -> SimpleNamespace:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SimpleNamespace(cert=cert_path, key=key_path)


def _ca(folder: Path, stem: str, common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(common_name), key, _name(common_name), key, ca=True)
    return _write_pair(folder, stem, cert, key), cert, key


def _leaf(folder: Path, stem: str, subject: x509.Name, ca, *, eku, san=None):
    _, ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(subject, key, ca_cert.subject, ca_key, eku=eku, san=san)
    return _write_pair(folder, stem, cert, key)


def make_pki(folder: Path) -> SimpleNamespace:
    """CA, another CA, a server cert for 127.0.0.1/localhost, clients A and B, and a rogue
    client with A's subject issued by the other CA (paths to PEM files)."""
    ca = _ca(folder, "ca", "lineage-audit test CA")
    other = _ca(folder, "other-ca", "someone else's CA")
    client, server = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    return SimpleNamespace(
        ca=ca[0].cert,
        other_ca=other[0].cert,
        server=_leaf(folder, "server", _name("localhost"), ca, eku=server, san=san),
        client_a=_leaf(folder, "client-a", _name("ingest-7"), ca, eku=client),
        client_b=_leaf(folder, "client-b", _name("ingest-8"), ca, eku=client),
        rogue=_leaf(folder, "rogue", _name("ingest-7"), other, eku=client),  # same subject as A
    )  # fmt: skip
