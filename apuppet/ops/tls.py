"""Certificates: a self-signed pair for a LAN without a public name, and the checks `apuppet config check` makes
on `tls_cert`/`tls_key` so that a wrong file is refused by `./install.sh` rather than by a server that then
fails to start under systemd.

Let's Encrypt certificates are obtained by certbot (see install.sh and docs/deployment.md); nothing here talks
to an ACME server.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Browsers refuse leaf certificates valid for longer than 825 days, even self-signed ones they were told to trust.
DEFAULT_DAYS = 825


class TlsError(Exception):
    """A certificate problem, worded for the person editing config.yaml."""


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    names: tuple[str, ...]
    not_after: datetime.datetime
    self_signed: bool

    def days_left(self, now: datetime.datetime | None = None) -> int:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).days


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def self_signed(names: Sequence[str], *, days: int = DEFAULT_DAYS) -> tuple[bytes, bytes]:
    """A P-256 key and a certificate for `names` (host names or IP addresses, the first one is the subject),
    both PEM. The certificate is its own CA (basicConstraints CA:true) so that it can be imported as trusted."""
    if not names or not all(names):
        raise TlsError("a self-signed certificate needs at least one host name or IP address")
    if not 1 <= days <= DEFAULT_DAYS:
        raise TlsError(f"days must be between 1 and {DEFAULT_DAYS} (browsers refuse longer certificates)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in dict.fromkeys(names)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file and rename, so a reload (SIGHUP) never reads half a key."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_pair(folder: Path, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Write `cert.pem` (0644) and `key.pem` (0600) into `folder`; the key is written first, so a half-done run
    never leaves a certificate without its key."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    _write(key_path, key_pem, stat.S_IRUSR | stat.S_IWUSR)
    _write(cert_path, cert_pem, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    return cert_path, key_path


def inspect(cert_path: Path, key_path: Path) -> CertificateInfo:
    """Check the pair the way the server will load it (`ssl.load_cert_chain`) and describe the certificate."""
    for what, path in (("tls_cert", cert_path), ("tls_key", key_path)):
        if not path.is_file():
            raise TlsError(f"{what}: {path} does not exist (or is not a file)")
        if not os.access(path, os.R_OK):
            raise TlsError(f"{what}: {path} is not readable by this user")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        pair = f"{cert_path} and {key_path}"
        raise TlsError(f"tls_cert/tls_key: {pair} are not a matching PEM pair ({exc.reason})") from None
    except OSError as exc:
        raise TlsError(f"tls_cert/tls_key: cannot read the pair: {exc.strerror or exc}") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise TlsError(f"tls_cert: {cert_path} is not a PEM certificate: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        names=names,
        not_after=cert.not_valid_after_utc,
        self_signed=cert.issuer == cert.subject,
    )


def covers(info: CertificateInfo, hostname: str) -> bool:
    """Whether the certificate names `hostname` (exactly, or through a one-label wildcard)."""
    host = hostname.lower().rstrip(".")
    for name in info.names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False
