"""skier.plots."""
