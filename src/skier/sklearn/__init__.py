"""scikit-learn estimators that train with skier: :class:`SkierClassifier` and
:class:`SkierRegressor` (``Pipeline``, ``GridSearchCV``, ``cross_val_score``, ...).

>>> from skier.sklearn import SkierClassifier
>>> SkierClassifier(optim={"lr": 0.01}).get_params()["optim__lr"]
0.01
"""

from skier.sklearn.estimators import SkierClassifier, SkierRegressor

__all__ = ["SkierClassifier", "SkierRegressor"]
