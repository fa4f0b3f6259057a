"""The bench scripts import their sibling modules by bare name (``python
bench/exchange.py`` puts bench/ on sys.path); their tests do the same."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
