#!/usr/bin/env python3
"""Writes the held-out evaluation text of the bundled model's training split
(the last 10% of the data, from the next paragraph break) to stdout, so that
`bitnet perplexity` can score it:

  python3 tools/train/heldout.py ../shared/data/tinystories/tinystories_val_hf_prefix.txt > heldout.txt
  build/bitnet perplexity -f heldout.txt --ctx 512"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data_tok import split_text  # noqa: E402  (stdlib-only part of the training tool)

if len(sys.argv) != 2:
    sys.exit(__doc__)
text = open(sys.argv[1], encoding="utf-8").read()
sys.stdout.write(split_text(text)[2])
