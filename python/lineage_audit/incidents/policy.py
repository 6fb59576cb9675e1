"""The incident policy: per asset class, what opens an incident, who may change it, and
whether (and for whom) the halt hook may fire. A TOML file, checked whole on load::

    [policy]
    name = "atlas-fx"                  # recorded in every incident
    version = "2026-05-01"

    [asset_classes.fx-news]
    signal = "fx-news-sentiment"       # what a halt suspends reliance on (default: the class)
    lineage_node = "dataset:deployer:news-inputs"   # the asset in the Tier 2 graph (optional)

    [asset_classes.fx-news.triggers]
    tier3 = "halt"                     # "halt" (default) | "watch" | "off"
    tier2_re_entry = true              # a re-entry finding in the asset's ancestry
    tier2_convergence_k = 3            # convergence of >= k sources (0: off, the default)
    tier4_discovery_fraction = 0.2     # BH-rejected fraction of a batch >= x (omit: off)

    [asset_classes.fx-news.roles]
    acknowledge = ["token:mro"]        # actors (as the server identifies them)
    resolve = ["token:mro"]
    submit = ["token:risk-batch"]      # may submit Tier 4 jobs / Tier 1 ratings
                                       # (optional; default: the acknowledge list)

    [asset_classes.fx-news.halt]
    enabled = true                     # default false: the deployer must opt in
    authorised = ["token:mro"]         # who may fire it
    webhook = "http://127.0.0.1:8080/halt"
    timeout_s = 5.0

Every error names the dotted key (``asset_classes.fx-news.halt.webhook``) and the value.
Nothing is defaulted silently where a wrong default would be unsafe: roles must be listed,
and an enabled halt needs its authorised actors and webhook.
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import PolicyError, UnknownAsset

__all__ = ["AssetPolicy", "HaltPolicy", "Policy", "TriggerPolicy", "load_policy", "parse_policy"]

TIER3_LEVELS = ("halt", "watch", "off")


@dataclass(frozen=True)
class TriggerPolicy:
    tier3: str = "halt"
    tier2_re_entry: bool = False
    tier2_convergence_k: int = 0
    tier4_discovery_fraction: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tier3": self.tier3,
            "tier2_re_entry": self.tier2_re_entry,
            "tier2_convergence_k": self.tier2_convergence_k,
            "tier4_discovery_fraction": self.tier4_discovery_fraction,
        }


@dataclass(frozen=True)
class HaltPolicy:
    enabled: bool = False
    authorised: tuple[str, ...] = ()
    webhook: str | None = None
    timeout_s: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "authorised": list(self.authorised),
            "webhook": self.webhook,
            "timeout_s": self.timeout_s,
        }


@dataclass(frozen=True)
class AssetPolicy:
    asset_class: str
    signal: str
    lineage_node: str | None
    triggers: TriggerPolicy
    acknowledge: tuple[str, ...]
    resolve: tuple[str, ...]
    halt: HaltPolicy
    submit: tuple[str, ...] = ()  # who may submit evidence (Tier 4 jobs, Tier 1 ratings)

    def to_json(self) -> dict[str, Any]:
        return {
            "asset_class": self.asset_class,
            "signal": self.signal,
            "lineage_node": self.lineage_node,
            "triggers": self.triggers.to_json(),
            "roles": {
                "acknowledge": list(self.acknowledge),
                "resolve": list(self.resolve),
                "submit": list(self.submit),
            },
            "halt": self.halt.to_json(),
        }


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    assets: Mapping[str, AssetPolicy]
    sha256: str = field(default="")  # of the TOML bytes it was read from

    def asset(self, asset_class: str) -> AssetPolicy:
        """The policy of ``asset_class``; :class:`UnknownAsset` names the known ones."""
        found = self.assets.get(asset_class)
        if found is None:
            raise UnknownAsset(
                "asset_class", f"not in policy {self.name!r} (known: {sorted(self.assets)})",
                asset_class,
            )  # fmt: skip
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "asset_classes": {k: v.to_json() for k, v in sorted(self.assets.items())},
        }


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and check a policy file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyError("policy", f"cannot read {p} ({exc.strerror})") from None
    return parse_policy(data)


def parse_policy(data: bytes | str) -> Policy:
    """Parse and check policy TOML (bytes or text)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError("policy", f"not valid TOML ({exc})") from None
    _only(doc, {"policy", "asset_classes"}, "")
    head = _table(doc.get("policy"), "policy")
    _only(head, {"name", "version"}, "policy")
    name = _text(head.get("name"), "policy.name")
    version = _text(head.get("version", "1"), "policy.version")
    classes = _table(doc.get("asset_classes"), "asset_classes")
    if not classes:
        raise PolicyError("asset_classes", "at least one asset class is needed")
    assets = {key: _asset(key, value) for key, value in classes.items()}
    return Policy(name, version, assets, hashlib.sha256(raw).hexdigest())


def _asset(key: str, value: object) -> AssetPolicy:
    where = f"asset_classes.{key}"
    table = _table(value, where)
    _only(table, {"signal", "lineage_node", "triggers", "roles", "halt"}, where)
    node = table.get("lineage_node")
    if node is not None:
        node = _text(node, f"{where}.lineage_node")
        if not node.startswith("dataset:") or node.count(":") < 2:
            raise PolicyError(f"{where}.lineage_node", "expected 'dataset:<namespace>:<name>'",
                              node)  # fmt: skip
    roles = _table(table.get("roles"), f"{where}.roles")
    _only(roles, {"acknowledge", "resolve", "submit"}, f"{where}.roles")
    acknowledge = _actors(roles.get("acknowledge"), f"{where}.roles.acknowledge")
    submit = roles.get("submit")
    return AssetPolicy(
        asset_class=key,
        signal=_text(table.get("signal", key), f"{where}.signal"),
        lineage_node=node,
        triggers=_triggers(table.get("triggers", {}), f"{where}.triggers"),
        acknowledge=acknowledge,
        resolve=_actors(roles.get("resolve"), f"{where}.roles.resolve"),
        halt=_halt(table.get("halt", {}), f"{where}.halt"),
        submit=acknowledge if submit is None else _actors(submit, f"{where}.roles.submit"),
    )


def _triggers(value: object, where: str) -> TriggerPolicy:
    table = _table(value, where)
    keys = {"tier3", "tier2_re_entry", "tier2_convergence_k", "tier4_discovery_fraction"}
    _only(table, keys, where)
    tier3 = table.get("tier3", "halt")
    if tier3 not in TIER3_LEVELS:
        raise PolicyError(f"{where}.tier3", f"expected one of {', '.join(TIER3_LEVELS)}", tier3)
    k = table.get("tier2_convergence_k", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k == 1 or k < 0:
        raise PolicyError(f"{where}.tier2_convergence_k", "expected 0 (off) or an integer >= 2",
                          k)  # fmt: skip
    fraction = table.get("tier4_discovery_fraction")
    if fraction is not None:
        ok = isinstance(fraction, int | float) and not isinstance(fraction, bool)
        if not ok or not math.isfinite(fraction) or not 0 < fraction <= 1:
            raise PolicyError(f"{where}.tier4_discovery_fraction", "expected a number in (0, 1]",
                              fraction)  # fmt: skip
        fraction = float(fraction)
    return TriggerPolicy(tier3, _bool(table.get("tier2_re_entry", False),
                                      f"{where}.tier2_re_entry"), k, fraction)  # fmt: skip


def _halt(value: object, where: str) -> HaltPolicy:
    table = _table(value, where)
    _only(table, {"enabled", "authorised", "webhook", "timeout_s"}, where)
    enabled = _bool(table.get("enabled", False), f"{where}.enabled")
    timeout = table.get("timeout_s", 5.0)
    if (not isinstance(timeout, int | float) or isinstance(timeout, bool)
            or not math.isfinite(timeout) or not 0 < timeout <= 120):  # fmt: skip
        raise PolicyError(f"{where}.timeout_s", "expected seconds in (0, 120]", timeout)
    if not enabled:
        return HaltPolicy(False, (), None, float(timeout))
    authorised = _actors(table.get("authorised"), f"{where}.authorised")
    webhook = _text(table.get("webhook"), f"{where}.webhook")
    parts = urlsplit(webhook)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(f"{where}.webhook", "expected an http(s) URL with a host", webhook)
    return HaltPolicy(True, authorised, webhook, float(timeout))


# --- small checks ---------------------------------------------------------------------------


def _table(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        raise PolicyError(where, "missing table")
    if not isinstance(value, Mapping):
        raise PolicyError(where, "expected a table", value)
    return value


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            at = f"{where}.{key}" if where else key
            raise PolicyError(at, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _text(value: object, where: str) -> str:
    if value is None:
        raise PolicyError(where, "missing")
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(where, "expected a non-empty string", value)
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(where, "expected true or false", value)
    return value


def _actors(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        raise PolicyError(where, "missing: list the actors explicitly")
    if not isinstance(value, list) or not value:
        raise PolicyError(where, "expected a non-empty list of actor names", value)
    return tuple(_text(item, f"{where}[{i}]") for i, item in enumerate(value))
