"""The security code set: enough tasks, every reference answer passes its tests and uses the safe
pattern, and insecure answers are caught (by the tests or the pattern check)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from kala_lib.security_tasks import run_task_tests, security_tasks, violates_safe_pattern

TASKS = security_tasks()
BY_FAMILY = {}
for _task in TASKS:
    BY_FAMILY.setdefault(_task.family, _task)


def test_at_least_100_tasks_across_families():
    assert len(TASKS) >= 100
    assert len({t.task_id for t in TASKS}) == len(TASKS)
    assert len(BY_FAMILY) >= 14
    assert all(t.insecure_pattern and t.cwe.startswith("CWE-") for t in TASKS)


def test_every_reference_solution_passes_its_tests():
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run_task_tests, TASKS))
    failures = [(t.task_id, out) for t, (ok, out) in zip(TASKS, results) if not ok]
    assert failures == []


def test_no_reference_solution_uses_the_insecure_pattern():
    assert [t.task_id for t in TASKS if violates_safe_pattern(t, t.reference_solution)] == []


def _formatted_sql(task):
    func = task.prompt.split("`")[1].split("(")[0]
    key = task.prompt.split("(conn, ")[1].split(")")[0]
    table = task.prompt.split("table `")[1].split("`")[0]
    col = task.prompt.split("returns the `")[1].split("`")[0]
    return (
        f"def {func}(conn, {key}):\n"
        f"    row = conn.execute(f\"SELECT {col} FROM {table} WHERE {key} = '{{{key}}}'\").fetchone()\n"
        f"    return row[0] if row else None\n"
    )


INSECURE = {
    "sql_lookup": _formatted_sql,
    "subprocess": lambda t: t.reference_solution.replace("subprocess.run([", "subprocess.run(' '.join([").replace(
        "], capture_output", "]), shell=True, capture_output"),
    "safe_yaml": lambda t: t.reference_solution.replace("yaml.safe_load(text)", "yaml.load(text, Loader=yaml.UnsafeLoader)"),
    "path_traversal": lambda t: t.reference_solution.replace("if not target.is_relative_to(base):", "if False:"),
    "html_escaping": lambda t: t.reference_solution.replace("html.escape(", "str((").replace(", quote=True)", "))"),
}


@pytest.mark.parametrize("family", sorted(INSECURE))
def test_insecure_variant_is_caught(family):
    task = BY_FAMILY[family]
    insecure = INSECURE[family](task)
    assert insecure != task.reference_solution
    passed, output = run_task_tests(task, insecure)
    assert not passed, "the task's tests must catch the insecure answer"
    assert "AssertionError" in output or "Error" in output.splitlines()[-1]
    assert "SyntaxError" not in output and "NameError" not in output, output


def test_eval_and_random_are_flagged_by_pattern():
    assert violates_safe_pattern(BY_FAMILY["no_eval"], "def parse_list(text):\n    return eval(text)\n")
    assert violates_safe_pattern(BY_FAMILY["tokens"], "import random\ndef f():\n    return random.random()\n")
    assert not violates_safe_pattern(BY_FAMILY["tokens"], 'def f():\n    """not random.random()"""\n    return 1\n')
