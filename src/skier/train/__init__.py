"""skier.train."""
