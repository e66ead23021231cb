"""bench/tsv.py: what the report scripts share: reading a raw TSV of runs, numbers from its cells."""

import csv


def load(path):
    """The rows of a tab-separated file with a header line, as dicts ([] when the file is missing)."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        return []


def num(v):
    """A cell as a float, or None when empty, not a number, or NaN."""
    try:
        x = float(v)
        return x if x == x else None
    except (TypeError, ValueError):
        return None
