"""Pure statistics shared by the stages: summaries, confidence intervals, significance. No I/O."""
