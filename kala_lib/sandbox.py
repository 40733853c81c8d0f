"""Run untrusted generated code, isolated by the operating system, and score it where it cannot reach.

The boundary is bubblewrap (Debian's ``bubblewrap``), one fresh sandbox per sample:
- an unprivileged uid (the evaluator drops to ``nobody`` first when it runs as root), in new user,
  pid, network, ipc, uts and cgroup namespaces: no network, no other process visible or signalable;
- a read-only view of ``/usr`` (and the interpreter's prefix if it lives elsewhere) and nothing else
  of the host: no ``/etc``, ``/home``, ``/root``, project or data folders; a new ``/proc`` that shows
  only the sandbox's own processes; a read-only root and ``/dev``; a private size-limited tmpfs as
  the working directory and a small one as ``/dev/shm`` (the only places it can write);
- ``--die-with-parent``, and rlimits set before the sample's first line (CPU, address space, file
  size, processes, open files, no core files); the whole sandbox is killed at the timeout;
- one memory budget for everything the sample makes the host hold (its processes, its tmpfs files,
  memfd files, SysV and POSIX shared memory, the kernel memory of its inodes): a fresh memory and
  pids cgroup per sample (:mod:`kala_lib.cgroups`), which its first process joins before any of its
  code runs. Where no cgroup can be had, :func:`memory_bound` says so (logged once) and names what
  stays unbounded.

Scoring never trusts the sample's process. ``run_tests`` runs the candidate code in the sandbox as a
small server that only defines its functions and answers calls; the tests run in a separate checker
process outside the sandbox, which calls the candidate's functions over a pipe. Values cross as exact
builtins only (an object whose ``__eq__`` is always true cannot cross), the tests never enter the
sandbox, and a pass is the checker's own verdict after ``check(candidate)`` returned, so exiting
early, atexit, excepthooks or printing a fake result score as failures.

Where bubblewrap cannot run, code is not executed (``SandboxUnavailable`` names the fix) unless
``KALA_ALLOW_UNSANDBOXED_CODE=1`` opts in: then each sample is a plain process, as ``nobody`` when
the evaluator is root, with the same rlimits and memory group, its own session and temporary
directory, and the CPython audit hook below as its only other layer. The hook is not a security
boundary (code can remove it, e.g. through ``gc``); :func:`describe` says that wherever a run is
reported (in the sandbox the hook is a second layer).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import logging
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kala_lib import cgroups

PASSED, FAILED, TIMEOUT = "passed", "failed", "timeout"
ALLOW_UNSANDBOXED = "KALA_ALLOW_UNSANDBOXED_CODE"
SANDBOX_PYTHON = "KALA_SANDBOX_PYTHON"
SANDBOX_UID = 65534  # nobody
SAMPLE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # the whole environment of the checker and the sample
READ_CAP = 1 << 20  # bytes of output read from one sample before it is killed
SHM_BYTES = 16 << 20  # the sandbox's /dev/shm tmpfs (inside the sample's memory budget)
EXTRA_PIDS = 4  # bwrap's own processes (monitor, pid 1) and the interpreter, on top of max_processes
UNISOLATED = ("generated code ran WITHOUT isolation (KALA_ALLOW_UNSANDBOXED_CODE=1): a plain process with rlimits "
              "and a CPython audit hook, which is not a security boundary (code can remove it)")
_OUT_OF_MEMORY = "killed: the sample's memory budget (its cgroup) was spent"
_log = logging.getLogger("kala.sandbox")
REPLY_CAP = 8 << 20  # bytes of one reply from the candidate's server

FIX = ("install bubblewrap (`apt-get install bubblewrap`; ./scripts/setup.sh does it when run as root) and allow "
       "unprivileged user namespaces (`sysctl -w kernel.unprivileged_userns_clone=1` and "
       "`sysctl -w user.max_user_namespaces=15000` where those exist), or set KALA_ALLOW_UNSANDBOXED_CODE=1 to run "
       "generated code without the sandbox (an unprivileged process with rlimits and an audit hook only)")


class SandboxUnavailable(RuntimeError):
    """Generated code would run without the sandbox and nobody opted in."""


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | failed | timeout
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: str = "bubblewrap"  # bubblewrap | process (the opt-in without bubblewrap)
    detail: str = ""  # why the checker failed a run_tests sample
    memory_bound: str = ""  # "cgroup v1"/"cgroup v2": one budget for all the sample's memory; "" none
    memory_peak_mb: float | None = None  # the most the sample's group held (None without a cgroup)

    @property
    def passed(self) -> bool:
        return self.status == PASSED


@dataclass(frozen=True)
class ScoringJob:
    """One sample to score. Only ``candidate`` enters the sandbox; the rest stays with the checker.

    ``tests`` and ``call`` (e.g. ``check(candidate)``) run in the checker after ``setup`` (trusted
    code the tests need, such as HumanEval's prompt with its helper functions). ``entry`` binds names
    of the tests to the candidate's functions (HumanEval's ``candidate``); any other name the tests
    use and do not define is looked up in the candidate (MBPP's functions) or imported from the
    standard library (a module the candidate imported, such as ``math``)."""

    candidate: str
    tests: str
    call: str = ""
    setup: str = ""
    entry: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Code that runs inside the sandbox before the sample: rlimits, the audit hook, then either the
# program (run_python) or the candidate server (run_tests). Formatted with the limits only.
_BOOT = r'''
import os, resource, sys
L = {limits!r}
for name, value in (("RLIMIT_CPU", L["cpu"]), ("RLIMIT_AS", L["memory"]), ("RLIMIT_FSIZE", L["fsize"]),
                    ("RLIMIT_NPROC", L["nproc"]), ("RLIMIT_NOFILE", 64), ("RLIMIT_CORE", 0)):
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        if name not in ("RLIMIT_NPROC", "RLIMIT_NOFILE"):
            raise
BLOCKED = ("os.fork", "os.forkpty", "os.system", "os.posix_spawn", "subprocess.Popen", "os.kill", "os.killpg",
           "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
           "socket.gethostbyaddr", "socket.sendto", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
           "ctypes.call_function", "pty.spawn", "os.setxattr", "os.mknod", "os.mkfifo", "sqlite3.connect")

def guard(event, args, _blocked=BLOCKED, _prefixes=("os.exec", "os.spawn", "os.posix_spawn")):
    if event in _blocked or event.startswith(_prefixes):
        raise PermissionError("sandbox: " + event + " is not allowed")

sys.addaudithook(guard)
del guard
if L["mode"] == "program":
    source = sys.stdin.read()
    exec(compile(source, "program.py", "exec"), {{"__name__": "__main__"}})
else:
{server}
'''

# Shared by the server (inside) and the checker (outside): exact builtin values as tagged JSON.
_CODEC = r'''
import collections as _collections, json as _json
_ITERATORS = tuple(type(x) for x in (iter(()), iter([]), iter(""), map(abs, ()), filter(None, ()), zip(), enumerate(()),
                                     reversed([]), (i for i in ()), iter(range(0)), iter({{}}), iter(set())))
_SEQUENCES = {{list: "l", tuple: "t", set: "s", frozenset: "fs", _collections.deque: "dq"}}
_MAPPINGS = {{dict: "d", _collections.Counter: "ctr", _collections.OrderedDict: "od", _collections.defaultdict: "dd"}}

def encode(value, refs=None, depth=0):
    # refs: id -> name of the checker's setup globals, which cross by name (MBPP's test_setup_code objects)
    kind = type(value)
    if depth > 200:
        raise ValueError("value nested too deeply")
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return {{"i": hex(value)}}  # hex: exact at any size (decimal text stops at 4,300 digits)
    if kind is float:
        return {{"f": value.hex()}}
    if kind is complex:
        return {{"c": [value.real.hex(), value.imag.hex()]}}
    if kind is bytes:
        return {{"b": value.hex()}}
    if kind is range:
        return {{"r": [hex(value.start), hex(value.stop), hex(value.step)]}}
    if kind in _SEQUENCES or kind in _ITERATORS:
        return {{_SEQUENCES.get(kind, "it"): [encode(v, refs, depth + 1) for v in value]}}
    if kind in _MAPPINGS:
        return {{_MAPPINGS[kind]: [[encode(k, refs, depth + 1), encode(v, refs, depth + 1)] for k, v in value.items()]}}
    if refs and id(value) in refs:
        return {{"g": refs[id(value)]}}
    raise TypeError("a " + kind.__name__ + " is not a builtin value")

_MAKE = {{"l": list, "t": tuple, "s": set, "fs": frozenset, "dq": _collections.deque, "it": iter}}
_MAKE_MAP = {{"d": dict, "ctr": lambda items: _collections.Counter(dict(items)), "od": _collections.OrderedDict,
             "dd": lambda items: _collections.defaultdict(None, items)}}

def decode(data, space=None):
    # space: the server's globals, where a by-name value is looked up
    if data is None or type(data) in (bool, str):
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError("malformed value")
    (tag, body), = data.items()
    if tag == "i":
        return int(body, 16)
    if tag == "f":
        return float.fromhex(body)
    if tag == "c":
        return complex(float.fromhex(body[0]), float.fromhex(body[1]))
    if tag == "b":
        return bytes.fromhex(body)
    if tag == "r":
        made = range(int(body[0], 16), int(body[1], 16), int(body[2], 16))
        try:
            size = len(made)
        except OverflowError:  # longer than sys.maxsize
            size = -1
        if not 0 <= size <= 10**6:  # a short reply must not become gigabytes in the checker
            raise ValueError("range too long")
        return made
    if tag == "g" and space is not None:
        return space[body]
    if tag in _MAKE_MAP:
        return _MAKE_MAP[tag]([(decode(k, space), decode(v, space)) for k, v in body])
    return _MAKE[tag]([decode(v, space) for v in body])
'''

# The candidate's server: defines the candidate's code, then answers describe/call requests.
_SERVER = _CODEC + r'''
import builtins
_reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the candidate's own prints go to stderr, never into the replies
_space = {{"__name__": "__main__", "__builtins__": builtins}}

def _answer(message):
    if message["op"] == "load":
        exec(compile(message["code"], "candidate.py", "exec"), _space)
        return {{"ok": True}}
    args = [decode(a, _space) for a in message["args"]]
    kwargs = {{k: decode(v, _space) for k, v in message["kwargs"].items()}}
    return {{"value": encode(_space[message["name"]](*args, **kwargs))}}

for _line in sys.stdin:
    try:
        _out = _answer(_json.loads(_line))
    except BaseException as error:  # the candidate's own, SystemExit included: reported, never fatal here
        try:
            _out = {{"raise": type(error).__name__, "message": str(error)[:500]}}
        except BaseException:
            _out = {{"raise": "Exception", "message": ""}}
    _reply.write(_json.dumps(_out) + "\n")
    _reply.flush()
'''

# The checker: trusted, outside the sandbox. Starts the candidate's sandbox, runs the tests
# against it, and prints the verdict on its own stdout, which the candidate cannot reach.
_CHECKER = _CODEC + r'''
import ast, builtins, importlib.util, os, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # the checker is trusted, not unbounded
_verdict = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the tests' own prints go to stderr, never next to the verdict
job = _json.loads(sys.stdin.read())
# exceptions a candidate may raise through a call, as themselves; any other (StopIteration, which
# would end a test's loop quietly, included) arrives as RuntimeError
_RAISABLE = (ArithmeticError, AssertionError, AttributeError, ImportError, LookupError, MemoryError, NameError,
             NotImplementedError, OSError, RecursionError, TypeError, ValueError)

{join}
def _enter():
    # in the child, before bwrap: join the sample's memory group, drop to the sandbox's uid, then die
    # with this checker (this process is single-threaded, so preexec_fn is safe here)
    _join(job["procs"], job["uid"])
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL (after the uid change, which clears it)
    except Exception:
        pass

server = subprocess.Popen(job["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=job["cwd"], env=job["env"],
                          close_fds=True, preexec_fn=_enter)

class CandidateFailed(Exception):
    pass

def ask(message):
    try:
        server.stdin.write((_json.dumps(message) + "\n").encode())
        server.stdin.flush()
    except (BrokenPipeError, OSError):
        raise CandidateFailed("the candidate's process ended") from None
    line = server.stdout.readline({reply_cap})
    if not line.endswith(b"\n"):
        raise CandidateFailed("the candidate's process ended" if len(line) < {reply_cap} else "reply too long")
    reply = _json.loads(line)
    if "raise" in reply:
        kind = getattr(builtins, str(reply["raise"]), None)
        if not (isinstance(kind, type) and issubclass(kind, _RAISABLE)):
            kind = RuntimeError
        raise kind(str(reply.get("message", "")))
    return reply

def proxy(name):
    def call(*args, **kwargs):
        reply = ask({{"op": "call", "name": name, "args": [encode(a, refs) for a in args],
                     "kwargs": {{k: encode(v, refs) for k, v in kwargs.items()}}}})
        return decode(reply["value"])
    call.__name__ = call.__qualname__ = name
    return call

def free_names(*sources):
    used, bound = set(), set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name):
                (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
    return sorted(used - bound)

verdict = {{"passed": False, "why": ""}}
try:
    ask({{"op": "load", "code": job["candidate"]}})
    space = {{"__name__": "__main__"}}
    exec(compile(job["setup"], "setup.py", "exec"), space)
    refs = {{id(v): k for k, v in space.items() if not k.startswith("__")}}
    for name, target in job["entry"].items():
        space[name] = proxy(target)
    for name in free_names(job["tests"], job["call"]):
        # only the entry names come from the candidate: builtins stay builtins, modules are the real ones
        if name not in space and not hasattr(builtins, name) and importlib.util.find_spec(name) is not None:
            space[name] = importlib.import_module(name)
    exec(compile(job["tests"], "tests.py", "exec"), space)
    exec(compile(job["call"], "call.py", "exec"), space)
    verdict = {{"passed": True, "why": ""}}
except BaseException as error:
    verdict = {{"passed": False, "why": (type(error).__name__ + ": " + str(error))[:1000]}}
finally:
    server.kill()
try:
    sys.stdout.flush()  # the tests' prints, on stderr
except Exception:
    pass
_verdict.write("KALA-VERDICT " + _json.dumps(verdict) + "\n")
_verdict.flush()
os._exit(0)
'''


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Launch:
    """How a sample's interpreter is started: under which bwrap (None: the opt-in plain process),
    on which interpreter, dropped to which uid (None: stays as it is)."""

    bwrap: str | None
    python: str
    uid: int | None

    @property
    def isolation(self) -> str:
        return "bubblewrap" if self.bwrap else "process"

    def argv(self, boot: str, tmp_bytes: int) -> list[str]:
        prefix = _bwrap_argv(self.bwrap, self.python, tmp_bytes) if self.bwrap else ()
        return [*prefix, self.python, "-I", "-S", "-B", "-c", boot]


def _readable_by_others(path: str) -> bool:
    """Whether uid ``nobody`` can execute ``path``: every folder above it searchable, the file r-x."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        mode = os.stat(Path(*parts[:i])).st_mode
        if not mode & stat.S_IXOTH:
            return False
    mode = os.stat(path).st_mode
    return bool(mode & stat.S_IXOTH and mode & stat.S_IROTH)


def _sandbox_python(uid: int | None) -> str:
    """The interpreter for samples: KALA_SANDBOX_PYTHON, else this one's, else the system's."""
    chosen = os.environ.get(SANDBOX_PYTHON)
    candidates = [chosen] if chosen else [os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
                                          "/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and (_readable_by_others(real) if uid is not None else os.access(real, os.X_OK)):
            return real
    who = f"uid {uid}" if uid is not None else "this user"
    raise SandboxUnavailable(f"no Python interpreter that {who} can run for generated code (tried "
                             f"{', '.join(candidates)}): set {SANDBOX_PYTHON} to one (e.g. /usr/bin/python3)")


@functools.lru_cache(maxsize=8)
def _bwrap_argv(bwrap: str, python: str, tmp_bytes: int) -> tuple[str, ...]:
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--disable-userns",
            "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    prefix = os.path.dirname(os.path.dirname(python))
    if not (prefix + "/").startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    for packages in _package_dirs(prefix):  # installed packages (a benchmark's data among them) stay unseen
        argv += ["--tmpfs", packages, "--remount-ro", packages]
    # writable: /tmp and /dev/shm only, both size-capped; the root tmpfs and /dev are read-only
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
             "--size", str(tmp_bytes), "--tmpfs", "/tmp", "--remount-ro", "/dev", "--remount-ro", "/",
             "--chdir", "/tmp", "--hostname", "sandbox", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
             "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8", "--"]
    return tuple(argv)


def _package_dirs(prefix: str) -> list[str]:
    """Folders of installed Python packages under the mounted trees: samples get the standard library only."""
    import glob

    patterns = ["/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages",
                "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
                f"{prefix}/lib/python3*/site-packages", f"{prefix}/lib/python3*/dist-packages"]
    return sorted({os.path.realpath(p) for pattern in patterns for p in glob.glob(pattern) if os.path.isdir(p)})


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str | None, python: str, uid: int | None, allow: bool) -> _Launch:
    why = "bwrap is not on PATH"
    if bwrap:
        argv = _bwrap_argv(bwrap, python, 1 << 20)
        try:
            probe = subprocess.run([*argv, python, "-I", "-S", "-c", "print('ok')"], capture_output=True, timeout=30,
                                   **_drop_kwargs(uid))
            if probe.stdout.strip() == b"ok":
                return _Launch(bwrap, python, uid)
            why = f"bwrap failed: {probe.stderr.decode(errors='replace').strip()[:300]}"
        except (OSError, subprocess.SubprocessError) as error:
            why = f"bwrap failed: {error}"
    if allow:
        return _Launch(None, python, uid)
    raise SandboxUnavailable(f"generated code is not run without a sandbox, and bubblewrap cannot run here ({why}): {FIX}")


def launcher() -> _Launch:
    """How samples run here; raises SandboxUnavailable when bubblewrap cannot run and nobody opted in."""
    uid = SANDBOX_UID if os.geteuid() == 0 else None
    allow = os.environ.get(ALLOW_UNSANDBOXED, "").strip().lower() in ("1", "true", "yes")
    return _probe(shutil.which("bwrap"), _sandbox_python(uid), uid, allow)


def isolation() -> str:
    """``bubblewrap`` or ``process`` (opted in); raises SandboxUnavailable with the fix otherwise."""
    return launcher().isolation


@functools.lru_cache(maxsize=1)
def memory_bound() -> str:
    """How the sample's memory is bounded here, in words; says once (a warning) when no cgroup can be
    had and names what then stays unbounded."""
    found = cgroups.support()
    if not found.available:
        _log.warning("generated-code samples run without a memory cgroup: %s. Run the evaluator as root, or set %s "
                     "to a delegated cgroup v2 group (docs/reliability.md).", found.describe(), cgroups.CGROUP_ENV)
    return found.describe()


def describe() -> str:
    """One line for a run's metadata and log: the isolation and the memory bound, and, for the opt-in
    without bubblewrap, that generated code ran without isolation."""
    launch = launcher()
    where = "bubblewrap sandbox" if launch.bwrap else UNISOLATED
    return f"{where}; memory: {memory_bound()}"


class _NoGroup:
    procs: tuple = ()

    def peak_bytes(self):
        return None

    def oom_kills(self) -> int:
        return 0


@contextlib.contextmanager
def _sample_group(memory_mb: int, tmp_mb: int, max_processes: int):
    """The sample's memory and pids group (:mod:`kala_lib.cgroups`), or a stand-in without one."""
    found = cgroups.support()
    memory_bound()
    if not found.available:
        yield _NoGroup()
        return
    with cgroups.SampleGroup(found, (memory_mb + tmp_mb) << 20, max_processes + EXTRA_PIDS) as group:
        yield group


def _result_memory(group) -> dict:
    peak, version = group.peak_bytes(), cgroups.support().version
    return {"memory_bound": f"cgroup {version}" if version else "",
            "memory_peak_mb": None if peak is None else round(peak / (1 << 20), 1)}


def _drop_kwargs(uid: int | None) -> dict:
    return {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}


def _limits(mode: str, cpu_seconds: int, memory_mb: int, file_size_mb: int, max_processes: int) -> dict:
    return {"mode": mode, "cpu": cpu_seconds, "memory": memory_mb << 20, "fsize": file_size_mb << 20,
            "nproc": max_processes}


_SERVER_BLOCK = "\n".join("    " + line for line in _SERVER.format().splitlines())  # under the boot's else:
_CHECKER_SOURCE = _CHECKER.format(reply_cap=REPLY_CAP, join=cgroups.JOIN)


def _boot(limits: dict) -> str:
    return _BOOT.format(limits=limits, server=_SERVER_BLOCK)


class _Workdir:
    """The opt-in path's private working directory (the sandbox's is a tmpfs that vanishes by itself)."""

    def __init__(self, launch: _Launch):
        self.path = None
        if launch.isolation == "process":
            self.path = tempfile.mkdtemp(prefix="kala-sample-")
            if launch.uid is not None:
                os.chown(self.path, launch.uid, launch.uid)

    def __enter__(self):
        return self.path or "/"

    def __exit__(self, *exc):
        if self.path:
            _remove_tree(self.path)


def _remove_tree(path: str) -> None:
    """Remove what a sample left; never raises (deep trees, odd modes and flags are the sample's doing)."""
    try:
        shutil.rmtree(path)
        return
    except BaseException:  # RecursionError on very deep trees, PermissionError, ...
        pass
    for tool in (["chattr", "-R", "-ia"], ["rm", "-rf", "--one-file-system"]):  # iterative, and clear +i/+a first
        exe = shutil.which(tool[0], path="/usr/bin:/bin:/usr/sbin:/sbin")
        try:
            if exe:
                subprocess.run([exe, *tool[1:], path], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass


def _run_bounded(argv: list[str], data: bytes, timeout: float, cwd: str, uid: int | None,
                 read_cap: int = READ_CAP) -> tuple[bytes, bytes, int | None, str]:
    """Start ``argv`` in its own session, feed ``data``, read its output in bounded chunks; kill its
    whole process group once the output passes ``read_cap`` or at ``timeout``. Returns within
    timeout + a few seconds whatever the process does: (stdout, stderr, returncode, how it ended)."""
    deadline = time.monotonic() + timeout
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                               env=SAMPLE_ENV, start_new_session=True,
                               **_drop_kwargs(uid))
    selector = selectors.DefaultSelector()
    output = {process.stdout: bytearray(), process.stderr: bytearray()}
    for stream in (process.stdin, process.stdout, process.stderr):
        os.set_blocking(stream.fileno(), False)
    selector.register(process.stdout, selectors.EVENT_READ)
    selector.register(process.stderr, selectors.EVENT_READ)
    view, ended = memoryview(data), "exited"
    if view:
        selector.register(process.stdin, selectors.EVENT_WRITE)
    else:
        process.stdin.close()
    try:
        while len(selector.get_map()) and ended == "exited":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ended = "timeout"
                break
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    try:
                        written = os.write(process.stdin.fileno(), view[:65536])
                    except (BrokenPipeError, OSError):
                        written = len(view)
                    view = view[written:]
                    if not view:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                output[key.fileobj] += chunk
                if len(output[process.stdout]) + len(output[process.stderr]) > read_cap:
                    ended = "output"
                    break
        if ended == "exited":
            try:
                process.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                ended = "timeout"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # every descendant left in its session
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        selector.close()
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except OSError:
                pass
    return bytes(output[process.stdout]), bytes(output[process.stderr]), process.returncode, ended


def _tail(data: bytes, limit: int) -> str:
    return data.decode(errors="replace")[-limit:]


def run_python(code: str, timeout: float = 10.0, cpu_seconds: int = 5, memory_mb: int = 1024,
               file_size_mb: int = 16, max_processes: int = 1, max_output: int = 10_000, tmp_mb: int = 64) -> SandboxResult:
    """Run ``code`` as a program in a fresh sandbox; passed = exit status 0 within the limits.

    For running code, not for scoring it: a program decides its own exit status. Scores come from
    ``run_tests``."""
    launch = launcher()
    argv = launch.argv(_boot(_limits("program", cpu_seconds, memory_mb, file_size_mb, max_processes)), tmp_mb << 20)
    started = time.monotonic()
    with _Workdir(launch) as cwd, _sample_group(memory_mb, tmp_mb, max_processes) as group:
        uid = launch.uid
        if group.procs:  # joins its group first (as the evaluator), then drops to the sandbox's uid
            argv, uid = cgroups.joined(argv, sys.executable, group.procs, uid), None
        out, err, code_, ended = _run_bounded(argv, code.encode(), timeout, cwd, uid)
        memory = _result_memory(group)
        killed = group.oom_kills()
    status = TIMEOUT if ended == "timeout" else PASSED if ended == "exited" and code_ == 0 else FAILED
    detail = "output cap passed" if ended == "output" else _OUT_OF_MEMORY if killed else ""
    return SandboxResult(status, code_, _tail(out, max_output), _tail(err, max_output), time.monotonic() - started,
                         launch.isolation, detail, **memory)


def run_tests(job: ScoringJob, timeout: float = 10.0, cpu_seconds: int = 5, memory_mb: int = 1024,
              file_size_mb: int = 16, max_processes: int = 1, max_output: int = 10_000, tmp_mb: int = 64) -> SandboxResult:
    """Score one sample: passed only when the checker saw the tests and ``call`` complete against the
    candidate's functions, which run in a fresh sandbox (see the module docstring)."""
    launch = launcher()
    inner = launch.argv(_boot(_limits("server", cpu_seconds, memory_mb, file_size_mb, max_processes)), tmp_mb << 20)
    started = time.monotonic()
    with _Workdir(launch) as cwd, _sample_group(memory_mb, tmp_mb, max_processes) as group:
        payload = {"argv": inner, "cwd": cwd, "uid": launch.uid, "env": SAMPLE_ENV, "procs": list(group.procs),
                   "candidate": job.candidate, "tests": job.tests, "call": job.call, "setup": job.setup,
                   "entry": dict(job.entry)}
        checker = [sys.executable, "-I", "-S", "-B", "-c", _CHECKER_SOURCE]
        out, err, code_, ended = _run_bounded(checker, json.dumps(payload).encode(), timeout, "/", None,
                                              read_cap=READ_CAP)
        memory = _result_memory(group)
        killed = group.oom_kills()
    verdict = {"passed": False, "why": {"timeout": "timed out", "output": "output cap passed"}.get(ended, "no verdict")}
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("KALA-VERDICT ")]
    if ended == "exited" and code_ == 0 and len(lines) == 1:
        try:
            verdict = json.loads(lines[0].split(" ", 1)[1])
            verdict = {"passed": verdict["passed"] is True, "why": str(verdict.get("why", ""))}
        except (ValueError, KeyError, TypeError, AttributeError):
            verdict = {"passed": False, "why": "unreadable verdict"}
    status = TIMEOUT if ended == "timeout" else PASSED if verdict["passed"] else FAILED
    why = verdict["why"] + (f" ({_OUT_OF_MEMORY})" if killed and status != PASSED else "")
    return SandboxResult(status, code_, "", _tail(err, max_output), time.monotonic() - started, launch.isolation,
                         why, **memory)


def _defines(code: str, name: str) -> bool:
    """Whether ``code`` defines function ``name`` at its top level (a full function in the reply)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return f"def {name}" in code
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)


def humaneval_job(problem: dict, completion: str) -> ScoringJob:
    """A HumanEval sample: the completion continues the prompt, unless it is the whole function."""
    entry = problem["entry_point"]
    candidate = completion if _defines(completion, entry) else problem["prompt"] + completion
    return ScoringJob(candidate=candidate, tests=problem["test"], call="check(candidate)",
                   setup=_runnable_prompt(problem["prompt"]), entry={"candidate": entry, entry: entry})


def _runnable_prompt(prompt: str) -> str:
    """The prompt as the checker's setup (its helpers, e.g. ``poly`` for HumanEval/32's test): the
    unfinished function gets a ``pass`` body when the prompt alone does not compile."""
    for source in (prompt, prompt.rstrip("\n") + "\n    pass\n"):
        try:
            compile(source, "setup.py", "exec")
            return source
        except (SyntaxError, ValueError):
            continue
    return ""


def mbpp_job(problem: dict, code: str) -> ScoringJob:
    """An MBPP sample: its asserts call the functions the problem's reference solution defines (never
    names the candidate chose). Classes the test setup uses but only the reference defines (MBPP 367's
    ``Node``) join the setup, so the setup runs before the candidate's code, as the tests expect."""
    reference = problem.get("code")
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"MBPP problem {problem.get('task_id', '?')!r} has no reference solution ('code'): the "
                         "checker takes the names it scores from the reference, never from the candidate. Load MBPP "
                         "rows with their 'code' field (kala_lib.benchmarks.load_mbpp does)")
    reference = reference.replace("\r\n", "\n")
    tests = problem["test_list"]
    tests = json.loads(tests) if isinstance(tests, str) else tests
    setup = (problem.get("test_setup_code") or "").replace("\r\n", "\n")
    setup = _reference_classes(reference, setup) + setup
    source = "\n".join(tests)
    return ScoringJob(candidate=f"{setup}\n{code}\n", tests=source + "\n", setup=setup,
                   entry={name: name for name in _entry_names(reference, source)})


def _reference_classes(reference: str, setup: str) -> str:
    """The reference's class definitions that ``setup`` uses without defining them ("" when none)."""
    if not setup.strip():
        return ""
    try:
        used = {node.id for node in ast.walk(ast.parse(setup)) if isinstance(node, ast.Name)}
        tree = ast.parse(reference)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name in used]
    return "".join(ast.get_source_segment(reference, node) + "\n" for node in classes)


def _entry_names(reference: str, tests: str) -> list[str]:
    """The functions the tests call that the problem's reference solution defines: the names scored
    through the candidate (a candidate's own ``abs`` or ``isclose`` cannot replace the tests')."""
    called = {node.func.id for node in ast.walk(ast.parse(tests))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    try:
        defined = {node.name for node in ast.parse(reference).body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        defined = set()
    return sorted(called & defined)
