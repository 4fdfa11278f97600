"""gpubackprop.sklearn's estimators beside scikit-learn's MLPs on digits, breast cancer and diabetes.

    python bench/sklearn_compare.py [--seeds 3] [--threads 1] [--backend numpy] [--json FILE]

For each data set (scikit-learn's bundled copies: no download), one stratified 75/25 split
(random_state 0), X standardised on the training rows (diabetes' target too: scikit-learn's
defaults diverge on its raw scale), then the same estimator settings for every column: scikit-learn's
defaults (hidden_layer_sizes=(100,), relu, adam, lr 0.001, batch min(200, n), max_iter 200, tol 1e-4,
n_iter_no_change 10), with random_state = seed, for ``--seeds`` seeds:

- ``sklearn``: ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (float64);
- ``gpubackprop``: ``gpubackprop.sklearn``'s, dtype None (float64, as X: the same arithmetic width);
- ``gpubackprop f32``: the same with ``dtype="float32"``.

Reported per column: the test accuracy (classification) or R² (regression) as mean ± standard
deviation over the seeds (the seed changes the initial weights and the batches: the noise to judge
a difference by), the epochs run (``n_iter_``: both stop by the same rule), and the time per epoch =
fit's wall time / n_iter_, median over the seeds (fit's whole cost: checks, the epoch loop, the
stopping rule). All columns run in one process, interleaved per seed, with ``--threads`` BLAS
threads (threadpoolctl) for all of them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def datasets():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
    return [("digits", "classification", load_digits(return_X_y=True)),
            ("breast cancer", "classification", load_breast_cancer(return_X_y=True)),
            ("diabetes", "regression", load_diabetes(return_X_y=True))]


def split(kind, X, y):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y if kind == "classification" else None)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    if kind == "regression":
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return X_train, X_test, y_train, y_test


def columns(kind, backend):
    from sklearn import neural_network
    from gpubackprop import sklearn as ours
    name = "MLPClassifier" if kind == "classification" else "MLPRegressor"
    return [("sklearn", lambda seed: getattr(neural_network, name)(random_state=seed)),
            ("gpubackprop", lambda seed: getattr(ours, name)(random_state=seed, backend=backend)),
            ("gpubackprop f32", lambda seed: getattr(ours, name)(random_state=seed, backend=backend, dtype="float32"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for every column (threadpoolctl)")
    parser.add_argument("--backend", default="numpy", help="gpubackprop's backend (numpy, cupy, ...)")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args(argv)
    import sklearn
    import threadpoolctl
    from sklearn.exceptions import ConvergenceWarning

    import gpubackprop as gb
    rows, raw = [], []
    with threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [(info["internal_api"], info.get("version"), info["num_threads"]) for info in threadpoolctl.threadpool_info()
                if info["user_api"] == "blas"]
        for data_name, kind, (X, y) in datasets():
            X_train, X_test, y_train, y_test = split(kind, X, y)
            results = {}
            for seed in range(args.seeds):
                for column, make in columns(kind, args.backend):
                    est = make(seed)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        start = time.perf_counter()
                        est.fit(X_train, y_train)
                        seconds = time.perf_counter() - start
                    score = est.score(X_test, y_test)
                    record = {"data": data_name, "column": column, "seed": seed, "score": score, "epochs": est.n_iter_,
                              "fit_s": seconds, "s_per_epoch": seconds / est.n_iter_}
                    raw.append(record)
                    results.setdefault(column, []).append(record)
            for column, records in results.items():
                scores = [r["score"] for r in records]
                rows.append((data_name, "accuracy" if kind == "classification" else "R²", column,
                             statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0,
                             statistics.median(r["epochs"] for r in records),
                             statistics.median(r["s_per_epoch"] for r in records) * 1e3))
    print(f"scikit-learn {sklearn.__version__}, gpubackprop {gb.__version__} on {gb.get_backend(args.backend).describe()}, "
          f"numpy {numpy.__version__}, BLAS {blas}, {args.seeds} seeds")
    print()
    print("| data set | metric | estimator | test score (mean ± sd) | epochs (median) | ms / epoch (median) |")
    print("|---|---|---|---:|---:|---:|")
    for data_name, metric, column, mean, sd, epochs, ms in rows:
        print(f"| {data_name} | {metric} | {column} | {mean:.4f} ± {sd:.4f} | {epochs:g} | {ms:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
