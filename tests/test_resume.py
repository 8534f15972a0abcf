"""Runs that continue where the last one stopped: the journal in use through the CLI."""

from __future__ import annotations

from collections import Counter

from conftest import contacts, read_report, write_csv


def statuses(report) -> list[tuple[int, str]]:
    return [(int(r["row"]), r["status"]) for r in read_report(report)]


def test_rerun_sends_nothing_twice(api, tmp_path):
    """The same command twice: the second run skips every row, saying when it was sent."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(5))
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    result = cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0
    rows = read_report(tmp_path / "r.csv")
    assert {r["status"] for r in rows} == {"skipped"}
    assert all("already sent" in r["error"] and r["sent_at"] for r in rows)
    assert len(server.bodies()) == 5


def test_nightly_export_sends_only_new_rows_even_when_reordered(api, tmp_path):
    """A file that grows and is re-sorted between runs: only the new rows are sent."""
    server, cli = api()
    rows = contacts(6)
    f = write_csv(tmp_path / "export.csv", rows)
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    grown = [rows[0], *reversed(rows[1:]), *contacts(3, start=100)[1:]]
    grown.insert(3, ["", "", ""])
    write_csv(f, grown)
    result = cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0
    assert Counter(s for _, s in statuses(tmp_path / "r.csv")) == Counter({"skipped": 6, "sent": 3})
    assert Counter(b["email"] for b in server.bodies()) == Counter(
        {
            **{f"user{i}@example.com": 1 for i in range(6)},
            **{f"user{i}@example.com": 1 for i in range(100, 103)},
        }
    )


def test_failed_rows_are_retried_on_the_next_run(api, tmp_path):
    """A row that failed is sent by the next run; the rows that were sent are not."""
    server, cli = api()
    server.do(
        lambda: server.box.misbehave(
            "500", times=3, when=lambda b: b["email"] == "user1@example.com"
        )
    )
    f = write_csv(tmp_path / "c.csv", contacts(3))
    assert (
        cli(
            "import", f, "--event", "e", "--report", tmp_path / "r.csv", "--max-attempts", "1"
        ).exit_code
        == 1
    )
    assert statuses(tmp_path / "r.csv") == [(2, "sent"), (3, "failed"), (4, "sent")]
    server.do(server.box.calm)
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    assert statuses(tmp_path / "r.csv") == [(2, "skipped"), (3, "sent"), (4, "skipped")]
    assert Counter(b["email"] for b in server.bodies())["user1@example.com"] == 1


def test_only_failed_sends_just_the_failed_rows(api, tmp_path):
    """--only-failed resends rows that failed before and leaves new rows alone."""
    server, cli = api()
    server.do(lambda: server.box.misbehave("400", when=lambda b: b["email"] == "user0@example.com"))
    f = write_csv(tmp_path / "c.csv", contacts(2))
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    write_csv(f, contacts(3))
    result = cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--only-failed")
    assert result.exit_code == 0, result.output
    assert statuses(tmp_path / "r.csv") == [(2, "sent"), (3, "skipped"), (4, "skipped")]
    assert "user2@example.com" not in {b["email"] for b in server.bodies()}


def test_duplicates_are_sent_once_unless_allowed(api, tmp_path):
    """Identical rows: one event, the later skipped; with --allow-duplicates each occurrence, once per run."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", [["email"], ["a@b.co"], ["a@b.co"], ["A@B.co "]])
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    assert statuses(tmp_path / "r.csv") == [(2, "sent"), (3, "skipped"), (4, "skipped")]
    assert "duplicate of row 2" in read_report(tmp_path / "r.csv")[1]["error"]
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--allow-duplicates")
    assert statuses(tmp_path / "r.csv") == [(2, "skipped"), (3, "sent"), (4, "sent")]
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--allow-duplicates")
    assert {s for _, s in statuses(tmp_path / "r.csv")} == {"skipped"}
    assert len(server.bodies()) == 3


def test_a_different_event_is_a_different_destination(api, tmp_path):
    """Rows sent to one event are not considered sent to another."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(2))
    state = tmp_path / "j.sqlite"
    cli("import", f, "--event", "signup", "--state", state, "--report", tmp_path / "r.csv")
    cli("import", f, "--event", "purchase", "--state", state, "--report", tmp_path / "r.csv")
    assert {s for _, s in statuses(tmp_path / "r.csv")} == {"sent"}
    assert len(server.bodies()) == 4


def test_fresh_starts_over_only_when_confirmed(api, tmp_path):
    """--fresh without --yes in a script is refused; with --yes every row is sent again."""
    server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(2))
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    refused = cli("import", f, "--event", "e", "--fresh")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert (
        cli(
            "import", f, "--event", "e", "--fresh", "--yes", "--report", tmp_path / "r.csv"
        ).exit_code
        == 0
    )
    assert {s for _, s in statuses(tmp_path / "r.csv")} == {"sent"}
    assert len(server.bodies()) == 4


def test_dry_run_knows_what_was_sent(api, tmp_path):
    """A dry run after a real run reports sent rows as skipped and touches no journal."""
    _server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(2))
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    write_csv(f, contacts(3))
    result = cli("import", f, "--event", "e", "--dry-run", "--report", tmp_path / "r.csv")
    assert statuses(tmp_path / "r.csv") == [(2, "skipped"), (3, "skipped"), (4, "valid")]
    assert result.exit_code == 0


def test_inspect_shows_the_plan(api, tmp_path):
    """inspect: detected format, columns and roles, counts, samples, and the time it will take."""
    _server, cli = api()
    f = write_csv(tmp_path / "c.csv", [*contacts(3), ["bad", "x"], ["user0@example.com", "User 0"]])
    cli("import", f, "--event", "e", "--report", tmp_path / "r.csv")
    write_csv(f, [*contacts(5), ["bad", "x"], ["user0@example.com", "User 0"]])
    result = cli("inspect", f, "--event", "e", "--rate", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "CSV" in out and "email" in out and "-> email" in out
    assert (
        "2 to send" in out
        and "1 invalid" in out
        and "1 duplicate" in out
        and "3 already sent" in out
    )
    assert 'row 5: {"email":"user3@example.com"' in out
    assert "about 1 s at 2 events/s" in out


def test_renamed_file_and_fed_back_report_are_checked_against_the_same_journal(api, tmp_path):
    """The default journal belongs to the destination: a renamed export or the report itself sends nothing twice."""
    server, cli = api()
    f = write_csv(tmp_path / "customers-2026-11-26.csv", contacts(4))
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r1.csv").exit_code == 0
    renamed = write_csv(tmp_path / "customers-2026-11-27.csv", contacts(5))
    assert cli("import", renamed, "--event", "e", "--report", tmp_path / "r2.csv").exit_code == 0
    assert statuses(tmp_path / "r2.csv") == [
        (2, "skipped"),
        (3, "skipped"),
        (4, "skipped"),
        (5, "skipped"),
        (6, "sent"),
    ]
    assert (
        cli(
            "import", tmp_path / "r2.csv", "--event", "e", "--report", tmp_path / "r3.csv"
        ).exit_code
        == 0
    )
    assert {s for _, s in statuses(tmp_path / "r3.csv")} == {"skipped"}
    assert len(server.bodies()) == 5


def test_rerun_looks_up_contact_history_only_for_rows_the_journal_lacks(api, tmp_path, monkeypatch):
    """Rows already sent are skipped by their own journal entry: only a changed row of a
    contact (a new event key) and a new contact are looked up, and the changed one is held."""
    from bulk_events.journal import Journal

    asked: list[int] = []
    history = Journal.contact_history

    def counting(self, contacts, **kw):
        asked.append(len(contacts))
        return history(self, contacts, **kw)

    monkeypatch.setattr(Journal, "contact_history", counting)
    server, cli = api()
    rows = contacts(4)
    f = write_csv(tmp_path / "c.csv", rows)
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    asked.clear()
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    assert asked == []  # every row has its entry: nothing to look up
    write_csv(f, [*rows, ["user1@example.com", "Renamed"], *contacts(1, start=9)[1:]])
    assert cli("import", f, "--event", "e", "--report", tmp_path / "r.csv").exit_code == 0
    assert asked == [2]
    assert statuses(tmp_path / "r.csv")[4:] == [(6, "skipped"), (7, "sent")]
    assert len(server.bodies()) == 5
