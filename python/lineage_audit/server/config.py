"""What the server serves: asset classes, their baseline artifacts, window policies, limits."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FieldError

__all__ = ["DEFAULT_HTTP_PORT", "DEFAULT_MAX_MESSAGE_BYTES", "AssetConfig", "ConfigError",
           "ServerConfig"]  # fmt: skip

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 64 MiB: 21,845 rows of 768 float32 values
DEFAULT_HTTP_PORT = 9471


class ConfigError(FieldError):
    """A server configuration value that is missing or invalid (names the key)."""


@dataclass(frozen=True)
class AssetConfig:
    """One asset class: the baseline artifact that scores it and how its rows become windows."""

    baseline: Path
    window: int | None = None  # count-window size; default: the baseline's first window size
    backend: str = "auto"
    candidates: tuple[Path, ...] = ()  # more baselines loaded, activatable over gRPC


@dataclass(frozen=True)
class ServerConfig:
    """Server settings. ``assets`` maps asset class -> :class:`AssetConfig`."""

    assets: dict[str, AssetConfig] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 50051  # 0: any free port (the bound port is reported after start)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_rows: int = 65_536  # rows per request; more is RESOURCE_EXHAUSTED
    workers: int = 4  # threads that run the engine off the event loop
    grace_seconds: float = 5.0  # in-flight calls get this long on shutdown
    actor: str = "lineage-audit-server"  # ledger actor of server-initiated records
    # Micro-batching (server/batching.py): concurrent calls of one asset, one kernel call.
    batching: bool = True
    max_batch_rows: int = 8192
    max_batch_wait_ms: float = 2.0
    max_queue_rows: int = 65_536  # rows waiting per asset; beyond: RESOURCE_EXHAUSTED
    # HTTP side: /metrics, /healthz, /readyz. http_port -1 disables it, 0 = any free port.
    http_host: str | None = None  # default: host
    http_port: int = DEFAULT_HTTP_PORT
    series_dir: Path | None = None  # window series + row journal (_journal/); see resume.py
    lineage_db: Path | None = None  # the [lineage] table: OpenLineage event store (Tier 2)
    incidents_db: Path | None = None  # the [incidents] table: incident store (Tier 5) and
    incidents_policy: Path | None = None  # its policy TOML (both or neither)
    ledger_db: Path | None = None  # the [ledger] table: db and keys (both or neither)
    ledger_keys: Path | None = None
    # "process": a worker process holds the private keys and signs while the server keeps
    # serving (key isolation, and signing stops competing with the event loop for the GIL);
    # "inline": sign in the server process.
    ledger_signer: str = "process"
    tls: Any = None  # auth.TlsConfig, from the [tls] table
    auth: Any = None  # auth.AuthConfig, from the [auth] table (default: no auth)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("server.port", "expected 0..65535", self.port)
        if not -1 <= self.http_port <= 65535:
            raise ConfigError("server.http_port", "expected -1 (off) or 0..65535", self.http_port)
        for key in ("max_message_bytes", "max_rows", "workers", "max_batch_rows",
                    "max_queue_rows"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"server.{key}", "expected >= 1", getattr(self, key))
        if self.max_batch_wait_ms < 0:
            raise ConfigError("server.max_batch_wait_ms", "expected >= 0", self.max_batch_wait_ms)
        if (self.ledger_db is None) != (self.ledger_keys is None):
            raise ConfigError("ledger", "give both db and keys, or neither")
        if (self.incidents_db is None) != (self.incidents_policy is None):
            raise ConfigError("incidents", "give both db and policy, or neither")
        if self.auth is None:
            from .auth import AuthConfig

            object.__setattr__(self, "auth", AuthConfig())

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, base: Path | None = None) -> ServerConfig:
        """From the TOML layout: ``[server]`` keys and ``[assets.<class>]`` tables.

        Relative baseline paths are resolved against ``base`` (the config file's folder).
        """
        from .auth import AuthConfig, tls_from_mapping

        tables = {"server", "assets", "ledger", "lineage", "incidents", "tls", "auth"}
        unknown_tables = sorted(set(data) - tables)
        if unknown_tables:
            raise ConfigError(unknown_tables[0], f"unknown table; known: {sorted(tables)}")
        server = dict(data.get("server", {}))
        known = set(cls.__dataclass_fields__) - {"assets", "ledger_db", "ledger_keys", "tls",
                                                 "auth", "lineage_db", "ledger_signer",
                                                 "incidents_db", "incidents_policy"}  # fmt: skip
        unknown = sorted(set(server) - known)
        if unknown:
            raise ConfigError(f"server.{unknown[0]}", f"unknown key; known: {sorted(known)}")
        if "series_dir" in server:
            server["series_dir"] = _path(server["series_dir"], base)
        ledger = dict(data.get("ledger", {}))
        extra = sorted(set(ledger) - {"db", "keys", "signer"})
        if extra:
            raise ConfigError(f"ledger.{extra[0]}", "unknown key; known: db, keys, signer")
        for key in ("db", "keys"):
            if key in ledger:
                server[f"ledger_{key}"] = _path(ledger[key], base)
        if "signer" in ledger:
            if ledger["signer"] not in ("process", "inline"):
                raise ConfigError("ledger.signer", "expected 'process' or 'inline'",
                                  ledger["signer"])  # fmt: skip
            server["ledger_signer"] = ledger["signer"]
        lineage = dict(data.get("lineage", {}))
        if sorted(set(lineage) - {"db"}):
            raise ConfigError(
                f"lineage.{sorted(set(lineage) - {'db'})[0]}", "unknown key; known: db"
            )
        if "db" in lineage:
            server["lineage_db"] = _path(lineage["db"], base)
        server.update(_incidents(dict(data.get("incidents", {})), base))
        server["tls"] = tls_from_mapping(data.get("tls"), base=base)
        server["auth"] = AuthConfig.from_mapping(dict(data.get("auth", {})), base=base)
        assets = {}
        for name, table in dict(data.get("assets", {})).items():
            if not isinstance(table, dict) or "baseline" not in table:
                raise ConfigError(f"assets.{name}.baseline", "missing (path of a baseline dir)")
            extra = sorted(set(table) - {"baseline", "window", "backend", "candidates"})
            if extra:
                raise ConfigError(f"assets.{name}.{extra[0]}", "unknown key")
            candidates = table.get("candidates", [])
            if not isinstance(candidates, list):
                raise ConfigError(f"assets.{name}.candidates", "expected a list of paths")
            assets[name] = AssetConfig(
                baseline=_path(table["baseline"], base),
                window=table.get("window"),
                backend=table.get("backend", "auto"),
                candidates=tuple(_path(c, base) for c in candidates),
            )
        return cls(assets=assets, **server)

    @classmethod
    def from_toml(cls, path: str | Path) -> ServerConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
        return cls.from_mapping(data, base=path.parent)


def _incidents(table: dict[str, Any], base: Path | None) -> dict[str, Path]:
    """The ``[incidents]`` table: ``db`` (SQLite incident store) and ``policy`` (TOML)."""
    extra = sorted(set(table) - {"db", "policy"})
    if extra:
        raise ConfigError(f"incidents.{extra[0]}", "unknown key; known: db, policy")
    if table and not {"db", "policy"} <= set(table):
        missing = "db" if "db" not in table else "policy"
        raise ConfigError(f"incidents.{missing}", "missing (give both db and policy)")
    return {f"incidents_{k}": _path(v, base) for k, v in table.items()}


def _path(value: Any, base: Path | None) -> Path:
    """A config path; relative ones are relative to the config file's folder."""
    path = Path(value)
    return base / path if base is not None and not path.is_absolute() else path
