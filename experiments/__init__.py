"""Scripts that reproduce the UDE paper's Lotka–Volterra figures (see REPRODUCING.md)."""
