"""Upload a checkpoint folder to the Hugging Face Hub (log in first: `hf auth login`, or set HF_TOKEN).

    python examples/push_to_hub.py --model runs/sci/model --repo-id your-name/cobra-scientific

The folder is checked first (weights, config with auto_map, tokenizer + catalog, code files); a folder without
README.md gets the cobra-hf model card. Pushing an unchanged folder again makes no new commit.
"""

from __future__ import annotations

import argparse

from cobra_hf.hub import push_checkpoint


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--repo-id", required=True, help="`name` or `user/name`")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--commit-message", default=None)
    args = parser.parse_args(argv)

    url = push_checkpoint(args.model, args.repo_id, private=args.private, commit_message=args.commit_message)
    print(url)
    return url


if __name__ == "__main__":
    main()
