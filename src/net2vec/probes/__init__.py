"""Probes: single filter, NetDissect, learned concept weights (all filters and top-F subsets)."""
