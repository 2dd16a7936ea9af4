"""Semantic segmentation metrics (``eval --task semantic``): mIoU, fwIoU, mean and pixel
accuracy from the confusion matrix.

Over all pixels whose GT is a class (GT ``ignore_value`` pixels are skipped), ``n[i, j]`` counts
GT class i predicted as class j; a prediction outside 0..K-1 (e.g. the ignore value: "no class")
counts for its GT class as a miss. With ``t_i`` the GT pixels of class i, ``p_j`` the pixels
predicted as j and ``u_i = t_i + p_i - n[i, i]``:

- ``IoU_i = n[i, i] / u_i``; **mIoU** = mean over the classes present in the GT or the prediction
  (``u_i > 0``; a class only predicted has IoU 0);
- **fwIoU** = ``sum_i t_i IoU_i / sum_i t_i`` (frequency weighted, Long et al. 2015);
- ``Acc_i = n[i, i] / t_i``; **mAcc** = mean over the classes present in the GT;
- **pAcc** = ``sum_i n[i, i] / sum_i t_i``.

These are the definitions of the FCN paper and of mmsegmentation's ``mean_iou`` / torchmetrics'
``MulticlassJaccardIndex`` (macro / weighted) and ``MulticlassAccuracy`` (micro / macro) when
every class occurs; classes that occur nowhere are left out of the means (NaN per class).

Streaming: one (K, K+1) int64 matrix for the whole set; label maps are decoded one image at a
time and counted in row stripes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from entityseg_data.errors import DataError

VERSION = 1
STRIPE_PIXELS = 1 << 20


class ConfusionMatrix:
    """Accumulated ``(K, K + 1)`` counts: row = GT class, column = predicted class, last column =
    predicted outside 0..K-1."""

    def __init__(self, num_classes: int, ignore_value: int = 255) -> None:
        if num_classes < 1:
            raise DataError("semantic evaluation needs at least one class")
        if 0 <= ignore_value < num_classes:
            raise DataError(f"ignore value {ignore_value} is a class index (K = {num_classes})")
        self.k = int(num_classes)
        self.ignore = int(ignore_value)
        self.matrix = np.zeros((self.k, self.k + 1), np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray, *, where: str = "image") -> np.ndarray:
        """Add one image's (H, W) GT and predicted label maps; returns that image's matrix."""
        if gt.shape != pred.shape:
            raise DataError(f"{where}: prediction is {pred.shape}, ground truth {gt.shape}")
        k = self.k
        m: npt.NDArray[np.int64] = np.zeros(k * (k + 1), np.int64)
        rows = max(1, STRIPE_PIXELS // max(1, gt.shape[1] if gt.ndim == 2 else 1))
        for y in range(0, gt.shape[0], rows):
            g = gt[y : y + rows].reshape(-1).astype(np.int64)
            p: npt.NDArray[np.int64] = pred[y : y + rows].reshape(-1).astype(np.int64)
            keep = g != self.ignore
            g, p = g[keep], p[keep]
            bad = (g < 0) | (g >= k)
            if bad.any():
                raise DataError(
                    f"{where}: ground-truth value {int(g[bad][0])} is neither a class "
                    f"(0..{k - 1}) nor the ignore value {self.ignore}"
                )
            p = np.where((p >= 0) & (p < k), p, k)
            m += np.bincount(g * (k + 1) + p, minlength=m.size)
        m = m.reshape(k, k + 1)
        self.matrix += m
        return m


def semantic_metrics(matrix: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """mIoU, fwIoU, mAcc, pAcc and per-class IoU / Acc of a (K, K+1) confusion matrix (see the
    module doc); -1 for a mean over no class."""
    k = matrix.shape[0]
    tp = np.diag(matrix[:, :k]).astype(np.float64)
    t = matrix.sum(1).astype(np.float64)
    p = matrix[:, :k].sum(0).astype(np.float64)
    union = t + p - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(t > 0, tp / t, np.nan)
    total = t.sum()

    def mean(x: np.ndarray) -> float:
        x = x[~np.isnan(x)]
        return float(x.mean()) if x.size else -1.0

    names = list(names) if names is not None else [str(i) for i in range(k)]
    per = {}
    for i in range(k):
        name = names[i] if names[i] not in per else f"{names[i]} ({i})"
        per[name] = {
            "index": i,
            "IoU": None if np.isnan(iou[i]) else float(iou[i]),
            "Acc": None if np.isnan(acc[i]) else float(acc[i]),
            "gt_pixels": int(t[i]),
            "pred_pixels": int(p[i]),
        }
    return {
        "mIoU": mean(iou),
        "fwIoU": float(np.nansum(np.where(t > 0, t * iou, 0.0)) / total) if total else -1.0,
        "mAcc": mean(acc),
        "pAcc": float(tp.sum() / total) if total else -1.0,
        "per_class": per,
    }


class SemanticEvaluator:
    """Streaming semantic metrics: ``process(image_id, gt, pred)`` with (H, W) integer label maps,
    ``evaluate()`` the metrics dict."""

    def __init__(self, class_names: Sequence[str], *, ignore_value: int = 255) -> None:
        self.names = [str(n) for n in class_names]
        self.ignore_value = int(ignore_value)
        self.reset()

    def reset(self) -> None:
        self.confusion = ConfusionMatrix(len(self.names), self.ignore_value)
        self._images: dict[int, np.ndarray] = {}

    def process(self, image_id: int, gt: np.ndarray, pred: np.ndarray) -> None:
        iid = int(image_id)
        if iid in self._images:  # processing an image twice replaces it
            self.confusion.matrix -= self._images.pop(iid)
        self._images[iid] = self.confusion.update(
            np.asarray(gt), np.asarray(pred), where=f"image {iid}"
        )

    def evaluate(self) -> dict[str, Any]:
        """``{"version", "task": "semantic", "mIoU", "fwIoU", "mAcc", "pAcc", "per_class":
        {name: {index, IoU, Acc, gt_pixels, pred_pixels}}, "info": {num_images, num_classes,
        ignore_value, pixels}}``."""
        m = semantic_metrics(self.confusion.matrix, self.names)
        return {
            "version": VERSION,
            "task": "semantic",
            **m,
            "info": {
                "num_images": len(self._images),
                "num_classes": len(self.names),
                "ignore_value": self.ignore_value,
                "pixels": int(self.confusion.matrix.sum()),
            },
        }


def read_label_png(path: str | Path) -> np.ndarray:
    """(H, W) integer label map of a grey PNG (8 or 16 bit); DataError naming the file."""
    from entityseg_data.io.images import ImageLimits, read_label_array

    modes = ("L", "P", "I;16", "I;16B", "I;16L", "I")
    limits = ImageLimits(max_bytes=1 << 30)
    return read_label_array(path, "semantic label map", modes=modes, limits=limits)


def evaluate_semantic_files(
    gt: str | Path | Mapping[str, Any],
    pred_folder: str | Path,
    *,
    gt_root: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Semantic metrics of a folder of predicted label PNGs against the GT written by
    ``export subsets`` (``semantic_categories.json``: ``classes``, ``ignore_value``, ``files``
    {image id: PNG path relative to the JSON's folder}). The prediction of a GT file
    ``semantic/<stem>.png`` is ``<pred_folder>/<stem>.png``; every GT image needs one."""
    from entityseg_data.io.files import read_json

    if isinstance(gt, str | os.PathLike):
        meta, name = read_json(gt, "semantic categories"), str(gt)
        root = Path(gt_root) if gt_root is not None else Path(gt).parent
    else:
        meta, name = gt, "<semantic categories>"
        if gt_root is None:
            raise DataError("gt_root is needed when the GT is not a file")
        root = Path(gt_root)
    if not isinstance(meta, Mapping) or not isinstance(meta.get("classes"), list):
        raise DataError(f"{name}: not a semantic categories file (needs a 'classes' list)")
    classes = sorted(meta["classes"], key=lambda c: int(c["index"]))
    if [int(c["index"]) for c in classes] != list(range(len(classes))):
        raise DataError(f"{name}: class indices must be 0..K-1")
    files = meta.get("files")
    if not isinstance(files, Mapping) or not files:
        raise DataError(f"{name}: needs 'files' (image id -> label PNG)")
    ev = SemanticEvaluator(
        [str(c.get("name", c["index"])) for c in classes],
        ignore_value=int(meta.get("ignore_value", 255)),
    )
    pred_dir = Path(pred_folder)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: the prediction folder does not exist")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="eval semantic", unit="img")
    for iid, rel in sorted(files.items(), key=lambda kv: int(kv[0])):
        gt_path = root / str(rel)
        pred_path = pred_dir / f"{Path(str(rel)).stem}.png"
        if not pred_path.is_file():
            raise DataError(f"{pred_path}: no prediction for image {iid} ({rel})")
        g = read_label_png(gt_path)
        p = read_label_png(pred_path)
        if g.shape != p.shape:
            raise DataError(f"{pred_path}: prediction is {p.shape}, ground truth {g.shape}")
        ev.process(int(iid), g, p)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return ev.evaluate()
