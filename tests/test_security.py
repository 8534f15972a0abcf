"""Secrets (client secret, access tokens, the event URL's hash) never appear in output, logs,
reports or the journal, even at the most verbose level and on error paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import contacts, write_csv

SECRET = "s3cr3t-Qx7-do-not-print-0123456789"


def files_text(*folders: Path) -> bytes:
    data = b""
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data += path.read_bytes()
    return data


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_api_secret_and_tokens_never_leak(api, tmp_path, log_format):
    """-vv with retries, an expired token and a refusal: neither the secret nor any token shows."""
    server, cli = api(client_secret=SECRET)
    box = server.box
    server.do(
        lambda: box.misbehave("expire-token", when=lambda b: b["email"] == "user3@example.com")
    )
    server.do(lambda: box.misbehave("500", when=lambda b: b["email"] == "user4@example.com"))
    server.do(lambda: box.misbehave("400", when=lambda b: b["email"] == "user5@example.com"))
    f = write_csv(tmp_path / "c.csv", contacts(8))
    out = tmp_path / "out"
    result = cli(
        "import", f, "--event", "e", "-vv", "--log-format", log_format,
        "--report", out / "r.csv", "--state", out / "j.sqlite",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # the 400 row failed
    tokens = server.do(lambda: list(box.issued_tokens))
    assert len(tokens) == 2
    everything = result.output.encode() + files_text(out, tmp_path / "state")
    assert b"Bearer " not in everything  # no header dump of any kind
    for secret in [SECRET, *tokens]:
        assert secret.encode() not in everything
    assert b"user4@example.com" in everything  # the check looked at real content


def test_wrong_secret_is_not_echoed(api, tmp_path):
    """A rejected secret is not repeated back in the error."""
    _server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(1))
    result = cli("import", f, "--event", "e", "-vv", env={"SENDPULSE_CLIENT_SECRET": SECRET})
    assert result.exit_code == 2
    assert SECRET not in result.output


def test_event_url_hash_never_leaks(live, cli, tmp_path):
    """The event URL is a credential: its hash appears nowhere, also when the URL is wrong."""
    server = live()
    url = server.do(lambda: server.box.event_url())
    secret_hash = url.split("/")[-2]
    f = write_csv(tmp_path / "c.csv", contacts(3))
    out = tmp_path / "out"
    ok = cli(
        "import",
        f,
        "-vv",
        "--report",
        out / "r.csv",
        "--state",
        out / "j.sqlite",
        env={"SENDPULSE_EVENT_URL": url},
    )
    assert ok.exit_code == 0, ok.output
    wrong = url.replace("/events/id/", "/events/nope/")
    bad = cli(
        "import", f, "--url", wrong, "-vv", "--report", out / "r2.csv", "--state", out / "j2.sqlite"
    )
    assert bad.exit_code == 1
    everything = ok.output.encode() + bad.output.encode() + files_text(out, tmp_path / "state")
    assert secret_hash.encode() not in everything
    assert (
        secret_hash[:4].encode() in everything
    )  # shown shortened, so a person can tell URLs apart


def test_config_file_refuses_secrets(cli, tmp_path):
    """A secret written into a config file is refused: it belongs in the environment."""
    cfg = tmp_path / "job.toml"
    cfg.write_text(
        f'input = "c.csv"\nurl = "https://events.sendpulse.com/events/id/{"a" * 32}/1"\n'
    )
    result = cli("import", "--config", cfg)
    assert result.exit_code == 2
    assert "environment" in result.stderr and "a" * 32 not in result.output


def test_journal_is_private(api, tmp_path):
    """The journal folder is 0700 and the database 0600."""
    _server, cli = api()
    f = write_csv(tmp_path / "c.csv", contacts(1))
    assert cli("import", f, "--event", "e").exit_code == 0
    [db] = (tmp_path / "state" / "bulk-events").glob("*.sqlite")
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700


def test_options_repr_hides_credentials():
    """Printing the options (a library user's debug line) shows no secret and no event URL."""
    from bulk_events import ImportOptions

    text = repr(
        ImportOptions.from_settings(
            url=f"https://events.sendpulse.com/events/id/{'b' * 32}/7", client_secret=SECRET
        )
    )
    assert SECRET not in text and "b" * 32 not in text


def test_event_url_without_a_number_keeps_its_hash_out_of_the_journal_name(cli, tmp_path, live):
    """The default journal is named from the event's number, never from the URL's secret hash."""
    server = live()
    url = server.do(lambda: server.box.event_url()).rsplit("/", 1)[0]  # no trailing number
    secret_hash = url.rsplit("/", 1)[-1]
    f = write_csv(tmp_path / "c.csv", contacts(1))
    result = cli("import", f, "--report", tmp_path / "r.csv", env={"SENDPULSE_EVENT_URL": url})
    assert "journal:" in result.stderr  # a journal was made (the row itself fails: no such route)
    assert secret_hash not in result.output
    names = [p.name for p in (tmp_path / "state").rglob("*")]
    assert names and not any(secret_hash in n for n in names)
