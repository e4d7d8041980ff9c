"""skier.report."""
