"""Panoptic quality (PQ / SQ / RQ) with panopticapi semantics, vectorised with numpy.

Inputs are panoptic maps as the rest of the package produces them: ``(H, W)`` integer
arrays holding ``class_id * label_divisor + instance_id`` and ``void_label`` (-1) where no
segment applies. Every distinct non-void value is one segment; stuff segments normally
have instance 0, and a thing segment may have instance 0 too (it is simply one segment).

Semantics: exactly panopticapi's ``pq_compute`` (``panopticapi/evaluation.py``), which
hotcoco reproduces; ``test/test_metrics.py`` checks agreement to 1e-6, crowd included:

* a predicted and a ground-truth segment of the same class match when IoU > 0.5
  (IoU exactly 0.5 is *not* a match); the union is
  ``pred_area + gt_area - intersection - (pred pixels on ground-truth VOID)``: only VOID
  is left out, pixels on a crowd region stay in the union;
* ground-truth **crowd** segments (COCO ``iscrowd: 1``, passed as ``crowd=``) are never
  matched and never a false negative;
* per class: TP = matches, FN = unmatched non-crowd ground-truth segments, FP = unmatched
  predicted segments, except those with more than half of their area on ground-truth
  VOID plus the crowd region **of their own class** in that image (a crowd region of
  another class does not excuse them). panopticapi keeps one crowd region per class and
  image: with several crowd segments of one class, the last one listed (in ``crowd``
  order, i.e. ``segments_info`` order) is that region (COCO itself never has more than one);
* per class ``PQ = sum(IoU over TP) / (TP + FP/2 + FN/2)``, ``SQ = sum(IoU)/TP`` (0 when
  TP = 0), ``RQ = TP / (TP + FP/2 + FN/2)``;
* the summary PQ/SQ/RQ (and the thing / stuff splits) average over the classes with
  ``TP + FP + FN > 0`` only; a group with no such class reports 0.0.

panopticapi takes ground-truth areas from the JSON (``segments_info[].area``), not from
the PNG, and counts a listed segment that is absent from the PNG as a false negative;
``areas=`` reproduces that for readers of COCO files (``evaluation/coco_panoptic.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from panoptic_ros.core.taxonomy import Taxonomy

#: above this many (gt segment x pred segment) cells the joint histogram is sparse (np.unique)
_DENSE_LIMIT = 1 << 22


@dataclass(frozen=True)
class PQReport:
    """Result of :meth:`PanopticQuality.compute`; all quality values lie in 0..1.

    ``per_class`` maps class name -> ``(pq, sq, rq, tp, fp, fn)`` for every class in the
    taxonomy (classes that never occur have all zeros and are left out of the averages).
    ``n_classes`` / ``n_thing_classes`` / ``n_stuff_classes`` count the classes averaged.
    """

    pq: float
    sq: float
    rq: float
    pq_thing: float
    sq_thing: float
    rq_thing: float
    pq_stuff: float
    sq_stuff: float
    rq_stuff: float
    n_images: int
    per_class: dict[str, tuple[float, float, float, int, int, int]] = field(default_factory=dict)
    n_classes: int = 0
    n_thing_classes: int = 0
    n_stuff_classes: int = 0

    def summary_line(self) -> str:
        """The machine-readable ``PQ=... SQ=... RQ=...`` line the ``eval`` command prints."""
        return f"PQ={self.pq:.6f} SQ={self.sq:.6f} RQ={self.rq:.6f}"


class PanopticQuality:
    """Accumulates per-class TP / FP / FN / IoU sums over images; ``compute()`` reports.

    >>> pq = PanopticQuality(Taxonomy.default())
    >>> pq.update(pred_panoptic, gt_panoptic)      # (H, W) int maps, any number of times
    >>> report = pq.compute()
    """

    def __init__(self, taxonomy: Taxonomy, void_label: int = -1) -> None:
        if void_label >= 0:
            raise ValueError(
                f"void_label must be negative (segment ids are >= 0), got {void_label}"
            )
        self.taxonomy = taxonomy
        self.void_label = int(void_label)
        self.label_divisor = int(taxonomy.label_divisor)
        self.num_classes = taxonomy.num_classes
        self._max_id = self.num_classes * self.label_divisor  # exclusive bound of valid ids
        self._is_thing = np.array([c.is_thing for c in taxonomy.classes], dtype=bool)
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.iou_sum = np.zeros(c, dtype=np.float64)
        self.tp = np.zeros(c, dtype=np.int64)
        self.fp = np.zeros(c, dtype=np.int64)
        self.fn = np.zeros(c, dtype=np.int64)
        self.n_images = 0

    # -- accumulation ---------------------------------------------------------------
    def _dense_index(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compact ids to 0..n-1. Returns (sorted ids with void as -1, index per pixel).

        ``flat`` holds ``id + 1`` (0 = void), validated to lie in ``0 .. max_id``.
        """
        if self._max_id > _DENSE_LIMIT:  # huge id space: sort instead of a lookup table
            values, index = np.unique(flat, return_inverse=True)
            return values - 1, index.ravel()
        present = np.bincount(flat, minlength=self._max_id + 1) > 0
        values = np.flatnonzero(present)
        lut = np.cumsum(present) - 1
        return values - 1, lut[flat]

    def _check(self, a: np.ndarray, what: str) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 2:
            raise ValueError(f"{what} panoptic map must be 2-D (H, W), got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{what} panoptic map must be an integer array, got {a.dtype}")
        flat = a.ravel().astype(np.int64)
        if flat.size:
            lo, hi = int(flat.min()), int(flat.max())
            if hi >= self._max_id:
                bad = int(flat[flat >= self._max_id][0])
                raise ValueError(
                    f"{what} panoptic map holds id {bad}: class {bad // self.label_divisor} is not in the "
                    f"taxonomy ({self.num_classes} classes, label_divisor {self.label_divisor})"
                )
            if lo < 0:
                neg = flat < 0
                if np.any(flat[neg] != self.void_label):
                    bad = int(flat[neg & (flat != self.void_label)][0])
                    raise ValueError(
                        f"{what} panoptic map holds negative id {bad} (void is {self.void_label})"
                    )
                flat = np.where(neg, 0, flat + 1)
            else:
                flat = flat + 1
        return flat

    def _check_ids(self, values: Iterable[int], what: str) -> np.ndarray:
        arr = np.asarray([int(v) for v in values], dtype=np.int64)
        bad = arr[(arr < 0) | (arr >= self._max_id)]
        if bad.size:
            raise ValueError(
                f"{what} holds id {int(bad[0])}, not a segment of the taxonomy "
                f"({self.num_classes} classes, label_divisor {self.label_divisor})"
            )
        return arr

    def update(
        self,
        pred_panoptic: np.ndarray,
        gt_panoptic: np.ndarray,
        *,
        crowd: Iterable[int] = (),
        areas: Mapping[int, int] | None = None,
    ) -> None:
        """Add one image. Both maps ``(H, W)`` integer, same shape, ``class*divisor+inst`` or void.

        ``crowd``: the ground-truth values that are crowd segments, in ``segments_info``
        order (the last one of a class is that class's crowd region, as in panopticapi).
        ``areas``: ground-truth value -> area for every *listed* ground-truth segment
        (COCO JSON ``area``); it replaces the pixel count, and a listed segment missing
        from the map still counts (FN unless crowd). ``None``: areas are pixel counts.
        """
        pred_a, gt_a = np.asarray(pred_panoptic), np.asarray(gt_panoptic)
        if pred_a.shape != gt_a.shape:
            raise ValueError(
                f"prediction shape {pred_a.shape} differs from ground truth shape {gt_a.shape}"
            )
        p_flat = self._check(pred_a, "prediction")
        g_flat = self._check(gt_a, "ground-truth")
        crowd_ids = self._check_ids(crowd, "crowd")
        listed = None
        if areas is not None:
            listed = self._check_ids(areas.keys(), "areas")
            listed_area = np.asarray([int(a) for a in areas.values()], dtype=np.int64)
        self.n_images += 1
        c = self.num_classes
        div = self.label_divisor

        g_vals, g_idx = self._dense_index(g_flat)
        p_vals, p_idx = self._dense_index(p_flat)
        ng, np_ = len(g_vals), len(p_vals)
        # Joint histogram over (gt segment, pred segment) pairs, void included as a row/column.
        pair = g_idx.astype(np.int64) * np_ + p_idx
        if ng * np_ <= _DENSE_LIMIT:
            joint = np.bincount(pair, minlength=ng * np_)
            pairs = np.flatnonzero(joint)
            inter = joint[pairs]
        else:
            pairs, inter = np.unique(pair, return_counts=True)
        gi, pi = pairs // max(np_, 1), pairs % max(np_, 1)
        g_area = np.bincount(gi, weights=inter, minlength=ng).astype(np.int64)
        p_area = np.bincount(pi, weights=inter, minlength=np_).astype(np.int64)

        g_void = g_vals < 0  # at most one entry, index 0
        p_void = p_vals < 0
        g_crowd = np.isin(g_vals, crowd_ids) & ~g_void
        if listed is not None:  # panopticapi: the JSON's area, not the pixel count
            pos = np.searchsorted(g_vals, listed)
            pos_ok = pos < ng
            hit = np.zeros(len(listed), dtype=bool)
            hit[pos_ok] = g_vals[pos[pos_ok]] == listed[pos_ok]
            g_area[pos[hit]] = listed_area[hit]
            # listed but not in the map: never matched, a false negative unless crowd
            absent = listed[~hit & ~np.isin(listed, crowd_ids)]
            self.fn += np.bincount(absent // div, minlength=c)
        # Pixels of each predicted segment lying on ground-truth VOID.
        on_void = np.zeros(np_, dtype=np.int64)
        sel = g_void[gi]
        on_void[pi[sel]] = inter[sel]

        g_cls = np.where(g_void, -1, g_vals // div)
        p_cls = np.where(p_void, -1, p_vals // div)

        cand = (~g_void[gi]) & (~g_crowd[gi]) & (~p_void[pi]) & (g_cls[gi] == p_cls[pi])
        cgi, cpi, cint = gi[cand], pi[cand], inter[cand]
        union = p_area[cpi] + g_area[cgi] - cint - on_void[cpi]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = cint / union
        match = iou > 0.5  # IoU > 0.5 makes every match unique
        mg, mp, miou = cgi[match], cpi[match], iou[match]

        m_cls = g_cls[mg]
        self.tp += np.bincount(m_cls, minlength=c)
        self.iou_sum += np.bincount(m_cls, weights=miou, minlength=c)

        g_matched = np.zeros(ng, dtype=bool)
        g_matched[mg] = True
        fn_sel = ~g_void & ~g_matched & ~g_crowd
        self.fn += np.bincount(g_cls[fn_sel], minlength=c)

        # The crowd region of each class: its last crowd segment (row in g_vals, -1: none).
        crowd_row = np.full(c, -1, dtype=np.int64)
        for v in crowd_ids.tolist():
            k = int(np.searchsorted(g_vals, v))
            crowd_row[v // div] = k if k < ng and g_vals[k] == v else -1
        # Ignored area of each predicted segment: on VOID plus on its own class's crowd region.
        ignored = on_void.copy()
        sel = ~p_void[pi]
        sel[sel] = crowd_row[p_cls[pi[sel]]] == gi[sel]
        np.add.at(ignored, pi[sel], inter[sel])

        p_matched = np.zeros(np_, dtype=bool)
        p_matched[mp] = True
        # not an FP when more than half of the predicted segment lies on VOID + own-class crowd
        fp_sel = ~p_void & ~p_matched & ~(ignored > 0.5 * p_area)
        self.fp += np.bincount(p_cls[fp_sel], minlength=c)

    # -- reporting ------------------------------------------------------------------
    def compute(self) -> PQReport:
        tp, fp, fn, iou = self.tp, self.fp, self.fn, self.iou_sum
        denom = tp + 0.5 * fp + 0.5 * fn
        present = (tp + fp + fn) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            pq_c = np.where(present, iou / np.where(present, denom, 1.0), 0.0)
            sq_c = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
            rq_c = np.where(present, tp / np.where(present, denom, 1.0), 0.0)

        def avg(mask: np.ndarray) -> tuple[float, float, float, int]:
            m = mask & present
            n = int(m.sum())
            if n == 0:
                return 0.0, 0.0, 0.0, 0
            return float(pq_c[m].sum() / n), float(sq_c[m].sum() / n), float(rq_c[m].sum() / n), n

        all_ = avg(np.ones_like(present))
        th = avg(self._is_thing)
        st = avg(~self._is_thing)
        per_class = {
            cls.name: (
                float(pq_c[i]),
                float(sq_c[i]),
                float(rq_c[i]),
                int(tp[i]),
                int(fp[i]),
                int(fn[i]),
            )
            for i, cls in enumerate(self.taxonomy.classes)
        }
        return PQReport(
            pq=all_[0], sq=all_[1], rq=all_[2],
            pq_thing=th[0], sq_thing=th[1], rq_thing=th[2],
            pq_stuff=st[0], sq_stuff=st[1], rq_stuff=st[2],
            n_images=self.n_images, per_class=per_class,
            n_classes=all_[3], n_thing_classes=th[3], n_stuff_classes=st[3],
        )  # fmt: skip


def format_report(report: PQReport, taxonomy: Taxonomy) -> str:
    """A human-readable table: one row per class, then All / Things / Stuff (values in %)."""
    name_w = max([len("Category")] + [len(c.name) for c in taxonomy.classes]) + 1
    head = f"{'Category':<{name_w}} {'kind':<5} {'PQ':>6} {'SQ':>6} {'RQ':>6} {'TP':>6} {'FP':>6} {'FN':>6}"
    lines = [head, "-" * len(head)]
    for c in taxonomy.classes:
        pq, sq, rq, tp, fp, fn = report.per_class.get(c.name, (0.0, 0.0, 0.0, 0, 0, 0))
        kind = "thing" if c.is_thing else "stuff"
        if tp + fp + fn == 0:
            lines.append(
                f"{c.name:<{name_w}} {kind:<5} {'-':>6} {'-':>6} {'-':>6} {0:>6} {0:>6} {0:>6}"
            )
        else:
            lines.append(
                f"{c.name:<{name_w}} {kind:<5} {100 * pq:6.2f} {100 * sq:6.2f} {100 * rq:6.2f} {tp:>6} {fp:>6} {fn:>6}"
            )
    lines.append("-" * len(head))
    for label, vals, n in (
        ("All", (report.pq, report.sq, report.rq), report.n_classes),
        ("Things", (report.pq_thing, report.sq_thing, report.rq_thing), report.n_thing_classes),
        ("Stuff", (report.pq_stuff, report.sq_stuff, report.rq_stuff), report.n_stuff_classes),
    ):
        pq, sq, rq = vals
        lines.append(
            f"{label:<{name_w}} {'':<5} {100 * pq:6.2f} {100 * sq:6.2f} {100 * rq:6.2f}   n={n}"
        )
    lines.append(f"images: {report.n_images}")
    return "\n".join(lines)
