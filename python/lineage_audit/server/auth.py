"""Transport security and caller identity: TLS/mTLS credentials, bearer tokens, the actor.

The identity of a call becomes the ``actor`` of every ledger record it causes (DESIGN §7).
:meth:`Authenticator.identify` looks, in this order, at:

1. ``authorization: Bearer <token>`` metadata. When present it must verify, whatever else
   the call carries: a static token from the token file gives ``token:<name>``; a JWT that
   verifies against the local JWKS gives ``jwt:<iss>:<sub>`` (``jwt:<sub>`` without ``iss``;
   the claim is ``auth.actor_claim``).
2. the mTLS client certificate (verified by the TLS handshake against ``tls.client_ca``):
   ``x509:<subject as RFC 4514>``, e.g. ``x509:CN=ingest-7,O=Example``.
3. nothing: ``None`` when auth is optional, UNAUTHENTICATED when ``auth.required``.

Config (TOML tables beside ``[server]``; relative paths are resolved against the config
file's folder)::

    [tls]
    cert = "tls/server.pem"       # server certificate chain (PEM)
    key = "tls/server.key"        # its private key (PEM, unencrypted)
    client_ca = "tls/clients.pem" # optional: mTLS, client certificates required and verified

    [auth]
    required = true               # refuse calls without an identity
    tokens = "tokens.toml"        # optional: static bearer tokens
    jwks = "jwks.json"            # optional: JWT bearer tokens, checked against this file only
    jwt_issuer = "https://idp.example"   # optional: 'iss' must equal this
    jwt_audience = "lineage-audit"       # optional: 'aud' must contain this
    jwt_algorithms = ["ES256", "RS256", "EdDSA"]
    actor_claim = "sub"
    allow = ["token:ci", "x509:CN=ingest-7"]   # optional: only these (else PERMISSION_DENIED)

The static token file holds one ``[[token]]`` table per caller::

    [[token]]
    name = "inference-cluster-a"   # the actor becomes "token:inference-cluster-a"
    sha256 = "<hex SHA-256 of the token>"   # preferred: then the file holds no secret
    # or: token = "<the token itself>"     (allowed, e.g. on a laptop)

:func:`hash_token` computes the ``sha256`` value. JWTs must carry ``exp``; ``exp`` and ``nbf``
get 30 s of leeway; only asymmetric algorithms are accepted, and the JWKS is read once, never
fetched. Error messages say why a credential was refused and never repeat the token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import describe
from .config import ConfigError
from .errors import RequestError

__all__ = [
    "JWT_ALGORITHMS",
    "AuthConfig",
    "AuthError",
    "Authenticator",
    "TlsConfig",
    "bearer_metadata",
    "channel_credentials",
    "hash_token",
    "tls_from_mapping",
]

# Asymmetric only: a symmetric (HS*) key in a JWKS would be a shared secret, and accepting
# HS* next to RS*/ES* invites the key-confusion attack.
JWT_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
JWT_LEEWAY_SECONDS = 30
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_MIN_PLAIN_TOKEN = 16  # characters; shorter tokens are guessable


class AuthError(RequestError):
    """A call refused for its credentials: UNAUTHENTICATED, or PERMISSION_DENIED."""

    @property
    def http_status(self) -> int:
        """The same refusal on the HTTP side: 403 for PERMISSION_DENIED, else 401."""
        return 403 if self.code == grpc.StatusCode.PERMISSION_DENIED else 401


def _unauthenticated(message: str) -> AuthError:
    return AuthError(grpc.StatusCode.UNAUTHENTICATED, message)


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: the ``sha256`` value of a token file entry."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- TLS -------------------------------------------------------------------------------------


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc


def _read_certs(path: Path, field: str) -> tuple[bytes, list[x509.Certificate]]:
    data = _read(path, field)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(field, f"{str(path)!r} holds no PEM certificate") from exc
    return data, certs


def _read_key(path: Path, field: str) -> tuple[bytes, Any]:
    data = _read(path, field)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: encrypted, which grpc cannot use
        raise ConfigError(field, f"{str(path)!r} is not an unencrypted PEM private key") from exc
    return data, key


def _public_der(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class TlsConfig:
    """Server TLS. With ``client_ca``: mTLS, client certificates required and verified."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def load(self) -> tuple[bytes, bytes, bytes | None]:
        """The PEM bytes (cert chain, key, client CA), checked: readable, PEM, key fits cert."""
        cert_pem, certs = _read_certs(self.cert, "tls.cert")
        key_pem, key = _read_key(self.key, "tls.key")
        if _public_der(key.public_key()) != _public_der(certs[0].public_key()):
            raise ConfigError(
                "tls.key", f"{str(self.key)!r} is not the key of the first certificate in tls.cert"
            )
        ca_pem = None
        if self.client_ca is not None:
            ca_pem, _ = _read_certs(self.client_ca, "tls.client_ca")
        return cert_pem, key_pem, ca_pem

    def ssl_context(self) -> ssl.SSLContext:
        """The same certificate, key and client CA for the HTTP side (TLS 1.2 or later; with
        ``client_ca`` a client certificate is required there too)."""
        self.load()  # the same checks and messages as for gRPC
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=str(self.client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def server_credentials(self) -> grpc.ServerCredentials:
        cert_pem, key_pem, ca_pem = self.load()
        return grpc.ssl_server_credentials(
            [(key_pem, cert_pem)],
            root_certificates=ca_pem,
            require_client_auth=ca_pem is not None,
        )


def _path(value: object, field: str, base: Path | None) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(field, "expected a file path (string)", value)
    path = Path(value)
    return base / path if base is not None and not path.is_absolute() else path


def _check_keys(data: Mapping[str, Any], known: set[str], table: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{table}.{unknown[0]}", f"unknown key; known: {sorted(known)}")


def tls_from_mapping(data: Mapping[str, Any] | None, *, base: Path | None) -> TlsConfig | None:
    """The ``[tls]`` table as a checked :class:`TlsConfig`; ``None`` if the table is absent."""
    if data is None:
        return None
    _check_keys(data, {"cert", "key", "client_ca"}, "tls")
    for key in ("cert", "key"):
        if key not in data:
            raise ConfigError(f"tls.{key}", "missing (path of a PEM file)")
    client_ca = data.get("client_ca")
    tls = TlsConfig(
        cert=_path(data["cert"], "tls.cert", base),
        key=_path(data["key"], "tls.key", base),
        client_ca=None if client_ca is None else _path(client_ca, "tls.client_ca", base),
    )
    tls.load()  # fail at startup, naming the key, rather than at bind time
    return tls


# --- auth config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthConfig:
    """Where identities come from (besides mTLS, which :class:`TlsConfig` turns on)."""

    required: bool = False
    tokens: Path | None = None
    jwks: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: tuple[str, ...] = ("ES256", "RS256", "EdDSA")
    actor_claim: str = "sub"
    allow: tuple[str, ...] = ()  # empty: every identified caller may call

    def __post_init__(self) -> None:
        if not isinstance(self.required, bool):
            raise ConfigError("auth.required", "expected true or false", self.required)
        for key in ("jwt_issuer", "jwt_audience"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"auth.{key}", "expected a non-empty string", value)
            if value is not None and self.jwks is None:
                raise ConfigError(f"auth.{key}", "set, but auth.jwks is not")
        algorithms = self.jwt_algorithms
        if not algorithms or any(
            not isinstance(a, str) or a not in JWT_ALGORITHMS for a in algorithms
        ):
            raise ConfigError(
                "auth.jwt_algorithms", f"expected some of {sorted(JWT_ALGORITHMS)}", algorithms
            )
        if not isinstance(self.actor_claim, str) or not self.actor_claim:
            raise ConfigError("auth.actor_claim", "expected a claim name", self.actor_claim)
        if any(not isinstance(a, str) or not a for a in self.allow):
            raise ConfigError("auth.allow", "expected a list of actor strings", self.allow)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: Path | None) -> AuthConfig:
        """The ``[auth]`` table; relative paths are resolved against ``base``."""
        _check_keys(data, set(cls.__dataclass_fields__), "auth")
        values = dict(data)
        for key in ("tokens", "jwks"):
            if key in values:
                values[key] = _path(values[key], f"auth.{key}", base)
        for key in ("jwt_algorithms", "allow"):
            if key in values:
                if not isinstance(values[key], list):
                    raise ConfigError(f"auth.{key}", "expected a list of strings", values[key])
                values[key] = tuple(values[key])
        return cls(**values)


# --- static tokens ---------------------------------------------------------------------------


def _load_toml(path: Path, field: str) -> dict[str, Any]:
    text = _read(path, field)
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # tomllib's message gives line and column, not the content (the file may hold tokens)
        raise ConfigError(field, f"{str(path)!r} is not valid TOML: {exc}") from exc


def _token_digest(entry: Any, where: str, field: str) -> bytes:
    """The SHA-256 digest of one ``[[token]]`` entry (never echoes a plain token)."""
    if not isinstance(entry, dict):
        raise ConfigError(field, f"{where}: expected a table")
    extra = sorted(set(entry) - {"name", "sha256", "token"})
    if extra:
        raise ConfigError(field, f"{where}: unknown key {extra[0]!r}; known: name, sha256, token")
    if ("sha256" in entry) == ("token" in entry):
        raise ConfigError(field, f"{where}: give exactly one of 'sha256' and 'token'")
    if "sha256" in entry:
        digest = entry["sha256"]
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ConfigError(field, f"{where}.sha256: expected 64 hex digits")
        return bytes.fromhex(digest)
    token = entry["token"]
    if not isinstance(token, str) or len(token) < _MIN_PLAIN_TOKEN:
        raise ConfigError(
            field, f"{where}.token: expected a string of at least {_MIN_PLAIN_TOKEN} characters"
        )
    return hashlib.sha256(token.encode("utf-8")).digest()


def load_tokens(path: Path, field: str = "auth.tokens") -> dict[bytes, str]:
    """The token file as SHA-256 digest -> name; names and tokens must be unique."""
    data = _load_toml(path, field)
    extra = sorted(set(data) - {"token"})
    if extra:
        raise ConfigError(field, f"{str(path)!r}: unknown key {extra[0]!r}; expected [[token]]")
    entries = data.get("token", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(field, f"{str(path)!r} has no [[token]] entries")
    tokens: dict[bytes, str] = {}
    for i, entry in enumerate(entries):
        where = f"{str(path)!r} token[{i}]"
        digest = _token_digest(entry, where, field)
        name = entry.get("name")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError(field, f"{where}.name: expected a name without spaces", name)
        if name in tokens.values():
            raise ConfigError(field, f"{where}.name: duplicate name", name)
        if digest in tokens:
            raise ConfigError(field, f"{where}: same token as {tokens[digest]!r}")
        tokens[digest] = name
    return tokens


# --- JWKS ------------------------------------------------------------------------------------

_PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def _load_jwk(entry: Any, where: str, allowed: tuple[str, ...]) -> jwt.PyJWK | None:
    """One JWKS entry as a verification key; ``None`` if it is not for these algorithms."""
    if not isinstance(entry, dict):
        raise ConfigError("auth.jwks", f"{where}: expected a JSON object")
    secret = sorted(_PRIVATE_JWK_MEMBERS & set(entry))
    if secret:
        raise ConfigError(
            "auth.jwks", f"{where} holds private or secret key material ({secret[0]!r}); "
            "give the public key only"
        )  # fmt: skip
    alg = entry.get("alg")
    if entry.get("use", "sig") != "sig" or (alg is not None and alg not in allowed):
        return None  # an encryption key, or one for algorithms this server does not accept
    try:
        key = jwt.PyJWK(entry)
    except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
        raise ConfigError(
            "auth.jwks", f"{where}: not a usable public key ({describe(str(exc), 120)})"
        ) from exc
    return key if key.algorithm_name in allowed else None


def load_jwks(path: Path, allowed: tuple[str, ...]) -> list[jwt.PyJWK]:
    """The public signing keys of a local JWKS file for the ``allowed`` algorithms."""
    text = _read(path, "auth.jwks")
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("auth.jwks", f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ConfigError("auth.jwks", f'{str(path)!r}: expected a JWK Set {{"keys": [...]}}')
    keys: list[jwt.PyJWK] = []
    for i, entry in enumerate(data["keys"]):
        key = _load_jwk(entry, f"{str(path)!r} keys[{i}]", allowed)
        if key is None:
            continue
        if key.key_id is not None and any(k.key_id == key.key_id for k in keys):
            raise ConfigError("auth.jwks", f"{str(path)!r} keys[{i}]: duplicate kid", key.key_id)
        keys.append(key)
    if not keys:
        raise ConfigError(
            "auth.jwks",
            f"{str(path)!r} has no signing key for {list(allowed)} (auth.jwt_algorithms)",
        )
    return keys


_JWT_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, f"expired ('exp' is past, beyond {JWT_LEEWAY_SECONDS} s leeway)"),
    (jwt.ImmatureSignatureError, "not valid yet ('nbf' or 'iat' is in the future)"),
    (jwt.InvalidIssuerError, "wrong issuer ('iss')"),
    (jwt.InvalidAudienceError, "wrong audience ('aud')"),
    (jwt.InvalidSignatureError, "signature does not verify with the JWKS key"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.DecodeError, "malformed"),
)


def _jwt_refusal(exc: jwt.InvalidTokenError) -> AuthError:
    # Our own wording: PyJWT's messages are not promised to leave the token out.
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return _unauthenticated(f"bearer JWT: missing required claim {exc.claim!r}")
    for kind, reason in _JWT_REFUSALS:
        if isinstance(exc, kind):
            return _unauthenticated(f"bearer JWT: {reason}")
    return _unauthenticated(f"bearer JWT: invalid ({type(exc).__name__})")


# --- the authenticator -----------------------------------------------------------------------


class Authenticator:
    """Turns a call's credentials into its actor (see the module docstring for the order)."""

    def __init__(self, config: AuthConfig, *, tls: TlsConfig | None = None) -> None:
        self.config = config
        self.mtls = tls is not None and tls.client_ca is not None
        self._tokens = load_tokens(config.tokens) if config.tokens is not None else {}
        self._jwks = (
            load_jwks(config.jwks, config.jwt_algorithms) if config.jwks is not None else []
        )
        if config.required and not self.enabled:
            raise ConfigError(
                "auth.required", "true, but no credential source: set auth.tokens, auth.jwks "
                "or tls.client_ca"
            )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return bool(self._tokens or self._jwks or self.mtls)

    def identify(self, context: grpc.aio.ServicerContext) -> str | None:
        """The caller's actor, ``None`` if anonymous and allowed; raises :class:`AuthError`."""
        token = _bearer(context)
        actor = self._token_actor(token) if token is not None else self._certificate_actor(context)
        if actor is None:
            if self.config.required:
                raise _unauthenticated(
                    "no credentials: send 'authorization: Bearer <token>' metadata or a "
                    "client certificate"
                )
            return None
        if self.config.allow and actor not in self.config.allow:
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED, f"{actor!r} is not in auth.allow")
        return actor

    def identify_header(self, authorization: str | None) -> str | None:
        """The actor of an HTTP request from its ``Authorization`` header (bearer tokens
        only: the HTTP side has no client certificates); same rules as :meth:`identify`."""
        actor = None
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthenticated("authorization: expected 'Bearer <token>'")
            actor = self._token_actor(token.strip())
        if actor is None:
            if self.config.required:
                raise _unauthenticated("no credentials: send 'Authorization: Bearer <token>'")
            return None
        if self.config.allow and actor not in self.config.allow:
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED, f"{actor!r} is not in auth.allow")
        return actor

    def _token_actor(self, token: str) -> str:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        name = None
        for known, known_name in self._tokens.items():  # no early exit: same time for every entry
            if hmac.compare_digest(digest, known):
                name = known_name
        if name is not None:
            return f"token:{name}"
        if _JWT_SHAPE.match(token) and self._jwks:
            return self._jwt_actor(token)
        if not self._tokens and not self._jwks:
            raise _unauthenticated(
                "bearer token: this server accepts none (no auth.tokens or auth.jwks configured)"
            )
        what = "a known static token or a JWT" if self._jwks else "a known static token"
        raise _unauthenticated(f"bearer token: not {what}")

    def _jwt_actor(self, token: str) -> str:
        claims = self._verify_jwt(token)
        value = claims.get(self.config.actor_claim)
        if not isinstance(value, str) or not value:
            raise _unauthenticated(
                f"bearer JWT: claim {self.config.actor_claim!r} is not a non-empty string"
            )
        issuer = claims.get("iss")
        if issuer is None:
            return f"jwt:{value}"
        if not isinstance(issuer, str) or not issuer:
            raise _unauthenticated("bearer JWT: claim 'iss' is not a non-empty string")
        return f"jwt:{issuer}:{value}"

    def _verify_jwt(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise _unauthenticated("bearer JWT: malformed header") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.config.jwt_algorithms:
            raise _unauthenticated(
                f"bearer JWT: algorithm {describe(alg, 20)} is not allowed; "
                f"allowed: {list(self.config.jwt_algorithms)}"
            )
        keys = [k for k in self._jwks if k.algorithm_name == alg]
        if kid is not None:
            keys = [k for k in keys if k.key_id == kid]
        if not keys:
            raise _unauthenticated(
                f"bearer JWT: the JWKS has no {alg} key"
                + ("" if kid is None else f" with kid {describe(kid, 40)}")
            )
        failure: jwt.InvalidTokenError | None = None
        for key in keys:  # several only when the token names no kid
            try:
                return self._decode(token, key, alg)
            except jwt.InvalidSignatureError as exc:
                failure = exc
            except jwt.InvalidTokenError as exc:
                raise _jwt_refusal(exc) from None  # `from None`: keep the token out of tracebacks
        assert failure is not None
        raise _jwt_refusal(failure) from None

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        config = self.config
        return jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            issuer=config.jwt_issuer,
            audience=config.jwt_audience,
            leeway=JWT_LEEWAY_SECONDS,
            options={
                "require": ["exp", config.actor_claim],
                "verify_aud": config.jwt_audience is not None,
            },
        )

    def _certificate_actor(self, context: grpc.aio.ServicerContext) -> str | None:
        # Trusted only when this server verifies client certificates (tls.client_ca).
        if not self.mtls:
            return None
        pems = (context.auth_context() or {}).get("x509_pem_cert") or []
        if not pems:
            return None
        try:
            certificate = x509.load_pem_x509_certificate(pems[0])
        except ValueError as exc:
            raise _unauthenticated("client certificate: not parseable") from exc
        subject = certificate.subject.rfc4514_string()
        if not subject:
            raise _unauthenticated("client certificate: empty subject")
        return f"x509:{subject}"


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    """The bearer token of the call's metadata; ``None`` if there is no authorization entry."""
    values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise _unauthenticated("authorization: sent more than once")
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("authorization: expected 'Bearer <token>'")
    return token


# --- client side -----------------------------------------------------------------------------


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that presents ``token``: pass as ``metadata=`` to a stub call."""
    return (("authorization", f"Bearer {token}"),)


def channel_credentials(
    *, ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials: trust ``ca`` (system roots if ``None``); with ``cert`` and
    ``key``, present that client certificate (mTLS)."""
    if (cert is None) != (key is None):
        raise ConfigError("cert" if cert is None else "key", "give both cert and key, or neither")
    ca_pem = None if ca is None else _read_certs(Path(ca), "ca")[0]
    cert_pem = key_pem = None
    if cert is not None and key is not None:
        cert_pem = _read_certs(Path(cert), "cert")[0]
        key_pem = _read_key(Path(key), "key")[0]
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
