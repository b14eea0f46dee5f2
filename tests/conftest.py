import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # lets tests `from parity import check_parity`
os.environ.setdefault("MPLBACKEND", "Agg")
