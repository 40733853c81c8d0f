"""Where KALA keeps its data: one resource for the DuckDB warehouse and the artifact folder.

``KALA_DATA_DIR`` relocates everything (default: ``data/`` in the project); the warehouse is
``$KALA_DATA_DIR/kala.duckdb`` unless ``KALA_WAREHOUSE`` names another DuckDB database (a path on a
shared filesystem, or ``md:<name>`` for MotherDuck), and each asset's table carries the asset's name.
"""


import contextlib
import os
import re
import time
from pathlib import Path
from typing import Iterator

import dagster as dg

from kala_lib.storage import StorageError, ensure_writable_dir, replace_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_FILE = "kala.duckdb"


RUN_CONFIG_ENV = "KALA_RUN_CONFIG"
DEFAULT_RUN_CONFIG = "configs/cpu_default.yaml"


def default_data_dir() -> Path:
    return Path(os.environ.get("KALA_DATA_DIR") or PROJECT_ROOT / "data").expanduser().resolve()


class KalaDeployment(dg.ConfigurableResource):
    """The run-config file this deployment's sensors start runs with, so that a GPU deployment's
    retrain sensor trains with its GPU settings. Empty: KALA_RUN_CONFIG, else configs/cpu_default.yaml
    (a relative path is relative to the project)."""

    run_config_file: str = ""

    @property
    def run_config_path(self) -> Path:
        path = Path(self.run_config_file or os.environ.get(RUN_CONFIG_ENV) or DEFAULT_RUN_CONFIG).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path


class KalaWarehouse(dg.ConfigurableResource):
    """The DuckDB warehouse and artifact root. Leave ``data_dir`` empty to follow KALA_DATA_DIR."""

    data_dir: str = ""
    database: str = ""  # empty: KALA_WAREHOUSE, else <data_dir>/kala.duckdb
    lock_timeout_s: float = 300.0  # how long to wait for another process's write lock on the DuckDB file

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser().resolve() if self.data_dir else default_data_dir()

    @property
    def database_path(self) -> Path | str:
        """The DuckDB database: a local path, or an ``md:`` MotherDuck URL kept as text."""
        explicit = self.database or os.environ.get("KALA_WAREHOUSE", "")
        if explicit.startswith("md:"):
            return explicit
        return Path(explicit).expanduser().resolve() if explicit else self.root / WAREHOUSE_FILE

    def artifact_dir(self, *parts: str) -> Path:
        """A writable folder under the data dir (created), or a StorageError saying how to fix it."""
        ensure_writable_dir(self.root, what=f"KALA data directory (KALA_DATA_DIR={self.root})")
        return ensure_writable_dir(self.root.joinpath(*parts), what="artifact directory")

    @contextlib.contextmanager
    def connect(self) -> Iterator:
        """A DuckDB connection. DuckDB lets one process write a database file at a time: while another
        run holds it, this waits (backing off up to 5 s between tries) for ``lock_timeout_s``, then
        raises a StorageError naming the holder. The file itself is never left half-written."""
        ensure_writable_dir(self.root, what=f"KALA data directory (KALA_DATA_DIR={self.root})")
        if isinstance(self.database_path, Path):
            ensure_writable_dir(self.database_path.parent, what=f"warehouse folder of {self.database_path}")
        connection = _connect_waiting_for_lock(str(self.database_path), self.lock_timeout_s)
        try:
            yield connection
        finally:
            connection.close()

    def replace_table(self, name: str, frame) -> int:
        """Atomically replace table ``name``; on failure the previous table is untouched."""
        with self.connect() as connection:
            return replace_table(connection, name, frame)

    def read_records(self, name: str) -> list[dict]:
        """All rows of table ``name`` as dicts, or a StorageError naming the asset to materialize."""
        with self.connect() as connection:
            exists = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
            ).fetchone()[0]
            if not exists:
                raise StorageError(
                    f"table {name!r} is not in the warehouse {self.database_path}: "
                    f"materialize the asset '{name}' first"
                )
            frame = connection.execute(f'SELECT * FROM "{name}"').fetch_df()
        return frame.to_dict("records")


def _connect_waiting_for_lock(database: str, timeout_s: float):
    import duckdb

    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database, config={"custom_user_agent": "kala"})
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                holder = re.search(r"PID (\d+)", str(exc))
                raise StorageError(
                    f"the warehouse {database} is still locked by another process"
                    f"{f' (PID {holder.group(1)})' if holder else ''} after {timeout_s:.0f} s: another run is "
                    "writing it. Wait for that run to finish and retry, or raise the warehouse resource's "
                    "lock_timeout_s."
                ) from exc
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)
