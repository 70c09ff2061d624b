"""The documentation: generated pages match the cards and benchmark results, the README stays short, and every
command the README and docs/ quote exists (a `tfrecog` subcommand, a bench module or a script)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfrecog import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_generated_docs_are_current():
    """`python scripts/make_docs.py --check` (no TensorFlow import) finds nothing to rewrite."""
    done = subprocess.run([sys.executable, "scripts/make_docs.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_is_short_and_links_its_pages():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    for target in re.findall(r"\]\((docs/[\w.-]+\.md)", readme):
        assert (ROOT / target).exists(), target
    assert "pip install . && tfrecog quickstart" in readme and 'pip install ".[test]" && python -m pytest -q' in readme


def _subcommands():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_command_exists(page):
    text = page.read_text()
    known = _subcommands()
    code = "\n".join(re.findall(r"```\w*\n(.*?)```", text, flags=re.S))
    # `tfrecog NAME` quoted in the text, or at the start of a line of a code block
    names = re.findall(r"`(?:\w+=\S+ )?tfrecog ([a-z][a-z-]*)", text) + re.findall(r"^tfrecog ([a-z][a-z-]*)", code,
                                                                                   flags=re.M)
    assert names or page.parent.name == "bench" or page.name in ("zoo.md", "speed.md")
    for name in names:
        assert name in known, f"{page.name}: `tfrecog {name}` is not a command ({sorted(known)})"
    for name in re.findall(r"python -m bench\.([a-z_]+)", text):  # (NAME is a placeholder)
        assert (ROOT / "bench" / f"{name}.py").exists(), f"{page.name}: no bench/{name}.py"
    for name in re.findall(r"scripts/([a-z_]+\.(?:py|sh))", text):
        assert (ROOT / "scripts" / name).exists(), f"{page.name}: no scripts/{name}"



def test_nvil_tables_give_every_cell_and_the_budgets_of_table_2(tmp_path, monkeypatch):
    """scripts/nvil_tables.py: a row per model of the paper's tables; Table 2's cells name the epochs of their cards,
    a run folder started from a card (progress.py from-zoo) is read, and one trained past the card says so."""
    import importlib.util

    from tfrecog import zoo

    def script(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    tables = script("nvil_tables")
    text = tables.tables(None)
    for family, sizes, *_ in tables.TABLE_1:
        assert f"| {family.upper() if family == 'sbn' else 'fDARN'} {sizes} |" in text
    name = "sbn-bmnist-200"
    card = zoo.info(name)
    ll, epochs = card["metrics"]["test_log_likelihood"], card["training"]["epochs"]
    expected = (f"**{-ll['value']:.2f}** ± {ll['stderr']:.2f} (K={ll['samples']}, n={ll['num_examples']}; "
                f"{epochs} epochs; `{name}`)")
    assert expected + " |" in text
    script("progress").from_zoo(name, tmp_path)
    state = tables._run_state(name, tmp_path)
    assert state["epoch"] == card["training"]["best_epoch"] and expected + " |" in tables.tables(tmp_path)
    monkeypatch.setattr(tables, "_run_state", lambda n, runs: {**state, "epoch": epochs + 5} if n == name else None)
    assert f"{expected}; training on: epoch {epochs + 5}, best validation ELBO" in tables.tables(tmp_path)
    # A card of the NVIL column whose recipe ends with another estimator says so in its cell.
    assert "last stretch" not in tables.cell({name: card}, name, None, estimator="nvil")
    other = {**card, "recipe": {**card["recipe"], "model": {**card["recipe"]["model"], "estimator": "rws"}}}
    assert "; its last stretch by `rws`, see the card)" in tables.cell({name: other}, name, None, estimator="nvil")
