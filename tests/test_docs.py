"""The reference site builds with ``mkdocs build --strict`` (no warning: every docstring's Args name
real parameters, every link and cross-reference resolves), and its generated pages cover every
registered pipeline step, every options class, every public name and every CLI command."""

from __future__ import annotations

import argparse
import ast
import html
import importlib
import re
from pathlib import Path

import pytest

for _name in ("mkdocs", "mkdocstrings", "material"):
    pytest.importorskip(_name, reason=f"{_name} is not installed: the docs need the dev extra "
                                      "(pip install -e '.[dev]', or make setup)")

from mkdocs.commands import build  # noqa: E402
from mkdocs.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GUIDES = ("own-model", "sentence-encoder", "selection-matrix", "search")
API_PAGES = ("torchslim", "prune", "quantize", "distill", "train", "measure", "export", "runtime", "pipeline",
             "federated", "text")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built in-process, strict, into a temporary directory (mkdocs aborts on a warning)."""
    out = tmp_path_factory.mktemp("site")
    config = load_config(str(REPO / "mkdocs.yml"), site_dir=str(out), strict=True)
    build.build(config)
    return out


def page_text(site: Path, path: str) -> str:
    """A built page's HTML with tags removed and entities decoded (what a reader sees)."""
    page = site / path / "index.html"
    assert page.is_file(), f"{path} was not built"
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_home_and_install_pages_are_built(site):
    assert "selection matrix" in page_text(site, "")
    assert "make docs" in page_text(site, "install")


@pytest.mark.parametrize("guide", GUIDES)
def test_each_guide_is_built(site, guide):
    assert len(page_text(site, f"guides/{guide}")) > 2000, f"the guide {guide!r} is nearly empty"


@pytest.mark.parametrize("page", API_PAGES)
def test_each_api_page_renders_docstrings(site, page):
    built = (site / "api" / page / "index.html").read_text(encoding="utf-8")
    assert 'class="doc doc-object' in built or 'class="doc doc-heading' in built, f"api/{page} rendered no object"


def sections(site: Path, path: str) -> dict[str, dict[str, str]]:
    """A built page's ``{h2 text: {h3 text: the text up to the next heading}}``."""
    built = (site / path / "index.html").read_text(encoding="utf-8")
    article = built[built.index("<article"):built.index("</article>")]
    parts = re.split(r"<h([23]) id=\"[^\"]*\"[^>]*>(.*?)</h\1>", article, flags=re.S)
    found: dict[str, dict[str, str]] = {}
    current = ""
    for level, heading, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        title = html.unescape(re.sub(r"<[^>]+>", "", heading)).rstrip("¶").strip()
        text = html.unescape(re.sub(r"<[^>]+>", "", body))
        if level == "2":
            current = title
            found[current] = {"": text}
        else:
            found.setdefault(current, {})[title] = text
    return found


def test_every_registered_step_is_in_the_reference(site):
    from torchslim.pipeline.steps import STEPS, TEXT_STEPS

    page = sections(site, "reference/steps")
    for title, registry in (("Image task", STEPS), ("Text task", TEXT_STEPS)):
        for name in registry.list():
            assert name in page[title], f"step {name!r} missing under {title} (found {sorted(page[title])})"
            for key in registry.get(name).Params.model_fields:
                assert key in page[title][name], f"{title}: parameter {key!r} of step {name!r} missing"


def test_every_registered_loss_is_in_the_reference(site):
    from torchslim.distill.losses import LOSSES

    page = sections(site, "reference/losses")
    for name in LOSSES.list():
        assert name in page, f"loss {name!r} missing (found {sorted(page)})"
        for key in LOSSES.get(name).options_model().model_fields:
            assert key in page[name][""], f"option {key!r} of loss {name!r} missing"


def _hooks():
    """docs/hooks.py as a module (it is not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", Path(__file__).resolve().parents[1] / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_options_class_is_in_the_reference(site):
    from torchslim.distill.config import DistillConfig
    from torchslim.options import FitConfig
    from torchslim.prune.config import PruneConfig
    from torchslim.text.config import TextDistillConfig

    hooks = _hooks()
    page = sections(site, "reference/options")
    classes = hooks.option_classes()
    for known in (FitConfig, PruneConfig, DistillConfig, TextDistillConfig):  # the walk finds each home
        assert known in classes, f"{known.__name__} not found by the reference's walk"
    for cls in classes:
        name = cls.__name__
        assert name in page, f"options class {name} missing (found {sorted(page)})"
        for key in cls.model_fields:
            assert f"--{key.replace('_', '-')}" in page[name][""], f"option {key!r} of {name} has no flag"


def test_every_recipe_section_is_in_the_reference(site):
    from torchslim.pipeline.recipe import Recipe

    page = sections(site, "reference/recipe")
    for key in Recipe.model_fields:
        assert key in page["Top-level keys"][""], f"recipe key {key!r} missing"


def test_every_cli_command_is_in_the_reference(site):
    from torchslim.cli import build_parser

    page = sections(site, "reference/cli")
    pending, commands = [build_parser()], []
    while pending:
        parser = pending.pop()
        for action in parser._actions:  # argparse keeps its subparsers only here
            if isinstance(action, argparse._SubParsersAction):
                commands += list(action.choices.values())
                pending += list(action.choices.values())
    assert len(commands) >= 10
    for sub in commands:
        assert sub.prog in page, f"the command {sub.prog!r} has no section"
        assert f"usage: {sub.prog}" in page[sub.prog][""], f"the help of {sub.prog!r} is missing"


def test_every_public_name_is_listed(site):
    import torchslim

    text = page_text(site, "api/torchslim")
    for name in torchslim._PUBLIC:
        assert f"ts.{name}" in text, f"public name ts.{name} missing"


def guide_blocks(language: str) -> list[tuple[str, str]]:
    """``(guide, code)`` of every fenced ``language`` block of the guides."""
    found = []
    for guide in GUIDES:
        text = (REPO / "docs" / "guides" / f"{guide}.md").read_text(encoding="utf-8")
        found += [(guide, block) for block in re.findall(rf"```{language}\n(.*?)```", text, re.S)]
    return found


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def test_guide_code_uses_only_names_that_exist():
    """Every ``from torchslim... import name`` and every ``ts.x.y`` / ``text.x`` / ``L.x`` chain in the
    guides' Python blocks resolves in the code as it is (a renamed function fails here)."""
    import torchslim

    for guide, code in guide_blocks("python"):
        roots = {"ts": torchslim}
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "torchslim":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    value = getattr(module, alias.name, None)
                    if value is None:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    roots[alias.asname or alias.name] = value
        for node in ast.walk(ast.parse(code)):
            chain = _dotted(node) if isinstance(node, ast.Attribute) else None
            if chain and chain.split(".")[0] in roots:
                value = roots[chain.split(".")[0]]
                for part in chain.split(".")[1:]:
                    assert hasattr(value, part), f"{guide}: {chain} does not exist ({part!r} is missing)"
                    value = getattr(value, part)


def test_guide_recipes_are_valid_recipes(tmp_path):
    from torchslim.pipeline import load_recipe

    blocks = guide_blocks("yaml")
    assert blocks, "the guides show no recipe"
    for i, (guide, code) in enumerate(blocks):
        path = tmp_path / f"{guide}-{i}.yaml"
        path.write_text(code, encoding="utf-8")
        assert load_recipe(path).strategies, f"{guide}: its recipe has no strategies"
