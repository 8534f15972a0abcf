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


# --------------------------------------------------------------------------- echoed secrets


class EchoingService:
    """A local imitation of a careless SendPulse: the token endpoint hands out ``token`` (or, with
    ``refuse_login``, answers 400 echoing the form body as it came, percent-encoded), and the
    event endpoint answers 401 echoing the bearer token with every character JSON-escaped."""

    def __init__(self, token: str, *, refuse_login: bool = False) -> None:
        import asyncio
        import threading

        from aiohttp import web

        self.token = token
        self.refuse_login = refuse_login
        self.events = 0
        app = web.Application()
        app.router.add_post("/oauth/access_token", self._token)
        app.router.add_post("/events/name/{name}", self._event)
        self.runner = web.AppRunner(app)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> str:
        from aiohttp import web

        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _token(self, request):
        from aiohttp import web

        form = await request.text()  # grant_type=...&client_secret=s3cr3t-Qx7-...
        if self.refuse_login:
            return web.Response(status=400, text=f"bad request: {form}")
        return web.json_response({"access_token": self.token, "expires_in": 3600})

    async def _event(self, request):
        from aiohttp import web

        self.events += 1
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
        escaped = "".join(f"\\u{ord(c):04x}" for c in presented)
        body = '{"error": "invalid token", "message": "token ' + escaped + ' is not valid"}'
        return web.Response(status=401, text=body, content_type="application/json")

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def decoded_forms(data: bytes) -> str:
    """``data`` as text, plus every JSON string and percent-decoding a later reader could apply."""
    import json
    import urllib.parse

    text = data.decode("utf-8", "replace")
    forms = [text, urllib.parse.unquote_plus(text)]
    for line in text.splitlines():
        for start in [i for i, ch in enumerate(line) if ch in '{"']:
            try:
                forms.append(json.dumps(json.loads(line[start:]), ensure_ascii=False))
                break
            except ValueError:
                continue
    return "\n".join(forms)


@pytest.mark.parametrize("report_name", ["r.csv", "r.jsonl", "r.xlsx"])
def test_token_echoed_json_escaped_stays_out_of_report_journal_and_output(
    cli, tmp_path, report_name
):
    """A 401 that echoes the token as \\u escapes: masked before anything decodes it, so neither
    the report (any format), the journal nor stderr holds the token, in any spelling."""
    import openpyxl

    token = "tok-Jk7Pq2-echoed-back-0987654321"
    service = EchoingService(token)
    try:
        f = write_csv(tmp_path / "c.csv", contacts(2))
        out = tmp_path / "out"
        result = cli(
            "import", f, "--event", "e", "-vv", "--report", out / report_name,
            "--state", out / "j.sqlite",
            env={
                "SENDPULSE_API_URL": service.url,
                "SENDPULSE_CLIENT_ID": "id",
                "SENDPULSE_CLIENT_SECRET": SECRET,
            },
        )  # fmt: skip
    finally:
        service.close()
    assert service.events >= 1  # the event endpoint was reached and echoed
    assert result.exit_code != 0, result.output
    everything = result.output.encode() + files_text(out, tmp_path / "state")
    if report_name.endswith(".xlsx"):
        ws = openpyxl.load_workbook(out / report_name).active
        everything += "\n".join(str(c.value) for row in ws.iter_rows() for c in row).encode()
    assert b"invalid token" in everything  # the echo did reach the report or the output
    for text in (everything.decode("utf-8", "replace"), decoded_forms(everything)):
        assert token not in text
        assert SECRET not in text


def test_secret_echoed_percent_encoded_by_the_token_endpoint_is_masked(cli, tmp_path):
    """A token endpoint that refuses the login and echoes the form body (percent-encoded) does
    not show the client secret, raw or decoded."""
    secret = "s3cr3t/with+signs=and space&more"
    service = EchoingService("unused-token-000000", refuse_login=True)
    try:
        f = write_csv(tmp_path / "c.csv", contacts(1))
        result = cli(
            "import", f, "--event", "e", "-vv", "--report", tmp_path / "r.csv",
            env={
                "SENDPULSE_API_URL": service.url,
                "SENDPULSE_CLIENT_ID": "id",
                "SENDPULSE_CLIENT_SECRET": secret,
            },
        )  # fmt: skip
    finally:
        service.close()
    assert result.exit_code == 2
    assert "bad request" in result.output  # the echo was shown, masked
    import urllib.parse

    assert urllib.parse.quote_plus(secret) not in result.output
    assert secret not in decoded_forms(result.output.encode())


def u_escape(text: str, form: str = "\\u{:04x}") -> str:
    """Every character as a JSON \\u escape (a surrogate pair beyond the BMP)."""
    units = text.encode("utf-16-be")
    return "".join(
        form.format(int.from_bytes(units[i : i + 2], "big")) for i in range(0, len(units), 2)
    )


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text, safe="")


def _quote_plus(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote_plus(text)


def _unquote(text: str) -> str:
    import urllib.parse

    return urllib.parse.unquote(text)


def _unquote_plus(text: str) -> str:
    import urllib.parse

    return urllib.parse.unquote_plus(text)


@pytest.mark.parametrize(
    ("spell", "decode"),
    [
        (lambda s: s, lambda t: t),
        (u_escape, lambda t: json_unescape(t)),
        (lambda s: u_escape(s, "\\u{:04X}"), lambda t: json_unescape(t)),
        (lambda s: u_escape(s, "\\\\u{:04x}"), lambda t: json_unescape(t)),  # escaped twice
        (lambda s: s[:5] + u_escape(s[5:9]) + s[9:], lambda t: json_unescape(t)),  # a mix
        (_quote, _unquote),
        (_quote_plus, _unquote_plus),
        (lambda s: _quote(_quote(s)), lambda t: _unquote(_unquote(t))),
        (lambda s: __import__("json").dumps(s), lambda t: json_unescape(t)),
    ],
    ids=["plain", "u", "U", "u-twice", "mixed", "percent", "form", "percent-twice", "json"],
)
def test_redact_masks_every_spelling_of_a_secret(spell, decode):
    """A registered secret is masked written plainly, \\u-escaped (any case, twice, partly) or
    percent-encoded (once, twice, form-style): decoding the result does not reveal it."""
    from bulk_events import redact

    secret = "Sp3ll/ing é+test-Ω-😀-value"
    redact.register(secret)
    text = f"before {spell(secret)} after"
    assert secret in decode(text)  # the spelling is right: decoded, the secret is there
    masked = redact.redact(text)
    assert masked.replace('"', "") == "before *** after"
    assert secret not in decode(masked)


def json_unescape(text: str) -> str:
    """Undo JSON string escapes, layer after layer (an escape may have been escaped again)."""
    import re

    simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        return chr(int(code[1:], 16)) if code[0] == "u" else simple[code]

    previous = None
    while previous != text:
        previous = text
        text = re.sub(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])', one, text)
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def test_url_user_info_is_hidden_and_registered():
    """A URL's user and password never show: redact_url drops them, register_url registers them
    (also percent-decoded), and redact() masks user info in any URL in a text, however short."""
    from bulk_events import redact

    url = "https://admin-user:p%40ss-w0rd-long@api.example.com:8443/v1"
    assert redact.redact_url(url) == "https://api.example.com:8443/v1"
    redact.register_url(url)
    text = redact.redact("login failed for p@ss-w0rd-long (p%40ss-w0rd-long) as admin-user")
    assert "p@ss-w0rd-long" not in text and "p%40ss-w0rd-long" not in text
    assert "admin-user" not in text
    line = redact.redact("cannot connect to http://me:pw@10.0.0.1:9/x; see https://h/?a=b@c")
    assert line == "cannot connect to http://***@10.0.0.1:9/x; see https://h/?a=b@c"


# --------------------------------------------------------------------------- log tracebacks


def test_json_log_redacts_tracebacks(capsys):
    """-v --log-format json: a traceback (exception text and frames) is scrubbed like the message."""
    import json
    import logging

    from bulk_events import redact
    from bulk_events.logs import setup_logging

    secret = "tb-secret-Zz9-in-an-exception"
    redact.register(secret)
    setup_logging(verbose=1, log_format="json")
    log = logging.getLogger("bulk_events.test")
    try:
        raise RuntimeError(f"token {secret} refused")
    except RuntimeError:
        log.exception("request failed for %s", secret)
    err = capsys.readouterr().err
    record = json.loads(err.strip().splitlines()[-1])
    assert "RuntimeError" in record["exception"] and "Traceback" in record["exception"]
    assert secret not in err
    assert record["message"] == "request failed for ***"


def test_json_formatter_redacts_without_the_filter():
    """The formatter alone (a handler set up without the filter) still scrubs the traceback."""
    import logging
    import sys

    from bulk_events import redact
    from bulk_events.logs import JsonFormatter

    secret = "fmt-only-secret-Yy8-value"
    redact.register(secret)
    try:
        raise ValueError(secret)
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s", (secret,), info)
    record.stack_info = f"Stack (most recent call last):\n  {secret}"
    line = JsonFormatter().format(record)
    assert secret not in line
    assert "ValueError" in line and "Stack" in line
    assert secret not in (record.exc_text or "")  # what is cached on the record is clean too


# --------------------------------------------------------------------------- private files


def test_reports_are_private_in_every_format_and_while_written(tmp_path):
    """Reports are 0600 from the first byte (the temporary file) to the final file, whatever
    the umask, also when they replace an existing world-readable file."""
    import os

    import pandas as pd

    from bulk_events.outcome import Outcome, Status
    from bulk_events.report import ErrorsWriter, ReportWriter

    chunk = pd.DataFrame({"email": ["a@b.co"]}, index=[2], dtype=object)
    old = os.umask(0)
    try:
        for name in ("r.csv", "r.xlsx", "r.jsonl", "errors.csv"):
            final = tmp_path / name
            final.write_text("old")
            final.chmod(0o644)
            kind = ErrorsWriter if name.startswith("errors") else ReportWriter
            with kind(final, ["email"]) as report:
                [tmp] = tmp_path.glob(f".{name}.*.tmp")
                assert tmp.stat().st_mode & 0o777 == 0o600
                report.write(chunk, [Outcome(2, Status.INVALID, "bad")])
                report.commit()
            assert final.stat().st_mode & 0o777 == 0o600, name
            assert b"a@b.co" in final.read_bytes() or name.endswith(".xlsx")
    finally:
        os.umask(old)


def test_create_private_tightens_an_existing_file(tmp_path):
    """create_private (used for the sandbox's record file) makes a new file 0600 and tightens an
    existing 0644 one before writing, appending or truncating."""
    import os

    from bulk_events.private import create_private

    old = os.umask(0)
    try:
        new = tmp_path / "new.jsonl"
        with create_private(new) as f:
            f.write(b"one\n")
        assert new.stat().st_mode & 0o777 == 0o600
        existing = tmp_path / "arrived.jsonl"
        existing.write_bytes(b"first\n")
        existing.chmod(0o644)
        with create_private(existing, append=True) as f:
            f.write(b"second\n")
        assert existing.stat().st_mode & 0o777 == 0o600
        assert existing.read_bytes() == b"first\nsecond\n"
        with pytest.raises(FileExistsError):
            create_private(existing, exclusive=True)
    finally:
        os.umask(old)


def test_killed_runs_temporary_report_is_removed_wherever_the_next_run_writes(tmp_path):
    """A run killed while writing its report elsewhere leaves a 0600 temporary file; the next run,
    writing to another folder, removes it. A live run's temporary report is left alone."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time, pandas as pd\n"
        "from bulk_events.report import ReportWriter\n"
        "w = ReportWriter(sys.argv[1], ['email'])\n"
        "print('open', flush=True)\n"
        "time.sleep(60)\n"
    )
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    killed = subprocess.Popen(
        [sys.executable, "-c", script, str(first / "nightly.csv")], stdout=subprocess.PIPE
    )
    alive = subprocess.Popen(
        [sys.executable, "-c", script, str(third / "other.csv")], stdout=subprocess.PIPE
    )
    try:
        assert killed.stdout is not None and alive.stdout is not None
        assert killed.stdout.readline() == b"open\n"
        assert alive.stdout.readline() == b"open\n"
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        [orphan] = first.glob(".nightly.csv.*.tmp")
        [running] = third.glob(".other.csv.*.tmp")
        assert orphan.stat().st_mode & 0o777 == 0o600

        from bulk_events.report import ReportWriter

        ReportWriter(second / "today.csv", ["email"]).abort()
        assert not orphan.exists()
        assert running.exists()
        assert not list((tmp_path / "state").rglob(f"{killed.pid}-*"))  # its note is gone too
    finally:
        alive.kill()
        alive.wait(10)
        time.sleep(0)


def test_a_note_naming_someone_elses_file_deletes_nothing(tmp_path):
    """Only a file whose name carries the dead run's own pid is deleted: a note pointing at any
    other file (a spreadsheet, another run's report) leaves it where it is."""
    import subprocess
    import sys

    from bulk_events.leftovers import claims_dir as _claims_dir
    from bulk_events.report import ReportWriter

    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout
    )
    precious = tmp_path / "customers.csv"
    precious.write_text("email\na@b.co\n")
    other = tmp_path / f".r.csv.{dead + 1}.tmp"
    other.write_text("x")
    notes = _claims_dir()
    notes.mkdir(parents=True)
    (notes / f"{dead}-aaaa").write_bytes(bytes(precious))
    (notes / f"{dead}-bbbb").write_bytes(bytes(other))
    ReportWriter(tmp_path / "out" / "r.csv", ["email"]).abort()
    assert precious.exists() and other.exists()
    assert not list(notes.iterdir())  # the dead run's notes themselves are cleaned up
