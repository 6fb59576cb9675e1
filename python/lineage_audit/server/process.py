"""Run ``lineage-audit serve`` as a child process and wait until it listens.

Used by the demo, the end-to-end tests and the load benchmark: the server they talk to is the
real command a deployment runs, in its own process.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["ServerProcess"]

_SERVING = re.compile(r"^serving on (\S+):(\d+)$")
_HTTP = re.compile(r"^http on (https?://\S+)$")


class ServerProcess:
    """``with ServerProcess(config_path) as server: server.address ...``

    The child's stdout is read by a thread (its lines are kept in ``lines``); stderr goes to
    ``log`` (a file) so a failed start can say why.
    """

    def __init__(
        self, config: Path, *, log: Path, extra_args: tuple[str, ...] = (), env=None
    ) -> None:
        self.config = Path(config)
        self.log_path = Path(log)
        self.extra_args = extra_args
        self.env = env
        self.address = ""
        self.http_url: str | None = None
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def start(self, timeout: float = 120.0) -> ServerProcess:
        command = [sys.executable, "-m", "lineage_audit.cli", "serve", "--config",
                   str(self.config), *self.extra_args]  # fmt: skip
        env = dict(os.environ if self.env is None else self.env)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, env=env,
                                     text=True)  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise TimeoutError(
                    f"server did not listen within {timeout} s; see {self.log_path}"
                ) from None
            if line is None:
                raise RuntimeError(f"server exited ({self.proc.wait()}): {self.log_tail()}")
            if match := _HTTP.match(line):
                self.http_url = match.group(1)
            elif match := _SERVING.match(line):
                self.address = f"{match.group(1)}:{match.group(2)}"
            elif line == "ready":
                return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful stop) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> int:
        """SIGKILL: no chance to clean up (crash tests)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(timeout=30)
        self._log.close()
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
