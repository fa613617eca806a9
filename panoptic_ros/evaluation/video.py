"""Video panoptic metrics: STQ (with AQ and SQ) and CLEAR-MOT identity switches.

Inputs are per-frame panoptic maps as the rest of the package produces them: ``(H, W)``
integers ``class_id * label_divisor + instance_id``, ``-1`` (VOID) where no segment applies.
For tracked predictions the instance part is the track id (``core/tracking.py``), so the same
value in two frames is the same object; for ground truth it is the GT track id
(``core/synthetic_video.py``).

**STQ** (Weber et al. 2021, "STEP: Segmenting and Tracking Every Pixel", arXiv:2102.11859) is a
faithful port of deeplab2's numpy ``STQuality`` (``evaluation/numpy/
segmentation_and_tracking_quality.py``); ``test/test_video_metrics.py`` checks equality with the
vendored reference file. In short, per sequence:

* AQ: for every GT track (tube) g of a thing class, ``1/|g| * sum_p TPA(p,g) * IoU(p,g)`` over the
  predicted tubes p (a predicted tube = one panoptic value of a thing class over the whole
  sequence), where ``IoU(p,g) = TPA / (TPA + FPA + FNA)`` with ``FPA = |p| - TPA`` and
  ``FNA = |g| - TPA``; AQ = the sum over all GT tubes of all sequences / number of GT tubes.
  ``|p|`` counts every pixel of the predicted tube, also those on stuff or VOID ground truth.
  GT thing pixels with instance 0 are "crowd": ignored for AQ on both sides.
* SQ: mean class IoU (semantic) over the confusion matrix summed over all sequences, rows =
  GT class, ground-truth VOID rows dropped; averaged over the classes whose union is non-zero.
  As in the reference, predicted VOID is a column of its own: GT pixels predicted VOID are
  false negatives of their class, and if there are any, the VOID "class" (IoU 0) enters the
  average.
* STQ = sqrt(AQ * SQ).

**ID switches** (CLEAR-MOT, Bernardin & Stiefelhagen 2008): per frame, a GT thing segment and
a predicted segment of the same class match when their mask IoU > 0.5 (so the match is unique;
IoU = intersection / union over all pixels). An ID switch is counted when a GT track is matched
to a predicted id that differs from the predicted id it was last matched to (however many frames
ago). A fragmentation is counted each time a GT track that has been matched before is matched
again after one or more frames in which it was visible but unmatched. Rates are per 100 GT
track-frames (a GT track-frame = one GT thing segment with at least one pixel in one frame).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from panoptic_ros.core.taxonomy import Taxonomy

VOID = -1


@dataclass(frozen=True)
class STQReport:
    """Totals over all sequences, then per sequence (in the order first seen)."""

    stq: float
    aq: float
    sq: float
    n_sequences: int
    n_frames: int
    n_gt_tracks: int
    stq_per_seq: tuple[float, ...] = ()
    aq_per_seq: tuple[float, ...] = ()
    sq_per_seq: tuple[float, ...] = ()


@dataclass
class _SeqStats:
    confusion: np.ndarray
    gt: Counter = field(default_factory=Counter)
    pred: Counter = field(default_factory=Counter)
    inter: Counter = field(default_factory=Counter)
    frames: int = 0


class SegmentationTrackingQuality:
    """Accumulates STQ statistics frame by frame (``update``), then ``compute``."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.label_divisor = int(taxonomy.label_divisor)
        self.n_classes = max(c.id for c in taxonomy.classes) + 1
        if self.n_classes * self.label_divisor > 2**31:  # tube ids are packed in 32 bits each
            raise ValueError(
                f"{self.n_classes} classes x label_divisor {self.label_divisor} exceed the int32 "
                "panoptic range"
            )
        self._void = self.n_classes  # confusion index of VOID (the reference's ignore slot)
        self._thing = np.zeros(self.n_classes + 1, bool)
        self._thing[list(taxonomy.thing_ids)] = True
        self._seqs: dict[object, _SeqStats] = {}

    def _split(self, pan: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        pan = np.asarray(pan).astype(np.int64, copy=False)
        bad = (pan < VOID) | (pan >= self.n_classes * self.label_divisor)
        if bad.any():
            raise ValueError(
                f"{what}: panoptic value {int(pan[bad][0])} outside -1..{self.n_classes} * "
                f"{self.label_divisor} (label_divisor)"
            )
        void = pan < 0
        sem = np.where(void, self._void, pan // self.label_divisor)
        inst = np.where(void, 0, pan % self.label_divisor)
        return sem, inst

    def update(self, gt_panoptic: np.ndarray, pred_panoptic: np.ndarray, sequence_id=0) -> None:
        """Add one frame of sequence ``sequence_id`` (frames of a sequence in order)."""
        gt_panoptic = np.asarray(gt_panoptic)
        pred_panoptic = np.asarray(pred_panoptic)
        if gt_panoptic.shape != pred_panoptic.shape:
            raise ValueError(
                f"ground truth is {gt_panoptic.shape} but prediction is {pred_panoptic.shape}"
            )
        gs, gi = self._split(gt_panoptic, "ground truth")
        ps, pi = self._split(pred_panoptic, "prediction")
        n = self.n_classes + 1
        st = self._seqs.get(sequence_id)
        if st is None:
            st = self._seqs[sequence_id] = _SeqStats(np.zeros((n, n), np.float64))
        st.frames += 1
        st.confusion += np.bincount((gs * n + ps).ravel(), minlength=n * n).reshape(n, n)

        gt_mask = self._thing[gs]
        crowd = gt_mask & (gi == 0)
        gt_mask &= ~crowd
        pred_mask = self._thing[ps] & ~crowd
        # tube ids: (class, instance) as one int64 (void never reaches here: not a thing)
        g_id = gs * self.label_divisor + gi
        p_id = ps * self.label_divisor + pi
        _count(st.gt, g_id[gt_mask])
        _count(st.pred, p_id[pred_mask])
        both = gt_mask & pred_mask
        _count(st.inter, (g_id[both] << 32) | p_id[both])

    def compute(self) -> STQReport:
        """STQ, AQ and SQ over everything added (and per sequence)."""
        aq_sums, tubes, ious_seq = [], [], []
        n = self.n_classes + 1
        total = np.zeros((n, n), np.float64)
        for st in self._seqs.values():
            outer = 0.0
            for key, tpa in st.inter.items():
                g, p = key >> 32, key & 0xFFFFFFFF
                gsz, psz = st.gt[g], st.pred[p]
                outer += tpa * (tpa / (gsz + psz - tpa)) / gsz
            aq_sums.append(outer)
            tubes.append(len(st.gt))
            conf = st.confusion.copy()
            conf[self._void, :] = 0.0  # GT VOID rows do not count (the reference's removal matrix)
            total += conf
            ious_seq.append(_mean_iou(conf))
        n_tubes = sum(tubes)
        aq = float(sum(aq_sums) / max(n_tubes, 1e-15))
        sq = _mean_iou(total)
        aq_seq = tuple(a / max(t, 1e-15) for a, t in zip(aq_sums, tubes))
        return STQReport(
            stq=float(np.sqrt(aq * sq)),
            aq=aq,
            sq=sq,
            n_sequences=len(self._seqs),
            n_frames=sum(st.frames for st in self._seqs.values()),
            n_gt_tracks=n_tubes,
            stq_per_seq=tuple(float(np.sqrt(a * s)) for a, s in zip(aq_seq, ious_seq)),
            aq_per_seq=aq_seq,
            sq_per_seq=tuple(ious_seq),
        )


def _count(counter: Counter, values: np.ndarray) -> None:
    if values.size:
        ids, counts = np.unique(values, return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            counter[i] += c


def _mean_iou(conf: np.ndarray) -> float:
    inter = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - inter
    present = np.count_nonzero(union)
    if present == 0:
        return float("nan")  # the reference divides 0 by 0 here too
    return float(np.sum(inter / np.maximum(union, 1e-15)) / present)


# -- CLEAR-MOT identity switches --------------------------------------------------------------
@dataclass(frozen=True)
class IdSwitchReport:
    """Counts over all sequences. ``*_per_100`` are per 100 GT track-frames."""

    id_switches: int
    fragmentations: int
    matches: int
    misses: int
    false_positives: int
    gt_track_frames: int

    @property
    def id_switches_per_100(self) -> float:
        return 100.0 * self.id_switches / max(1, self.gt_track_frames)

    @property
    def fragmentations_per_100(self) -> float:
        return 100.0 * self.fragmentations / max(1, self.gt_track_frames)

    @property
    def mota(self) -> float:
        """1 - (misses + false positives + ID switches) / GT track-frames (CLEAR-MOT)."""
        errors = self.misses + self.false_positives + self.id_switches
        return 1.0 - errors / max(1, self.gt_track_frames)


@dataclass
class _TrackState:
    last_pred: int | None = None
    tracked: bool = False  # matched in the last frame it was visible


class IdSwitches:
    """CLEAR-MOT ID switches and fragmentations over sequences of panoptic frames."""

    def __init__(self, taxonomy: Taxonomy, min_iou: float = 0.5) -> None:
        if not 0.5 <= float(min_iou) < 1.0:  # below 0.5 a segment could match two (last wins)
            raise ValueError(f"min_iou must be in [0.5, 1) for unique matches, got {min_iou!r}")
        self.label_divisor = int(taxonomy.label_divisor)
        self.thing_ids = frozenset(taxonomy.thing_ids)
        self.min_iou = float(min_iou)
        self._tracks: dict[tuple[object, int], _TrackState] = {}
        self._n = Counter()

    def _segments(self, pan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Thing segment ids (non-crowd: instance > 0) and their pixel areas."""
        ids, areas = np.unique(pan[pan >= 0], return_counts=True)
        cls = ids // self.label_divisor
        keep = np.isin(cls, list(self.thing_ids)) & (ids % self.label_divisor > 0)
        return ids[keep], areas[keep]

    def update(self, gt_panoptic: np.ndarray, pred_panoptic: np.ndarray, sequence_id=0) -> None:
        """Add one frame of sequence ``sequence_id`` (frames of a sequence in order)."""
        gt = np.asarray(gt_panoptic).astype(np.int64, copy=False)
        pr = np.asarray(pred_panoptic).astype(np.int64, copy=False)
        if gt.shape != pr.shape:
            raise ValueError(f"ground truth is {gt.shape} but prediction is {pr.shape}")
        g_ids, g_area = self._segments(gt)
        p_ids, p_area = self._segments(pr)
        both = (gt >= 0) & (pr >= 0)
        pairs, inter = np.unique((gt[both] << 32) | pr[both], return_counts=True)
        g_area_of = dict(zip(g_ids.tolist(), g_area.tolist()))
        p_area_of = dict(zip(p_ids.tolist(), p_area.tolist()))
        match: dict[int, int] = {}
        for key, tp in zip(pairs.tolist(), inter.tolist()):
            g, p = key >> 32, key & 0xFFFFFFFF
            if g not in g_area_of or p not in p_area_of:
                continue
            if g // self.label_divisor != p // self.label_divisor:
                continue
            if tp / (g_area_of[g] + p_area_of[p] - tp) > self.min_iou:
                match[g] = p
        self._n["gt_track_frames"] += len(g_ids)
        self._n["matches"] += len(match)
        self._n["misses"] += len(g_ids) - len(match)
        self._n["false_positives"] += len(p_ids) - len(match)
        for g in g_ids.tolist():
            st = self._tracks.setdefault((sequence_id, g), _TrackState())
            p = match.get(g)
            if p is None:
                st.tracked = False
                continue
            if st.last_pred is not None:
                if p != st.last_pred:
                    self._n["id_switches"] += 1
                if not st.tracked:
                    self._n["fragmentations"] += 1
            st.last_pred, st.tracked = p, True

    def compute(self) -> IdSwitchReport:
        n = self._n
        return IdSwitchReport(
            id_switches=n["id_switches"],
            fragmentations=n["fragmentations"],
            matches=n["matches"],
            misses=n["misses"],
            false_positives=n["false_positives"],
            gt_track_frames=n["gt_track_frames"],
        )


def evaluate_sequences(
    taxonomy: Taxonomy, sequences: Iterable[tuple[object, Iterable[tuple[np.ndarray, np.ndarray]]]]
) -> tuple[STQReport, IdSwitchReport]:
    """``sequences``: ``(sequence_id, frames)`` with frames ``(gt_panoptic, pred_panoptic)`` in
    order. Returns both reports."""
    stq = SegmentationTrackingQuality(taxonomy)
    ids = IdSwitches(taxonomy)
    for seq_id, frames in sequences:
        for gt, pred in frames:
            stq.update(gt, pred, seq_id)
            ids.update(gt, pred, seq_id)
    return stq.compute(), ids.compute()


def oracle_ids(
    gt_panoptic: np.ndarray, pred_panoptic: np.ndarray, taxonomy: Taxonomy
) -> np.ndarray:
    """The prediction with each thing segment's id replaced by the GT track id it overlaps most
    (one segment per GT track per frame, largest overlap first; the class stays the prediction's);
    segments left over get ids from the top of the range down (label_divisor - 1, - 2, ... in
    every frame, so in practice never a GT track id). The AQ of this is what a perfect tracker could
    reach with these segments: the ceiling set by segmentation, which tells segmentation errors
    from association errors."""
    div = int(taxonomy.label_divisor)
    gt = np.asarray(gt_panoptic).astype(np.int64)
    pr = np.asarray(pred_panoptic).astype(np.int64)
    thing = np.zeros(max(c.id for c in taxonomy.classes) + 2, bool)
    thing[list(taxonomy.thing_ids)] = True
    p_thing = (pr >= 0) & thing[np.where(pr >= 0, pr // div, -1)]
    g_thing = (gt >= 0) & thing[np.where(gt >= 0, gt // div, -1)] & (gt % div > 0)
    both = p_thing & g_thing
    # keyed by the whole GT value: person 1 and car 1 are two GT tracks
    pairs, inter = np.unique((pr[both] << 32) | gt[both], return_counts=True)
    out = pr.copy()
    used_p: set[int] = set()
    used_g: set[int] = set()
    for k in np.argsort(-inter, kind="stable"):
        p, g = int(pairs[k]) >> 32, int(pairs[k]) & 0xFFFFFFFF
        if p in used_p or g in used_g:
            continue
        used_p.add(p)
        used_g.add(g)
        out[pr == p] = (p // div) * div + g % div
    fresh = div - 1
    for p in np.unique(pr[p_thing]).tolist():
        if p not in used_p:
            out[pr == p] = (p // div) * div + fresh
            fresh -= 1
    return out
