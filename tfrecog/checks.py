"""Checks of numeric arguments shared by the Python API and the `tfrecog` command: one-line errors naming the range.

`integer` and `number` raise ValueError; the CLI turns them into argparse errors through `arg_integer`/`arg_number`.
"""

from __future__ import annotations

import argparse
import math
import numbers

__all__ = ["integer", "number", "arg_integer", "arg_number", "LIMITS"]

# Upper bounds beyond which a value is a typo rather than a request (each far above any use in the papers).
LIMITS = {
    "samples": 10**8,  # K: bounded memory at any K (evaluate.py), but 10^8 samples x 10^4 digits is years of work
    "batch_size": 10**6,
    "limit": 10**9,
    "epochs": 10**6,
    "steps": 10**6,
    "chains": 10**5,
    "num": 10**4,  # images in one grid
    "seconds": 10**7,  # about 4 months
    "size": 10**6,  # layer widths, latent sizes
    "seed": 2**31 - 1,  # TensorFlow's stateless seeds are int32
}


def integer(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]; bools, non-integral floats and strings are refused (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{upper}; got {value}")
    return value


def number(value, name: str, minimum: float = 0.0, maximum: float | None = None, open_low: bool = True,
           open_high: bool = False) -> float:
    """`value` as a finite float in the interval (minimum, maximum] (ends as `open_low`/`open_high` say)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    value = float(value)
    low_ok = value > minimum if open_low else value >= minimum
    high_ok = maximum is None or (value < maximum if open_high else value <= maximum)
    if not (low_ok and high_ok):
        interval = f"{'(' if open_low else '['}{minimum:,.10g}, {'inf)' if maximum is None else f'{maximum:,.10g}'}"
        interval += "" if maximum is None else (")" if open_high else "]")
        raise ValueError(f"{name} must lie in {interval}; got {value:g}")
    return value


def arg_integer(minimum: int = 1, maximum: int | None = None, what: str = "integer"):
    """An argparse `type=`: parses a decimal integer string and checks its range, else ArgumentTypeError."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            upper = f" and <= {maximum:,}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= {minimum}{upper}; got {text!r}") from None
        try:
            return integer(value, what, minimum, maximum)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def arg_number(minimum: float = 0.0, maximum: float | None = None, open_low: bool = True, open_high: bool = False,
               what: str = "number"):
    """An argparse `type=`: a finite float in the given interval, else ArgumentTypeError."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a finite number; got {text!r}") from None
        try:
            return number(value, what, minimum, maximum, open_low, open_high)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = what
    return parse
