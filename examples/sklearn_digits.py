"""skier inside scikit-learn: a Pipeline, a grid search with two workers, cross-validation.

    python examples/sklearn_digits.py                 # about a minute on two cores
    python examples/sklearn_digits.py --quick         # a few seconds (the tests run this)
    python examples/sklearn_digits.py --record runs   # the final fit is also a run in runs/

The digits come with scikit-learn (nothing is downloaded).
"""

from __future__ import annotations

import argparse

from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skier.sklearn import SkierClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, shorter search")
    parser.add_argument("--record", metavar="DIR", help="record the final fit as a run in DIR")
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    epochs = 5 if args.quick else 30
    pipe = make_pipeline(
        StandardScaler(),
        SkierClassifier(
            model={"hidden_sizes": [64]},
            optim={"name": "adam", "lr": 1e-3},
            train={"epochs": epochs, "batch_size": 64},
            random_state=0,
        ),
    )
    # Every skier setting is a section__field parameter: optim__lr, model__hidden_sizes, ...
    grid = {
        "skierclassifier__optim__lr": [1e-3, 3e-3],
        "skierclassifier__model__hidden_sizes": [[64]] if args.quick else [[64], [128, 64]],
    }
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(x_train, y_train)
    print(f"best {search.best_params_}: cross-validated accuracy {search.best_score_:.3f}")

    best = search.best_estimator_
    scores = cross_val_score(best, x_train, y_train, cv=3)
    print(f"cross_val_score of the best: {scores.mean():.3f} ± {scores.std():.3f}")

    # Early stopping as scikit-learn's MLP does it: a stratified tenth of the rows held out,
    # a stop after 5 epochs without a better held-out accuracy, the best epoch's weights kept.
    stopping = clone(best).set_params(
        skierclassifier__early_stopping=True,
        skierclassifier__n_iter_no_change=2 if args.quick else 5,
        skierclassifier__train__epochs=20 if args.quick else 200,
    )
    net = stopping.fit(x_train, y_train)[-1]
    print(
        f"early stopping: {net.n_iter_} epochs, best held-out accuracy "
        f"{net.best_validation_score_:.3f}; test accuracy {stopping.score(x_test, y_test):.3f}"
    )

    if args.record:  # the same fit, recorded: a run directory and a row in DIR/skier.db
        best.set_params(skierclassifier__record={"dir": args.record})
        best.fit(x_train, y_train)
        print(f"recorded as run {best[-1].run_id_} in {args.record}")
    print(f"test accuracy {best.score(x_test, y_test):.3f}")


if __name__ == "__main__":
    main()
