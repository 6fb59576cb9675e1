"""The OpenLineage JSON schemas, vendored, resolved offline.

``openlineage_spec/`` mirrors https://openlineage.io/spec/ (every published core version and
facet version; Apache-2.0, see its LICENSE and NOTICE.txt; the same files as
``../shared/conformance/openlineage/website-static-spec``). Every ``$id`` is loaded into one
``referencing.Registry``, so validation never touches the network.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "CORE_VERSIONS",
    "LATEST_CORE",
    "SPEC_DIR",
    "core_schema_url",
    "registry",
    "validator_for",
]

SPEC_DIR = Path(__file__).resolve().parent / "openlineage_spec"
_CORE_URL = re.compile(r"^https?://openlineage\.io/spec/(\d+-\d+-\d+)/OpenLineage\.json")


@cache
def _resources() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(SPEC_DIR.rglob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        out[schema["$id"]] = schema
    return out


@cache
def registry() -> Registry:
    resources = [
        (uri, Resource.from_contents(schema, default_specification=DRAFT202012))
        for uri, schema in _resources().items()
    ]
    return Registry().with_resources(resources)


CORE_VERSIONS = tuple(
    sorted(
        (p.parent.name for p in SPEC_DIR.glob("*/OpenLineage.json")),
        key=lambda v: tuple(int(x) for x in v.split("-")),
    )
)
LATEST_CORE = CORE_VERSIONS[-1]


def core_schema_url(version: str) -> str:
    return f"https://openlineage.io/spec/{version}/OpenLineage.json"


def schema_version(url: str) -> str | None:
    """The core version an openlineage.io schema URL names, or None if it names none."""
    match = _CORE_URL.match(url)
    return match.group(1) if match else None


def is_openlineage_url(url: str) -> bool:
    return bool(re.match(r"^https?://openlineage\.io/spec/", url))


def _unresolvable(uri: str) -> dict[str, Any]:
    """Old core schemas name facet files that were never published (``<core>/facets/...``);
    like the Python validator, which only fails if such a reference is actually followed,
    the fast validator is built without them (they constrain nothing)."""
    return {}


@cache
def _fast_registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry(list(_resources().items()), retriever=_unresolvable)


class Checker:
    """A compiled validator (jsonschema-rs, Rust) for the common case — valid input — and the
    reference implementation (jsonschema) to name the failing path when it is not."""

    def __init__(self, url: str, slow: Draft202012Validator) -> None:
        self.slow = slow
        self.fast = jsonschema_rs.validator_for({"$ref": url}, registry=_fast_registry())

    def first_error(self, instance: Any):
        if self.fast.is_valid(instance):
            return None
        from jsonschema.exceptions import best_match

        return best_match(self.slow.iter_errors(instance))


@cache
def checker_for(url: str) -> Checker:
    """:func:`validator_for` with a compiled fast path (same KeyError for unknown schemas)."""
    slow = validator_for(url)
    base, _, fragment = url.partition("#")
    base = base.replace("http://", "https://", 1)
    return Checker(f"{base}#{fragment}" if fragment else base, slow)


@cache
def validator_for(url: str) -> Draft202012Validator:
    """A validator for a schema (``$id``) or a definition inside one (``$id#/$defs/Name``).

    Raises KeyError if the document is not vendored."""
    base, _, fragment = url.partition("#")
    base = base.replace("http://", "https://", 1)
    if base not in _resources():
        raise KeyError(base)
    schema: dict[str, Any] = {"$ref": f"{base}#{fragment}" if fragment else base}
    return Draft202012Validator(schema, registry=registry())


_FACET_URL = re.compile(r"^https?://openlineage\.io/spec/facets/(\d+-\d+-\d+)/(\w+)\.json(#.*)?$")


@cache
def facet_checker(url: str, key: str | None = None) -> Checker | None:
    """:func:`facet_validator` as a :class:`Checker`."""
    slow = facet_validator(url, key)
    return None if slow is None else checker_for(slow.schema["$ref"])


def facet_validator(url: str, key: str | None = None) -> Draft202012Validator | None:
    """A validator for a facet with this ``_schemaURL`` (stored under ``key``).

    A facet version never published as a schema file (the spec's own fixtures name some) is
    checked against the newest vendored version of the same facet: its definition of the same
    name, else the schema of the ``key`` property; None if neither exists. Raises KeyError
    for a facet no vendored schema defines."""
    match = _FACET_URL.match(url)
    if match is None:
        return validator_for(url)
    version, name, fragment = match.group(1), match.group(2), match.group(3) or ""
    exact = f"https://openlineage.io/spec/facets/{version}/{name}.json"
    if exact not in _resources():
        versions = sorted(
            (p.parent.name for p in (SPEC_DIR / "facets").glob(f"*/{name}.json")),
            key=lambda v: tuple(int(x) for x in v.split("-")),
        )
        if not versions:
            raise KeyError(url)
        exact = f"https://openlineage.io/spec/facets/{versions[-1]}/{name}.json"
    document = _resources()[exact]
    wanted = fragment.rsplit("/", 1)[-1] if fragment else ""
    if wanted and wanted in document.get("$defs", {}):
        return validator_for(f"{exact}#/$defs/{wanted}")
    if key is not None and key in document.get("properties", {}):
        return validator_for(f"{exact}#/properties/{key}")
    if name in document.get("$defs", {}):
        return validator_for(f"{exact}#/$defs/{name}")
    return None


def facet_document_validator(name: str) -> Draft202012Validator:
    """The newest vendored ``facets/<version>/<name>.json``, as a whole document (the shape of
    the spec's facet fixtures: ``{facetKey: facet}``). KeyError if no version is vendored."""
    versions = sorted(
        (p.parent.name for p in (SPEC_DIR / "facets").glob(f"*/{name}.json")),
        key=lambda v: tuple(int(x) for x in v.split("-")),
    )
    if not versions:
        raise KeyError(name)
    return validator_for(f"https://openlineage.io/spec/facets/{versions[-1]}/{name}.json")
