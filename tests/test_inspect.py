"""`bulk-events inspect` explains and proposes: reasons, warnings, bodies, the command to run."""

from __future__ import annotations

import shlex

from conftest import read_report, write_csv


def test_inspect_explains_invalid_rows_warns_and_proposes_the_command(api, tmp_path):
    """Top invalid reasons with counts and example rows; national phones, columns that would go
    out as text, changed contacts; what bodies hold; per-event counts; the command that runs it,
    which then sends exactly what inspect showed."""
    server, cli = api()
    f = write_csv(
        tmp_path / "leads.csv",
        [
            ["Email", "Phone", "Spent", "Signup", "Event", "LEID"],
            ["ann@example.com", "0501234567", "12.5", "27 Nov 2024", "signup", "1"],
            ["bad", "", "3", "1 Dec 2024", "buy", "2"],
            ["worse", "", "4", "2 Dec 2024", "buy", "3"],
            ["also@bad", "", "4", "2 Dec 2024", "buy", "3"],
            ["bob@example.com", "+380501234567", "5", "3 Dec 2024", "", "4"],
            ["cy@example.com", "+380501234568", "6", "4 Dec 2024", "buy", "5"],
        ],
    )
    result = cli(
        "inspect", f, "--event-column", "event", "--exclude", "LEID", "--type", "Spent=number"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "LEID" in out and "-- not sent" in out and "-- each row's event" in out
    assert "Bodies:  email, phone, Spent, Signup" in out
    assert "Events:  buy 1, signup 1" in out
    assert "2 of 2 to send have no automation_id" in out
    assert '3 x email "…" is not a valid email address (rows 3, 4, 5)' in out
    assert '1 x the event cell (column "Event") is empty' in out and "(rows 6)" in out
    assert "1 phone(s) look national" in out and "--country-column" in out
    assert 'column "Signup" looks like dates but goes out as text: --type "Signup=date"' in out
    assert 'column "Spent"' not in out  # declared a number
    command = out.split("To run it:\n", 1)[1].splitlines()[0].strip()
    assert "--type Spent=number" in command and "--exclude LEID" in command
    assert 'event_column = "event"' in out and 'exclude = ["LEID"]' in out
    assert '[types]\n  "Spent" = "number"' in out
    # The proposed command runs the import as inspected.
    args = shlex.split(command)[1:]
    cli(*args, "--report", tmp_path / "r.csv")
    assert [r["status"] for r in read_report(tmp_path / "r.csv")] == [
        "sent", "invalid", "invalid", "invalid", "invalid", "sent",
    ]  # fmt: skip
    assert server.do(lambda: [(a.path.rsplit("/", 1)[-1], a.body) for a in server.box.accepted]) == [
        ("signup", {"email": "ann@example.com", "phone": "0501234567", "Spent": 12.5, "Signup": "27 Nov 2024"}),
        ("buy", {"email": "cy@example.com", "phone": "+380501234568", "Spent": 6, "Signup": "4 Dec 2024"}),
    ]  # fmt: skip


def test_inspect_counts_changed_contacts_and_keeps_secrets_out_of_the_proposal(api, tmp_path):
    """A contact whose row changed since it got the event is counted and explained; the
    proposed command never holds the event URL."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", [["email", "Seen"], ["ann@example.com", "1"]])
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    write_csv(f, [["email", "Seen"], ["ann@example.com", "2"]])
    out = cli("inspect", f, "--event", "e").stdout
    assert "1 changed since sent to their contact" in out
    assert "1 row(s) changed since their contact received this event" in out
    url = server.box.event_url(server.url)
    out = cli("inspect", f, env={"SENDPULSE_EVENT_URL": url}).stdout
    assert "SENDPULSE_EVENT_URL=... bulk-events import" in out
    assert url.rsplit("/", 2)[-2] not in out
