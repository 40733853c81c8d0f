"""Users' own training data: JSONL files dropped into a watched folder (``$KALA_DATA_DIR/incoming/``).

Each line is one conversation in either format KALA's exports use:
- chat:   ``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}``
  (an optional system turn first; user and assistant alternate; the last turn is the assistant's);
- Alpaca: ``{"instruction": ..., "input": "" (optional), "output": ...}``.

The folder's version is a hash of its files' names and contents, so touching or re-copying a file
with the same bytes changes nothing, and any edit does. Files whose names start with "." or end
in ".tmp"/".part" are ignored, so a copy in progress is never read half-written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from kala_lib.storage import read_jsonl

ROLES = ("system", "user", "assistant")
MAX_FILE_BYTES = 512 * 1024 * 1024


class IncomingDataError(ValueError):
    """A malformed file in the incoming folder (the message names the file, the line and the fix)."""


@dataclass(frozen=True)
class IncomingConversation:
    file: str
    line: int
    messages: tuple[tuple[str, str], ...]  # (role, content), without a system turn
    system: str | None  # the file's own system turn, if it had one


def incoming_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jsonl")
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".tmp", ".part")))


def folder_version(folder: str | Path) -> str | None:
    """A content hash of the folder's data files (None when there are none)."""
    files = incoming_files(folder)
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        file_digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                file_digest.update(chunk)
        digest.update(f"{path.name}\t{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def parse_record(record: dict, where: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """(turns, system) from a chat or Alpaca record, or IncomingDataError saying what is wrong."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise IncomingDataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        turns = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
                raise IncomingDataError(f"{where}: message {i} must be {{\"role\": one of {list(ROLES)}, \"content\": text}}")
            if not message["content"].strip():
                raise IncomingDataError(f"{where}: message {i} ({message['role']}) has empty content")
            turns.append((message["role"], message["content"]))
        system = turns.pop(0)[1] if turns[0][0] == "system" else None
        roles = [r for r, _ in turns]
        expected = ["user", "assistant"] * (len(turns) // 2)
        if not turns or roles != expected:
            raise IncomingDataError(
                f"{where}: turns must alternate user/assistant after an optional system turn and end with the "
                f"assistant's answer (got {roles})")
        return tuple(turns), system
    if "instruction" in record or "output" in record:
        instruction, output = record.get("instruction"), record.get("output")
        extra = record.get("input") or ""
        if not isinstance(instruction, str) or not instruction.strip() or not isinstance(output, str) or not output.strip():
            raise IncomingDataError(f"{where}: an Alpaca record needs non-empty text 'instruction' and 'output'")
        if not isinstance(extra, str):
            raise IncomingDataError(f"{where}: 'input' must be text")
        user = instruction + (f"\n\n{extra}" if extra.strip() else "")
        return (("user", user), ("assistant", output)), None
    raise IncomingDataError(
        f"{where}: unknown format (keys {sorted(record)[:6]}): use chat {{\"messages\": [...]}} or Alpaca "
        "{\"instruction\", \"input\", \"output\"}")


def read_incoming(folder: str | Path) -> list[IncomingConversation]:
    """Every conversation in the folder, validated; the first bad line stops it with a clear error."""
    rows = []
    for path in incoming_files(folder):
        if path.stat().st_size > MAX_FILE_BYTES:
            raise IncomingDataError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: split it into several files")
        try:
            for number, record in read_jsonl(path, IncomingDataError):
                turns, system = parse_record(record, f"{path} line {number}")
                rows.append(IncomingConversation(path.name, number, turns, system))
        except UnicodeDecodeError as exc:
            raise IncomingDataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8") from None
    return rows
