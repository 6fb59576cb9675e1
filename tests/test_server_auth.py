"""Identity on a real grpc.aio server on loopback: static and JWT bearer tokens, TLS and mTLS.

A tiny ``test.Whoami/Call`` method answers with the actor :class:`Authenticator` finds, so each
test sees exactly what a servicer would record as the ledger ``actor``. The PKI (two CAs, EC
P-256) and the JWKS are generated here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from lineage_audit.server.auth import (
    AuthConfig,
    Authenticator,
    AuthError,
    TlsConfig,
    bearer_metadata,
    channel_credentials,
    hash_token,
    tls_from_mapping,
)
from lineage_audit.server.config import ConfigError
from pki import CLIENT_A, CLIENT_B, make_pki

METHOD = "/test.Whoami/Call"
TOKEN_A = "cluster-a-4f1d7c2e9b8a6d5c3e2f1a0b"  # stored in the token file as its SHA-256
TOKEN_LAPTOP = "laptop-token-0d9e8f7a6b5c4d3e"  # stored in plain
ISSUER = "https://idp.test"
AUDIENCE = "lineage-audit"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


# --- PKI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> SimpleNamespace:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- tokens and JWKS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.toml"
    path.write_text(
        f'[[token]]\nname = "inference-cluster-a"\nsha256 = "{hash_token(TOKEN_A)}"\n\n'
        f'[[token]]\nname = "laptop"\ntoken = "{TOKEN_LAPTOP}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def signers(tmp_path_factory) -> SimpleNamespace:
    """Signing keys: ``k1`` (ES256) and ``ed`` (EdDSA) are in the JWKS; ``stranger`` is not."""
    k1, ed = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    jwks = {
        "keys": [
            {**jwt.algorithms.ECAlgorithm.to_jwk(k1.public_key(), as_dict=True), "kid": "k1",
             "alg": "ES256", "use": "sig"},
            {**jwt.algorithms.OKPAlgorithm.to_jwk(ed.public_key(), as_dict=True), "kid": "ed",
             "alg": "EdDSA", "use": "sig"},
        ]
    }  # fmt: skip
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks), encoding="utf-8")
    return SimpleNamespace(
        k1=k1, ed=ed, stranger=ec.generate_private_key(ec.SECP256R1()), jwks=path
    )


def _claims(**changes) -> dict:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}  # None: leave the claim out


def _jwt(key, *, kid: str | None = "k1", alg: str = "ES256", **changes) -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(_claims(**changes), key, algorithm=alg, headers=headers)


def _b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned_jwt() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(_claims())}."


def _hs256_with_public_key(signers) -> str:
    """The key-confusion attack: HMAC keyed with the (public) verification key's PEM."""
    secret = signers.k1.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(_claims())}"
    mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return f"{head}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _tampered(signers) -> str:
    """A valid token whose payload is swapped for one naming someone else."""
    head, _, signature = _jwt(signers.k1).split(".")
    return f"{head}.{_b64(_claims(sub='mallory'))}.{signature}"


# --- the Whoami server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop in a background thread runs every server of this module."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()


def _handler(authenticator: Authenticator) -> grpc.GenericRpcHandler:
    async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            actor = authenticator.identify(context)
        except AuthError as exc:
            await context.abort(exc.code, exc.message)
        return b"" if actor is None else actor.encode()

    return grpc.method_handlers_generic_handler(
        "test.Whoami", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )


async def _start(authenticator: Authenticator, tls: TlsConfig | None):
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(authenticator),))
    address = "127.0.0.1:0"
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.server_credentials())
    await server.start()
    return server, port


@contextmanager
def whoami_server(loop, config: AuthConfig, tls: TlsConfig | None = None) -> Iterator[str]:
    authenticator = Authenticator(config, tls=tls)
    server, port = asyncio.run_coroutine_threadsafe(_start(authenticator, tls), loop).result(60)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(60)


def whoami(address: str, *, credentials=None, token: str | None = None, metadata=()) -> str | None:
    """The actor the server identified (``None``: anonymous); raises ``grpc.RpcError``."""
    if token is not None:
        metadata = (*metadata, *bearer_metadata(token))
    channel = (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(address, credentials)
    )
    with channel:
        reply = channel.unary_unary(METHOD)(b"", metadata=metadata, timeout=30)
    return reply.decode() or None


def refused(address: str, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        whoami(address, **kwargs)
    return info.value


@pytest.fixture(scope="module")
def strict(loop, tokens_file, signers) -> Iterator[str]:
    """Plaintext server, identity required, static tokens and JWTs (issuer and audience)."""
    config = AuthConfig(
        required=True, tokens=tokens_file, jwks=signers.jwks, jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )  # fmt: skip
    with whoami_server(loop, config) as address:
        yield address


@pytest.fixture(scope="module")
def optional(loop, tokens_file) -> Iterator[str]:
    with whoami_server(loop, AuthConfig(required=False, tokens=tokens_file)) as address:
        yield address


@pytest.fixture(scope="module")
def mtls(loop, pki, tokens_file) -> Iterator[str]:
    tls = TlsConfig(pki.server.cert, pki.server.key, client_ca=pki.ca)
    with whoami_server(loop, AuthConfig(required=True, tokens=tokens_file), tls) as address:
        yield address


def _client(pki, who: str | None = None, *, ca: str = "ca") -> grpc.ChannelCredentials:
    if who is None:
        return channel_credentials(ca=getattr(pki, ca))
    pair = getattr(pki, who)
    return channel_credentials(ca=getattr(pki, ca), cert=pair.cert, key=pair.key)


# --- static tokens ---------------------------------------------------------------------------


def test_each_static_token_identifies_its_caller(strict):
    assert whoami(strict, token=TOKEN_A) == "token:inference-cluster-a"  # from its sha256
    assert whoami(strict, token=TOKEN_LAPTOP) == "token:laptop"  # from the plain entry


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-the-token-0123456789abcdef", "not a known static token or a JWT"),
        (TOKEN_A + "x", "not a known static token or a JWT"),
        (TOKEN_A[:-1], "not a known static token or a JWT"),
        ("eyJub3QiOiJqc29u.eyJzdWIiOiJ4In0.c2ln", "malformed header"),  # JWT-shaped garbage
    ],
)
def test_a_wrong_token_is_refused_without_repeating_it(strict, token, reason):
    error = refused(strict, token=token)
    assert error.code() == UNAUTHENTICATED
    assert reason in error.details()
    assert token not in error.details()


def test_no_credentials_are_refused_when_identity_is_required(strict):
    error = refused(strict)
    assert error.code() == UNAUTHENTICATED
    assert error.details().startswith("no credentials: send 'authorization: Bearer <token>'")


def test_no_credentials_are_anonymous_when_identity_is_optional(optional):
    assert whoami(optional) is None
    assert whoami(optional, token=TOKEN_LAPTOP) == "token:laptop"


def test_a_token_that_is_sent_must_verify_even_when_identity_is_optional(optional):
    error = refused(optional, token="not-the-token-0123456789abcdef")
    assert error.code() == UNAUTHENTICATED
    assert "not a known static token" in error.details()


@pytest.mark.parametrize(
    "metadata",
    [
        (("authorization", f"Basic {TOKEN_A}"),),
        (("authorization", "Bearer "),),
        (("authorization", f"Bearer {TOKEN_A}"), ("authorization", f"Bearer {TOKEN_LAPTOP}")),
    ],
    ids=["basic", "empty", "twice"],
)
def test_a_malformed_authorization_header_is_refused(strict, metadata):
    error = refused(strict, metadata=metadata)
    assert error.code() == UNAUTHENTICATED
    assert error.details().startswith("authorization: ")
    assert TOKEN_A not in error.details() and TOKEN_LAPTOP not in error.details()


def test_the_allow_list_refuses_known_but_unlisted_callers(loop, tokens_file):
    config = AuthConfig(required=True, tokens=tokens_file, allow=("token:laptop",))
    with whoami_server(loop, config) as address:
        assert whoami(address, token=TOKEN_LAPTOP) == "token:laptop"
        error = refused(address, token=TOKEN_A)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'token:inference-cluster-a' is not in auth.allow" in error.details()


# --- JWT -------------------------------------------------------------------------------------


def test_a_jwt_identifies_its_issuer_and_subject(strict, signers):
    assert whoami(strict, token=_jwt(signers.k1)) == f"jwt:{ISSUER}:alice"
    assert whoami(strict, token=_jwt(signers.ed, kid="ed", alg="EdDSA", sub="bob")) == (
        f"jwt:{ISSUER}:bob"
    )
    assert whoami(strict, token=_jwt(signers.k1, kid=None, sub="carol")) == f"jwt:{ISSUER}:carol"


def test_a_jwt_without_issuer_names_the_claim_alone(loop, signers):
    config = AuthConfig(required=True, jwks=signers.jwks, actor_claim="email")
    token = _jwt(signers.k1, iss=None, aud=None, email="dana@example.test")
    with whoami_server(loop, config) as address:
        assert whoami(address, token=token) == "jwt:dana@example.test"


JWT_REFUSALS = {
    "expired": (lambda s: _jwt(s.k1, exp=int(time.time()) - 3600), "expired ('exp' is past"),
    "not-yet-valid": (lambda s: _jwt(s.k1, nbf=int(time.time()) + 3600), "not valid yet"),
    "wrong-issuer": (lambda s: _jwt(s.k1, iss="https://evil.test"), "wrong issuer"),
    "wrong-audience": (lambda s: _jwt(s.k1, aud="another-service"), "wrong audience"),
    "no-audience": (lambda s: _jwt(s.k1, aud=None), "missing required claim 'aud'"),
    "no-exp": (lambda s: _jwt(s.k1, exp=None), "missing required claim 'exp'"),
    "no-sub": (lambda s: _jwt(s.k1, sub=None), "missing required claim 'sub'"),
    "key-not-in-jwks": (lambda s: _jwt(s.stranger), "signature does not verify"),
    "key-not-in-jwks-no-kid": (lambda s: _jwt(s.stranger, kid=None), "signature does not verify"),
    "unknown-kid": (lambda s: _jwt(s.stranger, kid="k9"), "no ES256 key with kid 'k9'"),
    "tampered": (_tampered, "signature does not verify"),
    "alg-none": (lambda s: _unsigned_jwt(), "algorithm 'none' is not allowed"),
    "alg-hs256-key-confusion": (_hs256_with_public_key, "algorithm 'HS256' is not allowed"),
    "alg-mismatch": (lambda s: _jwt(s.ed, kid="k1", alg="EdDSA"), "no EdDSA key with kid 'k1'"),
}


@pytest.mark.parametrize("case", sorted(JWT_REFUSALS))
def test_an_invalid_jwt_is_refused_saying_why(strict, signers, case):
    make, reason = JWT_REFUSALS[case]
    token = make(signers)
    error = refused(strict, token=token)
    assert error.code() == UNAUTHENTICATED
    assert error.details().startswith("bearer JWT: ")
    assert reason in error.details()
    assert token not in error.details()


def test_jwts_are_not_accepted_without_a_jwks(optional, signers):
    error = refused(optional, token=_jwt(signers.k1))
    assert error.code() == UNAUTHENTICATED
    assert error.details() == "bearer token: not a known static token"


# --- TLS and mTLS ----------------------------------------------------------------------------


def test_the_client_certificate_subject_is_the_actor(mtls, pki):
    assert whoami(mtls, credentials=_client(pki, "client_a")) == f"x509:{CLIENT_A}"
    assert whoami(mtls, credentials=_client(pki, "client_b")) == f"x509:{CLIENT_B}"


def test_a_bearer_token_takes_precedence_over_the_certificate(mtls, pki):
    credentials = _client(pki, "client_a")
    assert whoami(mtls, credentials=credentials, token=TOKEN_A) == "token:inference-cluster-a"
    error = refused(mtls, credentials=credentials, token="not-the-token-0123456789abcdef")
    assert error.code() == UNAUTHENTICATED  # a bad token is not rescued by a good certificate


def test_a_certificate_from_another_ca_is_refused_and_the_server_keeps_serving(mtls, pki):
    error = refused(mtls, credentials=_client(pki, "rogue"))
    assert error.code() != grpc.StatusCode.OK
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails: no call is made
    assert whoami(mtls, credentials=_client(pki, "client_a")) == f"x509:{CLIENT_A}"


def test_tls_without_a_client_certificate_is_refused_by_an_mtls_server(mtls, pki):
    error = refused(mtls, credentials=_client(pki), token=TOKEN_A)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert whoami(mtls, credentials=_client(pki, "client_b")) == f"x509:{CLIENT_B}"


def test_a_client_that_does_not_trust_the_server_ca_is_refused(mtls, pki):
    error = refused(mtls, credentials=_client(pki, "client_a", ca="other_ca"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_plain_tls_with_a_token(loop, pki, tokens_file):
    tls = TlsConfig(pki.server.cert, pki.server.key)
    with whoami_server(loop, AuthConfig(required=True, tokens=tokens_file), tls) as address:
        assert whoami(address, credentials=_client(pki), token=TOKEN_A) == (
            "token:inference-cluster-a"
        )
        error = refused(address, credentials=_client(pki))
        # a certificate the server did not ask for (no client_ca) is never an identity
        anonymous = refused(address, credentials=_client(pki, "client_a"))
    assert error.code() == UNAUTHENTICATED
    assert anonymous.code() == UNAUTHENTICATED
    assert "no credentials" in anonymous.details()


# --- configuration ---------------------------------------------------------------------------


TOKEN_FILES = {
    "bad-toml": ('[[token]\nname = "a"', "is not valid TOML"),
    "empty": ("", "has no [[token]] entries"),
    "duplicate-name": (
        f'[[token]]\nname = "a"\nsha256 = "{hash_token(TOKEN_A)}"\n'
        f'[[token]]\nname = "a"\ntoken = "{TOKEN_LAPTOP}"\n',
        "token[1].name: duplicate name",
    ),
    "duplicate-token": (
        f'[[token]]\nname = "a"\nsha256 = "{hash_token(TOKEN_LAPTOP)}"\n'
        f'[[token]]\nname = "b"\ntoken = "{TOKEN_LAPTOP}"\n',
        "token[1]: same token as 'a'",
    ),
    "both": (
        f'[[token]]\nname = "a"\nsha256 = "{hash_token(TOKEN_A)}"\ntoken = "{TOKEN_LAPTOP}"\n',
        "token[0]: give exactly one of 'sha256' and 'token'",
    ),
    "short": ('[[token]]\nname = "a"\ntoken = "hunter2"\n', "token[0].token: expected a string"),
    "bad-hash": ('[[token]]\nname = "a"\nsha256 = "abc"\n', "token[0].sha256: expected 64 hex"),
    "unknown-key": (
        f'[[token]]\nname = "a"\ntoken = "{TOKEN_LAPTOP}"\nrole = "admin"\n',
        "token[0]: unknown key 'role'",
    ),
    "no-name": (f'[[token]]\ntoken = "{TOKEN_LAPTOP}"\n', "token[0].name: expected a name"),
}


@pytest.mark.parametrize("case", sorted(TOKEN_FILES))
def test_a_bad_token_file_names_auth_tokens(tmp_path, case):
    text, problem = TOKEN_FILES[case]
    path = tmp_path / "tokens.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Authenticator(AuthConfig(tokens=path))
    assert info.value.field == "auth.tokens"
    assert problem in str(info.value)
    assert TOKEN_LAPTOP not in str(info.value) and "hunter2" not in str(info.value)


def test_a_missing_file_names_its_key(tmp_path, pki):
    missing = tmp_path / "nowhere.toml"
    for config, field in (
        (AuthConfig(tokens=missing), "auth.tokens"),
        (AuthConfig(jwks=missing), "auth.jwks"),
    ):
        with pytest.raises(ConfigError, match="cannot read") as info:
            Authenticator(config)
        assert info.value.field == field
        assert str(missing) in str(info.value)
    with pytest.raises(ConfigError) as info:
        tls_from_mapping({"cert": str(missing), "key": str(pki.server.key)}, base=None)
    assert info.value.field == "tls.cert"


def test_auth_config_from_mapping(tmp_path, tokens_file):
    config = AuthConfig.from_mapping(
        {"required": True, "tokens": tokens_file.name, "jwt_algorithms": ["ES256"],
         "allow": ["token:laptop"]},
        base=tokens_file.parent,
    )  # fmt: skip
    assert config.tokens == tokens_file and config.required
    assert config.jwt_algorithms == ("ES256",) and config.allow == ("token:laptop",)
    assert AuthConfig.from_mapping({"jwks": "/abs/jwks.json"}, base=tmp_path).jwks == Path(
        "/abs/jwks.json"
    )


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"tokenz": "tokens.toml"}, "auth.tokenz"),
        ({"required": "yes"}, "auth.required"),
        ({"tokens": 5}, "auth.tokens"),
        ({"jwt_algorithms": ["HS256"]}, "auth.jwt_algorithms"),
        ({"jwt_algorithms": ["none"]}, "auth.jwt_algorithms"),
        ({"jwt_algorithms": "ES256"}, "auth.jwt_algorithms"),
        ({"jwt_issuer": ISSUER}, "auth.jwt_issuer"),  # without auth.jwks
        ({"actor_claim": ""}, "auth.actor_claim"),
    ],
)
def test_a_bad_auth_table_names_the_key(tmp_path, table, field):
    with pytest.raises(ConfigError) as info:
        AuthConfig.from_mapping(table, base=tmp_path)
    assert info.value.field == field


def test_required_auth_without_any_credential_source_is_a_config_error(pki):
    with pytest.raises(ConfigError) as info:
        Authenticator(AuthConfig(required=True), tls=TlsConfig(pki.server.cert, pki.server.key))
    assert info.value.field == "auth.required"
    assert not Authenticator(AuthConfig()).enabled
    mtls = TlsConfig(pki.server.cert, pki.server.key, client_ca=pki.ca)
    assert Authenticator(AuthConfig(required=True), tls=mtls).enabled


@pytest.mark.parametrize(
    ("jwks", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('{"kid": "k1"}', 'expected a JWK Set {"keys": [...]}'),
        ('{"keys": []}', "has no signing key for ['ES256', 'RS256', 'EdDSA']"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "private or secret key material ('k')"),
        ('{"keys": [{"kty": "EC", "crv": "P-256"}]}', "keys[0]: not a usable public key"),
    ],
)
def test_a_bad_jwks_names_auth_jwks(tmp_path, jwks, problem):
    path = tmp_path / "jwks.json"
    path.write_text(jwks, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Authenticator(AuthConfig(jwks=path))
    assert info.value.field == "auth.jwks"
    assert problem in str(info.value)


def test_a_jwks_holding_a_private_key_is_refused(tmp_path, signers):
    private = jwt.algorithms.ECAlgorithm.to_jwk(signers.k1, as_dict=True)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [private]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"private or secret key material \('d'\)") as info:
        Authenticator(AuthConfig(jwks=path))
    assert info.value.field == "auth.jwks"


def test_tls_from_mapping(pki):
    assert tls_from_mapping(None, base=None) is None
    tls = tls_from_mapping(
        {"cert": pki.server.cert.name, "key": pki.server.key.name, "client_ca": pki.ca.name},
        base=pki.ca.parent,
    )
    assert tls == TlsConfig(pki.server.cert, pki.server.key, client_ca=pki.ca)
    assert isinstance(tls.server_credentials(), grpc.ServerCredentials)


@pytest.mark.parametrize(
    ("table", "field", "problem"),
    [
        ({"cert": "server.pem", "key": "server.key", "ca": "ca.pem"}, "tls.ca", "unknown key"),
        ({"cert": "server.pem"}, "tls.key", "missing"),
        ({"cert": "server.key", "key": "server.key"}, "tls.cert", "holds no PEM certificate"),
        ({"cert": "server.pem", "key": "server.pem"}, "tls.key", "not an unencrypted PEM"),
        ({"cert": "server.pem", "key": "client-a.key"}, "tls.key", "is not the key of"),
        (
            {"cert": "server.pem", "key": "server.key", "client_ca": "server.key"},
            "tls.client_ca",
            "holds no PEM certificate",
        ),
    ],
)
def test_a_bad_tls_table_names_the_key(pki, table, field, problem):
    with pytest.raises(ConfigError) as info:
        tls_from_mapping(table, base=pki.ca.parent)
    assert info.value.field == field
    assert problem in str(info.value)


def test_client_helpers(pki):
    assert bearer_metadata("abc") == (("authorization", "Bearer abc"),)
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(ConfigError) as info:
        channel_credentials(ca=pki.ca, cert=pki.client_a.cert)
    assert info.value.field == "key"
