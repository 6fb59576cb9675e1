"""C2PA check: read an asset's Content Credentials with ``c2pa-python``, offline.

Every read uses :func:`offline_settings`: no remote manifest fetch, no OCSP fetch, no
network host allowed at all, trust verified, and trust anchors only those pinned by the
caller. The library's verdict maps to a state:

======================  ==============================================================
library says            state
======================  ==============================================================
``Trusted``             ``trusted`` (signer chains to a pinned anchor)
``Valid``               ``valid`` (intact and signed, signer not on the trust list)
``Invalid``             ``invalid`` with every failure code (a tamper *finding*)
no manifest             ``opaque``
remote-only manifest    ``unverifiable`` (fetching it is disabled)
format not supported    ``unverifiable``
manifest unreadable     ``invalid`` (C2PA data or container the library cannot parse)
======================  ==============================================================
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import ProvenanceError, ProvenanceInputError
from .model import CheckResult

__all__ = ["OFFLINE_SETTINGS", "c2pa_tool", "check_c2pa", "offline_settings"]

#: Forced into every settings document the check builds; a settings file may repeat these
#: values but not contradict them.
OFFLINE_SETTINGS: dict[str, dict[str, Any]] = {
    "verify": {
        "remote_manifest_fetch": False,
        "ocsp_fetch": False,
        "verify_after_reading": True,
        "verify_trust": True,
    },
    "core": {"allowed_network_hosts": []},
}

# The library's error kinds (the text before the first ": " of its message).
_NO_MANIFEST = {"ManifestNotFound"}
_REMOTE = {"Remote", "RemoteManifest"}
_NOT_SUPPORTED = {"NotSupported"}
_CALLER = {"Io", "FileNotFound", "Encoding", "UntrackedPointer", "WrongPointerType"}
_HASH_CHUNK = 1 << 20


def c2pa_tool() -> str:
    """``c2pa-python X (c2pa-rs Y)``: the binding and the Rust SDK inside it."""
    import c2pa

    return f"c2pa-python {version('c2pa-python')} (c2pa-rs {c2pa.sdk_version()})"


def _anchor_certificates(pem: str, field: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise ProvenanceInputError(field, f"not a PEM certificate bundle: {exc}") from None
    return certificates


def _describe_anchor(certificate: x509.Certificate) -> dict[str, str]:
    return {
        "subject": certificate.subject.rfc4514_string(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
    }


def _load_settings_file(settings: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        document = json.loads(Path(settings).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"not a JSON document: {exc}"
        raise ProvenanceInputError("settings", problem, str(settings)) from None
    if not isinstance(document, dict):
        raise ProvenanceInputError("settings", "expected a JSON object", str(settings))
    for section, forced in OFFLINE_SETTINGS.items():
        given = document.get(section, {})
        if not isinstance(given, dict):
            raise ProvenanceInputError(f"settings.{section}", "expected an object", given)
        for key, value in forced.items():
            if key in given and given[key] != value:
                raise ProvenanceInputError(
                    f"settings.{section}.{key}",
                    f"must be {json.dumps(value)}: C2PA checks run offline with trust verified",
                    given[key],
                )
    trust = document.get("trust", {})
    if not isinstance(trust, dict):
        raise ProvenanceInputError("settings.trust", "expected an object", trust)
    return document


def offline_settings(
    trust_anchors: str | os.PathLike[str] | None = None,
    settings: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The c2pa settings document a check passes to the library.

    ``settings`` is a c2pa settings JSON file (for example a ``trust`` section with
    ``trust_anchors`` and ``trust_config``); it may not turn network access or trust
    verification back on. ``trust_anchors`` is a PEM file of root (or intermediate) CA
    certificates; it is appended to any ``trust.trust_anchors`` of the settings file. Only
    these anchors are trusted: a signer that does not chain to one is ``valid``, never
    ``trusted``.
    """
    document = _load_settings_file(settings) if settings is not None else {}
    document = copy.deepcopy(document)
    for section, forced in OFFLINE_SETTINGS.items():
        document.setdefault(section, {}).update(copy.deepcopy(forced))
    trust = document.setdefault("trust", {})
    if trust.get("trust_anchors") is not None:
        if not isinstance(trust["trust_anchors"], str):
            raise ProvenanceInputError(
                "settings.trust.trust_anchors", "expected a PEM string", trust["trust_anchors"]
            )
        _anchor_certificates(trust["trust_anchors"], "settings.trust.trust_anchors")
    if trust_anchors is not None:
        pem = Path(trust_anchors).read_text(encoding="ascii", errors="replace")
        if not _anchor_certificates(pem, "trust_anchors"):
            raise ProvenanceInputError("trust_anchors", "no certificate found", str(trust_anchors))
        existing = trust.get("trust_anchors") or ""
        trust["trust_anchors"] = existing + ("\n" if existing else "") + pem
    if not trust:
        del document["trust"]
    return document


def _pinned_anchors(document: dict[str, Any]) -> list[dict[str, str]]:
    trust = document.get("trust") or {}
    pinned = []
    for key in ("trust_anchors", "user_anchors", "allowed_list"):
        if isinstance(trust.get(key), str):
            certificates = _anchor_certificates(trust[key], f"settings.trust.{key}")
            pinned += [{**_describe_anchor(c), "as": key} for c in certificates]
    return pinned


def _settings_summary(document: dict[str, Any]) -> dict[str, Any]:
    """The settings as recorded: PEM bundles replaced by their certificates' fingerprints."""
    summary = copy.deepcopy(document)
    trust = summary.get("trust") or {}
    for key in ("trust_anchors", "user_anchors", "allowed_list"):
        if isinstance(trust.get(key), str):
            certificates = _anchor_certificates(trust[key], f"settings.trust.{key}")
            trust[key] = [_describe_anchor(c)["sha256"] for c in certificates]
    if isinstance(trust.get("trust_config"), str):
        trust["trust_config"] = hashlib.sha256(trust["trust_config"].encode()).hexdigest()
    return summary


def _hash_file(handle) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    handle.seek(0)
    return digest.hexdigest(), size


def _error_kind(error: Exception) -> str:
    text = str(error)
    return text.split(": ", 1)[0] if ": " in text else type(error).__name__


def check_c2pa(
    path: str | os.PathLike[str],
    *,
    trust_anchors: str | os.PathLike[str] | None,
    settings: str | os.PathLike[str] | None = None,
) -> CheckResult:
    """Check one asset's C2PA manifest offline; see the module docstring for the states.

    ``trust_anchors`` (a PEM file) and ``settings`` (a c2pa settings JSON file) are passed
    to :func:`offline_settings`. ``details`` records the asset's SHA-256, the signer, the
    claim generator, the validation codes, the pinned anchors' fingerprints and the
    settings used.
    """
    import c2pa

    document = offline_settings(trust_anchors, settings)
    pinned = _pinned_anchors(document)
    tool = c2pa_tool()
    details: dict[str, Any] = {"asset": str(path)}
    with open(path, "rb") as handle:
        details["sha256"], details["bytes"] = _hash_file(handle)
        details["trust_anchors"] = pinned
        details["settings"] = _settings_summary(document)

        def result(state: str, reasons: list[str], schema: str | None = None) -> CheckResult:
            return CheckResult("c2pa", state, tuple(reasons), tool, schema, details)

        context = c2pa.Context.from_dict(document)
        try:
            reader = c2pa.Reader(None, handle, context=context)
        except c2pa.C2paError as error:
            kind = _error_kind(error)
            details["error"] = {"kind": kind, "message": str(error)}
            details["manifest_present"] = kind not in _NO_MANIFEST
            if kind in _NO_MANIFEST:
                return result("opaque", ["no C2PA manifest in the asset"])
            if kind in _REMOTE:
                url = _remote_url(str(error))
                details["remote_url"] = url
                return result(
                    "unverifiable",
                    [f"the manifest is remote-only ({url}); fetching it is disabled (offline)"],
                )
            if kind in _NOT_SUPPORTED:
                return result("unverifiable", [f"format not supported by the C2PA SDK: {error}"])
            if kind in _CALLER:
                raise ProvenanceError(f"c2pa: cannot read {path}: {error}") from None
            return result("invalid", [f"C2PA data or asset unreadable: {error}"])
        finally:
            context.close()
        with reader:
            return _from_reader(reader, details, pinned, result)


def _remote_url(message: str) -> str | None:
    for word in message.replace('"', " ").split():
        if word.startswith(("https://", "http://")):
            return word
    return None


def _codes(entries: list[dict[str, Any]] | None) -> list[str]:
    return [entry.get("code", "?") for entry in entries or []]


def _from_reader(reader, details: dict[str, Any], pinned: list, result) -> CheckResult:
    store = json.loads(reader.json())
    details["manifest_present"] = True
    details["embedded"] = reader.is_embedded()
    state = store.get("validation_state")
    details["validation_state"] = state
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    signature = manifest.get("signature_info") or {}
    claim_version = manifest.get("claim_version")
    details["active_manifest"] = label
    details["claim_version"] = claim_version
    details["claim_generator"] = _claim_generator(manifest)
    details["signer"] = {
        key: signature.get(key)
        for key in ("common_name", "issuer", "alg", "cert_serial_number", "time")
    }
    details["ingredients"] = len(manifest.get("ingredients") or [])
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    failures = list(active.get("failure") or [])
    for delta in results.get("ingredientDeltas") or []:
        for entry in (delta.get("validationDeltas") or {}).get("failure") or []:
            failures.append({**entry, "ingredient": delta.get("ingredientAssertionURI")})
    details["validation_codes"] = {
        "success": sorted(set(_codes(active.get("success")))),
        "informational": sorted(set(_codes(active.get("informational")))),
        "failure": _codes(failures),
    }
    schema = f"C2PA claim v{claim_version}" if claim_version is not None else "C2PA"
    signer = signature.get("common_name") or "(unnamed signer)"
    issuer = signature.get("issuer") or "(unnamed issuer)"
    if state == "Invalid":
        reasons = []
        # Tamper evidence first; an untrusted signer is secondary once the manifest fails.
        failures.sort(key=lambda entry: str(entry.get("code")).startswith("signingCredential."))
        for entry in failures:
            where = " in an ingredient" if entry.get("ingredient") else ""
            reasons.append(f"{entry.get('code')}{where}: {entry.get('explanation', '')}")
        return result("invalid", reasons or ["the C2PA SDK reports the manifest Invalid"], schema)
    if state == "Trusted" and pinned:
        reason = (
            f"signed by {signer!r} (issuer {issuer!r}), which chains to a pinned trust anchor "
            "(signingCredential.trusted)"
        )
        return result("trusted", [reason], schema)
    if state in ("Valid", "Trusted"):
        why = "no trust anchor is pinned" if not pinned else "it chains to no pinned anchor"
        reason = (
            f"intact and signed by {signer!r} (issuer {issuer!r}), but the signer is not on "
            f"the trust list: {why} (signingCredential.untrusted)"
        )
        return result("valid", [reason], schema)
    return result("unverifiable", [f"the C2PA SDK reports no usable validation state ({state})"])


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    if manifest.get("claim_generator"):
        return str(manifest["claim_generator"])
    info = manifest.get("claim_generator_info") or []
    names = [
        f"{item.get('name')} {item.get('version') or ''}".strip()
        for item in info
        if isinstance(item, dict) and item.get("name")
    ]
    return ", ".join(names) or None
