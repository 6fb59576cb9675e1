"""AIBOM check: a CycloneDX 1.6 / 1.7 JSON ML-BOM, validated with ``cyclonedx-python-lib``.

Validation uses the library's strict JSON validator (the schema bundled with the library,
resolved offline, unknown properties refused) for the document's declared ``specVersion``.
What the BOM says about models and data is read from the **raw JSON**: the library's object
model drops ``modelCard`` and component ``data``.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .errors import ProvenanceInputError
from .model import CheckResult

__all__ = ["MAX_AIBOM_BYTES", "SUPPORTED_SPEC_VERSIONS", "aibom_tool", "check_aibom"]

SUPPORTED_SPEC_VERSIONS: tuple[str, ...] = ("1.6", "1.7")
MAX_AIBOM_BYTES = 64 * 1024 * 1024
_MAX_REASON_ERRORS = 10
_MAX_MESSAGE = 200


def aibom_tool() -> str:
    """The validating library and the JSON Schema implementation under it, with versions."""
    return (
        f"cyclonedx-python-lib {version('cyclonedx-python-lib')} "
        f"(jsonschema {version('jsonschema')})"
    )


@cache
def _validator(spec_version: str):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.from_version(spec_version))


def check_aibom(path_or_bytes: str | os.PathLike[str] | bytes) -> CheckResult:
    """Validate one CycloneDX JSON ML-BOM; ``state`` is ``valid`` or ``invalid``.

    ``path_or_bytes`` is a file path (``str`` or path-like) or the document's bytes. Bytes
    that are not UTF-8 JSON, a document without a usable ``specVersion`` and a schema
    failure are ``invalid`` with the failure as reasons. A ``specVersion`` other than 1.6 or
    1.7 is refused with :class:`ProvenanceInputError` naming ``specVersion``.
    """
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data, document = bytes(path_or_bytes), "<bytes>"
    elif isinstance(path_or_bytes, str | os.PathLike):
        path = Path(path_or_bytes)
        if path.stat().st_size > MAX_AIBOM_BYTES:
            raise ProvenanceInputError(
                "aibom", f"larger than {MAX_AIBOM_BYTES} bytes", str(path_or_bytes)
            )
        data, document = path.read_bytes(), str(path_or_bytes)
    else:
        raise ProvenanceInputError("aibom", "expected a path or bytes", path_or_bytes)
    if len(data) > MAX_AIBOM_BYTES:
        raise ProvenanceInputError("aibom", f"larger than {MAX_AIBOM_BYTES} bytes", document)
    details: dict[str, Any] = {
        "document": document,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    tool = aibom_tool()

    def invalid(*reasons: str, schema: str | None = None) -> CheckResult:
        return CheckResult("aibom", "invalid", reasons, tool, schema, details)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return invalid(f"not UTF-8: byte {exc.start}: {exc.reason}")
    try:
        bom = json.loads(text)
    except json.JSONDecodeError as exc:
        return invalid(f"not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")
    if not isinstance(bom, dict):
        return invalid(f"not a CycloneDX BOM: the document is a JSON {type(bom).__name__}")
    spec_version = bom.get("specVersion")
    if spec_version is None:
        return invalid("specVersion: missing, so no CycloneDX schema can be chosen")
    if not isinstance(spec_version, str):
        return invalid(f"specVersion: expected a string, got {json.dumps(spec_version)}")
    if spec_version not in SUPPORTED_SPEC_VERSIONS:
        raise ProvenanceInputError(
            "specVersion",
            f"CycloneDX {spec_version} is not checked here; supported: "
            + ", ".join(SUPPORTED_SPEC_VERSIONS),
            spec_version,
        )
    schema = f"CycloneDX {spec_version}"
    details.update(
        spec_version=spec_version,
        serial_number=bom.get("serialNumber"),
        bom_version=bom.get("version"),
    )
    errors = _validator(spec_version).validate_str(text, all_errors=True)
    failures = [_describe_error(error.data) for error in errors] if errors else []
    if failures:
        details["errors"] = failures
        reasons = [f"schema: {failure}" for failure in failures[:_MAX_REASON_ERRORS]]
        if len(failures) > _MAX_REASON_ERRORS:
            reasons.append(f"... and {len(failures) - _MAX_REASON_ERRORS} more schema errors")
        return invalid(*reasons, schema=schema)

    models, data_components, total = _read_ml_content(bom)
    details.update(models=models, data_components=data_components, components=total)
    reasons = [f"{schema} JSON is valid against the library's strict schema"]
    for model in models:
        card = "modelCard present" if model["model_card"] else "no modelCard"
        datasets = f"; datasets: {', '.join(model['datasets'])}" if model["datasets"] else ""
        reasons.append(f"model {_name(model)}: {card}{datasets}")
    for component in data_components:
        names = ", ".join(entry["name"] or "(unnamed)" for entry in component["data"])
        reasons.append(f"data component {_name(component)}: data {names or '(none)'}")
    if not models and not data_components:
        reasons.append("no machine-learning-model or data component: not an ML-BOM")
    return CheckResult("aibom", "valid", tuple(reasons), tool, schema, details)


def _describe_error(error: Any) -> str:
    """``/json/pointer: message`` with the offending value elided from the message."""
    pointer = "".join(f"/{part}" for part in error.absolute_path) or "(document)"
    message = error.message
    instance = repr(error.instance)
    if message.startswith(instance):
        message = "value" + message[len(instance) :]
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return f"{pointer}: {message} ({error.validator})"


def _name(component: dict[str, Any]) -> str:
    name = component["name"] or "(unnamed)"
    if component.get("group"):
        name = f"{component['group']}/{name}"
    return f"{name!r} {component['version']}" if component["version"] else repr(name)


def _read_ml_content(bom: dict[str, Any]) -> tuple[list[dict], list[dict], int]:
    """Models (with modelCard facts) and data components, from the raw JSON."""
    models: list[dict[str, Any]] = []
    data_components: list[dict[str, Any]] = []
    total = 0
    stack: list[tuple[str, Any]] = []
    metadata = bom.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("component"), dict):
        stack.append(("/metadata/component", metadata["component"]))
    components = bom.get("components")
    if isinstance(components, list):
        stack.extend((f"/components/{i}", c) for i, c in enumerate(components))
    stack.reverse()
    while stack:
        pointer, component = stack.pop()
        if not isinstance(component, dict):
            continue
        total += 1
        base = {
            "pointer": pointer,
            "bom_ref": component.get("bom-ref"),
            "group": component.get("group"),
            "name": component.get("name"),
            "version": component.get("version"),
        }
        card = component.get("modelCard")
        if component.get("type") == "machine-learning-model" or isinstance(card, dict):
            card = card if isinstance(card, dict) else None
            parameters = (card or {}).get("modelParameters") or {}
            models.append(
                {
                    **base,
                    "model_card": card is not None,
                    "model_card_sections": sorted(card) if card else [],
                    "datasets": [_dataset_name(d) for d in parameters.get("datasets") or []],
                }
            )
        data = component.get("data")
        if component.get("type") == "data" or isinstance(data, list):
            entries = data if isinstance(data, list) else []
            data_components.append({**base, "data": [_data_entry(e) for e in entries]})
        children = component.get("components")
        if isinstance(children, list):
            stack.extend(
                reversed([(f"{pointer}/components/{i}", c) for i, c in enumerate(children)])
            )
    return models, data_components, total


def _dataset_name(dataset: Any) -> str:
    """A modelCard dataset: inline (its name) or a reference (``ref:<bom-ref>``)."""
    if not isinstance(dataset, dict):
        return str(dataset)
    if dataset.get("name"):
        return str(dataset["name"])
    if dataset.get("ref"):
        return f"ref:{dataset['ref']}"
    return "(unnamed)"


def _data_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        return {"name": None, "type": None, "classification": None, "url": None}
    contents = entry.get("contents") if isinstance(entry.get("contents"), dict) else {}
    return {
        "name": entry.get("name"),
        "type": entry.get("type"),
        "classification": entry.get("classification"),
        "url": contents.get("url"),
    }
