"""``make bench``: tusd-py measured against baselines run side by side."""
