"""The runtime half of pruned suffixes (zero ablation; the graph half is rewrite.prune).

A configuration that zeroes many units runs faster as a suffix with those channels cut out of
the weights. Per pass, on its first chunk: plan which configurations pay for a pruned branch
(expected saving against build time), emit their branches, fuse them into sessions of several
configurations each; the first run of each fused session checks its first and last branch
against the masked suffix and its time against the masked runs it replaces. Whatever fails
leaves those configurations masked, with a note.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.runtime import suffix as stacking
from sdaudit.runtime.counts import SweepCounts

if TYPE_CHECKING:
    from sdaudit.analysis.metrics import Metric, Reference
    from sdaudit.model.layers import LayerInfo
    from sdaudit.runtime.suffix import SuffixRunner
    from sdaudit.runtime.variants import Level, Sessions, Variants

# A configuration runs pruned where its convolutions and products need at most this share of the
# masked suffix's multiply-adds; at most PRUNE_BYTES of pruned weights per pass, fused into
# sessions of at most PRUNE_SESSION configurations.
PRUNE_MAX_COST = 0.9
PRUNE_MIN_ABLATED = 0.05  # configurations ablating less of their layers' units are not tried
PRUNE_BYTES = 256 << 20
PRUNE_SESSION = 48
PRUNE_SESSION_BYTES = 64 << 20
# Planned only where the expected saving (the multiply-adds saved × the unperturbed suffix's
# time over the whole data × PRUNE_REALIZED, the share of the saving that shows up as time:
# 0.9 on the reference ResNet-20, 0.4 on PP-LCNet) is PRUNE_PAYBACK × the estimated build time
# (emission + session ≈ PRUNE_BUILD × the emission of one branch: about 4.7 on the ResNet-20,
# about 3 on PP-LCNet; emission timed on the first three branches).
PRUNE_REALIZED = 0.5
PRUNE_PAYBACK = 2.0
PRUNE_BUILD = 5.0
# Kept after the first chunk only where the fused run took at most this share of the masked
# runs it replaces (one masked run of its first configuration × its configurations; stacked
# masked runs cost somewhat less per configuration than that single run).
PRUNE_KEEP = 0.8
# The first chunk checks a fused session's first and last branch against the masked suffix.
PRUNE_RTOL = {"fp32": 1e-4, "fp16": 2e-2}


class _NotWorthItError(Exception):
    """Pruning would cost more to build than it saves (planning stops, nothing is pruned)."""


def _first_line(exc: BaseException) -> str:
    from sdaudit.errors import first_line

    return first_line(exc, 160)


@dataclass
class Fused:
    """Pruned suffixes of several configurations in one session (see rewrite.prune)."""

    level: Level
    session: Any
    rows: np.ndarray  # the configurations (mask rows) it runs, one output each
    outputs: list[str]
    checked: bool = False


class Pruning:
    """Pruned suffixes of one engine: the pruning pass per level, the plan of the pass now
    running, and how many configurations ran pruned.

    ``prune``: None prunes where it pays (expected saving against build time, then the first
    chunk's timing); True every zero-ablation configuration that can be; False never.
    """

    def __init__(self, variants: Variants, sessions: Sessions, suffix: SuffixRunner,
                 layers: list[LayerInfo], offsets: np.ndarray, notes: list[str], *,
                 ablation_value: str, prune: bool | None) -> None:
        self.variants = variants
        self.sessions = sessions
        self.suffix = suffix
        self.layers = layers
        self.offsets = offsets
        self.notes = notes
        self.enabled = prune is not False and ablation_value == "zero"
        self.always = prune is True
        self.pruners: dict[int, Any] = {}
        self.plan: list[Fused] | None = None  # planned per pass, on its first chunk

    def start_pass(self) -> None:
        self.plan = None

    def pruner(self, level: Level) -> Any:
        """The pruning pass over ``level``'s suffix (None where its graph cannot be analysed,
        e.g. channels not on axis 1: its configurations run masked)."""
        if level.first not in self.pruners:
            from sdaudit.rewrite.prune import NotPrunableError, Pruner

            pruner = None
            if all(layer.channel_axis == 1 for layer in self.layers[level.first:]):
                try:
                    pruner = Pruner(level.split.suffix, level.inst.mask_inputs, self.variants.output)
                except NotPrunableError:
                    pass
                except Exception as exc:  # an unusual graph: its configurations run masked
                    self.note(exc)
            self.pruners[level.first] = pruner
        return self.pruners[level.first]

    def note(self, exc: BaseException) -> None:
        note = f"pruned suffixes are off where they failed ({_first_line(exc)})"
        if note not in self.notes:
            self.notes.append(note)

    def make_plan(self, masks: np.ndarray, data_s: float) -> list[Fused]:
        """Fused pruned sessions for the configurations that pay for one (rows 1… of masks).

        ``data_s``: the unperturbed suffix's time over the whole data (the masked cost of one
        configuration), against which the saving is weighed. Whatever fails here leaves that
        level's configurations masked, with a note."""
        if not self.enabled:
            return []
        chosen: list[tuple[Level, list[int], list[float]]] = []
        for level, assigned in stacking.assign_levels(self.variants.levels, self.offsets, masks):
            lo = self.offsets[level.first]
            idx = assigned[(masks[assigned, lo:] == 0).mean(axis=1) >= PRUNE_MIN_ABLATED]
            pruner = self.pruner(level) if len(idx) else None
            if pruner is None:
                continue
            try:
                costs = [pruner.cost(self.level_masks(level, masks[row])) for row in idx]
            except Exception as exc:
                self.note(exc)
                continue
            keep = [i for i, c in enumerate(costs) if c <= PRUNE_MAX_COST or self.always]
            if keep:
                chosen.append((level, [int(idx[i]) for i in keep], [costs[i] for i in keep]))
        if not chosen:
            return []
        # A later level's suffix costs its share of the first level's (by multiply-adds).
        first = self.pruner(self.variants.levels[0])
        whole = first.full_macs if first is not None else 0.0
        saving = PRUNE_REALIZED * data_s * sum(
            (1.0 - c) * min(1.0, self.pruner(level).full_macs / whole if whole else 1.0)
            for level, _, cs in chosen for c in cs)
        count = sum(len(rows) for _, rows, _ in chosen)
        emitted: list[float] = []

        def pays() -> bool:
            """Build ≈ PRUNE_BUILD × the emission time, per branch (timed on the first few)."""
            if self.always or not emitted:
                return True
            return saving >= PRUNE_PAYBACK * PRUNE_BUILD * float(np.median(emitted)) * count

        plan: list[Fused] = []
        budget = PRUNE_BYTES
        for level, rows, _ in chosen:
            try:
                branches, kept = self._emit_branches(level, masks, rows, emitted, budget, pays)
            except _NotWorthItError:
                return []
            except Exception as exc:
                self.note(exc)
                continue
            if not pays():
                return []
            budget -= sum(b.nbytes for b in branches)
            try:
                plan += self._fuse_sessions(level, branches, kept)
            except Exception as exc:
                self.note(exc)
        return plan

    def _emit_branches(self, level: Level, masks: np.ndarray, rows: list[int],
                       emitted: list[float], budget: int,
                       pays: Callable[[], bool]) -> tuple[list[Any], list[int]]:
        """The pruned branches of ``rows`` (those that can be and fit ``budget``)."""
        from sdaudit.rewrite.prune import NotPrunableError

        pruner = self.pruner(level)
        branches, kept = [], []
        for row in rows:
            t0 = time.perf_counter()
            try:
                branch = pruner.branch(self.level_masks(level, masks[row]),
                                       f"{self.variants.output}#{row}")
            except NotPrunableError:
                continue
            emitted.append(time.perf_counter() - t0)
            if len(emitted) == 3 and not pays():
                raise _NotWorthItError
            if branch.nbytes > budget:
                continue
            budget -= branch.nbytes
            branches.append(branch)
            kept.append(row)
        return branches, kept

    def _fuse_sessions(self, level: Level, branches: list[Any], kept: list[int]) -> list[Fused]:
        """Sessions of at most PRUNE_SESSION configurations and PRUNE_SESSION_BYTES of weights
        (a larger branch alone): building one holds about four copies of its weights."""
        pruner = self.pruner(level)
        groups: list[list[int]] = []
        size = 0
        for i, branch in enumerate(branches):
            if not groups or len(groups[-1]) == PRUNE_SESSION \
                    or size + branch.nbytes > PRUNE_SESSION_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(i)
            size += branch.nbytes
        fused = []
        for group in groups:
            model = pruner.fuse([branches[i] for i in group])
            session = self.sessions.model_session(model, self.sessions.precision, arena=False)
            fused.append(Fused(level, session, np.asarray([kept[i] for i in group]),
                               [branches[i].output for i in group]))
            del model
            for i in group:  # the session holds its own copy now
                branches[i].inits.clear()
                branches[i].nodes.clear()
        return fused

    def level_masks(self, level: Level, row: np.ndarray) -> dict[str, np.ndarray]:
        """One configuration's masks by the mask inputs of ``level``'s suffix."""
        return {name: row[self.offsets[i]:self.offsets[i + 1]]
                for i, name in enumerate(level.inst.mask_inputs, start=level.first)}

    def run(self, masks: np.ndarray, unperturbed: dict[str, np.ndarray], counts: SweepCounts,
            n: int, y: np.ndarray, reference: Reference, metric: Metric) -> np.ndarray:
        """Run the planned fused sessions on one chunk; the rows they counted.

        A session's first run checks its first and last branch against the masked suffix;
        a mismatch, a failure or running out of memory turns pruning off: from then on every
        configuration runs masked (rows already counted from verified sessions stay)."""
        done: list[np.ndarray] = []
        rows_in = self.variants.fixed_batch or n
        for fused in list(self.plan or []):
            feeds = {name: unperturbed[name] for name in fused.level.split.cut}
            t0 = time.perf_counter()
            try:
                outs = fused.session.run(fused.outputs, feeds)
                fused_s = time.perf_counter() - t0
            except Exception as exc:
                self.notes.append(
                    ("ran out of memory running pruned suffixes" if stacking.out_of_memory(exc) else
                     f"a pruned suffix failed to run ({_first_line(exc)})")
                    + "; from then on every configuration ran masked")
                self.plan = []
                break
            if not fused.checked:
                level = fused.level
                masked_s = 0.0
                for k in sorted({0, len(fused.rows) - 1}):
                    row = int(fused.rows[k])
                    t0 = time.perf_counter()
                    ref = self.sessions.level(level).run([self.variants.output], {
                        **{name: unperturbed[name] for name in level.split.cut},
                        **self.suffix.controls(level.inst, masks[row:row + 1], rows_in,
                                               first=level.first)})[0]
                    masked_s = masked_s or time.perf_counter() - t0
                    scale = max(1.0, float(np.abs(ref).max()))
                    if not np.allclose(outs[k], ref, rtol=0,
                                       atol=PRUNE_RTOL[self.sessions.precision] * scale):
                        self.notes.append(
                            "a pruned suffix disagreed with the masked one "
                            f"(max difference {float(np.abs(outs[k] - ref).max()):.3g}); from "
                            "then on every configuration ran masked")
                        self.enabled = False
                        self.plan = []
                        return np.concatenate(done) if done else np.zeros(0, np.int64)
                fused.checked = True
                if not self.always and fused_s > PRUNE_KEEP * masked_s * len(fused.rows):
                    # Not faster here: counted this once, masked from the next chunk on.
                    self.plan = [f for f in self.plan or [] if f is not fused]
            out = np.concatenate([o[:n] for o in outs])  # [configs · n, ...]
            metric.accumulate(counts, fused.rows, out, len(fused.rows), y, reference)
            done.append(fused.rows)
        return np.concatenate(done) if done else np.zeros(0, np.int64)

