"""console/expensify/export.ftl rendered by real Apache FreeMarker equals the simulator's export.

Real FreeMarker is Debian's libfreemarker-java (2.3.31) run by the machine's JDK through the
single-file launcher tests/sim/freemarker/Render.java. `make test` installs both.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.expensify.models import ExportReport
from console.money import dumps
from console.sim.dataset import parse_dataset
from console.sim.expensify_app import ExpensifySim, ExpensifySimSettings
from console.sim.export_render import TEMPLATE_PATH, export_model, json_string, render_export
from tests.sim.conftest_expensify import CREDS, TEMPLATE, export_job, job, post

JAR = Path("/usr/share/java/freemarker.jar")
LAUNCHER = Path(__file__).parent / "freemarker" / "Render.java"
JAVA = shutil.which("java")

pytestmark = pytest.mark.skipif(
    JAVA is None or not JAR.is_file(),
    reason="real FreeMarker unavailable: needs a JDK (`java`) and /usr/share/java/freemarker.jar "
    "(apt-get install default-jdk-headless libfreemarker-java; `make test` does this)",
)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The java command line that runs Render; compiled once where javac exists (faster than
    the single-file source launcher, which compiles on every run)."""
    javac = shutil.which("javac")
    fast_start = ["-XX:TieredStopAtLevel=1", "-Xshare:auto"]
    if javac is None:
        return [str(JAVA), *fast_start, "-cp", str(JAR), str(LAUNCHER)]
    classes = tmp_path_factory.mktemp("render-classes")
    subprocess.run(
        [javac, "-encoding", "UTF-8", "-cp", str(JAR), "-d", str(classes), str(LAUNCHER)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return [str(JAVA), *fast_start, "-cp", f"{JAR}{os.pathsep}{classes}", "Render"]


def freemarker(
    launcher: list[str], model: dict[str, Any], tmp_path: Path, template: Path = TEMPLATE_PATH
) -> str:
    """Render `template` with real FreeMarker; the model goes over as JSON (Decimal exact)."""
    model_file = tmp_path / "model.json"
    model_file.write_text(dumps(model), encoding="utf-8")
    done = subprocess.run(
        [*launcher, str(model_file), str(template)], capture_output=True, timeout=180
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout.decode("utf-8")


NASTY = [
    'He said "hi"',
    "McDonald's",
    "back\\slash",
    "line1\nline2\r\n\ttabbed",
    "Zürich 東京 😀",
    "Barnes &amp; Noble &quot;x&quot;",
    "</script><!-- --> ]]> <?xml ",
    "\u2028\u2029\x00\x1f\x7f\x85",
    "/leading slash",
    "",
]


def tricky_dataset() -> dict[str, Any]:
    txs = [
        {
            "transactionID": f"T{i}",
            "merchant": text,
            "comment": text,
            "category": "Meals",
            "amount": amount,
            "created": "2026-11-01",
        }
        for i, (text, amount) in enumerate(
            zip(NASTY, [0, -1250, 99, 1, 123456789, -1, 0, 5, 7, 10], strict=True)
        )
    ]
    txs[1].update(
        modifiedAmount=-1300, modifiedMerchant="McDonald's #2", modifiedCreated="2026-11-02"
    )
    txs[2].update(currency="EUR", convertedAmount=107, currencyConversionRate="1.0800")
    txs[3].update(receiptID="r-1", receiptURL="https://receipts.example/r-1?x=1&y=<2>")
    # A distance line: units with a fractional count (Expensify's `units.count/rate/unit`).
    txs[6].update(units={"count": "42.5", "rate": 67, "unit": "mi"})
    txs[4].update(
        reimbursable=False,
        billable=True,
        cardID="card-9",
        cardNumber="4111XXXXXXXX1111",
        mcc="5812",
    )
    txs[5].update(
        tag="New Lab:Apollo",
        tagGlCode="CC-410",
        categoryGlCode="6120",
        inserted="2026-11-01 10:00:00",
    )
    return {
        "expensify": {
            "credentials": [CREDS],
            "policies": [
                {
                    "id": "POL-1",
                    "name": 'Acme "Global" & Co\'s',
                    "categories": [{"name": "Meals", "glCode": "6120"}],
                    "employees": [
                        {
                            "email": "ann@acme.example",
                            "firstName": "Zoë",
                            "lastName": "O'Brien",
                            "employeeID": 'E-7"1',
                            "customField2": "CC-200",
                        }
                    ],
                }
            ],
            "reports": [
                {
                    "reportID": "98765432",  # numeric-looking: must stay a string
                    "policyID": "POL-1",
                    "reportName": 'Trip "Tokyo" 東京\n2nd line',
                    "accountEmail": "ann@acme.example",
                    "status": "APPROVED",
                    "created": "2026-10-30 08:00:00",
                    "submitted": "2026-10-31 09:00:00",
                    "approved": "2026-11-02 14:22:10",
                    # Report fields, listed as a hash (name -> value) in insertion order.
                    "customField": {"Department": 'R&D "Lab"', "Cost_Centre": "CC-410"},
                    "transactionList": txs,
                },
                {
                    "reportID": "R-EMPTY",
                    "policyID": "POL-UNKNOWN",  # no policy: no policyName, no manager
                    "status": "REIMBURSED",
                    "created": "2026-11-01",
                    "approved": "2026-11-01 00:00:00",
                    "reimbursed": "2026-11-03 00:00:00",
                },
            ],
        }
    }


async def test_simulator_export_equals_real_freemarker(launcher: list[str], tmp_path: Path) -> None:
    ds = parse_dataset(tricky_dataset())
    sim = ExpensifySim(ds, ExpensifySimSettings.fast())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://e"
    ) as c:
        name = (await post(c, export_job({"startDate": "2026-01-01"}), template=TEMPLATE)).text
        served = (await post(c, job("download", fileName=name))).content

    expected = freemarker(
        launcher, export_model(ds.expensify.reports, ds.expensify.policies), tmp_path
    )
    assert served == expected.encode("utf-8")

    rows = json.loads(served, parse_float=Decimal)  # as the client reads it
    assert [r["reportID"] for r in rows] == ["98765432", "R-EMPTY"]
    report = ExportReport.model_validate(rows[0])
    assert report.reportFields == {"Department": 'R&D "Lab"', "Cost_Centre": "CC-410"}
    assert (report.employeeCustomField1, report.employeeCustomField2) == ('E-7"1', "CC-200")
    assert ExportReport.model_validate(rows[1]).reportFields == {}
    assert [t.merchant for t in report.transactions][:6] == [
        'He said "hi"',
        "McDonald's",
        "back\\slash",
        "line1\nline2\r\n\ttabbed",
        "Zürich 東京 😀",
        'Barnes & Noble "x"',  # the client unescapes what Expensify serves as entities
    ]
    assert rows[0]["transactions"][5]["merchant"] == "Barnes &amp; Noble &quot;x&quot;"
    assert (
        rows[0]["transactions"][0]["amount"] == 0 and rows[0]["transactions"][1]["amount"] == -1250
    )
    assert rows[0]["transactions"][1]["modifiedAmount"] == -1300
    assert rows[0]["transactions"][0]["convertedAmount"] is None
    assert rows[0]["transactions"][2]["currencyConversionRate"] == "1.08"
    assert rows[0]["transactions"][3]["receiptURL"] == "https://receipts.example/r-1?x=1&y=<2>"
    assert rows[0]["transactions"][0]["receiptURL"] == ""
    assert [t.unitsCount for t in report.transactions][5:7] == [None, Decimal("42.5")]
    assert (report.transactions[6].unitsRate, report.transactions[6].unitsUnit) == (67, "mi")
    assert rows[0]["submitterName"] == "Zoë O'Brien"
    assert rows[1]["transactions"] == [] and rows[1]["total"] == 0 and rows[1]["policyName"] == ""


def test_hand_written_model_with_missing_and_odd_values(
    launcher: list[str], tmp_path: Path
) -> None:
    # What the real server may hand the template: numbers where text is expected, nulls, an
    # empty receiptObject, missing booleans, decimal rates.
    model = {
        "reports": [
            {
                "reportID": 4411223344556677,
                "reportName": None,
                "status": "Approved",
                "total": -2500,
                "submitter": {},
                "transactionList": [
                    {
                        "transactionID": 7001,
                        "amount": -2500,
                        "modifiedAmount": None,
                        "receiptObject": {},
                        "reimbursable": True,
                        "currencyConversionRate": Decimal("0.923400"),
                        "mcc": 5812,
                    },
                    {
                        "transactionID": "t2",
                        "amount": 0,
                        "convertedAmount": Decimal("12.50"),
                        "billable": "yes",
                        "modifiedAmount": "",
                        "created": True,
                    },
                    {"transactionID": "t3"},
                ],
            },
            {"reportID": "only-id"},
            {"reportID": "neg", "total": Decimal("-0.00000000000000001"), "transactionList": []},
        ]
    }
    expected = freemarker(launcher, model, tmp_path)
    assert render_export(model) == expected
    rows = json.loads(expected)
    assert rows[0]["reportID"] == "4411223344556677"
    assert rows[0]["transactions"][0]["currencyConversionRate"] == "0.9234"
    assert rows[0]["transactions"][1]["billable"] is None
    assert rows[0]["transactions"][2]["amount"] is None
    assert rows[2]["total"] == -0.0
    assert render_export({"reports": []}) == freemarker(launcher, {"reports": []}, tmp_path) == "[]"


def test_json_string_escaping_matches_freemarker_for_every_awkward_character(
    launcher: list[str], tmp_path: Path
) -> None:
    # Every character up to U+00A1, the line separators, and seeded random strings built from
    # the characters FreeMarker treats by context (<, >, /, !, ?, -, ]).
    rng = random.Random(20261102)
    singles = [chr(c) for c in range(0xA2)] + ["\u2028", "\u2029", "\ufeff", "😀"]
    alphabet = [*singles, *"<>/!?-]\\\"'" * 6]
    texts = singles + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for _ in range(400)
    ]
    model = {"reports": [{"reportID": t, "reportName": t, "transactionList": []} for t in texts]}
    expected = freemarker(launcher, model, tmp_path)
    assert render_export(model) == expected
    assert [r["reportID"] for r in json.loads(expected)] == texts
    assert json_string("McDonald's") == "McDonald's"  # never \' (js_string), which is not JSON


def test_numbers_render_as_freemarker_c_does(launcher: list[str], tmp_path: Path) -> None:
    rng = random.Random(7)
    values: list[int | Decimal] = [
        0,
        -1,
        12345678901234567890,
        Decimal("1.0"),
        Decimal("-0.5"),
        Decimal("1E+3"),
        Decimal("0.00000000000000005"),
        Decimal("2.50000000000000005"),
    ]
    for _ in range(200):
        values.append(Decimal(rng.randint(-(10**18), 10**18)).scaleb(-rng.randint(0, 22)))
    model = {"reports": [{"reportID": v, "total": v} for v in values]}
    assert render_export(model) == freemarker(launcher, model, tmp_path)
