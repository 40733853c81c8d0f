"""Where KALA keeps its data: one resource for the DuckDB warehouse and the artifact folder.

``KALA_DATA_DIR`` relocates everything (default: ``data/`` in the project); the warehouse is
``$KALA_DATA_DIR/kala.duckdb`` unless ``KALA_WAREHOUSE`` names another DuckDB database (a path on a
shared filesystem, or ``md:<name>`` for MotherDuck), and each asset's table carries the asset's name.
"""


import contextlib
import os
from pathlib import Path
from typing import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource

from kala_lib.storage import StorageError, ensure_writable_dir, replace_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_FILE = "kala.duckdb"


def default_data_dir() -> Path:
    return Path(os.environ.get("KALA_DATA_DIR") or PROJECT_ROOT / "data").expanduser().resolve()


class KalaWarehouse(dg.ConfigurableResource):
    """The DuckDB warehouse and artifact root. Leave ``data_dir`` empty to follow KALA_DATA_DIR."""

    data_dir: str = ""
    database: str = ""  # empty: KALA_WAREHOUSE, else <data_dir>/kala.duckdb

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
        """A DuckDB connection; dagster-duckdb retries while another process holds the file lock."""
        ensure_writable_dir(self.root, what=f"KALA data directory (KALA_DATA_DIR={self.root})")
        if isinstance(self.database_path, Path):
            ensure_writable_dir(self.database_path.parent, what=f"warehouse folder of {self.database_path}")
        with DuckDBResource(database=str(self.database_path)).get_connection() as connection:
            yield connection

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
