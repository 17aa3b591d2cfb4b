"""Click sub-commands of `tuitune`, one module per area. Shared helpers live in `common.py`."""
