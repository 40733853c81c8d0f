"""Users' data in $KALA_DATA_DIR/incoming/: parsing, content versioning, the mix, and the sensor."""

import json
import os

import dagster as dg
import pytest

from kala_assets.definitions import defs
from kala_assets.resources import KalaWarehouse
from kala_assets.sensors import watch_incoming_data
from kala_lib.incoming import IncomingDataError, folder_version, read_incoming
from kala_lib.mixing import MixError, with_incoming

CHAT = {"messages": [{"role": "user", "content": "How do I rotate the wiki's API key?"},
                     {"role": "assistant", "content": "Open Settings > Security and choose Rotate key."}]}
ALPACA = {"instruction": "Summarise the ticket.", "input": "The floor 3 printer jams on A3.", "output": "A3 jams on floor 3."}


def write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")


def test_chat_and_alpaca_records_parse(tmp_path):
    system_chat = {"messages": [{"role": "system", "content": "Be brief."}, *CHAT["messages"]]}
    write(tmp_path / "a.jsonl", [CHAT, "", system_chat])
    write(tmp_path / "b.jsonl", [ALPACA])
    rows = read_incoming(tmp_path)
    assert [(r.file, r.line) for r in rows] == [("a.jsonl", 1), ("a.jsonl", 3), ("b.jsonl", 1)]
    assert rows[1].system == "Be brief." and rows[0].system is None
    assert rows[2].messages == (("user", "Summarise the ticket.\n\nThe floor 3 printer jams on A3."),
                                ("assistant", "A3 jams on floor 3."))


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 1: invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"prompt": "x", "completion": "y"}), "unknown format"),
        (json.dumps({"messages": []}), "non-empty list"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "end with the assistant's answer"),
        (json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}), "alternate"),
        (json.dumps({"messages": [{"role": "bot", "content": "a"}]}), "role"),
        (json.dumps({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]}), "empty content"),
        (json.dumps({"instruction": "do it", "output": ""}), "non-empty text 'instruction' and 'output'"),
    ],
)
def test_malformed_lines_name_the_file_line_and_problem(tmp_path, line, message):
    write(tmp_path / "bad.jsonl", [CHAT, line] if "line 1" not in message else [line])
    with pytest.raises(IncomingDataError, match=message) as error:
        read_incoming(tmp_path)
    assert "bad.jsonl line" in str(error.value)


def test_non_utf8_file_is_rejected_clearly(tmp_path):
    (tmp_path / "latin.jsonl").write_bytes(json.dumps(CHAT).encode() + b"\n\xe9\xff\n")
    with pytest.raises(IncomingDataError, match="not UTF-8 text"):
        read_incoming(tmp_path)


def test_version_follows_content_not_timestamps(tmp_path):
    assert folder_version(tmp_path) is None
    write(tmp_path / "a.jsonl", [CHAT])
    first = folder_version(tmp_path)
    os.utime(tmp_path / "a.jsonl", (1, 1))
    write(tmp_path / "a.jsonl", [CHAT])  # re-copied, same bytes
    (tmp_path / ".b.jsonl").write_text("half-written")  # a copy in progress is ignored
    (tmp_path / "c.jsonl.part").write_text("half-written")
    assert folder_version(tmp_path) == first
    write(tmp_path / "a.jsonl", [CHAT, ALPACA])
    assert folder_version(tmp_path) != first


def test_incoming_weight_scales_the_other_shares():
    weights = with_incoming({"ethics": 0.4, "coding": 0.3, "math": 0.2, "general": 0.1}, 0.2)
    assert weights == pytest.approx({"ethics": 0.32, "coding": 0.24, "math": 0.16, "general": 0.08, "incoming": 0.2})
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(MixError, match="incoming_weight"):
            with_incoming({"ethics": 1}, bad)


# --- the sensor -----------------------------------------------------------------------------------


def evaluate(instance, warehouse, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"warehouse": warehouse, "deployment": defs.resources["deployment"]})
    return watch_incoming_data(context), context.cursor


def test_sensor_observes_changes_and_requests_a_mix_rebuild(tmp_path):
    warehouse = KalaWarehouse(data_dir=str(tmp_path / "data"))
    incoming = tmp_path / "data" / "incoming"
    with dg.instance_for_test() as instance:
        result, cursor = evaluate(instance, warehouse)
        assert isinstance(result, dg.SkipReason) and "unchanged" in result.skip_message and cursor is None

        write(incoming / "tickets.jsonl", [CHAT, ALPACA])
        result, cursor = evaluate(instance, warehouse)
        assert len(result.run_requests) == 1 and result.run_requests[0].job_name in (None, "rebuild_training_mix")
        version = folder_version(incoming)
        assert cursor == version and result.run_requests[0].run_key == f"incoming:{version}"
        assert set(result.run_requests[0].run_config["ops"]) == {"training_mix"}  # from configs/cpu_default.yaml
        observation = result.asset_events[0]
        assert observation.asset_key == dg.AssetKey("incoming_data")
        assert observation.tags["dagster/data_version"] == version and observation.metadata["conversations"].value == 2

        write(incoming / "tickets.jsonl", [CHAT, ALPACA])  # same bytes again
        result, cursor = evaluate(instance, warehouse, cursor=version)
        assert isinstance(result, dg.SkipReason) and cursor == version

        write(incoming / "more.jsonl", ["{oops"])
        result, cursor = evaluate(instance, warehouse, cursor=version)
        assert isinstance(result, dg.SkipReason) and "more.jsonl line 1: invalid JSON" in result.skip_message
        assert cursor == version  # not advanced: fixed data is picked up on a later tick

        write(incoming / "more.jsonl", [CHAT])
        result, cursor = evaluate(instance, warehouse, cursor=version)
        assert len(result.run_requests) == 1 and cursor == folder_version(incoming) != version
