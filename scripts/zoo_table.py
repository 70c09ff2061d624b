"""Prints the zoo table of docs/zoo.md from the cards (`scripts/make_docs.py` writes it into the docs).

Usage: python scripts/zoo_table.py [NAME_PREFIX ...]   (only the cards whose names start with a prefix)
"""

import sys

from make_docs import zoo_table  # scripts/ is on sys.path when this file is run as `python scripts/zoo_table.py`

print(zoo_table(tuple(sys.argv[1:]) or ("",)))
