"""TOML config files for scheduled jobs: everything a run needs, credentials only by reference.

    # nightly.toml
    input = "/data/exports/customers.csv"
    event = "registration"
    report = "/var/log/bulk-events/nightly.csv"
    state = "/var/lib/bulk-events/nightly.sqlite"
    rate = 10
    key = ["Email"]                                 # what identifies an event across runs
    exclude = ["Internal note"]                     # or: columns = ["Name", "Plan"]
    [types]
    order_total = "number"
    [map]
    "E-mail" = "email"
    [credentials]
    client_id_env = "SENDPULSE_CLIENT_ID"          # names of environment variables, never values
    client_secret_env = "SENDPULSE_CLIENT_SECRET"
    api_key_env = "SENDPULSE_API_KEY"              # a static API key instead of the two above
    url_env = "SENDPULSE_EVENT_URL"                # for an event URL target

Relative paths are relative to the config file. Command-line options override the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

SCALARS: dict[str, type | tuple[type, ...]] = {
    "input": str,
    "event": str,
    "form": (bool, str),
    "dry_run": bool,
    "report": str,
    "errors": str,
    "max_invalid": (int, str),
    "state": str,
    "sheet": (str, int),
    "encoding": str,
    "delimiter": str,
    "automation_id": int,
    "date_format": str,
    "default_country": str,
    "allow_duplicates": bool,
    "retry_unknown": bool,
    "wait": bool,
    "rate": (int, float),
    "concurrency": int,
    "max_attempts": int,
    "connect_timeout": (int, float),
    "read_timeout": (int, float),
    "grace": (int, float),
    "api_url": str,
    "country_column": str,
    "event_column": str,
    "resend_changed": bool,
    "key": list,
    "exclude": list,
    "columns": (list, str),
    "daily_quota": int,
    "max_events": int,
    "total_timeout": (int, float),
    "hidden": str,
    "header_row": int,
}
TABLES = ("types", "map", "credentials")
CREDENTIAL_KEYS = ("client_id_env", "client_secret_env", "url_env", "api_key_env")
PATH_KEYS = ("input", "report", "errors", "state")
SECRET_KEYS = ("url", "client_id", "client_secret", "token", "access_token", "api_key")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a config file into settings named as on the command line (plus ``input``)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None

    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECRET_KEYS:
            raise ConfigError(
                f'{p.name}: "{key}" is a secret; put it in the environment and name the variable '
                'under [credentials] (e.g. url_env = "SENDPULSE_EVENT_URL")'
            )
        if key in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{p.name}: [{key}] must be a table")
            continue
        if key not in SCALARS:
            known = ", ".join(sorted([*SCALARS, *TABLES]))
            raise ConfigError(f'{p.name}: unknown setting "{key}" (known: {known})')
        expected = SCALARS[key]
        # bool is an int to Python, but `rate = true` is a mistake, not 1 event per second.
        takes_bool = expected is bool or (isinstance(expected, tuple) and bool in expected)
        if (isinstance(value, bool) and not takes_bool) or not isinstance(value, expected):
            raise ConfigError(f'{p.name}: "{key}" has the wrong type ({type(value).__name__})')
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{p.name}: "{key}" must be a list of column names')
        if key in PATH_KEYS:
            path_value = str(value)
            value = (
                path_value if os.path.isabs(path_value) else str((p.parent / path_value).resolve())
            )
        values[key] = value

    for key in ("types", "map"):
        table = data.get(key, {})
        if not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"{p.name}: every value under [{key}] must be a string")
        if table:
            values[key] = dict(table)

    credentials = data.get("credentials", {})
    for key, name in credentials.items():
        if key not in CREDENTIAL_KEYS:
            raise ConfigError(
                f"{p.name}: [credentials] takes only {', '.join(CREDENTIAL_KEYS)} (names of environment variables)"
            )
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{p.name}: [credentials] {key} must name an environment variable")
        if key != "url_env":
            values[key] = name  # where the pipeline looks when it needs them
        env_value = os.environ.get(name)
        if env_value:
            values[key.removesuffix("_env")] = env_value
        elif key == "url_env":  # the target itself: needed even for a dry run
            raise ConfigError(
                f"{p.name}: the environment variable {name} (from [credentials] {key}) is not set"
            )
        # Client credentials are looked up only when sending: a dry run needs none.
    return values
