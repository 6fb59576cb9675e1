"""What the server serves: asset classes, their baseline artifacts, window policies, limits."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FieldError

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "AssetConfig", "ConfigError", "ServerConfig"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # 64 MiB: 21,845 rows of 768 float32 values


class ConfigError(FieldError):
    """A server configuration value that is missing or invalid (names the key)."""


@dataclass(frozen=True)
class AssetConfig:
    """One asset class: the baseline artifact that scores it and how its rows become windows."""

    baseline: Path
    window: int | None = None  # count-window size; default: the baseline's first window size
    backend: str = "auto"


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

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("server.port", "expected 0..65535", self.port)
        for key in ("max_message_bytes", "max_rows", "workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"server.{key}", "expected >= 1", getattr(self, key))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, base: Path | None = None) -> ServerConfig:
        """From the TOML layout: ``[server]`` keys and ``[assets.<class>]`` tables.

        Relative baseline paths are resolved against ``base`` (the config file's folder).
        """
        server = dict(data.get("server", {}))
        known = set(cls.__dataclass_fields__) - {"assets"}
        unknown = sorted(set(server) - known)
        if unknown:
            raise ConfigError(f"server.{unknown[0]}", f"unknown key; known: {sorted(known)}")
        assets = {}
        for name, table in dict(data.get("assets", {})).items():
            if not isinstance(table, dict) or "baseline" not in table:
                raise ConfigError(f"assets.{name}.baseline", "missing (path of a baseline dir)")
            extra = sorted(set(table) - {"baseline", "window", "backend"})
            if extra:
                raise ConfigError(f"assets.{name}.{extra[0]}", "unknown key")
            path = Path(table["baseline"])
            if base is not None and not path.is_absolute():
                path = base / path
            assets[name] = AssetConfig(
                baseline=path, window=table.get("window"), backend=table.get("backend", "auto")
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
