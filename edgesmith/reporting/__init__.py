"""Reports people read: the self-contained HTML report (``html.py``) drawn with ``svg.py``."""
