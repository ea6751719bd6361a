"""Sweeps: tasks x methods x seeds as Ray Tune trials (``config``: the sweep file; ``launch``: Ray)."""
