"""skier.cli."""
