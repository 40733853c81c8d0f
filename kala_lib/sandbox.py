"""Run untrusted generated code: a separate process per sample, contained.

Containment, all enforced in the child before the code runs:
- resource limits: CPU seconds, address space (a huge allocation raises MemoryError), file size,
  number of processes (where the kernel enforces it for this user);
- an audit hook (CPython's PEP 578, which code cannot remove) that refuses to fork, exec, spawn
  or run a shell (a fork bomb stops at its first fork), to create or connect sockets (no network),
  to load native code with ctypes, and to write, delete, rename or chmod anything outside the
  sample's private temporary working directory;
- a wall-clock timeout, after which the whole process group is killed;
- an empty environment and ``python -I`` (isolated mode), output captured and truncated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSED, FAILED, TIMEOUT = "passed", "failed", "timeout"

_RUNNER = r'''
import os, resource, sys
limits = {limits!r}
resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"]))
resource.setrlimit(resource.RLIMIT_AS, (limits["memory"], limits["memory"]))
resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
except (ValueError, OSError):
    pass
ROOT = os.path.realpath(os.getcwd())
BLOCKED = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
           "os.kill", "os.killpg", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
           "socket.sendto", "ctypes.dlopen", "ctypes.cdata", "ctypes.call_function", "pty.spawn")
PATH_EVENTS = {{"os.remove": 0, "os.unlink": 0, "os.rmdir": 0, "os.rename": 0, "os.replace": 0,
               "shutil.rmtree": 0, "os.chmod": 0, "os.chown": 0, "os.mkdir": 0, "os.truncate": 0,
               "os.link": 1, "os.symlink": 1, "os.utime": 0, "shutil.move": 1, "shutil.copyfile": 1}}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def inside(path):
    if isinstance(path, int):
        return True
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return real == ROOT or real.startswith(ROOT + os.sep)

def guard(event, args):
    if event in BLOCKED or event.startswith("os.exec") or event.startswith("os.spawn"):
        raise PermissionError(f"sandbox: {{event}} is not allowed")
    if event == "open":
        path, mode, flags = (list(args) + [None, None, 0])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
        if writing and path is not None and not inside(path):
            raise PermissionError(f"sandbox: writing {{path!r}} outside the working directory")
    elif event in PATH_EVENTS:
        targets = [args[0]] if args else []
        if PATH_EVENTS[event] and len(args) > 1:
            targets.append(args[1])
        for target in targets:
            if not inside(target):
                raise PermissionError(f"sandbox: {{event}} on {{target!r}} outside the working directory")

sys.addaudithook(guard)
del guard
source = open("program.py").read()
exec(compile(source, "program.py", "exec"), {{"__name__": "__main__"}})
'''


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | failed | timeout
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == PASSED


def run_python(code: str, timeout: float = 10.0, cpu_seconds: int = 5, memory_mb: int = 1024,
               file_size_mb: int = 16, max_processes: int = 1, max_output: int = 10_000) -> SandboxResult:
    """Run ``code`` in a fresh contained interpreter; passed = exit status 0."""
    limits = {"cpu": cpu_seconds, "memory": memory_mb * 2**20, "fsize": file_size_mb * 2**20, "nproc": max_processes}
    with tempfile.TemporaryDirectory(prefix="kala-sandbox-") as workdir:
        Path(workdir, "program.py").write_text(code)
        Path(workdir, "runner.py").write_text(_RUNNER.format(limits=limits))
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-I", "-B", "runner.py"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            status = PASSED if process.returncode == 0 else FAILED
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout, stderr = process.communicate()
            status = TIMEOUT
        finally:
            _kill_group(process)  # anything it left behind in its session
        return SandboxResult(status, process.returncode, stdout.decode(errors="replace")[-max_output:],
                             stderr.decode(errors="replace")[-max_output:], time.monotonic() - started)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def humaneval_program(problem: dict, completion: str) -> str:
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def mbpp_program(problem: dict, code: str) -> str:
    import json

    tests = problem["test_list"]
    tests = json.loads(tests) if isinstance(tests, str) else tests
    return f"{problem.get('test_setup_code') or ''}\n{code}\n\n" + "\n".join(tests) + "\n"
