"""Users' own data: the watched folder ``$KALA_DATA_DIR/incoming/`` as an observable source asset.

Its data version is the content hash of the folder's JSONL files (``kala_lib.incoming``), so the UI
shows a new version only when the bytes change. ``training_mix`` reads the folder and gives it
``incoming_weight`` of the mix; the ``watch_incoming_data`` sensor observes it and rebuilds the mix
when the version changes, and ``retrain_on_new_data`` then retrains on the new mix.
"""

import dagster as dg

from kala_assets.resources import KalaWarehouse
from kala_lib.incoming import folder_version, incoming_files, read_incoming


def describe_incoming(warehouse: KalaWarehouse, version: str | None = None) -> tuple[str, dict]:
    """(data version, metadata) of the folder; raises IncomingDataError on a malformed file.

    ``version``: the folder's content hash when the caller has just computed it (not hashed again)."""
    folder = warehouse.incoming_dir
    conversations = read_incoming(folder)
    files = incoming_files(folder)
    per_file = {p.name: sum(1 for c in conversations if c.file == p.name) for p in files}
    metadata = {
        "folder": dg.MetadataValue.path(str(folder)),
        "files": dg.MetadataValue.int(len(files)),
        "conversations": dg.MetadataValue.int(len(conversations)),
        "per_file": dg.MetadataValue.json(per_file),
    }
    return version or folder_version(folder) or "empty", metadata


@dg.observable_source_asset(
    group_name="data",
    owners=["team:kala-data"],
    tags={"kala/source": "user"},
    description="Users' own training data: JSONL (chat {messages} or Alpaca {instruction, input, output}) dropped "
    "into $KALA_DATA_DIR/incoming/. Versioned by content hash; joins training_mix under incoming_weight.",
)
def incoming_data(warehouse: KalaWarehouse) -> dg.ObserveResult:
    version, metadata = describe_incoming(warehouse)
    return dg.ObserveResult(data_version=dg.DataVersion(version), metadata=metadata)
