"""Recipes and the prune → distill → quantize pipeline, and the comparison of strategies.

    from torchslim import pipeline
    recipe = pipeline.load_recipe("recipes/fashion-mnist.yaml")
    matrix = pipeline.compare(recipe, "runs/compare")           # every strategy, measured together
    pipeline.run(recipe, "runs/one", strategy="student-distilled")  # one pipeline

A text recipe (``task: text``, or a text dataset: ``recipes/minilm-wordnet.yaml``) compares smaller
sentence encoders made from a text teacher (``minilm`` or a model directory) by its own steps
(:mod:`torchslim.pipeline.steps.text`), with agreement with the teacher in place of accuracy.

Bring your own model: ``compare(recipe, out, models={"mynet": factory}, teacher=my_teacher,
data=my_bundle)`` where ``factory(num_classes=..., in_channels=..., **kwargs)`` builds an
``nn.Module`` and the recipe says ``train: {model: mynet}``.
"""

from typing import TYPE_CHECKING

from torchslim.core.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and the API reference; at run time on first use
    from torchslim.pipeline.compare import compare, run
    from torchslim.pipeline.recipe import Recipe, RecipeError, load_recipe, parse
    from torchslim.pipeline.steps import STEPS

_EXPORTS = {"compare": "compare", "run": "compare", "Recipe": "recipe", "RecipeError": "recipe", "load_recipe": "recipe",
            "parse": "recipe", "STEPS": "steps"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["STEPS", "Recipe", "RecipeError", "compare", "load_recipe", "parse", "run"]
