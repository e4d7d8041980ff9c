"""skier.record."""
