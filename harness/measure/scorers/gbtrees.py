"""Gradient-boosted regression trees as plain arrays: fitted with scikit-learn's HistGradientBoostingRegressor,
stored in safetensors, evaluated in numpy (no pickle, no scikit-learn needed to score).

A forest is five flat arrays over all nodes of all trees (``feature``, ``threshold``, ``left``, ``right`` as global
node indices, ``value``) plus each tree's root index and the baseline. A leaf has ``feature == -1``; its value
already carries the learning rate (scikit-learn applies shrinkage to leaves), so a prediction is the baseline plus
the sum of one leaf per tree. Inputs must be finite: the stage that feeds it produces no missing values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: the stage-2 model's settings, fixed before any evaluation (scikit-learn's defaults with half the learning rate,
#: twice the iterations and smaller trees; early stopping off so a fit does not depend on a validation split)
GB_PARAMS: dict[str, Any] = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "early_stopping": False,
                             "random_state": 0}


@dataclass
class Forest:
    feature: np.ndarray  # int32, -1 at leaves
    threshold: np.ndarray  # float64: go left when x[feature] <= threshold
    left: np.ndarray  # int32, global node index
    right: np.ndarray  # int32
    value: np.ndarray  # float64, leaf values (shrinkage applied)
    roots: np.ndarray  # int32, each tree's root node
    baseline: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        rows = np.arange(len(x))
        out = np.full(len(x), self.baseline)
        for root in self.roots:
            node = np.full(len(x), root, dtype=np.int64)
            while True:
                f = self.feature[node]
                inner = f >= 0
                if not inner.any():
                    break
                go_left = x[rows[inner], f[inner]] <= self.threshold[node[inner]]
                node[inner] = np.where(go_left, self.left[node[inner]], self.right[node[inner]])
            out += self.value[node]
        return out

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}feature": self.feature, f"{prefix}threshold": self.threshold, f"{prefix}left": self.left,
                f"{prefix}right": self.right, f"{prefix}value": self.value, f"{prefix}roots": self.roots,
                f"{prefix}baseline": np.array([self.baseline])}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], prefix: str) -> Forest:
        g = lambda k: t[prefix + k]  # noqa: E731
        return cls(g("feature").astype(np.int32), g("threshold").astype(np.float64), g("left").astype(np.int32),
                   g("right").astype(np.int32), g("value").astype(np.float64), g("roots").astype(np.int32),
                   float(g("baseline")[0]))

    def arrays(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) pairs that define the forest (for content hashes)."""
        return [(k, np.asarray(getattr(self, k))) for k in ("feature", "threshold", "left", "right", "value",
                                                             "roots")] + [("baseline", np.array([self.baseline]))]


def fit_forest(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Forest:
    """A squared-error boosted forest of ``y`` on ``x`` (``GB_PARAMS``), exported to arrays."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(**GB_PARAMS).fit(x, y, sample_weight=weight)
    return export(model)


def export(model: Any) -> Forest:
    """A fitted single-output HistGradientBoostingRegressor as a ``Forest`` (numerical features only)."""
    feature, threshold, left, right, value, roots = [], [], [], [], [], []
    offset = 0
    for (tree,) in model._predictors:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        leaf = nodes["is_leaf"].astype(bool)
        feature.append(np.where(leaf, -1, nodes["feature_idx"]).astype(np.int32))
        threshold.append(nodes["num_threshold"].astype(np.float64))
        left.append(np.where(leaf, -1, nodes["left"] + offset).astype(np.int32))
        right.append(np.where(leaf, -1, nodes["right"] + offset).astype(np.int32))
        value.append(np.where(leaf, nodes["value"], 0.0).astype(np.float64))
        roots.append(offset)
        offset += len(nodes)
    return Forest(np.concatenate(feature), np.concatenate(threshold), np.concatenate(left), np.concatenate(right),
                  np.concatenate(value), np.asarray(roots, dtype=np.int32),
                  float(np.asarray(model._baseline_prediction).reshape(-1)[0]))
