"""Sending only what the user meant: --key, changed contacts, chosen columns, per-row events,
phones with a country column. Every test checks what arrived at the local sandbox, row by row."""

from __future__ import annotations

from conftest import read_report, write_csv


def arrived(server) -> list[tuple[str, dict]]:
    return server.do(lambda: [(a.path.rsplit("/", 1)[-1], a.body) for a in server.box.accepted])


def statuses(report) -> list[tuple[int, str]]:
    return [(int(r["row"]), r["status"]) for r in read_report(report)]


HEADER = ["Email", "First Name", "Last Activity Date"]


def hubspot(day: str, *extra: list[str]) -> list[list[str]]:
    return [
        HEADER,
        ["ann@example.com", "Ann", day],
        ["Bob@Example.com ", "Bob", day],
        ["cy@example.com", "Cy", day],
        *extra,
    ]


def test_a_changed_export_does_not_resend_to_contacts_who_got_the_event(api, tmp_path):
    """Day 2 of a nightly export where only a volatile column changed: only the new contact is
    sent; the others are skipped naming the changed column; --resend-changed sends them."""
    server, cli = api()
    f = write_csv(tmp_path / "export.csv", hubspot("2026-11-26"))
    r = tmp_path / "r.csv"
    assert cli("import", f, "--event", "signup", "--report", r).exit_code == 0
    assert len(arrived(server)) == 3
    write_csv(f, hubspot("2026-11-27", ["dee@example.com", "Dee", "2026-11-27"]))
    result = cli("import", f, "--event", "signup", "--report", r)
    assert result.exit_code == 0, result.output
    assert statuses(r) == [(2, "skipped"), (3, "skipped"), (4, "skipped"), (5, "sent")]
    error = read_report(r)[1]["error"]
    assert "contact already received this event on 20" in error
    assert "changed: Last Activity Date;" in error and "--key" in error
    assert "--resend-changed" in error
    assert "3 of them: contact already received" in result.output
    assert [b["email"] for _, b in arrived(server)][3:] == ["dee@example.com"]
    result = cli("import", f, "--event", "signup", "--report", r, "--resend-changed")
    assert statuses(r) == [(2, "sent"), (3, "sent"), (4, "sent"), (5, "skipped")]
    assert [b["Last Activity Date"] for _, b in arrived(server)][4:] == ["2026-11-27"] * 3


def test_key_email_sends_once_per_contact_however_cells_change(api, tmp_path):
    """--key email: a contact is recognised by its email as sent (case and spaces aside)."""
    server, cli = api()
    f = write_csv(tmp_path / "export.csv", hubspot("2026-11-26"))
    r = tmp_path / "r.csv"
    assert cli("import", f, "--event", "signup", "--key", "email", "--report", r).exit_code == 0
    rows = hubspot("2026-11-27", ["dee@example.com", "Dee", "2026-11-27"])
    rows[2][0] = "bob@example.com"
    write_csv(f, rows)
    assert cli("import", f, "--event", "signup", "--key", "Email", "--report", r).exit_code == 0
    assert statuses(r) == [(2, "skipped"), (3, "skipped"), (4, "skipped"), (5, "sent")]
    assert all("already sent" in row["error"] for row in read_report(r)[:3])
    assert [b["email"] for _, b in arrived(server)] == [
        "ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com",
    ]  # fmt: skip


def test_orders_keyed_by_order_id(api, tmp_path):
    """--key "Order ID": a status change is the same order; a new order of the same contact is
    sent; two orders of one contact in one file both go; an empty Order ID is invalid."""
    server, cli = api()
    head = ["Order ID", "email", "Status"]
    f = write_csv(
        tmp_path / "orders.csv",
        [head, ["1001", "ann@example.com", "paid"], ["1002", "ann@example.com", "paid"]],
    )
    r = tmp_path / "r.csv"
    args = ("import", f, "--event", "purchase", "--key", "Order ID", "--report", r)
    assert cli(*args).exit_code == 0
    write_csv(
        f,
        [
            head,
            ["1001", "ann@example.com", "shipped"],
            ["1002", "ann@example.com", "paid"],
            ["1003", "ann@example.com", "paid"],
            ["", "bob@example.com", "paid"],
        ],
    )
    assert cli(*args).exit_code == 1
    assert statuses(r) == [(2, "skipped"), (3, "skipped"), (4, "sent"), (5, "invalid")]
    assert '"Order ID" is empty' in read_report(r)[3]["error"]
    assert [b["Order ID"] for _, b in arrived(server)] == ["1001", "1002", "1003"]


def test_from_a_config_file(api, tmp_path):
    """key, exclude, columns, event_column, country_column and resend_changed work from TOML."""
    server, cli = api()
    write_csv(
        tmp_path / "c.csv",
        [
            ["Email", "Phone", "Country", "Name", "OPTIN_IP", "Event"],
            ["ann@example.com", "0501234567", "UA", "Ann", "1.2.3.4", "signup"],
        ],
    )
    config = tmp_path / "job.toml"
    config.write_text(
        'input = "c.csv"\nevent_column = "Event"\nkey = ["Email"]\nexclude = ["OPTIN_IP"]\n'
        'country_column = "Country"\ncolumns = ["Name", "Country"]\nresend_changed = true\n'
        'report = "r.csv"\n'
    )
    result = cli("import", "--config", config)
    assert result.exit_code == 0, result.output
    assert arrived(server) == [
        (
            "signup",
            {"email": "ann@example.com", "phone": "+380501234567", "Country": "UA", "Name": "Ann"},
        )
    ]


def test_exclude_and_columns_choose_what_a_body_holds(api, tmp_path):
    """--exclude leaves columns out; --columns keeps only the named variables."""
    server, cli = api()
    f = write_csv(
        tmp_path / "mc.csv",
        [
            ["Email Address", "First Name", "OPTIN_IP", "LEID", "Internal note"],
            ["ann@example.com", "Ann", "1.2.3.4", "77", "do not contact"],
        ],
    )
    r = tmp_path / "r.csv"
    cli("import", f, "--event", "a", "--report", r, "--exclude", "optin_ip", "--exclude", "LEID ")
    cli("import", f, "--event", "b", "--report", r, "--columns", "First Name")
    assert arrived(server) == [
        ("a", {"email": "ann@example.com", "First Name": "Ann", "Internal note": "do not contact"}),
        ("b", {"email": "ann@example.com", "First Name": "Ann"}),
    ]
    result = cli("import", f, "--event", "c", "--report", r, "--exclude", "Nope")
    assert result.exit_code == 2
    assert '--exclude names column "Nope"' in result.output
    assert cli("import", f, "--event", "c", "--exclude", "email").exit_code == 2


def test_event_column_sends_each_row_to_its_event(api, tmp_path):
    """--event-column: each row to its own event, the column not sent; an empty or unusable
    event cell is invalid; a rerun, and a run of one of those events, send nothing twice."""
    server, cli = api()
    f = write_csv(
        tmp_path / "mixed.csv",
        [
            ["email", "event", "Total"],
            ["ann@example.com", "registration", "1"],
            ["bob@example.com", "purchase", "20"],
            ["cy@example.com", "", "3"],
            ["dee@example.com", "abandoned cart", "4"],
            ["ann@example.com", "purchase", "5"],
        ],
    )
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event-column", "Event", "--report", r)
    assert result.exit_code == 1, result.output
    assert statuses(r) == [(2, "sent"), (3, "sent"), (4, "invalid"), (5, "invalid"), (6, "sent")]
    errors = [row["error"] for row in read_report(r)]
    assert 'event cell (column "event") is empty' in errors[2]
    assert 'event "abandoned cart"' in errors[3]
    assert arrived(server) == [
        ("registration", {"email": "ann@example.com", "Total": "1"}),
        ("purchase", {"email": "bob@example.com", "Total": "20"}),
        ("purchase", {"email": "ann@example.com", "Total": "5"}),
    ]
    assert "purchase 2" in result.output and "registration 1" in result.output
    cli("import", f, "--event-column", "event", "--report", r)
    assert statuses(r)[:2] == [(2, "skipped"), (3, "skipped")]
    one = write_csv(tmp_path / "p.csv", [["email", "Total"], ["bob@example.com", "20"]])
    assert cli("import", one, "--event", "purchase", "--report", r).exit_code == 0
    assert statuses(r) == [(2, "skipped")]
    assert len(arrived(server)) == 3
    assert cli("import", f, "--event-column", "event", "--event", "x").exit_code == 2


def test_older_per_event_journal_is_adopted(api, tmp_path):
    """A journal an earlier version kept per event still keeps its rows from being resent."""
    import sqlite3

    from bulk_events.journal import Journal, Mark, default_journal_path
    from bulk_events.payload import event_key

    server, cli = api()
    identity = f"api:{server.url}/events/name/signup"
    old = default_journal_path(identity, "signup")
    with Journal.open(old) as journal:
        run = journal.start_run(input="x", target="y")
        key = event_key(identity, {"email": "ann@example.com"})
        journal.write([Mark(key, "sent", row=2, sent_at="2026-01-01T00:00:00Z")], run)
    with sqlite3.connect(old) as db:  # as the earlier version left it
        db.execute("DROP TABLE contacts")
        db.execute("PRAGMA user_version = 1")
    f = write_csv(tmp_path / "c.csv", [["email"], ["ann@example.com"], ["bob@example.com"]])
    r = tmp_path / "r.csv"
    cli("import", f, "--event", "signup", "--dry-run", "--report", r)
    assert statuses(r) == [(2, "skipped"), (3, "valid")]
    assert cli("import", f, "--event", "signup", "--report", r).exit_code == 0
    assert statuses(r) == [(2, "skipped"), (3, "sent")]
    assert [b for _, b in arrived(server)] == [{"email": "bob@example.com"}]
    assert not old.exists() and old.with_name(old.name + ".adopted").exists()


def test_country_column_and_text_markers(api, tmp_path):
    """Each row's national phone is made international from its own country; the apostrophe
    a Shopify export puts before a phone is not part of it; national phones are warned about."""
    server, cli = api()
    f = write_csv(
        tmp_path / "shop.csv",
        [
            ["Email", "Phone", "Country", "Zip"],
            ["ann@example.com", "'0501234567", "UA", "'02134"],
            ["bob@example.com", "(617) 555-0123", "United States", ""],
            ["cy@example.com", "07911123456", "GB", ""],
            ["dee@example.com", "'+19846270127", "", ""],
        ],
    )
    r = tmp_path / "r.csv"
    result = cli("import", f, "--event", "e", "--country-column", "Country", "--report", r)
    assert result.exit_code == 0, result.output
    assert [(b["email"], b["phone"]) for _, b in arrived(server)] == [
        ("ann@example.com", "+380501234567"),
        ("bob@example.com", "+16175550123"),
        ("cy@example.com", "+447911123456"),
        ("dee@example.com", "+19846270127"),
    ]
    assert arrived(server)[0][1]["Zip"] == "'02134"
    assert "national" not in result.output
    plain = write_csv(tmp_path / "plain.csv", [["email", "phone"], ["x@example.com", "0501234567"]])
    result = cli("import", plain, "--event", "e", "--dry-run", "--report", r)
    assert "1 phone looks national" in result.output
    assert "--default-country" in result.output and "--country-column" in result.output
