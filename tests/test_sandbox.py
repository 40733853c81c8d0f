"""Generated code runs contained: escapes fail, and an evaluation around them still scores right."""

import os
import socket
import threading

import pytest

from kala_lib.metrics import pass_at_k
from kala_lib.sandbox import PASSED, TIMEOUT, humaneval_program, mbpp_program, run_python


def test_good_code_passes_and_failures_fail():
    assert run_python("assert sum([1, 2]) == 3").status == PASSED
    assert run_python("assert 1 == 2").status == "failed"


def test_fork_bomb_is_contained():
    result = run_python("import os\nwhile True:\n    os.fork()", timeout=10)
    assert not result.passed and "os.fork is not allowed" in result.stderr


def test_infinite_loop_is_stopped_by_cpu_limit_or_timeout():
    busy = run_python("while True:\n    pass", timeout=10, cpu_seconds=1)
    assert not busy.passed and busy.seconds < 9
    sleeping = run_python("import time\ntime.sleep(60)", timeout=1)
    assert sleeping.status == TIMEOUT and sleeping.seconds < 5


def test_huge_allocation_is_contained():
    result = run_python("x = bytearray(8 * 1024 ** 3)", memory_mb=512)
    assert not result.passed and "MemoryError" in result.stderr


def test_files_outside_the_temp_dir_cannot_be_deleted_or_written(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for code in (f"import os\nos.remove({str(victim)!r})",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                 f"open({str(victim)!r}, 'w').write('gone')",
                 f"import os\nos.rename({str(victim)!r}, 'stolen.txt')"):
        result = run_python(code)
        assert not result.passed, code
        assert "sandbox:" in result.stderr
    assert victim.read_text() == "keep me"
    assert run_python("open('scratch.txt', 'w').write('ok')\nimport os\nos.remove('scratch.txt')").passed


def test_sockets_are_blocked():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:  # timed out: nobody connected, as it should be
            pass

    thread = threading.Thread(target=accept, daemon=True)
    server.settimeout(3)
    thread.start()
    result = run_python(f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))")
    thread.join(4)
    server.close()
    assert not result.passed and "socket" in result.stderr
    assert accepted == []


def test_subprocess_and_shell_are_blocked():
    for code in ("import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')"):
        assert "not allowed" in run_python(code).stderr


def test_evaluation_completes_with_correct_scores_despite_hostile_samples(tmp_path):
    """pass@k over a problem whose samples include every attack: only the right answer counts."""
    problem = {"prompt": "def add(a, b):\n", "entry_point": "add",
               "test": "def check(f):\n    assert f(2, 3) == 5\n    assert f(-1, 1) == 0\n"}
    marker = tmp_path / "marker.txt"
    marker.write_text("intact")
    samples = [
        "    return a + b\n",                                      # correct
        "    return a - b\n",                                      # wrong
        "    import os\n    while True: os.fork()\n",              # fork bomb
        "    while True: pass\n",                                  # infinite loop
        "    x = bytearray(8 * 1024 ** 3)\n    return a + b\n",    # huge allocation
        f"    import os\n    os.remove({str(marker)!r})\n    return a + b\n",  # delete outside
        "    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    return a + b\n",
        "    return a + b\n",                                      # correct again
    ]
    results = [run_python(humaneval_program(problem, s), timeout=5, cpu_seconds=2, memory_mb=512) for s in samples]
    passed = [r.passed for r in results]
    assert passed == [True, False, False, False, False, False, False, True]
    assert pass_at_k(len(samples), sum(passed), 1) == pytest.approx(0.25)
    assert marker.read_text() == "intact"


def test_mbpp_program_runs_its_asserts():
    problem = {"test_list": '["assert double(2) == 4", "assert double(0) == 0"]', "test_setup_code": ""}
    assert run_python(mbpp_program(problem, "def double(x):\n    return 2 * x")).passed
    assert not run_python(mbpp_program(problem, "def double(x):\n    return x + 2")).passed
