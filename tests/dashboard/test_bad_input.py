"""Empty roots, runs without steps, databases being written, corrupted and foreign files:
every page says what is wrong in words, never with a traceback."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from tests.dashboard.conftest import PAGES
from tests.dashboard.stores import open_run, write_run


def every_page(a):
    for page in PAGES:
        a.page(page)
        assert a.at.exception == [], (page, a.at.exception)
        yield page


def test_root_that_does_not_exist(app, tmp_path):
    a = app(tmp_path / "nowhere")
    for page in every_page(a):
        assert any("does not exist yet" in t for t in a.texts("info")), page
        assert a.texts("error") == []


def test_empty_root(app, tmp_path):
    a = app(tmp_path)
    for page in every_page(a):
        assert any("has no runs yet" in t and "cogitans run" in t for t in a.texts("info")), page


def test_run_with_no_steps_yet(app, tmp_path):
    store = open_run(tmp_path / "fresh-1", steps_total=50)
    store.write_step(0, {}, births=[(0, -1, 0, 0), (1, -1, 1, 1)])  # founders only, as the runner does
    a = app(tmp_path)
    assert list(every_page(a)) == PAGES
    for page in ("population", "specialisation", "memory"):
        a.page(page)
        assert any("No steps recorded yet" in t for t in a.texts("info")), page
        assert a.problems() == []
    a.page("lineages")
    assert a.problems() == [] and len(a.charts()) == 2  # founders' shares and their (flat) tree
    a.page("gene_pool")
    assert any("no gene-pool data yet" in t for t in a.texts("info"))
    store.close()


def test_corrupted_foreign_and_stray_files(app, tmp_path):
    write_run(tmp_path / "good-1", 15)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "run.sqlite").write_bytes(b"\x00\xffnot sqlite" * 100)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "run.sqlite").write_bytes(b"")
    foreign = sqlite3.connect(tmp_path / "foreign.db")
    foreign.execute("CREATE TABLE songs (title TEXT)")
    foreign.commit()
    foreign.close()
    (tmp_path / "other").mkdir()
    shutil.copy(tmp_path / "foreign.db", tmp_path / "other" / "run.sqlite")
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / "dir-as-db").mkdir()
    (tmp_path / "dir-as-db" / "run.sqlite").mkdir()
    a = app(tmp_path, run="good-1")
    for page in every_page(a):
        assert a.texts("error") == [], page
    a.page("runs")
    warnings = " ".join(a.texts("warning"))
    assert "garbage" in warnings and "not a Cogitans run database" in warnings
    assert "other" in warnings and "empty" in warnings
    assert a.at.dataframe[0].value.set_index("run").loc["good-1", "status"] == "finished"
    b = app(tmp_path, run="garbage")
    b.page("population")
    assert any("cannot be read" in t for t in b.texts("warning")) and b.at.exception == []


def test_database_from_a_newer_version(app, tmp_path):
    run = write_run(tmp_path / "future-1", 5)
    db = sqlite3.connect(run / "run.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    a = app(tmp_path)
    assert any("newer Cogitans" in t for t in a.texts("warning"))
    assert a.at.exception == []


def test_truncated_database(app, tmp_path):
    run = write_run(tmp_path / "cut-1", 30)
    data = (run / "run.sqlite").read_bytes()
    (run / "run.sqlite").write_bytes(data[: len(data) // 3])
    for path in run.glob("run.sqlite-*"):
        path.unlink()
    a = app(tmp_path, run="cut-1")
    shown = []
    for _ in every_page(a):  # an unreadable or partly readable run: messages only
        shown += a.texts("warning") + a.texts("error")
    assert any("cut-1" in t and ("not a Cogitans run database" in t or "malformed" in t) for t in shown)


def test_database_being_written(app, tmp_path):
    """A writer holds an open transaction (a step half written): pages show the committed steps."""
    run = tmp_path / "busy-1"
    store = open_run(run, steps_total=100)
    store.write_step(0, {}, births=[(0, -1, 0, 0)])
    for step in range(1, 11):
        store.write_step(step, {"population": 10.0 + step, "quality": 0.1})
    store.db.execute("BEGIN IMMEDIATE")
    store.db.execute("INSERT INTO metrics (step, population) VALUES (11, 999)")
    a = app(tmp_path)
    for page in every_page(a):
        assert a.texts("error") == [], page
    a.page("population")
    assert a.metrics()["Living agents"] == "20"
    store.db.rollback()
    store.close()


@pytest.mark.parametrize("params", [{"mutation.sigma": [0.01, 0.02]}, {}])
def test_sweep_with_odd_params(app, tmp_path, params):
    """Parameters that are lists, or a sweep whose runs do not differ, still draw a page."""
    for i in range(2):
        write_run(tmp_path / "odd" / f"odd-{i}", 6, seed=i, sweep_id="odd", params=params, snapshot_every=0)
    a = app(tmp_path).page("compare")
    assert a.problems() == []


def test_run_table_with_an_unexpected_layout(app, tmp_path):
    """A database that looks like a run store but whose `run` table lacks columns: that run is
    unreadable, the others are still listed."""
    write_run(tmp_path / "good-1", 5)
    (tmp_path / "odd").mkdir()
    db = sqlite3.connect(tmp_path / "odd" / "run.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("CREATE TABLE run (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO run VALUES (1, 'odd')")
    db.commit()
    db.close()
    a = app(tmp_path, run="odd")
    table = a.at.dataframe[0].value.set_index("run")
    assert table.loc["good-1", "status"] == "finished" and table.loc["odd", "status"] == "unreadable"
    assert any("unexpected run table" in t for t in a.texts("warning"))
    for _ in every_page(a):
        pass
