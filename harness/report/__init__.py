"""Stage 3, report: records rendered as tables, plots, a verdict, comparisons and exports. Never measures."""
