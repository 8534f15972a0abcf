"""Which column is what: a file's headers matched to roles, body keys and types (:func:`plan_columns`).

Headers are matched once per file, before any row is read; the :class:`Layout` it returns is what
validation (:mod:`.schema`), bodies (:mod:`.payload`) and the choice of body columns
(:mod:`.columns`) work from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ColumnError, UsageError

TYPES = ("string", "integer", "number", "date", "boolean")
ROLES = ("email", "phone", "automation_id")

# Header spellings recognised without --map, compared after casefolding and removing spaces,
# dashes, dots and underscores ("E-mail Address" -> "emailaddress").
ALIASES: dict[str, frozenset[str]] = {
    "email": frozenset(
        {
            "email", "emailaddress", "mail", "emails",
            "почта", "электроннаяпочта", "элпочта", "емейл", "имейл", "емэйл",
            "електроннапошта", "електронапошта", "пошта", "елпошта", "імейл",
        }
    ),
    "phone": frozenset(
        {
            "phone", "phonenumber", "telephone", "tel", "mobile", "mobilephone", "cell",
            "cellphone", "msisdn",
            "телефон", "тел", "мобильный", "мобільний", "номертелефона", "номертелефону",
            "мобильныйтелефон", "мобільнийтелефон", "моб",
        }
    ),
    "automation_id": frozenset({"automationid"}),
}  # fmt: skip

_FOLD = re.compile(r"[\s\-._]+")


def fold(name: str) -> str:
    """The form in which header names are compared: case and separators ignored."""
    return _FOLD.sub("", name.strip().casefold())


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """One input column: its header as written, the key it becomes in the body, and its type."""

    source: str
    name: str
    role: str  # "email", "phone", "automation_id" or "variable"
    type: str = "string"


@dataclass(frozen=True)
class Layout:
    """How a file's columns become an event body."""

    columns: tuple[ColumnPlan, ...]
    country: str | None = None  # source header of the column giving each row's phone country

    def by_role(self, role: str) -> ColumnPlan | None:
        return next((c for c in self.columns if c.role == role), None)

    @property
    def variables(self) -> tuple[ColumnPlan, ...]:
        return tuple(c for c in self.columns if c.role == "variable")


def parse_assignments(
    values: Mapping[str, str] | list[str] | tuple[str, ...], option: str
) -> dict[str, str]:
    """Parse repeated ``NAME=VALUE`` options (``--type``, ``--map``) into a dict."""
    if isinstance(values, Mapping):
        return {str(k): str(v) for k, v in values.items()}
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f'{option} takes COLUMN=VALUE, got "{item}"')
        result[name.strip()] = value.strip()
    return result


# Every column becomes a variable of every event, and validating one costs a fixed amount per
# chunk: a file wider than this is refused before a row is read (see the README).
MAX_COLUMNS = 2_000


def plan_columns(
    headers: list[str],
    *,
    types: Mapping[str, str] | None = None,
    mapping: Mapping[str, str] | None = None,
    file_label: str = "the file",
    default_automation_id: bool = False,
    country_column: str | None = None,
) -> Layout:
    """Decide the role, body key and type of every column of a file.

    ``country_column`` names the column that gives each row's country (a code such as ``UA`` or
    a name such as ``United States``) for reading national phone numbers; it is still sent as a
    variable.

    >>> plan_columns(["E-mail", "Name"]).by_role("email").source
    'E-mail'
    """
    if len(headers) > MAX_COLUMNS:
        raise ColumnError(
            f"{file_label} has {len(headers):,} columns; bulk-events reads at most "
            f"{MAX_COLUMNS:,} (each column is a variable of the event): remove the columns "
            "that are not to be sent"
        )
    types = dict(types or {})
    mapping = dict(mapping or {})
    by_fold: dict[str, str] = {}
    for h in headers:
        by_fold.setdefault(h.strip().casefold(), h)

    def find(name: str, option: str) -> str:
        key = name.strip().casefold()
        if key in by_fold:
            return by_fold[key]
        shown = ", ".join(f'"{h.strip()}"' for h in headers)
        raise ColumnError(
            f'{option} names column "{name}", which {file_label} does not have; columns: {shown}'
        )

    targets: dict[str, str] = {}  # source header -> target name
    for source_name, target in mapping.items():
        targets[find(source_name, "--map")] = target.strip()

    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    names: dict[str, str] = {}
    for h in headers:
        target = targets.get(h, h.strip())
        names[h] = target
        folded = fold(target)
        for role in ROLES:
            if h in targets and target.casefold() == role:
                roles[role].insert(0, h)  # an explicit --map wins over an alias
            elif h not in targets and folded in ALIASES[role]:
                roles[role].append(h)

    chosen: dict[str, str] = {}
    for role, candidates in roles.items():
        if not candidates:
            continue
        if len(candidates) > 1:
            explicit = [c for c in candidates if c in targets]
            exact = [c for c in candidates if names[c].casefold() == role]
            pick = explicit[:1] if len(explicit) == 1 else exact if len(exact) == 1 else []
            if not pick:
                a, b = candidates[:2]
                raise ColumnError(
                    f'columns "{a.strip()}" and "{b.strip()}" both look like the {role}; '
                    f'choose one with --map "{a.strip()}={role}"'
                )
            candidates = pick
        chosen[role] = candidates[0]

    if "email" not in chosen and "phone" not in chosen:
        shown = ", ".join(f'"{h.strip()}"' for h in headers) or "none"
        raise ColumnError(
            f"{file_label} has no email or phone column (columns: {shown}); "
            'name one with --map "COLUMN=email" or --map "COLUMN=phone"'
        )

    role_of = {src: role for role, src in chosen.items()}
    type_of: dict[str, str] = {}
    for column, type_name in types.items():
        if type_name not in TYPES:
            raise UsageError(
                f"--type {column}={type_name}: the type must be one of {', '.join(TYPES)}"
            )
        key = column.strip().casefold()
        source = next((h for h in headers if names[h].casefold() == key), None)
        if source is None:
            source = find(column, "--type")
        if source in role_of and type_name != "string":
            raise UsageError(
                f"--type {column}={type_name}: the {role_of[source]} column has a fixed type"
            )
        type_of[source] = type_name

    plans = []
    seen_names: dict[str, str] = {}
    for h in headers:
        role = role_of.get(h, "variable")
        name = role if role != "variable" else names[h]
        if not name:
            continue
        displaced = next((r for r, c in roles.items() if h in c and chosen.get(r) != h), None)
        if role == "variable" and displaced is not None and chosen[displaced] in targets:
            mapped = chosen[displaced].strip()
            raise ColumnError(
                f'--map "{mapped}={displaced}" makes "{mapped}" the {displaced} column, the role '
                f'"{h.strip()}" had; "{h.strip()}" would then go out as a variable named '
                f'"{name}", which is reserved: give it another name, e.g. --map "{h.strip()}='
                f'{h.strip()} (file)"'
            )
        folded_name = name.casefold()
        if folded_name in seen_names:
            raise ColumnError(
                f'columns "{seen_names[folded_name].strip()}" and "{h.strip()}" would both send "{name}"; '
                "rename one with --map"
            )
        seen_names[folded_name] = h
        if role == "variable" and folded_name in ROLES:
            raise ColumnError(
                f'column "{h.strip()}" would send "{name}", which is reserved; rename it with --map'
            )
        plans.append(ColumnPlan(source=h, name=name, role=role, type=type_of.get(h, "string")))
    if default_automation_id and "automation_id" not in chosen:
        # --automation-id with no such column: a column of empty cells that the default fills.
        plans.append(
            ColumnPlan(
                source=DEFAULT_AUTOMATION_ID_SOURCE, name="automation_id", role="automation_id"
            )
        )
    country = find(country_column, "--country-column") if country_column else None
    if country is not None and country in role_of:
        raise UsageError(
            f"--country-column {country_column}: that is the {role_of[country]} column"
        )
    return Layout(tuple(plans), country=country)


DEFAULT_AUTOMATION_ID_SOURCE = "\x00--automation-id"
