"""The pipeline's chunks: the first chunk of a send is cut small, so the first events leave soon."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import contacts, read_report, write_csv

from bulk_events.pipeline import _ramped
from bulk_events.reader import HIDDEN_ROWS


def frame(rows: int, start: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {"email": [f"u{i}@example.com" for i in range(rows)]}, index=range(start, start + rows)
    )


@pytest.mark.parametrize(
    ("rows", "pieces"),
    [
        (20_000, [1_000, 4_000, 15_000]),
        (7_000, [1_000, 6_000]),
        (13_000, [1_000, 4_000, 8_000]),
        (2_000, [2_000]),  # too small to be worth cutting
        (2_001, [1_000, 1_001]),
    ],
)
def test_the_first_chunk_is_cut_and_nothing_is_lost_or_reordered(rows, pieces):
    first, second = frame(rows), frame(500, start=2 + rows)
    out = list(_ramped(iter([first, second])))
    assert [len(p) for p in out] == [*pieces, 500]
    assert pd.concat(out).index.tolist() == list(range(2, 2 + rows + 500))


def test_a_first_chunk_listing_hidden_rows_is_left_whole():
    first = frame(20_000)
    first.attrs[HIDDEN_ROWS] = [5]
    out = list(_ramped(iter([first])))
    assert len(out) == 1 and out[0] is first


def test_an_empty_file_yields_nothing():
    assert list(_ramped(iter([]))) == []


def test_a_send_cut_into_pieces_reports_every_row_in_order_and_keeps_duplicates_apart(
    api, tmp_path
):
    """6,000 rows go out as pieces of 1,000 and 5,000: a row repeating one of the first piece
    in the second is still a duplicate, every row is in the report in file order, and a rerun
    sends nothing."""
    server, cli = api()
    rows = contacts(6_000)
    rows[4_000] = list(rows[10])  # file row 4001 repeats file row 11
    f = write_csv(tmp_path / "c.csv", rows)
    args = ("import", f, "--event", "e", "--report", tmp_path / "r.csv", "--rate", "0")
    assert cli(*args, "--concurrency", "20").exit_code == 0
    report = read_report(tmp_path / "r.csv")
    assert [int(r["row"]) for r in report] == list(range(2, 6_002))
    by_row = {int(r["row"]): r for r in report}
    assert by_row[4_001]["status"] == "skipped" and "duplicate of row 11" in by_row[4_001]["error"]
    assert sum(r["status"] == "sent" for r in report) == 5_999
    assert len(server.bodies()) == 5_999
    assert cli(*args).exit_code == 0
    assert len(server.bodies()) == 5_999
