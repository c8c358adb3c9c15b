"""Every marked table of the README and docs equals what docs/tables.py makes of the committed
results, so a number in a table cannot drift from its run; and the generator itself selects,
orders and refuses as it says."""

import importlib.util
import json
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


def test_every_table_of_the_findings_is_generated():
    """A typed table in docs/findings.md is a number that can drift from its run."""
    lines = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8").splitlines()
    typed, inside = [], False
    for number, line in enumerate(lines, 1):
        inside = line.startswith("<!-- table") or (inside and not line.startswith("<!-- /table"))
        if line.startswith("|---") and not inside:
            typed.append(f"line {number}: {lines[number - 2][:60]}")
    assert not typed, f"typed tables in docs/findings.md (mark them with their source): {typed}"


def _comparison(folder: Path, runs: list[tuple[str, int, float]]) -> None:
    folder.mkdir(parents=True)
    methods = sorted({m for m, _, _ in runs})
    table = []
    for method in methods:
        values = [a for m, _, a in runs if m == method]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
        table.append({"method": method, "seeds": len(values), "accuracy_mean": mean,
                      "accuracy_std": std, "wall_seconds_mean": 10.4, "peak_rss_mib": 99.6})  # fmt: skip
    record = {"table": table, "seeds": sorted({s for _, s, _ in runs}),
              "runs": [{"method": m, "seed": s, "final_accuracy": a} for m, s, a in runs]}  # fmt: skip
    (folder / "comparison.json").write_text(json.dumps(record))


def test_comparison_and_gain_read_each_seed(tmp_path, monkeypatch):
    _comparison(tmp_path / "a", [("start", 1, 0.2), ("start", 0, 0.1), ("hir", 0, 0.4), ("hir", 1, 0.8)])  # fmt: skip
    _comparison(tmp_path / "b", [("ppo", 0, 0.5), ("ppo", 1, 0.5)])
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    made = tables.comparison("a", methods="hir,ppo@b", labels="HIR,PPO", columns="accuracy,per_seed,wall,rss")  # fmt: skip
    # hir: mean 0.6, sample std sqrt(0.08) = 0.283; seeds in seed order, not file order
    assert made.splitlines()[2:] == ["| HIR | 0.600 ± 0.283 | 0.400 / 0.800 | 10 | 100 |",
                                     "| PPO | 0.500 ± 0.000 | 0.500 / 0.500 | 10 | 100 |"]  # fmt: skip
    assert "(mean ± std, 2 seeds)" in made.splitlines()[0]
    with pytest.raises(ValueError, match="b has no method hir"):
        tables.comparison("a", methods="hir@b", labels="x")
    # gains 0.3 and 0.6: mean +0.45, sample std sqrt(0.045) = 0.212
    assert tables.gain("a", before="start", after="hir", labels="s,h").splitlines()[2:] == [
        "| 0 | 0.100 | 0.400 | +0.300 |", "| 1 | 0.200 | 0.800 | +0.600 |",
        "| mean ± std | 0.150 ± 0.071 | 0.600 ± 0.283 | +0.450 ± 0.212 |"]  # fmt: skip


def test_include_takes_the_nth_table_and_joins_a_column(tmp_path, monkeypatch):
    (tmp_path / "t.md").write_text("| a | b |\n|---|---|\n| x | 1 |\n\ntext\n\n| a | c |\n|---|---|\n| x | 2 |\n| y | 3 |\n")  # fmt: skip
    (tmp_path / "u.md").write_text("| a | d |\n|---|---|\n| y | 9 |\n")
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    assert tables.include("t.md", table="2", add="u.md#d") == "| a | c | d |\n|---|---|---|\n| x | 2 | - |\n| y | 3 | 9 |\n"  # fmt: skip
    with pytest.raises(ValueError, match="no markdown table number 3"):
        tables.include("t.md", table="3")
    with pytest.raises(ValueError, match="u.md has no column e"):
        tables.include("t.md", add="u.md#e")


def test_accuracy_says_when_a_method_has_not_all_its_seeds(tmp_path, monkeypatch):
    _comparison(tmp_path / "a", [("start", 0, 0.1), ("start", 1, 0.1), ("hir", 0, 0.4), ("hir", 1, 0.8), ("grpo", 0, 0.5)])  # fmt: skip
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    made = tables.accuracy("a", methods="start,hir,grpo,nft", labels="s,h,g,n", tasks="t")
    assert made.splitlines()[2] == "| t | 0.100 | 0.600 ± 0.283 | 0.500 (1 of 2 seeds) | - |"
