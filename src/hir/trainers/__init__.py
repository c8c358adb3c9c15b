"""One trainer per algorithm; they share the epoch loop in `loop.py`."""
