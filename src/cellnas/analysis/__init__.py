"""Analyses of learnt cells: topology (Shu et al. 2020), wiring evolution (Xie et al. 2021),
operation importance, motifs and constrained sampling (Wan et al. 2022)."""
