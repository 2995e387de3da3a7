"""One driver per system, all with the same small interface (see drivers/base.py)."""
