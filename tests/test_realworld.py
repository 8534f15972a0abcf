"""The public sample contact list nobody here made, as CSV and as Excel, row by row."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import read_report

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld"
if not REALWORLD.exists():  # CI lays shared/ beside the clone
    REALWORLD = Path(__file__).resolve().parents[1].parent / "shared" / "realworld"

pytestmark = pytest.mark.skipif(
    not (REALWORLD / "customers-100.csv").exists(), reason="shared/realworld not present"
)


def source_rows() -> list[dict[str, str]]:
    with (REALWORLD / "customers-100.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def expected_phone_ok(raw: str) -> bool:
    return re.fullmatch(r"\+?\d{7,15}", re.sub(r"[\s\-.()]", "", raw)) is not None


@pytest.mark.parametrize("name", ["customers-100.csv", "customers-100.xlsx"])
def test_as_is_every_row_is_valid(cli, tmp_path, name):
    """Out of the box the Email column is used and every row's address is valid."""
    result = cli(
        "import", REALWORLD / name, "--event", "e", "--dry-run", "--report", tmp_path / "r.csv"
    )
    assert result.exit_code == 0, result.output
    rows = read_report(tmp_path / "r.csv")
    assert [int(r["row"]) for r in rows] == list(range(2, 102))
    assert {r["status"] for r in rows} == {"valid"}


def test_phone_as_contact_statuses_row_by_row(cli, tmp_path):
    """With Phone 1 as the phone, CSV and Excel agree row by row: every row has a good email, so a
    row whose phone is unusable (an extension, the formula-mangled -1199) goes out by its email
    alone, the phone left out and the cell quoted in the report; every other row keeps its phone."""
    source = source_rows()
    reports = {}
    for name in ("customers-100.csv", "customers-100.xlsx"):
        report = tmp_path / f"{name}.csv"
        cli(
            "import", REALWORLD / name, "--event", "e", "--dry-run", "--report", report,
            "--map", "Phone 1=phone", "--type", "Subscription Date=date", "--date-format", "%d/%m/%y",
        )  # fmt: skip
        reports[name] = read_report(report)
    csv_rows, xlsx_rows = reports["customers-100.csv"], reports["customers-100.xlsx"]
    for src, a, b in zip(source, csv_rows, xlsx_rows, strict=True):
        ok = expected_phone_ok(src["Phone 1"])
        assert a["status"] == "valid", (src, a)
        assert (a["row"], a["status"], a["sent_phone"]) == (b["row"], b["status"], b["sent_phone"])
        if ok:
            assert a["error"] == "" and a["sent_phone"], (src, a)
        else:
            assert f'"{src["Phone 1"]}"' in a["error"] and "sent by email alone" in a["error"]
            assert a["sent_phone"] == "" and a["sent_email"], (src, a)
    assert any(r["Phone 1"] == "-1199" and "email alone" in r["error"] for r in csv_rows)


def test_us_numbers_with_default_country(cli, tmp_path):
    """--default-country US: valid numbers go out in international form, extensions dropped."""
    report = tmp_path / "r.jsonl"
    result = cli(
        "import", REALWORLD / "customers-100.csv", "--event", "e", "--dry-run", "--report", report,
        "--map", "Phone 1=phone", "--default-country", "US",
    )  # fmt: skip
    # Some synthetic numbers are not real US numbers: those rows go out by their email alone.
    assert result.exit_code == 0
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    alone = [r for r in lines if "sent by email alone" in r["error"]]
    assert alone and all(r["status"] == "valid" for r in alone)
    inspect = cli(
        "inspect",
        REALWORLD / "customers-100.csv",
        "--event",
        "e",
        "--map",
        "Phone 1=phone",
        "--default-country",
        "US",
    )
    assert '"phone":"+1' in inspect.stdout
    assert "x" not in re.findall(r'"phone":"([^"]+)"', inspect.stdout)[0]
