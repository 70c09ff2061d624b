"""Prints the README's zoo table from the cards, so the numbers are never copied by hand.

Usage: python scripts/zoo_table.py [NAME_PREFIX ...]   (only the cards whose names start with a prefix)
"""

import sys

from tfrecog import zoo

print("| name | family | dataset (train examples) | test log p(x), nats (K, n) | test ELBO | paper | training |")
print("| --- | --- | --- | --- | --- | --- | --- |")
prefixes = tuple(sys.argv[1:]) or ("",)
for card in zoo.list(details=True):
    if not card["name"].startswith(prefixes):
        continue
    ll = card["metrics"]["test_log_likelihood"]
    elbo = card["metrics"]["test_elbo"]
    paper = card.get("paper") or {}
    ref = f"{-paper['test_nll']:.1f} ({paper['reference']})" if paper.get("test_nll") else "n/a"
    if paper.get("test_perplexity"):
        ref = f"perplexity {paper['test_perplexity']} ({paper['reference']})"
    perplexity = card["metrics"].get("test_perplexity")
    ours = f"; perplexity **{perplexity['perplexity']:.0f}**" if perplexity else ""
    t = card["training"]
    ds = card["dataset"]
    binar = {"binarized_mnist": ", static binarization"}.get(ds["name"], "")
    print(f"| `{card['name']}` | {card['family']} | {ds['name']}{binar} ({ds['train_examples']}) | "
          f"{ll['value']:.2f} ± {ll['stderr']:.2f} (K={ll['samples']}, n={ll['num_examples']}){ours} | "
          f"{elbo['value']:.2f} | {ref} | {t['epochs']} epochs, {t['wall_seconds'] / 60:.0f} min, {t['hardware']} |")
