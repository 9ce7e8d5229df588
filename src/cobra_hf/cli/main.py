"""Entry point of the `cobra-hf` console script.

Each subcommand lives in its own module under `cobra_hf.cli` and exposes `main(argv) -> int`;
they are imported lazily so `cobra-hf --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "prepare": ("prepare", "turn a dataset folder into a catalog with semantic IDs and a tokenizer"),
    "train": ("train", "train a COBRA model on a prepared catalog with the transformers Trainer"),
    "evaluate": ("evaluate", "full-ranking Recall@K / NDCG@K of a checkpoint on a leave-one-out split"),
    "recommend": ("recommend", "recommend the next items for a history of item ids"),
    "add-items": ("add_items", "add new items to a trained checkpoint without retraining"),
    "join": ("join", "one checkpoint of a model and the ID trunk of another (--beams-from as one model)"),
    "push": ("push", "upload a checkpoint folder to the Hugging Face Hub"),
}

USAGE = "usage: cobra-hf COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(
    f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()
) + "\n\nRun `cobra-hf COMMAND --help` for the options of a command."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from .. import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"cobra-hf: unknown command {name!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"cobra_hf.cli.{COMMANDS[name][0]}")
    try:
        return int(module.main(argv[1:]) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as err:
        # Bad input gets one clear sentence, not a traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"cobra-hf {name}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
