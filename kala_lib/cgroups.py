"""One memory and process budget per generated-code sample, from the kernel's control groups.

rlimits bound a process's own address space, not what it makes the host hold: files in a tmpfs,
memfd files, SysV and POSIX shared memory, the kernel memory of its inodes. A memory cgroup charges
all of them to the group whose process caused them, so a limit on the group bounds every class at
once. Each sample runs in a fresh group with

- cgroup v2: ``memory.max`` = the budget, ``memory.swap.max`` 0, ``memory.oom.group`` 1 and
  ``pids.max``;
- cgroup v1 (hybrid hosts): ``memory.limit_in_bytes`` = ``memory.memsw.limit_in_bytes`` = the
  budget (kernel memory is charged to the same counter) in the memory hierarchy and ``pids.max`` in
  the pids hierarchy.

Where the groups are made: ``KALA_SANDBOX_CGROUP`` (a cgroup v2 directory delegated to this user,
e.g. by ``systemd-run --user --scope -p Delegate=yes``) when set; else beside this process's own
group, which works as root. When no group can be made, :class:`Support` says why and names what
stays unbounded (``kala_lib.sandbox.memory_bound`` logs it once); the sandbox still runs with its
rlimits and tmpfs caps.

The sample's first process joins its group before it runs anything (:data:`JOIN`): trusted code in
the child, before bubblewrap is executed (the checker's ``preexec_fn``, or :data:`JOINER` started in
place of the sandbox), writes its own pid to the group's ``cgroup.procs`` and drops to the
sandbox's uid, so every process of the sample starts inside.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ENV = "KALA_SANDBOX_CGROUP"
UNBOUNDED = ("memfd files, SysV shared memory and the kernel memory of files and inodes are not bounded by the "
             "sample's memory limit (the read-only root and /dev and the size-capped /tmp and /dev/shm still bound "
             "files and POSIX shared memory)")
_counter = itertools.count()


@dataclass(frozen=True)
class Support:
    """Where per-sample groups go: ``version`` "v2" or "v1", or None with ``why``."""

    version: str | None
    memory_parent: str | None = None  # the folder new groups are made in (v2: memory and pids together)
    pids_parent: str | None = None  # v1: the pids hierarchy's folder
    why: str = ""

    @property
    def available(self) -> bool:
        return self.version is not None

    def describe(self) -> str:
        if self.version == "v2":
            return f"cgroup v2 under {self.memory_parent}"
        if self.version == "v1":
            return f"cgroup v1 under {self.memory_parent}" + (f" and {self.pids_parent}" if self.pids_parent else "")
        return f"no cgroup ({self.why}): {UNBOUNDED}"


def _mounts(mountinfo: str) -> dict[str, str]:
    """{"v2": unified mount point, "memory": v1 memory mount, "pids": v1 pids mount} that exist."""
    found: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point, fstype, options = fields[4], tail[0], tail[2].split(",")
        if fstype == "cgroup2":
            found.setdefault("v2", point)
        elif fstype == "cgroup":
            for controller in ("memory", "pids"):
                if controller in options:
                    found.setdefault(controller, point)
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """This process's group per hierarchy: {"v2": "/a/b", "memory": "/x", "pids": "/"}."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths["v2"] = path
        for controller in controllers.split(","):
            if controller in ("memory", "pids"):
                paths[controller] = path
    return paths


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _v2_parent(mount: str, own: str, explicit: str | None) -> tuple[str | None, str]:
    """A v2 folder whose children can have memory and pids limits (the delegated ``explicit`` group,
    else ``kala-sandbox`` beside this process's own group), or (None, why)."""
    if explicit:
        parent = above = Path(explicit)
    else:
        parent = (Path(mount + own).parent if own != "/" else Path(mount)) / "kala-sandbox"
        above = parent.parent
    try:
        controllers = (above / "cgroup.controllers").read_text().split()
    except OSError as error:
        return None, f"cannot read {above}/cgroup.controllers ({error.strerror})"
    if "memory" not in controllers:
        return None, f"the memory controller is not available in {above} (cgroup.controllers: {' '.join(controllers) or 'empty'})"
    if explicit:
        if not _writable_dir(parent):
            return None, f"{CGROUP_ENV}={parent} is not a folder this user can write (delegate it: systemd-run --user --scope -p Delegate=yes)"
        if (parent / "cgroup.procs").read_text().strip():
            return None, f"{CGROUP_ENV}={parent} holds processes itself; give the sandbox an empty group"
        if not _enable(parent, ("memory", "pids")):
            return None, f"cannot enable the memory controller for the children of {parent}"
        return str(parent), ""
    if not _writable_dir(above):
        return None, f"{above} is not writable by this user (run as root, or set {CGROUP_ENV} to a delegated group)"
    try:
        parent.mkdir(exist_ok=True)
    except OSError as error:
        return None, f"cannot create {parent} ({error.strerror})"
    if not _enable(parent, ("memory", "pids")):
        return None, (f"cannot enable the memory controller below {above} (a group with processes cannot pass "
                      f"controllers on; set {CGROUP_ENV} to an empty delegated group)")
    return str(parent), ""


def _enable(group: Path, controllers: tuple[str, ...]) -> bool:
    """Enable ``controllers`` for the children of ``group``; True when memory is on."""
    try:
        enabled = (group / "cgroup.subtree_control").read_text().split()
    except OSError:
        enabled = []
    for name in (c for c in controllers if c not in enabled):
        try:
            (group / "cgroup.subtree_control").write_text(f"+{name}")
        except OSError:
            pass
    try:
        return "memory" in (group / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _v1_parent(mount: str, own: str) -> tuple[str | None, str]:
    parent = Path(mount + own.rstrip("/")) / "kala-sandbox"
    if not _writable_dir(parent.parent):
        return None, f"{parent.parent} is not writable by this user (cgroup v1 needs root)"
    try:
        parent.mkdir(exist_ok=True)
    except OSError as error:
        return None, f"cannot create {parent} ({error.strerror})"
    return str(parent), ""


def detect(mountinfo: str, proc_cgroup: str, explicit: str | None = None) -> Support:
    """Where per-sample groups can be made here (see the module docstring)."""
    mounts, own = _mounts(mountinfo), _own_paths(proc_cgroup)
    reasons = []
    if "v2" in mounts:
        parent, why = _v2_parent(mounts["v2"], own.get("v2", "/"), explicit)
        if parent:
            return Support("v2", parent)
        reasons.append(f"cgroup v2: {why}")
    elif explicit:
        reasons.append(f"{CGROUP_ENV} is set but no cgroup v2 hierarchy is mounted")
    if "memory" in mounts and not explicit:
        parent, why = _v1_parent(mounts["memory"], own.get("memory", "/"))
        if parent:
            pids = None
            if "pids" in mounts:
                pids, _ = _v1_parent(mounts["pids"], own.get("pids", "/"))
            return Support("v1", parent, pids)
        reasons.append(f"cgroup v1: {why}")
    if not mounts:
        reasons.append("no cgroup hierarchy is mounted")
    return Support(None, why="; ".join(reasons))


@functools.lru_cache(maxsize=1)
def support() -> Support:
    """This machine's :class:`Support` (detected once per process)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError as error:
        return Support(None, why=f"cannot read /proc/self ({error.strerror})")
    return detect(mountinfo, proc_cgroup, os.environ.get(CGROUP_ENV) or None)


class SampleGroup:
    """A fresh group for one sample (a context manager): limits written on entry, every process left
    in it killed and the group removed on exit. ``procs`` are the files the sample's first process
    writes its pid to (:data:`JOIN`)."""

    def __init__(self, found: Support, memory_bytes: int, max_pids: int):
        self.found, self.memory_bytes, self.max_pids = found, int(memory_bytes), int(max_pids)
        self.dirs: list[Path] = []
        self.procs: list[str] = []

    def __enter__(self) -> "SampleGroup":
        name = f"sample-{os.getpid()}-{next(_counter)}"
        try:
            if self.found.version == "v2":
                group = self._make(Path(self.found.memory_parent) / name)
                self._write(group, "memory.max", self.memory_bytes)
                self._write(group, "memory.swap.max", 0, optional=True)  # no swap: absent without swap accounting
                self._write(group, "memory.oom.group", 1, optional=True)
                self._write(group, "pids.max", self.max_pids, optional=True)
            else:
                group = self._make(Path(self.found.memory_parent) / name)
                self._write(group, "memory.limit_in_bytes", self.memory_bytes)
                self._write(group, "memory.memsw.limit_in_bytes", self.memory_bytes, optional=True)
                self._write(group, "memory.swappiness", 0, optional=True)
                if self.found.pids_parent:
                    pids = self._make(Path(self.found.pids_parent) / name)
                    self._write(pids, "pids.max", self.max_pids)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.procs = [str(d / "cgroup.procs") for d in self.dirs]
        return self

    def _make(self, path: Path) -> Path:
        path.mkdir()
        self.dirs.append(path)
        return path

    @staticmethod
    def _write(group: Path, name: str, value: int, optional: bool = False) -> None:
        try:
            (group / name).write_text(str(value))
        except OSError:
            if not optional:
                raise

    def peak_bytes(self) -> int | None:
        """The most memory the group held (v2 memory.peak, v1 memory.max_usage_in_bytes)."""
        if not self.dirs:
            return None
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            try:
                return int((self.dirs[0] / name).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return None

    def oom_kills(self) -> int:
        """How often the kernel killed a process of this group for memory (0 when unknown)."""
        if not self.dirs:
            return 0
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            try:
                for line in (self.dirs[0] / name).read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
            except (OSError, ValueError):
                continue
        return 0

    def __exit__(self, *exc) -> None:
        for group in reversed(self.dirs):
            kill = group / "cgroup.kill"
            for attempt in range(60):
                try:
                    if kill.exists():
                        kill.write_text("1")
                    else:
                        for pid in (group / "cgroup.procs").read_text().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except (ProcessLookupError, PermissionError, ValueError):
                                pass
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(min(0.001 * 2 ** attempt, 0.05))  # dying processes are still listed for a moment
        self.dirs = []


#: Source of ``_join(procs, uid)``, run in the sample's first process before anything of the
#: sample's: joins the group by writing its own pid to each ``cgroup.procs`` in ``procs``, then drops
#: to ``uid`` (None: unchanged). Shared by :data:`JOINER` and the sandbox's checker (no braces, so it
#: can go into a ``str.format`` template).
JOIN = r'''
def _join(procs, uid):
    import os
    for path in procs:
        with open(path, "w") as handle:
            handle.write("0")
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
'''

#: Runs as the sample's first process (trusted): :data:`JOIN`, then executes the rest of its
#: arguments. argv: joiner.py UID PROCS... -- PROGRAM ARGS...  (UID "-": unchanged)
JOINER = JOIN + r'''
import os, sys
args = sys.argv[1:]
cut = args.index("--")
_join(args[1:cut], None if args[0] == "-" else int(args[0]))
os.execv(args[cut + 1], args[cut + 1:])
'''


def joined(argv: list[str], python: str, procs: list[str], uid: int | None) -> list[str]:
    """``argv`` started through :data:`JOINER`: in the group first, as ``uid`` (None: unchanged)."""
    if not procs:
        return list(argv)
    return [python, "-I", "-S", "-B", "-c", JOINER, "-" if uid is None else str(uid), *procs, "--", *argv]


__all__ = ["CGROUP_ENV", "JOIN", "JOINER", "SampleGroup", "Support", "UNBOUNDED", "detect", "joined", "support"]
