"""The package's imports, read with ``ast`` (module level and inside functions): no circle, no Streamlit."""

from __future__ import annotations

from bench.structure import circles, read_modules


def test_the_walker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "agelab"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from agelab.high import g\n")
    (package / "high.py").write_text("from agelab import low\n")
    (package / "sub" / "leaf.py").write_text("from . import other\nimport streamlit as st\n")
    (package / "sub" / "other.py").write_text("")
    modules = read_modules(tmp_path)
    assert modules["agelab.low"].imports == {"agelab.high": False}
    assert modules["agelab.high"].imports == {"agelab.low": True}
    assert modules["agelab.sub.leaf"].imports == {"agelab.sub.other": True}
    assert "streamlit" in modules["agelab.sub.leaf"].external
    assert circles(modules) == [["agelab.high", "agelab.low"]]


def test_agelab_has_no_import_circle():
    found = circles(read_modules())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_agelab_never_imports_streamlit():
    modules = read_modules()
    assert len(modules) > 50
    assert [n for n, m in modules.items() if "streamlit" in m.external] == []


def test_each_package_docstring_lists_all_its_modules():
    modules = read_modules()
    for package in ("agelab.training", "agelab.evaluation", "agelab.commands"):
        doc = modules[package].docstring
        members = [
            n for n in modules if n.startswith(package + ".") and n.count(".") == package.count(".") + 1
        ]
        missing = [n for n in members if n.rpartition(".")[2] not in doc]
        assert missing == [], f"{package}/__init__.py does not name {', '.join(missing)}"
