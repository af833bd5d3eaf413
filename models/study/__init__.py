"""The seeded study's report (docs/accuracy.md and .png) from the records python -m models.ablation
writes: report.py assembles it, budget.py judges accuracy against training budget, plot.py draws."""
