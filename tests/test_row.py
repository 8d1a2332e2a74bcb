"""A result row: its one definition, its key (the variant keeps an A/B arm's and a toggle's images apart), and
the migration of rows stored by earlier versions."""

import json

import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.row import ROW_KEY, SCHEMA_VERSION, Row, migrate_frame, migrate_rows, settings_hash
from workbench.run_folder import RunFolder

CONFIG = GenerationConfig(steps=2)


def _row(variant: str, seed: int = 0, status: str = "ok", **context) -> Row:
    return Row(
        run_id="r", model_id="m", prompt_id="p0", prompt="a red circle", category="shapes", seed=seed,
        settings_hash=settings_hash(CONFIG), config=CONFIG, status=status, variant=variant, context=context,
    )  # fmt: skip


def test_a_row_round_trips_through_its_stored_form():
    row = _row("photo", arm="photo")
    stored = row.to_dict()
    assert stored["variant"] == "photo" and stored["arm"] == "photo" and stored["schema_version"] == SCHEMA_VERSION
    again = Row.from_dict(json.loads(json.dumps(stored)))
    assert (again.variant, again.context, again.config) == (row.variant, row.context, row.config)
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(stored, sort_keys=True)


def test_the_variants_of_one_image_are_rows_of_their_own(tmp_path):
    folder = RunFolder(tmp_path, "r")
    folder.add([_row("control"), _row("photo"), _row("photo", status="error: RuntimeError: x")])
    latest = folder.latest()
    assert sorted(row["variant"] for row in latest) == ["control", "photo"]  # the photo arm's latest row: failed
    assert folder.done() == {("m", "control", "p0", 0, settings_hash(CONFIG))}
    assert len(folder.results()) == 2 and "variant" in ROW_KEY


def test_rows_of_earlier_versions_read_in_the_current_form():
    version_3 = {"schema_version": 3, "model_id": "m", "prompt_id": "p0", "seed": 0, "settings": "abc123def456"}
    (row,) = migrate_rows([dict(version_3)])
    assert row["settings_hash"] == "abc123def456" and "settings" not in row
    assert row["variant"] == "" and row["schema_version"] == 3 and row["batch_id"] != row["batch_id"]  # NaN
    frame = migrate_frame(pd.DataFrame([version_3]))
    assert list(frame["settings_hash"]) == ["abc123def456"] and list(frame["variant"]) == [""]
    (old,) = migrate_rows([{"model_id": "m", "prompt_id": "p0", "seed": 0}])  # version 1: no schema_version
    assert old["schema_version"] == 1


def test_a_context_that_would_overwrite_a_column_or_a_setting_is_refused():
    for taken in ("image_path", "steps"):  # a column the row sets itself, a setting
        with pytest.raises(ConfigError, match=rf"may not name a column the row has already, got \['{taken}'\]"):
            Row.failed(
                RuntimeError("x"), target="m", run_id="r", prompt_id="p0", prompt="a", category="c", seed=0,
                settings_hash="h", config=CONFIG, **{taken: 1},
            )  # fmt: skip
