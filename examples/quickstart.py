"""Load a COBRA checkpoint (folder or Hub repo id) and recommend the next items for a history.

    python examples/quickstart.py --model someone/cobra-scientific --history B0001 B0002 B0003 --top-k 10

cobra_hf need not be installed: the checkpoint carries its code (trust_remote_code=True).
"""

from __future__ import annotations

import argparse

from transformers import AutoModel, AutoTokenizer


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id")
    parser.add_argument("--history", nargs="+", required=True, help="item ids the user interacted with, oldest first")
    parser.add_argument("--top-k", type=int, default=10, help="how many items to recommend")
    parser.add_argument("--num-beams", type=int, default=20, help="semantic IDs explored by beam search")
    args = parser.parse_args(argv)

    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=True)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()

    batch = tokenizer([args.history], return_tensors="pt")  # one history -> input_ids, attention_mask, item_index
    out = model.generate(**batch, num_beams=args.num_beams, top_k=args.top_k)  # coarse-to-fine + BeamFusion
    rows = [{"rank": rank, "item_id": item, "score": score, "title": tokenizer.title(item)}
            for rank, (item, score) in enumerate(tokenizer.batch_decode_items(out, with_scores=True)[0], start=1)]

    print(f"{'rank':>4}  {'item_id':<14} {'score':>8}  title")
    for row in rows:
        print(f"{row['rank']:>4}  {row['item_id']:<14} {row['score']:>8.4f}  {row['title'][:70]}")
    return rows


if __name__ == "__main__":
    main()
