"""Config files for scheduled jobs."""

from __future__ import annotations

from conftest import contacts, read_report, write_csv


def test_cron_style_run_from_a_config_file(api, tmp_path):
    """Everything from the TOML file, credentials by environment-variable name; relative paths from the file."""
    server, cli = api()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_csv(
        jobs / "export.csv",
        [["E-mail", "Total", "Joined"], ["a@b.co", "12.5", "28.05.2021"], ["c@d.co", "3", ""]],
    )
    (jobs / "nightly.toml").write_text(
        """
input = "export.csv"
event = "purchase"
report = "out/nightly.csv"
state = "out/nightly.sqlite"
rate = 50
[types]
Total = "number"
Joined = "date"
[map]
"E-mail" = "email"
[credentials]
client_id_env = "MY_ID"
client_secret_env = "MY_SECRET"
""",
        encoding="utf-8",
    )
    env = {"MY_ID": cli.env["SENDPULSE_CLIENT_ID"], "MY_SECRET": cli.env["SENDPULSE_CLIENT_SECRET"]}
    cli.env.pop("SENDPULSE_CLIENT_ID")
    cli.env.pop("SENDPULSE_CLIENT_SECRET")
    result = cli("import", "--config", jobs / "nightly.toml", env=env)
    assert result.exit_code == 0, result.output
    assert sorted(server.bodies(), key=lambda b: b["email"]) == [
        {"email": "a@b.co", "Total": 12.5, "Joined": "2021-05-28"},
        {"email": "c@d.co", "Total": 3},
    ]
    assert (jobs / "out" / "nightly.sqlite").exists()
    assert len(read_report(jobs / "out" / "nightly.csv")) == 2


def test_command_line_overrides_the_config(cli, tmp_path):
    """An option on the command line wins over the same setting in the file."""
    f = write_csv(tmp_path / "c.csv", [["email", "n"], ["a@b.co", "1.5"]])
    cfg = tmp_path / "job.toml"
    cfg.write_text('input = "c.csv"\nevent = "e"\ndry_run = true\n[types]\nn = "integer"\n')
    assert cli("import", "--config", cfg, "--report", tmp_path / "r.csv").exit_code == 1
    result = cli("import", "--config", cfg, "--type", "n=number", "--report", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    assert read_report(tmp_path / "r.csv")[0]["status"] == "valid"
    assert f.exists()


def test_bad_config_files_exit_2_with_one_line(cli, tmp_path):
    """Unknown settings, wrong types, broken TOML and unset variables are one-line errors, exit 2."""
    cases = {
        'input = "c.csv"\nevnt = "e"\n': 'unknown setting "evnt"',
        'input = "c.csv"\nevent = "e"\nrate = "fast"\n': '"rate" has the wrong type',
        'input = "c.csv"\nevent = "e"\nrate = true\n': '"rate" has the wrong type',
        "input = [\n": "not valid TOML",
        'input = "c.csv"\n[credentials]\nurl_env = "NOT_SET_ANYWHERE"\n': "NOT_SET_ANYWHERE",
    }
    for text, message in cases.items():
        cfg = tmp_path / "job.toml"
        cfg.write_text(text)
        result = cli("import", "--config", cfg)
        assert result.exit_code == 2, text
        assert message in result.stderr, (text, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    result = cli("import", "--config", tmp_path / "missing.toml")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_config_can_name_the_event_url_variable(live, cli, tmp_path):
    """[credentials] url_env names the variable holding the event URL."""
    server = live()
    write_csv(tmp_path / "c.csv", contacts(2))
    cfg = tmp_path / "job.toml"
    cfg.write_text('input = "c.csv"\nform = true\n[credentials]\nurl_env = "SHOP_EVENT_URL"\n')
    result = cli(
        "import", "--config", cfg, env={"SHOP_EVENT_URL": server.do(lambda: server.box.event_url())}
    )
    assert result.exit_code == 0, result.output
    assert len(server.bodies()) == 2
