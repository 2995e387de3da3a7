"""Certificates and keys for a local control plane, made with the `openssl` command.

ECDSA P-256 throughout (fast to generate). Everything is written once per plane
directory and reused on restart, so clients keep trusting a restarted plane.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

DAYS = 3650


class PkiError(RuntimeError):
    """openssl is missing or refused to issue a certificate."""


class Usage(StrEnum):
    SERVER = "serverAuth"
    CLIENT = "clientAuth"


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path

    def exists(self) -> bool:
        return self.cert.is_file() and self.key.is_file()


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise PkiError("the `openssl` command is needed to make the control plane's certificates")
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _config(common_name: str, organization: str | None, extensions: list[str]) -> str:
    subject = [f"CN = {common_name}"] + ([f"O = {organization}"] if organization else [])
    return "\n".join([
        "[req]", "distinguished_name = dn", "prompt = no", "x509_extensions = ext",
        "[dn]", *subject,
        "[ext]", *extensions, "",
    ])


def _issue(pair: KeyPair, config: str, ca: KeyPair | None) -> None:
    pair.cert.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".cnf") as cnf:
        cnf.write(config)
        cnf.flush()
        signer = ["-CA", str(ca.cert), "-CAkey", str(ca.key)] if ca else []
        _openssl("req", "-x509", "-new", "-config", cnf.name, "-days", str(DAYS),
                 "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(pair.key), "-out", str(pair.cert), *signer)
    pair.key.chmod(0o600)


def make_ca(pair: KeyPair, common_name: str) -> KeyPair:
    """A self-signed CA, unless `pair` already exists."""
    if not pair.exists():
        _issue(pair, _config(common_name, None, [
            "basicConstraints = critical, CA:TRUE",
            "keyUsage = critical, keyCertSign, cRLSign, digitalSignature",
            "subjectKeyIdentifier = hash",
        ]), ca=None)
    return pair


def issue(pair: KeyPair, ca: KeyPair, common_name: str, usage: Usage, *,
          organization: str | None = None, hosts: tuple[str, ...] = ()) -> KeyPair:
    """A leaf certificate signed by `ca`, unless `pair` already exists.

    `hosts` become subjectAltNames (IP addresses or DNS names) for serving certificates;
    for client certificates the API server reads the user from CN and groups from O.
    """
    if not pair.exists():
        extensions = [
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature, keyEncipherment",
            f"extendedKeyUsage = {usage.value}",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid:always",
        ]
        if hosts:
            names = [f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts]
            extensions.append(f"subjectAltName = {', '.join(names)}")
        _issue(pair, _config(common_name, organization, extensions), ca=ca)
    return pair


def make_signing_key(private: Path, public: Path) -> None:
    """The service-account token signing key pair, unless it already exists."""
    if private.is_file() and public.is_file():
        return
    private.parent.mkdir(parents=True, exist_ok=True)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(private))
    private.chmod(0o600)
    _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
