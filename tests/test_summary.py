"""What a run tells its operator at the end: --json, --max-invalid, the next step, one way for
a service outage to reach a Python caller, and the report's and errors file's shape."""

from __future__ import annotations

import csv
import json
import socket

import openpyxl
import pytest
from conftest import contacts, read_report, write_csv

import bulk_events


def with_invalid(n: int, bad: int) -> list[list[str]]:
    rows = contacts(n)
    for i in range(1, bad + 1):
        rows[i][0] = f"not-an-email-{i}"
    return rows


@pytest.mark.parametrize(("limit", "code"), [("1", 0), ("0", 1), ("10%", 0), ("5%", 1), (None, 1)])
def test_max_invalid_both_ways(cli, tmp_path, limit, code):
    """Invalid rows within --max-invalid are reported but exit 0; beyond it, exit 1."""
    f = write_csv(tmp_path / "c.csv", with_invalid(10, 1))
    extra = [] if limit is None else ["--max-invalid", limit]
    result = cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r.csv", *extra)
    assert result.exit_code == code, result.output
    assert [r["status"] for r in read_report(tmp_path / "r.csv")].count("invalid") == 1


def test_max_invalid_from_toml_and_a_bad_value(cli, tmp_path):
    """The config file's max_invalid works like the option; a bad value is a one-line exit 2."""
    write_csv(tmp_path / "c.csv", with_invalid(10, 2))
    config = tmp_path / "nightly.toml"
    config.write_text('input = "c.csv"\nevent = "e"\ndry_run = true\nmax_invalid = 2\n')
    assert cli("import", "--config", config, "--report", tmp_path / "r.csv").exit_code == 0
    assert cli("import", "--config", config, "--max-invalid", "1").exit_code == 1
    bad = cli("import", "--config", config, "--max-invalid", "some")
    assert bad.exit_code == 2 and "--max-invalid" in bad.stderr and "Traceback" not in bad.output


def test_import_json_is_one_object_on_stdout(api, tmp_path):
    """--json prints the summary as one JSON object on stdout; the human lines stay on stderr."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", with_invalid(5, 1))
    result = cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["exit_code"] == 1
    assert data["counts"]["sent"] == 4 and data["counts"]["invalid"] == 1
    assert data["events"] == {"e": data["counts"]}
    assert data["report"] == str(tmp_path / "r.csv")
    assert data["journal"].endswith(".sqlite") and data["stopped"] is None
    assert data["elapsed"] > 0 and "rate" in data
    assert data["next_step"].startswith("1 invalid")
    assert "bulk-events: 5 rows" in result.stderr and "next: 1 invalid" in result.stderr
    assert len(server.bodies()) == 4


def unused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_service_down_at_the_start_gives_a_result_with_exit_75(tmp_path, monkeypatch):
    """A service unreachable before the first row reaches a Python caller as a result, exit 75,
    every row pending, like an outage mid-run (below); nothing is raised."""
    monkeypatch.setenv("SENDPULSE_API_URL", f"http://127.0.0.1:{unused_port()}")
    f = write_csv(tmp_path / "c.csv", contacts(4))
    result = bulk_events.import_file(
        f, event="e", client_id="id", client_secret="s", report=tmp_path / "r.csv"
    )
    assert result.exit_code == 75
    assert result.counts["pending"] == 4 and "try again later" in result.stopped
    assert result.to_dict()["stopped"] == result.stopped
    assert result.next_step.startswith("service unavailable: run the same command again later")


def test_service_down_mid_run_gives_a_result_with_exit_75(live, tmp_path, monkeypatch):
    """An outage after rows were sent: the same kind of result, exit 75, the rest pending."""
    server = live()
    monkeypatch.setenv("SENDPULSE_API_URL", server.url)
    f = write_csv(tmp_path / "c.csv", contacts(60))
    first = server.box.client_id, server.box.client_secret

    server.do(
        lambda: server.box.misbehave("503", times=100_000, when=lambda b: b["email"] >= "user3")
    )
    result = bulk_events.import_file(
        f,
        event="e",
        client_id=first[0],
        client_secret=first[1],
        report=tmp_path / "r.csv",
        rate=0,
        max_attempts=1,
        concurrency=1,
    )
    assert result.exit_code == 75
    assert result.counts["sent"] >= 1 and result.counts["pending"] > 0
    assert result.to_dict()["counts"]["pending"] == result.counts["pending"]


def test_semicolon_input_gets_a_semicolon_report_with_bom_and_sent_as(api, tmp_path):
    """A ';'-separated input gets a ';'-separated report with a BOM, and what went out beside
    the original cells."""
    _, cli = api()
    f = write_csv(
        tmp_path / "c.csv",
        [["E-mail", "Phone", "Name"], [" Ann@Example.com ", "+38 (050) 123-45-67", "Ann"]],
        delimiter=";",
    )
    result = cli("import", f, "--event", "signup", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "r.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with (tmp_path / "r.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert rows[0]["status"] == "sent"
    assert rows[0]["sent_email"] == "ann@example.com"
    assert rows[0]["sent_phone"] == "+380501234567"
    assert rows[0]["sent_event"] == "signup"
    assert rows[0]["E-mail"].strip() == "Ann@Example.com"  # the original cell, beside it


def test_xlsx_report_has_typed_cells_a_frozen_header_and_a_filter(api, tmp_path):
    """An .xlsx report read back with openpyxl: frozen header, filter, typed cells."""
    _, cli = api()
    f = write_csv(tmp_path / "c.csv", [["email", "zip"], ["a@example.com", "=01234"]])
    result = cli("import", f, "--event", "e", "--report", tmp_path / "r.xlsx")
    assert result.exit_code == 0, result.output
    ws = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref is not None and ws.auto_filter.ref.startswith("A1")
    header = [c.value for c in ws[1]]
    values = dict(zip(header, [c.value for c in ws[2]], strict=True))
    assert values["row"] == 2 and isinstance(values["row"], int)
    assert values["status"] == "sent" and values["sent_email"] == "a@example.com"
    assert values["zip"] == "=01234" and ws.cell(2, header.index("zip") + 1).data_type == "s"


def test_errors_file_fixed_and_fed_back_sends_only_the_fixed_rows(api, tmp_path):
    """--errors lists the rows to fix with their reasons and the input's columns; fixed and fed
    back in, only those rows are sent, once."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", with_invalid(6, 2))
    fix = tmp_path / "fix.csv"
    first = cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--errors", fix)
    assert first.exit_code == 1, first.output
    assert f"errors: {fix}" in first.stderr
    rows = read_report(fix)
    assert [r["status"] for r in rows] == ["invalid", "invalid"]
    assert all(r["error"] for r in rows)
    assert len(server.bodies()) == 4
    with fix.open(encoding="utf-8-sig", newline="") as fh:
        table = list(csv.reader(fh))
    email = table[0].index("email")
    for i, line in enumerate(table[1:], 1):
        line[email] = f"fixed{i}@example.com"
    with fix.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(table)
    second = cli("import", fix, "--event", "e", "--report", tmp_path / "r2.csv")
    assert second.exit_code == 0, second.output
    assert [b["email"] for b in server.bodies()[4:]] == ["fixed1@example.com", "fixed2@example.com"]
    again = cli("import", fix, "--event", "e", "--report", tmp_path / "r3.csv")
    assert again.exit_code == 0 and len(server.bodies()) == 6
