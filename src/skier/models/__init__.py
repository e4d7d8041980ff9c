"""skier.models."""
