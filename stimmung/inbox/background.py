"""The demo's inbox as a background process: started detached (it outlives `stimmung demo`, like
the local stack), found again by its pid file under the stack's state folder, stopped by
`stimmung stack down` or `stimmung inbox stop`.

Every wait here is bounded; a pid whose process is not our inbox (reused after a reboot) is
never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


class BackgroundError(Exception):
    """The background inbox could not be started; the message says why and where the log is."""


def folder(state_dir: Path) -> Path:
    return Path(state_dir) / "inbox"


def pidfile(state_dir: Path) -> Path:
    return folder(state_dir) / "pid"


def logfile(state_dir: Path) -> Path:
    return folder(state_dir) / "inbox.log"


def _ours(pid: int) -> bool:
    """The process exists and is a `stimmung ... inbox` (not some process that got the pid later)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # a zombie has exited
    except (OSError, IndexError):
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return "inbox" in args and any("stimmung" in a for a in args)


def running_pid(state_dir: Path) -> int | None:
    try:
        pid = int(pidfile(state_dir).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _ours(pid) else None


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def stop(state_dir: Path, grace_s: float = 15.0) -> str | None:
    """Stop the background inbox; a line saying what happened, or None when there was none."""
    path = pidfile(state_dir)
    if not path.exists():
        return None
    pid = running_pid(state_dir)
    path.unlink(missing_ok=True)
    if pid is None:
        return "inbox: was not running (stale pid file removed)"
    try:
        os.killpg(pid, signal.SIGTERM)  # its own session: the server and anything it started
    except ProcessLookupError:
        return "inbox: was not running"
    deadline = time.monotonic() + grace_s
    while _ours(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _ours(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return f"inbox: stopped (pid {pid})"


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(argv: list[str], env: dict[str, str], state_dir: Path, host: str, port: int,
          timeout_s: float = 60.0) -> int:
    """Start the inbox detached and wait (at most ``timeout_s``) until its sign-in page answers.
    Returns its pid; raises BackgroundError with the log's last lines when it does not come up."""
    stop(state_dir)
    if port_taken(host, port):
        raise BackgroundError(f"port {port} on {host} is taken by another program; set inbox.port "
                              "(e.g. STIMMUNG_INBOX__PORT=8091) and run the demo again")
    log = logfile(state_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # not in the demo's process group: Ctrl-C there leaves it
    pidfile(state_dir).write_text(str(proc.pid))
    url = f"http://{host}:{port}/login"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pidfile(state_dir).unlink(missing_ok=True)
            raise BackgroundError(f"the inbox exited with code {proc.returncode}; last lines of {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return proc.pid
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    stop(state_dir)
    raise BackgroundError(f"the inbox did not answer at {url} within {timeout_s:.0f}s (stopped it); "
                          f"last lines of {log}:\n{_tail(log)}")
