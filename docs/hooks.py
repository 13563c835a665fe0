"""Build-time pages of the documentation site, generated from the code so they cannot drift.

mkdocs runs this hook (``hooks:`` in ``mkdocs.yml``). ``on_files`` adds pages that exist only in
the build, never as committed Markdown:

- ``reference/steps.md``: every registered pipeline step (image and text), its docstring and a
  table of its parameters, read from the step's pydantic ``Params`` model;
- ``reference/recipe.md``: the recipe's top-level keys and sections (``data``, ``measure``, ...);
- ``reference/options.md``: every options class of ``torchslim.options``: recipe key, CLI flag,
  type, bounds, default and description of each option;
- ``reference/losses.md``: every registered distillation loss and its options;
- ``reference/cli.md``: every ``torchslim`` command's ``--help``, from ``torchslim.cli.build_parser``;
- ``api/torchslim.md`` and ``api/text.md``: the public names of the two lazily-importing packages
  (their names live in a dict, which static analysis cannot read), rendered by mkdocstrings.

``on_page_markdown`` replaces ``<!-- generated: NAME -->`` markers in hand-written pages with
tables from the code (the selection matrix's columns); ``on_page_content`` turns the docstrings'
Sphinx roles (``:class:`~torchslim.text.SentenceEncoder```) into cross-references.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from collections.abc import Callable
from typing import Any

from mkdocs.structure.files import File, Files

# -- text helpers -------------------------------------------------------------------------------------


def markdown_of(docstring: str | None) -> str:
    """A code docstring as Markdown (its Sphinx roles become links in ``on_page_content``)."""
    return inspect.cleandoc(docstring or "")


def cell(text: str) -> str:
    """``text`` made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


# -- option tables ------------------------------------------------------------------------------------


def fields_table(model: type, cli: bool = False) -> str:
    """A Markdown table of an options class's fields, written by the options package itself (the
    same code that generates the CLI flags), so the page shows what the code accepts."""
    from torchslim.options.docs import options_table

    return options_table(model, cli=cli)


# -- pages --------------------------------------------------------------------------------------------

_MAKES = {"module": "a torch model", "onnx": "an ONNX file", "same": "its input, unchanged"}


def _step_section(name: str, step: type) -> list[str]:
    takes = " · *accepts an ONNX file*" if step.takes_onnx else ""
    out = [f"### `{name}`", "", markdown_of(step.__doc__), "",
           f"*Family:* {step.family} · *output:* {_MAKES.get(step.makes, step.makes)}{takes}", ""]
    if step.Params.model_fields:
        out += [fields_table(step.Params), ""]
    else:
        out += ["No parameters.", ""]
    return out


def steps_page() -> str:
    """Every registered step of the image and the text task, with its parameters."""
    from torchslim.pipeline.steps import STEPS, LossItem
    from torchslim.pipeline.steps.text import TEXT_STEPS

    out = ["# Pipeline steps", "",
           "A strategy in a recipe is a list of steps; each step's keys are its parameters below "
           "(unknown keys are refused with the closest valid one). This page is generated from the "
           "step registries when the site is built.", ""]
    for title, registry, intro in (
            ("Image task", STEPS, "Steps of a recipe with `task: image` (the default)."),
            ("Text task", TEXT_STEPS, "Steps of a recipe with `task: text` (a sentence-encoder teacher).")):
        out += [f"## {title}", "", intro, ""]
        for name in registry.list():
            out += _step_section(name, registry.get(name))
    out += ["## Loss items", "", markdown_of(LossItem.__doc__), "",
            "Any other key is passed to the loss as an argument (`torchslim losses` lists each "
            "loss's arguments).", "", fields_table(LossItem)]
    return "\n".join(out)


def _link_sections(table: str, sections: dict[str, type]) -> str:
    """``table`` with each section's default (its whole content as one dict) replaced by a link to
    the section's own table below."""
    lines = table.splitlines()
    head = [c.strip() for c in re.split(r"(?<!\\)\|", lines[0])]
    column = head.index("default")
    for i, line in enumerate(lines):
        cells = re.split(r"(?<!\\)\|", line)
        key = cells[1].strip().strip("`") if len(cells) > column else ""
        if key in sections:
            cells[column] = f" see [`{key}`](#{key}) "
            lines[i] = "|".join(cells)
    return "\n".join(lines) + "\n"


def recipe_page() -> str:
    """The recipe's top-level keys and each section's keys, from the typed recipe model."""
    from pydantic import BaseModel

    from torchslim.pipeline.recipe import Recipe

    out = ["# Recipes", "",
           "A recipe is a YAML file parsed into the typed model below: unknown keys are errors that "
           "name the key path, the closest valid key and the `file:line`. The strategies' steps are "
           "described in [Pipeline steps](steps.md). This page is generated from the code when the "
           "site is built."]
    sections = {name: field.annotation for name, field in Recipe.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}
    out += ["", "## Top-level keys", "", _link_sections(fields_table(Recipe), sections), "",
            "`strategies` maps each strategy's name to its list of steps, run in order: `- quantize` (a "
            "step with its defaults), `- load: teacher` (a step's one value) or `- prune: {ratio: 0.5}` "
            "(its keys). Strategies that begin with the same steps share them. Every step's keys are in "
            "[Pipeline steps](steps.md).", ""]
    for key, model in sections.items():
        out += [f"## `{key}`", "", markdown_of(model.__doc__), "", fields_table(model), ""]
    return "\n".join(out)


def losses_page() -> str:
    """Every registered distillation loss: what it computes and its options (recipe loss-item keys,
    ``--losses name:key=value`` on the command line)."""
    from torchslim.distill.losses import LOSSES

    out = ["# Distillation losses", "",
           "Every loss registered in `torchslim.distill.losses.LOSSES`, by the name a recipe's `losses:` "
           "item, `--losses` on the command line and `losses.create(name, ...)` use. The options below are "
           "the loss's keyword arguments; every loss item also takes `weight` (and, with several "
           "teachers, `teacher`). The equation of each loss is in its API entry. This page is generated "
           "from the registry when the site is built.", ""]
    for name in LOSSES.list():
        loss = LOSSES.get(name)
        path = f"torchslim.distill.losses.{loss.__name__}"
        first = " ".join(markdown_of(loss.__doc__).split("\n\n")[0].split())
        table = fields_table(loss.options_model()) if loss.options_model().model_fields else "No options.\n"
        out += [f"## `{name}`", "", first, "", table, "", f"API: [`{loss.__name__}`][{path}]", ""]
    return "\n".join(out)


def option_classes() -> list[type]:
    """Every public options class torchslim defines: in :mod:`torchslim.options` and in each
    method's ``config`` module (found by walking the package, so a new one is listed unasked)."""
    import importlib
    import pkgutil

    import torchslim
    import torchslim.options as options

    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(torchslim.__path__, "torchslim."):
        if not (info.name.startswith("torchslim.options.") or info.name.endswith(".config")):
            continue
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if (isinstance(cls, type) and issubclass(cls, options.Options) and cls is not options.Options
                    and cls.__module__ == info.name and not name.startswith("_")):
                found[f"{info.name}.{name}"] = cls
    return [found[k] for k in sorted(found)]


def options_page() -> str:
    """Every options class, with its recipe keys and CLI flags."""
    import torchslim.options as options

    out = ["# Options", "", markdown_of(options.__doc__), "",
           "The tables below are generated from the classes when the site is built.", ""]
    for cls in option_classes():
        out += [f"## `{cls.__name__}`", "", f"`{cls.__module__}`", "", markdown_of(cls.__doc__), "",
                fields_table(cls, cli=True), ""]
    return "\n".join(out)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(one-line help, parser) of every subcommand, depth first."""
    found = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((helps.get(name, ""), sub))
                found += _subcommands(sub)
    return found


def cli_page() -> str:
    """Every command's ``--help`` text, exactly as ``torchslim`` prints it (at 100 columns)."""
    from torchslim.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal; fix it for a stable page
    try:
        parser = build_parser()
        out = ["# Command line", "",
               "Every command exits 0 on success and 2 on bad input, with a message naming the bad "
               "value and what would be valid. The help texts below are generated from the command "
               "line parser when the site is built.", "", "```text", parser.format_help().rstrip(), "```", ""]
        for help_text, sub in _subcommands(parser):
            out += [f"## `{sub.prog}`", "", help_text, "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(out)


# The packages with a page of their own under api/: a public name defined in one of them is linked
# to that page rather than rendered twice.
API_PAGES = {"torchslim.prune": "prune.md", "torchslim.quantize": "quantize.md", "torchslim.distill": "distill.md",
             "torchslim.train": "train.md", "torchslim.measure": "measure.md", "torchslim.export": "export.md",
             "torchslim.runtime": "runtime.md", "torchslim.pipeline": "pipeline.md",
             "torchslim.federated": "federated.md", "torchslim.text": "text.md"}


def _page_of(module: str) -> str | None:
    for package, page in API_PAGES.items():
        if module == package or module.startswith(package + "."):
            return page
    return None


def _griffe_package(config: Any) -> Any:
    """``torchslim`` as griffe reads it (statically: nothing is imported, torch included)."""
    import griffe

    paths = config["plugins"]["mkdocstrings"].config.handlers["python"].get("paths", ["src"])
    root = os.path.dirname(config["config_file_path"])
    return griffe.load("torchslim", search_paths=[os.path.join(root, p) for p in paths])


def _public_entry(package: Any, name: str, module: str) -> tuple[str, str, str, str]:
    """``(name, path, kind, summary)`` of one public name, read statically from ``package``."""
    # a name is its module when the module is named for it and does not define it (``measure`` is a
    # function of the module ``torchslim.measure``)
    is_module = module.rsplit(".", 1)[-1] == name and name not in package[module[len("torchslim."):]].members
    path = module if is_module else f"{module}.{name}"
    obj = package[path[len("torchslim."):]]
    if obj.is_module and not is_module:  # a function named like its submodule (``train.fit.fit``)
        path, obj = f"{path}.{name}", obj[name]
    kind = "module" if is_module else ("class" if obj.is_class else "function")
    text = " ".join(markdown_of(obj.docstring.value if obj.docstring else "").split("\n\n")[0].split())
    return name, path, kind, text


def public_api_page(config: Any) -> str:
    """``import torchslim as ts``: every public name, rendered here or linked to its own page."""
    import torchslim  # cheap: the package imports its names lazily

    package = _griffe_package(config)
    entries = [_public_entry(package, name, module) for name, module in torchslim._PUBLIC.items()]
    # modules rendered on this page, and the names each exports (rendered with it, not again)
    here = {path: {str(n) for n in package[path[len("torchslim."):]].exports or ()}
            for _, path, kind, _ in entries if kind == "module" and _page_of(path) is None}
    rows, rendered = [], []
    for name, path, kind, text in entries:
        container = next((m for m, names in here.items() if kind != "module" and name in names), None)
        target = f"{container}.{name}" if container else path
        page = _page_of(target)
        # an autorefs link to the rendered object: a name rendered nowhere fails the strict build
        rows.append(f"| `ts.{name}` | {kind} | {cell(text)} | [{page[:-3] if page else 'below'}][{target}] |")
        if page is None and container is None:
            rendered.append(path)
    out = ["# torchslim", "", "The public API: `import torchslim as ts`, then `ts.<name>`. Everything else may "
           "change between versions. Names are imported on first use, so `import torchslim` stays fast.", "",
           "| name | kind | what it is | documented |", "|---|---|---|---|", *rows, ""]
    for path in rendered:
        out += [f"::: {path}", "    options:", "      heading_level: 2", ""]
    return "\n".join(out)


def text_api_page() -> str:
    """``torchslim.text``: its public names (kept in a dict that maps each to its module)."""
    import torchslim.text as text

    out = ["# torchslim.text", "", markdown_of(text.__doc__), ""]
    by_module: dict[str, list[str]] = {}
    for name, module in text._EXPORTS.items():
        by_module.setdefault(module, []).append(name)
    for module, names in by_module.items():
        for name in names:
            out += [f"::: torchslim.text.{module}.{name}", ""]
    return "\n".join(out)


def _columns_table(columns: list[tuple[str, str, str]]) -> str:
    lines = ["| column | in `matrix.json` | what it is |", "|---|---|---|"]
    lines += [f"| {cell(heading)} | `{key}` | {cell(meaning)} |" for key, heading, meaning in columns]
    return "\n".join(lines) + "\n"


def matrix_columns() -> str:
    """The matrix's columns, from the list the report renders them from."""
    from torchslim.report.matrix import COLUMNS

    return _columns_table(COLUMNS)


def text_columns() -> str:
    """The columns a text recipe's matrix adds."""
    from torchslim.report.matrix import TEXT_COLUMNS

    return _columns_table(TEXT_COLUMNS)


# Markers in hand-written pages replaced by generated Markdown: ``<!-- generated: NAME -->``.
SNIPPETS: dict[str, Callable[[], str]] = {"matrix-columns": matrix_columns, "text-columns": text_columns}
_MARKER = re.compile(r"<!-- generated: ([\w-]+) -->")


GENERATED: dict[str, Callable[..., str]] = {
    "reference/steps.md": steps_page,
    "reference/recipe.md": recipe_page,
    "reference/cli.md": cli_page,
    "reference/options.md": options_page,
    "reference/losses.md": losses_page,
    "api/torchslim.md": public_api_page,
    "api/text.md": text_api_page,
}


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the build (they are never written into ``docs/``)."""
    for uri, build in GENERATED.items():
        content = build(config) if build is public_api_page else build()
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Replace each ``<!-- generated: NAME -->`` marker with its snippet (an unknown name fails)."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in SNIPPETS:
            raise KeyError(f"{page.file.src_uri}: unknown generated snippet {name!r}; known: {', '.join(SNIPPETS)}")
        return SNIPPETS[name]()

    return _MARKER.sub(replace, markdown)


# A Sphinx role as Markdown renders it: ``:class:`~a.B``` becomes ``:class:<code>~a.B</code>``.
_HTML_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc):<code>(~?)([\w.]+)</code>")


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Turn the Sphinx roles of the code's docstrings into cross-references: a link where the
    object is rendered on the site, plain code where it is not (``optional``: never a warning)."""

    def link(match: re.Match) -> str:
        short, identifier = match.group(1), match.group(2)
        shown = identifier.rsplit(".", 1)[-1] if short else identifier
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

    return _HTML_ROLE.sub(link, html)
