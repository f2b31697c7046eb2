"""console/expensify/report_ids.ftl rendered by real Apache FreeMarker equals the simulator's
rendering, also for a report that stops export.ftl (which is why the template exists)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from console.money import dumps
from console.sim.export_render import REPORT_IDS_TEMPLATE_PATH, render_report_ids
from tests.sim.test_freemarker_parity import (  # noqa: F401
    TEMPLATE_PATH,
    freemarker,
    launcher,
    pytestmark,
)

MODEL = {
    "reports": [
        {"reportID": "90000001", "transactionList": []},
        {"reportID": 4411223344556677, "transactionList": "not a list"},  # stops export.ftl
        {"reportID": 'quo"te\\', "submitter": "not a hash"},
        {"reportName": "no ID"},
        {"reportID": None},
    ]
}


def test_report_ids_equal_real_freemarker(launcher, tmp_path):  # noqa: F811
    expected = freemarker(launcher, MODEL, tmp_path, template=REPORT_IDS_TEMPLATE_PATH)
    assert render_report_ids(MODEL) == expected
    assert json.loads(expected) == ["90000001", "4411223344556677", 'quo"te\\', "", ""]
    assert render_report_ids({"reports": []}) == "[]"


def test_the_same_model_stops_export_ftl(launcher, tmp_path: Path):  # noqa: F811
    model_file = tmp_path / "model.json"
    model_file.write_text(dumps(MODEL), encoding="utf-8")
    done = subprocess.run(
        [*launcher, str(model_file), str(TEMPLATE_PATH)], capture_output=True, timeout=180
    )
    assert done.returncode != 0
    assert "transactionList" in done.stderr.decode("utf-8", "replace")
