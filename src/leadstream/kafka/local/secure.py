"""What a secured local cluster needs: a CA, a certificate per broker and one for a client
(mutual TLS), SCRAM users, and the client properties files that say how to connect.

Everything is made once per cluster home, under ``home/secure/`` (private keys and
passwords with mode 0600), and kept: a restarted broker keeps its certificate, and SCRAM
users live in the cluster's metadata from the moment its storage is formatted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["BROKER_USER", "CLIENT_USER", "SecureMaterial", "make_ca", "write_private"]

# The SASL user leadstream's clients log in as, and the brokers' own (inter-broker) user.
CLIENT_USER = "leadstream"
BROKER_USER = "broker"
# A test or dev cluster: long enough never to expire under it, short enough to be a toy.
_VALIDITY = dt.timedelta(days=825)


def write_private(path: Path, data: bytes) -> None:
    """Write a key or a password file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8 unencrypted: what Kafka's PEM keystore, librdkafka and Python's ssl all read.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed certificate authority."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
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
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    name: str,
    *,
    hosts: list[str],
    server: bool,
) -> tuple[bytes, bytes]:
    """A certificate signed by ``ca`` (for the given host names / addresses), and its key."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage if server else usage[1:]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)


@dataclass(frozen=True)
class SecureMaterial:
    """The files of a secured local cluster, under ``root`` (``home/secure``)."""

    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        return self.root / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.root / "client.key"

    @property
    def sasl_properties(self) -> Path:
        """A client properties file for the SASL_SSL listener (SCRAM-SHA-512)."""
        return self.root / "client-sasl-ssl.properties"

    @property
    def mtls_properties(self) -> Path:
        """A client properties file for the mutual-TLS listener."""
        return self.root / "client-mtls.properties"

    def broker_keystore(self, node_id: int) -> Path:
        """The PEM keystore of one broker: its key, then its certificate."""
        return self.root / f"broker-{node_id}.keystore.pem"

    def passwords(self) -> dict[str, str]:
        return dict(json.loads((self.root / "users.json").read_text()))

    def ensure(self, host: str, node_ids: list[int]) -> None:
        """Make whatever is missing: the CA, each broker's keystore, the client's
        certificate, the users' passwords."""
        self.root.mkdir(parents=True, exist_ok=True)
        users = self.root / "users.json"
        if not users.is_file():
            write_private(
                users,
                json.dumps(
                    {BROKER_USER: secrets.token_urlsafe(24), CLIENT_USER: secrets.token_urlsafe(24)}
                ).encode(),
            )
        ca_key_file = self.root / "ca.key"
        if not ca_key_file.is_file():
            key, cert = make_ca("leadstream local cluster CA")
            write_private(ca_key_file, _key_pem(key))
            self.ca_file.write_bytes(_cert_pem(cert))
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{ca_key_file} is not the EC key this module makes")
        ca = (ca_key, x509.load_pem_x509_certificate(self.ca_file.read_bytes()))
        hosts = sorted({host, "localhost", "127.0.0.1"})
        for node_id in node_ids:
            keystore = self.broker_keystore(node_id)
            if not keystore.is_file():
                cert_pem, key_pem = _leaf(ca, f"broker-{node_id}", hosts=hosts, server=True)
                write_private(keystore, key_pem + cert_pem)
        if not self.client_key_file.is_file():
            cert_pem, key_pem = _leaf(ca, CLIENT_USER, hosts=[], server=False)
            write_private(self.client_key_file, key_pem)
            self.client_cert_file.write_bytes(cert_pem)

    def write_client_properties(self, sasl_bootstrap: str, mtls_bootstrap: str) -> None:
        """The two ways in, as files of the kind managed services hand out."""
        password = self.passwords()[CLIENT_USER]
        write_private(
            self.sasl_properties,
            "\n".join(
                [
                    "# leadstream local cluster: SASL_SSL (SCRAM-SHA-512)",
                    f"bootstrap.servers={sasl_bootstrap}",
                    "security.protocol=SASL_SSL",
                    "sasl.mechanism=SCRAM-SHA-512",
                    f"sasl.username={CLIENT_USER}",
                    f"sasl.password={password}",
                    f"ssl.ca.location={self.ca_file}",
                    "",
                ]
            ).encode(),
        )
        write_private(
            self.mtls_properties,
            "\n".join(
                [
                    "# leadstream local cluster: mutual TLS",
                    f"bootstrap.servers={mtls_bootstrap}",
                    "security.protocol=SSL",
                    f"ssl.ca.location={self.ca_file}",
                    f"ssl.certificate.location={self.client_cert_file}",
                    f"ssl.key.location={self.client_key_file}",
                    "",
                ]
            ).encode(),
        )

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users."""
        arguments = []
        for user, password in self.passwords().items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                arguments += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return arguments

    def server_properties(self, node_id: int) -> dict[str, str]:
        """The broker settings of the SASL_SSL listener (also the inter-broker one) and of
        the mutual-TLS listener named MTLS."""
        passwords = self.passwords()
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in passwords.items())
        broker_login = f'username="{BROKER_USER}" password="{passwords[BROKER_USER]}"'
        scram = f"org.apache.kafka.common.security.scram.ScramLoginModule required {broker_login};"
        return {
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f"{broker_login} {plain_users};"
            ),
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.broker_keystore(node_id)),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
        }
