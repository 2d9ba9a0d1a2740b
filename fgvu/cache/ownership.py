"""Who may write a part: an flock on a local disk, a lease on an object store.

`acquire_part(cache, part, lease_seconds)` returns a lock held until `release()`; a second writer
on the same part gets a `CacheError` naming the lock. `check()` before every commit raises if the
lock was lost (only a lease can be).

**Local disk: `FileLock`.** An exclusive flock on `writer.lock`; the kernel drops it when the
process dies, even by kill -9, so a re-run can take over at once.

**Object store: `Lease`.** There is no flock, but there is a conditional PUT (create only if
absent, `StorePath.create`). A part's leases are numbered objects `leases/lease-NNNNNNNN.json`,
each recording a random owner id, host, pid and the time it `expires`. The holder of the highest
number owns the part while its lease has not expired. To take a part, a writer lists the leases;
if the highest is alive, it is refused; else it creates the next number. Of two writers racing
for the same number, the store lets exactly one create it. Leases are never deleted, so a writer
that listed long ago and tries an old number finds it taken. A background thread renews the
lease every third of its length and gives it up if a higher number appeared; `release()` writes
it as expired, so the next run starts at once.

Limits, honestly: a lease is a promise in time. It assumes the writers' clocks agree to well
within the lease length, and that a writer is not paused (swapped out, stopped in a debugger,
partitioned from the store) for longer than the lease between its last `check()` and its
commit: such a writer could commit once after another took the part over. After a kill -9 the
part stays leased until the lease expires (`--lease-seconds`, 60 s by default): a re-run
within that time is refused and says when to retry.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from fgvu.cache.layout import CacheError
from fgvu.cache.location import is_store

LOCK_FILE = "writer.lock"
LEASE_DIR = "leases"
LEASE_SECONDS = 60.0


def acquire_part(cache, part, lease_seconds: float = LEASE_SECONDS, action: str = "written"):
    """The exclusive right to write `part`: an flock locally, a lease on a store; CacheError if held."""
    if is_store(part):
        return Lease(cache, part, lease_seconds, action)
    return FileLock(cache, part, action)


class FileLock:
    """An exclusive flock on the part's writer.lock, with this process's pid written in it."""

    def __init__(self, cache, part: Path, action: str = "written"):
        Path(part).mkdir(parents=True, exist_ok=True)
        self.path = Path(part) / LOCK_FILE
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise CacheError(f"cache {cache}: {Path(part).name} is being {action} by another process "
                             f"(lock {self.path})") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def check(self) -> None:
        """An flock cannot be lost while the process lives."""

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


class Lease:
    """A numbered lease object in the part's leases/ prefix, renewed by a background thread."""

    def __init__(self, cache, part, seconds: float = LEASE_SECONDS, action: str = "written"):
        if not seconds > 0:
            raise CacheError(f"lease_seconds must be positive, got {seconds}")
        self.cache, self.part, self.seconds = cache, part, float(seconds)
        self.owner = uuid.uuid4().hex
        self.lost: str | None = None  # why the lease was lost, once it is
        self._stop = threading.Event()
        number, holder = _highest(part)
        if holder is not None and holder.get("expires", 0) > time.time():
            raise CacheError(f"cache {cache}: {part.name} is being {action} by another process "
                             f"({_describe(holder)}; lease {_lease(part, number)}); if that process is dead, "
                             f"re-run after the lease expires in {holder['expires'] - time.time():.0f} s")
        self.number = number + 1
        self.path = _lease(part, self.number)
        self._expires = time.time() + self.seconds
        if not self.path.create(self._body(self._expires)):
            raise CacheError(f"cache {cache}: {part.name} was just taken by another process "
                             f"(lease {self.path})")
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{part.name}", daemon=True)
        self._thread.start()

    def _body(self, expires: float) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires": expires, "seconds": self.seconds}).encode()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._renew()
            except Exception as e:  # the store is unreachable: the lease runs out unless a renewal succeeds
                if time.time() > self._expires:
                    self.lost = f"could not renew it before it expired ({type(e).__name__}: {e})"
            if self.lost:
                return

    def _renew(self) -> None:
        if _lease(self.part, self.number + 1).exists():
            self.lost = f"another process took the part over (lease {_lease(self.part, self.number + 1)})"
            return
        expires = time.time() + self.seconds
        self.path.write_bytes(self._body(expires))
        self._expires = expires

    def check(self) -> None:
        """Raise a CacheError if the lease is lost or has run out; called before every commit."""
        if self.lost is None and time.time() > self._expires:
            self.lost = "it expired before it was renewed (the process was paused or the store unreachable)"
        if self.lost is None and _lease(self.part, self.number + 1).exists():
            self.lost = f"another process took the part over (lease {_lease(self.part, self.number + 1)})"
        if self.lost is not None:
            raise CacheError(f"cache {self.cache}: lost the lease on {self.part.name}: {self.lost}; "
                             "nothing more is committed by this run")

    def release(self) -> None:
        """Stop renewing and write the lease as expired, so the next writer need not wait."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if self.lost is None:
            self.path.write_bytes(self._body(0.0))


def _lease(part, number: int):
    return part / LEASE_DIR / f"lease-{number:08d}.json"


def _highest(part) -> tuple[int, dict | None]:
    """The highest lease number of a part and what that lease says (0 and None when there is none)."""
    numbers = []
    for p in (part / LEASE_DIR).glob("lease-*.json"):
        try:
            numbers.append(int(p.name[len("lease-"):-len(".json")]))
        except ValueError:
            continue
    if not numbers:
        return 0, None
    number = max(numbers)
    try:
        holder = json.loads(_lease(part, number).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError):
        holder = {"expires": 0}  # unreadable: nobody can be shown to hold it
    return number, holder if isinstance(holder, dict) else {"expires": 0}


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')}"
