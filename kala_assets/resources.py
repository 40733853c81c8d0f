"""Where KALA keeps its data, which model it trains, and how assets hand their outputs on.

``KALA_DATA_DIR`` relocates everything (default: ``data/`` in the project); the warehouse is
``$KALA_DATA_DIR/kala.duckdb`` unless ``KALA_WAREHOUSE`` names another DuckDB database (a path on a
shared filesystem, or ``md:<name>`` for MotherDuck), and each asset's table carries the asset's name.

- ``KalaWarehouse``: dagster-duckdb's ``DuckDBResource`` on that database, waiting for another
  process's write lock instead of failing, plus the artifact folder.
- ``warehouse_tables``: the IO manager for assets whose output is a table. A DataFrame an asset
  returns replaces the table named after the asset (schema ``main``) in one transaction; a
  downstream asset or check receives it back as a DataFrame argument.
- ``warehouse_values``: the IO manager for a training run and its evaluation (kala_lib dataclasses),
  kept as JSON under ``$KALA_DATA_DIR/asset_values/`` so evaluation and promotion receive the run.
- ``KalaBaseModel``: the model profile the mix measures tokens with and the adapter trains.
- ``KalaDeployment``: the run-config file this deployment's sensors start runs with.
"""

import contextlib
import dataclasses
import importlib
import json
import os
import re
import time
from pathlib import Path
from typing import Iterator

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from kala_lib.storage import StorageError, atomic_write_text, check_table_name, ensure_writable_dir, replace_table
from kala_lib.training import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WAREHOUSE_FILE = "kala.duckdb"
VALUES_FOLDER = "asset_values"
INCOMING_FOLDER = "incoming"
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


class KalaBaseModel(dg.ConfigurableResource):
    """The model this deployment trains (a profile of kala_lib.models): declared once, used by
    training_mix for its token statistics and by lora_adapter as the base model; evaluation and
    promotion take it from the training run they receive."""

    profile: str = Field(default=TrainConfig.model_profile,
                         description="smollm2-135m (CPU, embedded), pythia-6.9b (GPU, 8-bit), tiny-gpt-neox (tests), ...")


class KalaWarehouse(DuckDBResource):
    """The DuckDB warehouse and artifact root. Leave ``data_dir`` empty to follow KALA_DATA_DIR and
    ``database`` empty to follow KALA_WAREHOUSE (else ``<data_dir>/kala.duckdb``)."""

    database: str = Field(default="", description="DuckDB database: a path, md:<name>, or empty for "
                          "KALA_WAREHOUSE / <data_dir>/kala.duckdb.")
    data_dir: str = ""
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

    @property
    def incoming_dir(self) -> Path:
        """The folder users drop their own JSONL data into (the incoming_data source asset)."""
        return self.root / INCOMING_FOLDER

    def artifact_dir(self, *parts: str) -> Path:
        """A writable folder under the data dir (created), or a StorageError saying how to fix it."""
        ensure_writable_dir(self.root, what=f"KALA data directory (KALA_DATA_DIR={self.root})")
        return ensure_writable_dir(self.root.joinpath(*parts), what="artifact directory")

    @contextlib.contextmanager
    def get_connection(self) -> Iterator:
        """A DuckDB connection. DuckDB lets one process write a database file at a time: while another
        run holds it, this waits (backing off up to 5 s between tries) for ``lock_timeout_s``, then
        raises a StorageError naming the holder. The file itself is never left half-written."""
        ensure_writable_dir(self.root, what=f"KALA data directory (KALA_DATA_DIR={self.root})")
        if isinstance(self.database_path, Path):
            ensure_writable_dir(self.database_path.parent, what=f"warehouse folder of {self.database_path}")
        connection = _connect_waiting_for_lock(str(self.database_path), self.lock_timeout_s,
                                               {"custom_user_agent": "kala", **self.connection_config})
        try:
            yield connection
        finally:
            connection.close()

    def replace_table(self, name: str, frame) -> int:
        """Atomically replace table ``name``; on failure the previous table is untouched."""
        with self.get_connection() as connection:
            return replace_table(connection, name, frame)

    @staticmethod
    def has_table(connection, name: str) -> bool:
        """Whether table ``name`` exists on ``connection`` (a connection of this warehouse)."""
        return bool(connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                                       [name]).fetchone()[0])

    def read_table(self, name: str) -> pd.DataFrame:
        """Table ``name`` as a DataFrame, or a StorageError naming the asset to materialize."""
        check_table_name(name)
        with self.get_connection() as connection:
            if not self.has_table(connection, name):
                raise StorageError(
                    f"table {name!r} is not in the warehouse {self.database_path}: "
                    f"materialize the asset '{name}' first"
                )
            return connection.execute(f'SELECT * FROM "{name}"').fetch_df()

    def read_records(self, name: str) -> list[dict]:
        """All rows of table ``name`` as dicts (for scripts and benches; assets receive DataFrames)."""
        return self.read_table(name).to_dict("records")


def _connect_waiting_for_lock(database: str, timeout_s: float, config: dict):
    import duckdb

    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database, config=config)
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


# --- IO managers: how an asset's output reaches the assets and checks after it -----------------------


def _asset_name(context: dg.OutputContext | dg.InputContext) -> str:
    return context.asset_key.path[-1]


class WarehouseTables(dg.IOManager):
    """A DataFrame output becomes the table named after its asset (replaced in one transaction: a
    failed write leaves the previous table); an input is that table read back as a DataFrame."""

    def __init__(self, warehouse: KalaWarehouse):
        self.warehouse = warehouse

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{_asset_name(context)} returned {type(obj).__name__}; a table asset returns a DataFrame")
        name = _asset_name(context)
        rows = self.warehouse.replace_table(name, obj)
        schema = dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in obj.dtypes.items()])
        context.add_output_metadata({"dagster/row_count": dg.MetadataValue.int(rows),
                                     "dagster/column_schema": dg.MetadataValue.table_schema(schema),
                                     "table": dg.MetadataValue.text(f"main.{name}")})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return self.warehouse.read_table(_asset_name(context))


class WarehouseValues(dg.IOManager):
    """A kala_lib dataclass output (a training run, an evaluation) kept as JSON at
    ``$KALA_DATA_DIR/asset_values/<asset>.json`` (written atomically), read back as that class."""

    def __init__(self, warehouse: KalaWarehouse):
        self.warehouse = warehouse

    def _path(self, context) -> Path:
        return self.warehouse.root / VALUES_FOLDER / f"{_asset_name(context)}.json"

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        cls = type(obj)
        if not dataclasses.is_dataclass(obj) or not cls.__module__.startswith("kala_lib."):
            raise TypeError(f"{_asset_name(context)} returned {cls.__name__}; this IO manager keeps kala_lib dataclasses")
        self.warehouse.artifact_dir(VALUES_FOLDER)
        path = self._path(context)
        atomic_write_text(path, json.dumps({"type": f"{cls.__module__}.{cls.__qualname__}",
                                            "value": dataclasses.asdict(obj)}, indent=1, default=_plain))
        context.add_output_metadata({"value_path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext):
        path = self._path(context.upstream_output)
        if not path.is_file():
            raise StorageError(f"{path} does not exist: materialize the asset '{_asset_name(context)}' first")
        stored = json.loads(path.read_text())
        module, _, name = stored["type"].rpartition(".")
        if not module.startswith("kala_lib."):
            raise StorageError(f"{path} names {stored['type']}, not a kala_lib class: re-materialize the asset")
        cls = getattr(importlib.import_module(module), name)
        return cls.from_dict(stored["value"]) if hasattr(cls, "from_dict") else cls(**stored["value"])


def _plain(value):
    """JSON for the few non-JSON types a value may hold (paths, numpy scalars); anything else is a bug."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar: its Python value
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON: a kala_lib value holds plain Python data")


@dg.io_manager(required_resource_keys={"warehouse"},
               description="Table assets: a DataFrame output replaces the DuckDB table named after the asset.")
def warehouse_tables(init_context: dg.InitResourceContext) -> WarehouseTables:
    return WarehouseTables(init_context.resources.warehouse)


@dg.io_manager(required_resource_keys={"warehouse"},
               description="A training run and its evaluation, as JSON under $KALA_DATA_DIR/asset_values/.")
def warehouse_values(init_context: dg.InitResourceContext) -> WarehouseValues:
    return WarehouseValues(init_context.resources.warehouse)


def kala_resources(warehouse: KalaWarehouse | None = None) -> dict:
    """Every resource the graph needs; ``warehouse`` replaces the default one, and the IO managers
    follow the warehouse given."""
    return {"warehouse": warehouse or KalaWarehouse(), "base_model": KalaBaseModel.configure_at_launch(),
            "deployment": KalaDeployment(), "pipes_subprocess_client": dg.PipesSubprocessClient(),
            "warehouse_tables": warehouse_tables, "warehouse_values": warehouse_values}
