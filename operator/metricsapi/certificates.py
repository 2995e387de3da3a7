"""X.509 certificates for the metrics API: its serving certificate, and test PKI.

Without `--tls-cert-file` the server makes a self-signed certificate at start, the way
kube-apiserver does with `--cert-dir`; the APIService then skips verification or
carries the CA bundle of a certificate you mount.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """name.crt and name.key in directory (the key readable by its owner only)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(self.key_pem)
        return cert, key


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _sign(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: Issued | None,
          extensions: list[tuple[x509.ExtensionType, bool]]) -> Issued:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + VALIDITY))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_ca(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    return _sign(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key, None, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                       content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, encipher_only=False,
                       decipher_only=False), True),
    ])


def issue(ca: Issued | None, common_name: str, *, hosts: tuple[str, ...] = (),
          client: bool = False, organization: str | None = None) -> Issued:
    """A leaf: a serving certificate for `hosts`, or a client certificate (CN = user).

    ca None makes it self-signed.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([usage]), False),
    ]
    if hosts:
        extensions.append((_san(hosts), False))
    return _sign(x509.Name(attributes), key, ca, extensions)


def serving_hosts(service: str, namespace: str) -> tuple[str, ...]:
    """The names the aggregator may dial: it verifies `<service>.<namespace>.svc`."""
    return (f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}", service, "localhost", "127.0.0.1")
