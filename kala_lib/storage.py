"""Atomic file and DuckDB writes: a failed write never leaves a half-written artifact.

Files are written to a temporary sibling and renamed into place (``os.replace`` is atomic on
POSIX); DuckDB tables are replaced inside one transaction, so readers see the old table or the
new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StorageError(RuntimeError):
    """A data directory or warehouse problem the user must fix (message says how)."""


def ensure_writable_dir(path: str | os.PathLike, what: str = "data directory") -> Path:
    """Create ``path`` if needed and prove it is writable, or raise a StorageError naming the fix."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".kala-write-test-"):
            pass
    except OSError as exc:
        raise StorageError(
            f"the {what} {str(directory)!r} is not writable ({exc.strerror or exc}). "
            "Set KALA_DATA_DIR to a folder you can write to, or fix its permissions."
        ) from exc
    return directory


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it over ``path``."""
    target = Path(path)
    ensure_writable_dir(target.parent, what="artifact directory")
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary sibling folder of ``target`` to fill. When the block succeeds it replaces
    ``target`` (``publish``); when it fails it is removed and ``target`` stays as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a write that was killed
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move a complete folder or file over ``target`` by renames on one filesystem: the previous
    ``target`` is moved aside first and removed only once the new one is in place."""
    source, target = Path(source), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.replace(source, target)
        return target
    old = target.with_name(f".{target.name}.old")
    _remove(old)
    os.replace(target, old)
    os.replace(source, target)
    _remove(old)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise ValueError(f"invalid table name {name!r}: use letters, digits and underscores")
    return name


@contextlib.contextmanager
def _incoming_transaction(connection, frame) -> Iterator[str]:
    """Register ``frame`` as a view and run the caller's statements in one transaction:
    committed if they all succeed, rolled back (nothing changed) if any fails."""
    connection.register("_kala_incoming", frame)
    try:
        connection.execute("BEGIN TRANSACTION")
        try:
            yield "_kala_incoming"
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    finally:
        connection.unregister("_kala_incoming")


def replace_table(connection, name: str, frame) -> int:
    """Replace table ``name`` with the pandas/arrow ``frame`` in one transaction; returns rows.

    If anything fails the transaction is rolled back and the previous table stays as it was.
    """
    check_table_name(name)
    with _incoming_transaction(connection, frame) as incoming:
        connection.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM {incoming}')
    return connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]


def replace_partition(connection, name: str, frame, key_column: str, key) -> int:
    """Replace the rows of table ``name`` whose ``key_column`` equals ``key`` with ``frame`` (other
    rows stay), in one transaction; the table is created from ``frame`` if it does not exist, and a
    column the table lacks (a newer version of the asset) is added, so older rows keep theirs as
    NULL. A column that is NULL throughout is typed VARCHAR, not DuckDB's NULL type, so later values fit."""
    check_table_name(name)
    with _incoming_transaction(connection, frame) as incoming:
        types = connection.execute(f"DESCRIBE SELECT * FROM {incoming}").fetchall()
        types = [(column, "VARCHAR" if kind.strip('"') == "NULL" else kind) for column, kind, *_ in types]
        columns = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in types)
        connection.execute(f'CREATE TABLE IF NOT EXISTS "{name}" AS SELECT {columns} FROM {incoming} LIMIT 0')
        existing = {row[0] for row in connection.execute(f'DESCRIBE "{name}"').fetchall()}
        for column, kind in types:
            if column not in existing:
                connection.execute(f'ALTER TABLE "{name}" ADD COLUMN "{column}" {kind}')
        connection.execute(f'DELETE FROM "{name}" WHERE "{key_column}" = ?', [key])
        connection.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM {incoming}')
    return len(frame)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_jsonl(path: str | Path, error: type[Exception] = ValueError, kind: type = dict) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line, each value a JSON ``kind`` (an object by default,
    ``str`` for a file of JSON strings); a bad line raises ``error`` naming file and line."""
    import json

    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path} line {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(value, kind):
                expected = {dict: "a JSON object", str: "a JSON string", list: "a JSON array"}.get(kind, kind.__name__)
                raise error(f"{path} line {number}: expected {expected}, got {type(value).__name__}")
            yield number, value


def nullable_int(value) -> int | None:
    """A table's nullable integer (None, NaN or pandas' NA come back as None)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
