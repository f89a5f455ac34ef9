"""Claims: a sweep worker owns a run while it trains it, so two workers on one folder never train one run twice.

* **Claim.** Before training, a worker creates ``claim.json`` in the run folder with ``os.open(O_CREAT | O_EXCL)``:
  exactly one of several workers that try at once succeeds. The file holds the worker's host, machine id, process id,
  start time and a heartbeat time, which a daemon thread rewrites (in place, through the worker's own file
  descriptor) every ``heartbeat_every`` seconds while the run trains. The claim is removed when the run finishes or
  fails.
* **Skip.** A worker that finds a live claim leaves the run to its holder and goes on with the next run.
* **Takeover.** A claim is stale when its heartbeat is older than the claim timeout (``sweep --claim-timeout``,
  default :data:`DEFAULT_CLAIM_TIMEOUT`), or at once when its holder ran on this machine (same host name, boot and
  process-id namespace: :func:`machine_id`) and its process is gone (a kill, an out-of-memory kill). A stale claim
  is taken over atomically: the taker first creates ``.claim.takeover-<claim id>`` with ``O_EXCL`` (one taker per
  stale claim wins), checks that ``claim.json`` still holds that stale claim, and renames its own claim over it. A
  taker that loses goes on with the next run. The sweep records each takeover in the run folder
  (``takeovers.jsonl``) and the run resumes from its checkpoint if it has one.

Limits, stated: hosts that share a folder need clocks that agree to well within the timeout; a worker stopped for
longer than the timeout (e.g. suspended) loses its claim to a taker and, once it continues, trains alongside it (it
notices and says so when it finishes, :attr:`Claim.lost`). Choose the timeout far above the heartbeat interval. Where
the system gives no machine id (not Linux), a killed worker's claim waits for the timeout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adalora_scores.runs.files import CLAIM_FILE

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT",
    "Claim",
    "ClaimAttempt",
    "ClaimInfo",
    "machine_id",
    "read_claim",
    "stale_reason",
    "try_claim",
]

DEFAULT_CLAIM_TIMEOUT = 600.0
"""Seconds without a heartbeat after which a claim counts as stale (10 minutes)."""

_TAKEOVER_PREFIX = ".claim.takeover-"
_PADDED_SIZE = 1024
"""The claim is padded with spaces to this many bytes, so a heartbeat rewrite never leaves a longer old tail."""


def machine_id() -> str | None:
    """Where a process id means one process: this boot of this machine and this process-id namespace (Linux: the
    boot id and ``/proc/self/ns/pid``, so two containers on one host differ); None where the system does not say."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot} {namespace}" if boot else None


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file says; for a file that cannot be parsed (being written), only ``heartbeat`` (its
    modification time) and ``identity`` are known."""

    host: str | None
    pid: int | None
    started: float | None
    heartbeat: float
    token: str | None
    machine: str | None = None
    identity: str = ""
    """Tells one claim from another: its random token, or inode and modification time when unparsable."""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "machine": self.machine,
            "started": self.started,
            "heartbeat": self.heartbeat,
            "token": self.token,
        }

    def holder(self) -> str:
        return f"{self.host or '?'}:{self.pid if self.pid is not None else '?'}"

    def describe(self, now: float | None = None) -> str:
        """``host:pid, heartbeat 12 s ago``."""
        age = (time.time() if now is None else now) - self.heartbeat
        return f"{self.holder()}, heartbeat {age:.0f} s ago"


def _own_info(token: str) -> ClaimInfo:
    now = time.time()
    return ClaimInfo(socket.gethostname(), os.getpid(), now, now, token, machine_id(), token)


def read_claim(folder: Path) -> ClaimInfo | None:
    """The claim of the run folder ``folder``, or None when it has none."""
    path = folder / CLAIM_FILE
    try:
        with path.open("rb") as stream:
            status = os.fstat(stream.fileno())
            raw = stream.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
        token = str(data["token"])
        return ClaimInfo(
            data.get("host"),
            data.get("pid"),
            data.get("started"),
            float(data["heartbeat"]),
            token,
            data.get("machine"),
            token,
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):  # created but not yet written, or cut
        return ClaimInfo(None, None, None, status.st_mtime, None, None, f"ino{status.st_ino}-{status.st_mtime_ns}")


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False  # exists (another user's), or cannot tell: not gone
    return False


def stale_reason(claim: ClaimInfo, timeout: float, now: float | None = None) -> str | None:
    """Why ``claim`` may be taken over, or None while it is live: its holder's process is gone (same host name and
    :func:`machine_id` as this process), or its heartbeat is older than ``timeout`` seconds."""
    now = time.time() if now is None else now
    same_machine = claim.host == socket.gethostname() and claim.machine is not None and claim.machine == machine_id()
    real_pid = isinstance(claim.pid, int) and claim.pid > 0 and claim.pid != os.getpid()  # 0, -n: process groups
    if same_machine and real_pid and _process_gone(claim.pid):
        return f"its process {claim.pid} on this host is gone"
    age = now - claim.heartbeat
    if age > timeout:
        return f"its heartbeat is {age:.0f} s old (claim timeout {timeout:g} s)"
    return None


class Claim:
    """A claim this process holds: its heartbeat thread runs until :meth:`release` (also on leaving a ``with``)."""

    def __init__(self, folder: Path, info: ClaimInfo, descriptor: int, heartbeat_every: float) -> None:
        self.folder, self.info, self._descriptor = folder, info, descriptor
        self.lost = False
        """Set when the heartbeat finds ``claim.json`` is no longer this claim (another worker took it over)."""
        self._write()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(heartbeat_every,), daemon=True, name=f"claim heartbeat {folder.name}"
        )
        self._thread.start()

    def _write(self) -> None:
        text = json.dumps(self.info.to_json())
        data = (text + " " * max(0, _PADDED_SIZE - 1 - len(text)) + "\n").encode("utf-8")
        os.lseek(self._descriptor, 0, os.SEEK_SET)
        os.write(self._descriptor, data)
        os.ftruncate(self._descriptor, len(data))

    def _owns_file(self) -> bool:
        try:
            here, mine = os.stat(self.folder / CLAIM_FILE), os.fstat(self._descriptor)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self._owns_file():
                self.lost = True
                return
            self.info = dataclasses.replace(self.info, heartbeat=time.time())
            try:
                self._write()
            except OSError:
                pass  # a full disk must not kill the run; a missed heartbeat only risks a takeover

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still this claim."""
        if self._descriptor < 0:
            return
        self._stop.set()
        self._thread.join()
        if self._owns_file():
            (self.folder / CLAIM_FILE).unlink(missing_ok=True)
        else:
            self.lost = True
        os.close(self._descriptor)
        self._descriptor = -1

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


@dataclass(frozen=True)
class ClaimAttempt:
    claim: Claim | None
    """The claim, when this worker now holds the run."""
    holder: ClaimInfo | None = None
    """When it does not: the live claim that holds the run (None when another taker won a stale one)."""
    taken_over: ClaimInfo | None = None
    """When this worker took over a stale claim: that claim."""
    reason: str | None = None
    """Why the taken-over claim was stale."""


def _open_exclusive(path: Path) -> int | None:
    try:
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    except FileExistsError:
        return None


def _take_over(folder: Path, stale: ClaimInfo, heartbeat_every: float) -> Claim | None:
    """Replace the stale claim ``stale`` by a new one of this process, unless another taker wins or the claim has
    changed meanwhile (then None)."""
    marker = folder / (_TAKEOVER_PREFIX + "".join(c for c in stale.identity if c.isalnum() or c in "-_")[:64])
    guard = _open_exclusive(marker)
    if guard is None:
        return None  # another worker is taking over this very claim
    os.close(guard)
    try:
        current = read_claim(folder)
        if current is None or current.identity != stale.identity:
            return None  # released or taken over since it was read
        token = secrets.token_hex(8)
        temporary = folder / f".{CLAIM_FILE}.{token}.tmp"
        descriptor = _open_exclusive(temporary)
        if descriptor is None:
            return None
        claim = Claim(folder, _own_info(token), descriptor, heartbeat_every)
        try:
            os.replace(temporary, folder / CLAIM_FILE)
        except BaseException:
            claim.release()
            temporary.unlink(missing_ok=True)
            raise
        return claim
    finally:
        marker.unlink(missing_ok=True)


def try_claim(
    folder: Path, timeout: float = DEFAULT_CLAIM_TIMEOUT, heartbeat_every: float | None = None
) -> ClaimAttempt:
    """Claim the run folder ``folder`` for this process (see the module docstring).

    ``heartbeat_every`` defaults to ``min(60, timeout / 5)`` seconds, so a live claim misses several heartbeats
    before it counts as stale."""
    if timeout <= 0:
        raise ValueError(f"the claim timeout must be positive (seconds), got {timeout!r}; e.g. 600.")
    every = min(60.0, timeout / 5) if heartbeat_every is None else heartbeat_every
    folder.mkdir(parents=True, exist_ok=True)
    holder = None
    for _ in range(3):  # a claim released or replaced between two looks is looked at again
        descriptor = _open_exclusive(folder / CLAIM_FILE)
        if descriptor is not None:
            return ClaimAttempt(Claim(folder, _own_info(secrets.token_hex(8)), descriptor, every))
        holder = read_claim(folder)
        if holder is None:
            continue
        reason = stale_reason(holder, timeout)
        if reason is None:
            return ClaimAttempt(None, holder)
        claim = _take_over(folder, holder, every)
        if claim is not None:
            return ClaimAttempt(claim, None, holder, reason)
        holder = None  # another worker is taking this stale claim over
    return ClaimAttempt(None, holder)
