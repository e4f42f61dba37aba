"""Executors of the unit of work: ``(pass's configuration set, chunk) → counts``.

The driver (:meth:`Executor.run_pass`) reads the data in chunks, skips those a checkpoint already
holds, hands the others to the executor's workers and merges their counts *in chunk order*, so
that the numbers do not depend on which worker ran what, or when:

* ``local``: one engine in this process (its ONNX Runtime sessions use the threads);
* ``ray``: one engine per Ray actor, built once in the actor from the model shipped once through
  the object store (sessions are never shipped); chunks travel by reference through the object
  store; one GPU per actor where the cluster has GPUs. Ray schedules (``ActorPool``) and retries
  a unit whose actor died (the actor restarts and rebuilds its engine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import BadFlagError, DataError, ModelError
from sdaudit.runtime.counts import Configs, HistSpec, PassResult, UnitResult, Work, unique_rows

if TYPE_CHECKING:
    from sdaudit.analysis.configs import MomentSpec
    from sdaudit.data.base import Dataset
    from sdaudit.model.layers import LayerInfo
    from sdaudit.model.load import LoadedModel
    from sdaudit.runtime.checkpoint import Checkpoint
    from sdaudit.runtime.engine import Engine

EXECUTORS = ("local", "ray")
Progress = Callable[[str, int, int], None]
Units = Iterator[tuple[int, np.ndarray, np.ndarray]]
Done = Callable[[UnitResult], None]
# observe(out, means, y, logp) on every chunk of a statistics pass
Observer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class Execution:
    """How an audit's units of work run: the executor, and where finished units are kept."""

    executor: str = "local"  # local | ray
    ray_address: str | None = None  # ray: a running cluster (None: start a local Ray)
    workers: int | None = None  # ray: actors (None: one per GPU, else one per CPU)
    checkpoint: str | None = None  # a folder of finished units: a rerun resumes


@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to build its engine: the model, its layers and the engine options."""

    loaded: LoadedModel
    layers: tuple[LayerInfo, ...]
    options: dict[str, Any] = field(default_factory=dict)  # Engine keyword arguments

    def build(self) -> Engine:
        from sdaudit.runtime.engine import Engine

        return Engine(self.loaded, list(self.layers), **self.options)


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker's engine says about itself (the report's model and runtime parts)."""

    output: str
    cut: tuple[str, ...]
    chunk_size: int
    runtime: dict[str, Any]
    notes: tuple[str, ...]
    fp16_changed: float | None
    metric: Any  # the engine's analysis.metrics.Metric, set up on its first chunk

    @classmethod
    def of(cls, engine: Engine) -> WorkerInfo:
        return cls(engine.output, tuple(engine.cut), engine.chunk_size,
                   engine.runtime.to_dict(), tuple(engine.notes), engine.fp16_changed,
                   engine.metric)


class Executor:
    """The driver of the passes; subclasses run the units (``_map``) and describe the workers."""

    name = "local"

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint | None = None) -> None:
        self.spec = spec
        self.checkpoint = checkpoint
        self.workers = 1
        self.units_resumed = 0
        self.units_run = 0
        self.pruned_configs = 0  # configurations pruned on every chunk, over all passes
        self.probabilities: bool | None = None  # from the first chunk's unit
        self.num_classes: int | None = None
        self.positions = 1  # the metric's items per sample, as the units computed them
        self._pass_id = 0
        self._info: WorkerInfo | None = None

    # -- what subclasses provide ---------------------------------------------------------------
    def _map(self, work: Work, units: Units, done: Done, step: Callable[[int], None]) -> None:
        raise NotImplementedError

    def _planned_rows(self, pass_id: int) -> list[tuple[int, ...]]:
        """Per worker that ran units of pass ``pass_id``: its configurations pruned throughout."""
        raise NotImplementedError

    def _worker_info(self) -> list[WorkerInfo]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers."""

    # -- the driver ----------------------------------------------------------------------------
    @property
    def info(self) -> WorkerInfo:
        """The first worker's view, with every worker's notes (in order, once each)."""
        infos = self._worker_info()
        notes = tuple(dict.fromkeys(n for i in infos for n in i.notes))
        first = infos[0]
        runtime = {**first.runtime, "pruned_configurations": self.pruned_configs}
        return WorkerInfo(first.output, first.cut, first.chunk_size, runtime, notes,
                          first.fp16_changed, first.metric)

    @property
    def output(self) -> str:
        return self.info.output

    @property
    def offsets(self) -> np.ndarray:
        """[L + 1] where each selected layer's units start (analysis.configs.unit_offsets)."""
        from sdaudit.analysis.configs import unit_offsets

        return unit_offsets(list(self.spec.layers))

    @property
    def metric(self) -> Any:
        """What accuracy means for the audited output (analysis.metrics), as the first worker
        set it up."""
        return self.info.metric

    @property
    def chunk_size(self) -> int:
        if self._info is None:
            self._info = self._worker_info()[0]
        return self._info.chunk_size

    def _rates(self, unit: UnitResult, expand: np.ndarray | None) -> dict[str, Any]:
        """A unit's rates as the estimate reads them: per sample, spread over the workers; each
        planned configuration's share (twins share their run)."""
        n, w = max(unit.samples, 1), self.workers
        rate: dict[str, Any] = {k: v / w for k, v in unit.rates.items()
                                if k.endswith("_per_sample")}
        if expand is not None and "row_s" in unit.rates:
            row_s = np.asarray(unit.rates["row_s"], dtype=np.float64)
            twins = np.bincount(expand, minlength=len(row_s))
            rate["row_s_per_sample"] = row_s[expand] / twins[expand] / n / w
            rate["noise_row_s_per_sample"] = np.asarray(
                unit.rates["noise_row_s"], dtype=np.float64) / n / w
            rate["samples"] = unit.samples
        return rate

    def run_pass(self, data: Dataset, *, stats: bool = False, hist: HistSpec | None = None,
                 configs: Configs | None = None, unit_mean: np.ndarray | None = None,
                 progress: Progress | None = None, phase: str = "pass",
                 calibrated: Callable[[dict[str, Any]], None] | None = None,
                 observe: Observer | None = None, moments: MomentSpec | None = None,
                 noise_moments: MomentSpec | None = None) -> PassResult:
        """One pass over the data: every chunk under one configuration set, merged in order.

        ``observe(out, means, y, logp)``: called on every chunk of a statistics pass, in chunk
        order, with the unperturbed output, the units' spatial means [n, U], the labels (or
        predictions) and the log-probabilities (closed-form importance reads them).
        ``moments``/``noise_moments``: curves of the mask/noise configurations whose per-image
        moments to keep (runtime.moments: what the intervals' image variance needs)."""
        self._pass_id += 1
        expand: np.ndarray | None = None
        if configs is not None:
            # Identical masks (every draw's fraction 0, say) give identical results: run each once.
            unique, expand = unique_rows(configs.masks)
            configs = Configs(unique, configs.noise_sd, configs.noise_draw)
        from sdaudit.runtime.moments import remap

        work = Work(self._pass_id, data.num_samples, stats, hist, configs, unit_mean,
                    None if moments is None or expand is None else remap(moments, expand),
                    noise_moments, observe=observe is not None and (stats or hist is not None))
        total = data.num_samples * work.rows_per_sample
        ckpt = self.checkpoint.pass_store(work) if self.checkpoint is not None else None
        waiting: dict[int, UnitResult] = {}
        chunk_digests: dict[int, str] = {}
        state = {"next": 0, "finished": 0, "rows": 0, "stepped": 0}
        first_unit: list[UnitResult] = []
        merged = [PassResult()]

        def report() -> None:
            if progress:
                progress(phase, min(state["rows"] + state["stepped"], total), total)

        def step(rows: int) -> None:  # within a unit (the local executor)
            state["stepped"] += rows
            report()

        def done(unit: UnitResult) -> None:
            if unit.resumed:
                self.units_resumed += 1
            else:
                self.units_run += 1
                if ckpt is not None:
                    ckpt.save(unit, chunk_digests.pop(unit.index))
            if self.probabilities is None or unit.index == 0:
                self.probabilities, self.num_classes = unit.probabilities, unit.num_classes
                self.positions = unit.positions  # items per sample, also of resumed units
            waiting[unit.index] = unit
            while state["next"] in waiting:  # merge in chunk order, whatever finished first
                ready = waiting.pop(state["next"])
                merged[0] = merged[0].merge(ready.counts)
                if observe is not None and ready.observed is not None:
                    observe(*ready.observed)
                state["next"] += 1
            state["finished"] += 1
            state["rows"] += unit.samples * work.rows_per_sample
            state["stepped"] = 0
            # Rates from the second unit: the first pays for the sessions' warm-up. A short
            # second chunk times per-run overheads more than per-sample work: then the first.
            if state["finished"] == 1:
                first_unit.append(unit)
            if calibrated is not None and state["finished"] == 2:
                timed = unit if 2 * unit.samples >= self.chunk_size else first_unit[0]
                calibrated(self._rates(timed, expand))
            elif calibrated is not None and state["finished"] == 1 and \
                    data.num_samples <= unit.samples:
                calibrated(self._rates(unit, expand))
            report()

        def units() -> Units:
            from sdaudit.runtime.checkpoint import digest

            for index, (x, labels) in enumerate(data.chunks(self.chunk_size)):
                if ckpt is not None:
                    chunk_digests[index] = digest(x, labels)
                    saved = ckpt.load(index, chunk_digests[index])
                    if saved is not None:
                        del chunk_digests[index]
                        done(saved)
                        continue
                yield index, x, labels

        self._map(work, units(), done, step)
        if waiting:  # pragma: no cover - every index up to the last one finished
            from sdaudit.errors import InternalError

            raise InternalError(f"units {sorted(waiting)} finished but not merged")
        result = merged[0]
        if result.stats is not None:
            if result.stats.n == 0:
                raise DataError(f"no usable samples in {data.path!r}{data.skipped.summary()}",
                                "check that the data holds readable samples")
            if result.stats.nonfinite:
                raise ModelError(
                    f"the model gives NaN or infinite outputs on {result.stats.nonfinite} of "
                    f"{result.stats.n} samples of the unablated run",
                    "check the preprocessing (--mean/--std, scale) and the model",
                )
        elif state["finished"] == 0:
            raise DataError(f"no usable samples in {data.path!r}{data.skipped.summary()}",
                            "check that the data holds readable samples")
        # Configurations that ran pruned on every chunk, on every worker that ran the pass.
        ran = self._planned_rows(self._pass_id)
        if ran:
            self.pruned_configs += len(set.intersection(*(set(r) for r in ran)))
        if result.mask_counts is not None and expand is not None:
            result.mask_counts = result.mask_counts.take(expand)
        return result


class LocalExecutor(Executor):
    """One engine in this process."""

    name = "local"

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint | None = None) -> None:
        super().__init__(spec, checkpoint)
        self.engine = spec.build()

    def _map(self, work: Work, units: Units, done: Done, step: Callable[[int], None]) -> None:
        for index, x, labels in units:
            done(self.engine.run_unit(index, x, labels, work, step))

    def _planned_rows(self, pass_id: int) -> list[tuple[int, ...]]:
        rows = self.engine.planned_rows(pass_id)
        return [] if rows is None else [rows]

    def _worker_info(self) -> list[WorkerInfo]:
        return [WorkerInfo.of(self.engine)]


class _RayWorker:
    """A Ray actor's state: its engine, built once from the spec (an error building it is
    raised by every call, so that the driver reports it as the one line it is)."""

    def __init__(self, spec: EngineSpec) -> None:
        from sdaudit.errors import SdauditError

        self.error: SdauditError | None = None
        try:
            self._engine: Engine | None = spec.build()
        except SdauditError as exc:
            self._engine, self.error = None, exc

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise self.error or RuntimeError("no engine")
        return self._engine

    def run(self, work: Work, index: int, chunk: tuple[np.ndarray, np.ndarray]) -> UnitResult:
        return self.engine.run_unit(index, chunk[0], chunk[1], work)

    def planned_rows(self, pass_id: int) -> tuple[int, ...] | None:
        return self.engine.planned_rows(pass_id)

    def info(self) -> WorkerInfo:
        return WorkerInfo.of(self.engine)

    def pid(self) -> int:
        import os

        return os.getpid()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BadFlagError("--executor ray needs Ray, which is not installed",
                           "pip install 'sdaudit[ray]'") from None
    return ray


class RayExecutor(Executor):
    """One engine per Ray actor; Ray schedules the units and retries those of a dead actor.

    ``address``: a running cluster (``ray start --head`` …); None starts a local Ray with this
    machine's CPUs and GPUs (or joins the one this process already started). ``workers``: the
    number of actors (default: one per GPU, else one per CPU), each with its share of the CPUs
    as ONNX Runtime threads.
    """

    name = "ray"

    def __init__(self, spec: EngineSpec, checkpoint: Checkpoint | None = None, *,
                 address: str | None = None, workers: int | None = None) -> None:
        super().__init__(spec, checkpoint)
        ray = _ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                from sdaudit.ort import usable_cores

                local = {} if address else {"num_cpus": usable_cores()}
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, **local)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BadFlagError(f"--ray-address {address!r}: cannot connect ({exc})",
                                   "give the address of a running Ray cluster, or none to "
                                   "start a local one") from None
            self._started = True
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        count = workers or (gpus or cpus)
        if gpus and count > gpus:
            raise BadFlagError(f"--workers {count}: the Ray cluster has {gpus} GPUs",
                               f"give --workers {gpus} or fewer (one GPU per worker)")
        per_cpu = max(1, cpus // count)
        options = dict(spec.options)
        options.setdefault("threads", None)
        if options["threads"] is None:
            options["threads"] = per_cpu
        self.workers = count
        actor = ray.remote(max_restarts=-1, max_task_retries=-1,
                           num_gpus=1 if gpus else 0, num_cpus=0 if gpus else per_cpu)(_RayWorker)
        # Kept referenced: a restarted actor rebuilds its engine from it.
        self._spec_ref = ray.put(EngineSpec(spec.loaded, spec.layers, options))
        self.actors = [actor.remote(self._spec_ref) for _ in range(count)]
        self._call(lambda a: a.info.remote())  # engines built (or their error raised) here

    def _call(self, method: Callable[[Any], Any]) -> list[Any]:
        """``method`` on every actor; a worker's SdauditError is raised here as itself."""
        return [self._get(method(a)) for a in self.actors]

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            from sdaudit.errors import SdauditError

            cause = getattr(exc, "cause", None)
            if isinstance(cause, SdauditError):
                raise cause from None
            raise

    def _map(self, work: Work, units: Units, done: Done, step: Callable[[int], None]) -> None:
        del step  # progress comes as units finish
        from ray.util import ActorPool

        ray = self._ray
        work_ref = ray.put(work)
        pool = ActorPool(self.actors)
        window = 2 * len(self.actors)  # chunks in flight: memory stays flat
        inflight = 0

        def collect() -> None:
            try:
                done(pool.get_next_unordered())
            except ray.exceptions.RayTaskError as exc:
                from sdaudit.errors import SdauditError

                cause = getattr(exc, "cause", None)
                if isinstance(cause, SdauditError):
                    raise cause from None
                raise

        for index, x, labels in units:
            chunk = ray.put((x, labels))
            pool.submit(lambda a, v: a.run.remote(work_ref, v[0], v[1]), (index, chunk))
            inflight += 1
            while inflight >= window:
                collect()
                inflight -= 1
        while pool.has_next():
            collect()

    def _planned_rows(self, pass_id: int) -> list[tuple[int, ...]]:
        rows = self._call(lambda a: a.planned_rows.remote(pass_id))
        return [r for r in rows if r is not None]

    def _worker_info(self) -> list[WorkerInfo]:
        return self._call(lambda a: a.info.remote())

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
        if self._started:
            self._ray.shutdown()


def make_executor(name: str, spec: EngineSpec, checkpoint: Checkpoint | None = None, *,
                  address: str | None = None, workers: int | None = None) -> Executor:
    """The executor ``name`` (``local`` or ``ray``) of the units of ``spec``'s engine."""
    if name not in EXECUTORS:
        raise BadFlagError(f"--executor {name}: unknown executor", "choose local or ray")
    if name == "local":
        if address is not None:
            raise BadFlagError("--ray-address needs --executor ray", "add --executor ray")
        if workers not in (None, 1):
            raise BadFlagError(f"--workers {workers} needs --executor ray",
                               "add --executor ray (local runs one engine, on --threads)")
        return LocalExecutor(spec, checkpoint)
    if workers is not None and workers < 1:
        raise BadFlagError(f"--workers {workers}: needs at least one", "give --workers 1 or more")
    return RayExecutor(spec, checkpoint, address=address, workers=workers)
