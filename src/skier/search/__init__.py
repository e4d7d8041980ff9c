"""Model selection: cross-validation and hyper-parameter search (Optuna)."""
