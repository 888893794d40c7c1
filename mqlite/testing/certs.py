"""Certificates for tests of TLS: a private CA and the server and client certificates it signs.

    ca = CertificateAuthority.create(directory)            # ca.pem (+ its key, kept in memory)
    server = ca.issue(directory, "server", hosts=("localhost", "127.0.0.1"))
    # server.cert, server.key: PEM files for --ssl-cert / --ssl-key; ca.path for --ssl-ca / ssl_ca=

Made with the `cryptography` package (in mqlite's `test` extra). RSA keys (every TLS library a
MySQL or MariaDB server is built with takes them), valid from a day ago for 30 days.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MqliteError

_VALID_DAYS = 30


class CertsUnavailable(MqliteError):
    """The certificates could not be made (the `cryptography` package is missing)."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its private key and the CA certificate that signed it, as PEM files."""

    cert: Path
    key: Path
    ca: Path


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise CertsUnavailable(
            "making test certificates needs the cryptography package: pip install cryptography "
            "(or mqlite's test extra)"
        ) from None
    return x509, hashes, serialization, rsa, ExtendedKeyUsageOID, NameOID


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)
    return path


class CertificateAuthority:
    """A self-signed CA that issues certificates. Its certificate is at `path`."""

    def __init__(self, path: Path, cert: Any, key: Any) -> None:
        self.path = path
        self._cert = cert
        self._key = key

    @classmethod
    def create(cls, directory: str | Path, name: str = "mqlite test CA", stem: str = "ca") -> CertificateAuthority:
        """A new CA; its certificate is written to `directory/{stem}.pem`."""
        x509, hashes, serialization, rsa, _, NameOID = _crypto()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        path = _write(Path(directory) / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
        return cls(path, cert, key)

    def issue(
        self, directory: str | Path, stem: str, *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
        client: bool = False,
    ) -> TlsFiles:
        """A certificate signed by this CA: for a server answering as `hosts` (names or IP
        addresses, in its subjectAltName), or with `client=True` for a client. Written to
        `directory/{stem}-cert.pem` and `directory/{stem}-key.pem` (mode 0600)."""
        x509, hashes, serialization, rsa, ExtendedKeyUsageOID, NameOID = _crypto()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        names: list[Any] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else stem)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        directory = Path(directory)
        cert_path = _write(directory / f"{stem}-cert.pem", cert.public_bytes(serialization.Encoding.PEM))
        key_path = _write(
            directory / f"{stem}-key.pem",
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()),
            private=True,
        )
        return TlsFiles(cert=cert_path, key=key_path, ca=self.path)
