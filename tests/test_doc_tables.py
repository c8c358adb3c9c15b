"""Every marked table of the README and docs equals what docs/tables.py makes of the committed
results, so a number in a table cannot drift from its run; and the generator itself selects,
orders and refuses as it says."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "docs" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)


@pytest.mark.parametrize("document", tables.DOCUMENTS)
def test_every_marked_table_is_its_source_regenerated(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    _, changed = tables.regenerate(text)
    assert not changed, f"stale tables in {document} (run python docs/tables.py): {changed}"


def test_the_readme_marks_its_result_tables():
    assert (ROOT / "README.md").read_text(encoding="utf-8").count("<!-- table: ") >= 3


def test_include_selects_rows_and_columns_in_the_order_given(tmp_path, monkeypatch):
    (tmp_path / "t.md").write_text("Some words first.\n\n| a | b | c |\n|---|---|---|\n"
                                   "| x | 1 | 2 |\n| y | 3 | 4 |\n| y | z | 5 |\n")  # fmt: skip
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    assert tables.include("t.md", rows="y/z,x/1", columns="c,a") == "| c | a |\n|---|---|\n| 5 | y |\n| 2 | x |\n"  # fmt: skip
    assert tables.include("t.md", rows="x", columns="b") == "| b |\n|---|\n| 1 |\n"
    with pytest.raises(ValueError, match="several rows y"):
        tables.include("t.md", rows="y")
    with pytest.raises(ValueError, match="no row w"):
        tables.include("t.md", rows="w")
    with pytest.raises(ValueError, match="no column d"):
        tables.include("t.md", columns="d")


def test_a_table_that_differs_from_its_source_is_named(tmp_path, monkeypatch):
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    typed = "before\n<!-- table: include t.md -->\n| a |\n|---|\n| 2 |\n<!-- /table -->\nafter\n"
    text, changed = tables.regenerate(typed)
    assert changed == ["include t.md"]
    assert text == "before\n<!-- table: include t.md -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\nafter\n"  # fmt: skip
    assert tables.regenerate(text)[1] == []
