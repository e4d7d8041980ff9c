"""skier.optim."""
