"""The Dagster UI in a real browser (Playwright driving Debian's chromium).

Starts `dagster dev` for this project on a free loopback port with a temporary instance and data
folder, checks that the asset graph lists KALA's groups, assets and checks, launches a
materialization of `constitutional_examples` from the UI and waits for the run to succeed, then
checks the table it wrote. Screenshots go to test-artifacts/ui/ (or $KALA_TEST_ARTIFACTS/ui/).
Deselect with -m 'not ui'.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from kala_lib.ethics_generator import DEFAULT_SIZE

PROJECT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.ui


def chromium_path() -> str:
    for candidate in (os.environ.get("KALA_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("no chromium found: `apt-get install chromium` (scripts/test.sh does this as root), set KALA_CHROMIUM, "
                "or deselect the browser test with -m 'not ui'")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "KALA_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "dagster_dev.log", "w")
    # Run from tmp_path so the project's .env (its own DAGSTER_HOME) is not picked up.
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-m", "kala_assets",
                             "-h", "127.0.0.1", "-p", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(base + "/server_info", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"dagster dev did not come up: {(tmp_path / 'dagster_dev.log').read_text()[-2000:]}")
            time.sleep(1)
    yield base, tmp_path / "data"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_asset_graph_lists_kala_and_a_materialization_launched_from_the_ui_succeeds(dagster_dev):
    from playwright.sync_api import expect, sync_playwright

    base, data = dagster_dev
    shots = Path(os.environ.get("KALA_TEST_ARTIFACTS", PROJECT / "test-artifacts")) / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        # The first-visit newsletter dialog appears a moment after a page loads: dismiss it whenever it shows.
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
        try:
            page.goto(base + "/assets")
            expect(page.get_by_text("constitutional_examples").first).to_be_visible()
            catalog = page.inner_text("body")
            for name in ("constitutional_examples", "benchmark_gsm8k", "ethics_eval_suite", "training_mix",
                         "lora_adapter", "checkpoint_evaluations", "best_checkpoint", "promoted_model"):
                assert name in catalog, f"{name} missing from the asset catalog"
            for group in ("data", "benchmarks", "training", "evaluation"):
                assert group in catalog, f"group {group} missing"
            page.screenshot(path=str(shots / "01_catalog.png"), full_page=True)

            page.goto(base + "/assets/constitutional_examples?view=checks")
            expect(page.get_by_text("unique_prompts").first).to_be_visible()
            checks = page.inner_text("body")
            assert "Checks (6)" in checks and "structurally_complete" in checks and "blocking" in checks
            page.screenshot(path=str(shots / "02_checks.png"))

            page.locator("button:has-text('Materialize')").first.click()
            expect(page.get_by_text("Launched run").first).to_be_visible()
            page.screenshot(path=str(shots / "03_launched.png"))

            page.goto(base + "/runs")  # the runs page refreshes itself
            status = page.get_by_text(re.compile(r"^(Success|Failure)$")).first
            expect(status).to_be_visible(timeout=240_000)
            page.screenshot(path=str(shots / "04_runs.png"))
            assert status.inner_text() == "Success", "the run launched from the UI did not succeed"

            page.goto(base + "/assets/constitutional_examples")
            expect(page.get_by_text("dagster/row_count").or_(page.get_by_text("Row count")).first).to_be_visible()
            page.screenshot(path=str(shots / "05_materialized.png"), full_page=True)
        finally:
            browser.close()
    with duckdb.connect(str(data / "kala.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM constitutional_examples").fetchone()[0] == DEFAULT_SIZE
