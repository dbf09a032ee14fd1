"""hwnas from Python: latency models, search spaces, per-choice latency tables, ask/tell search.

The same library code as the ``hwnas`` command line, so the same numbers::

    import hwnas
    m = hwnas.LatencyModel.load("cpu-mbv3.model.json")     # from `hwnas fit`
    m.predict("mbv3", "r224-d44444-k...-e...")             # Prediction(ms, low_ms, high_ms)
    m.predict_batch("mbv3", archs)                         # numpy array of ms
    t = hwnas.LatencyTable.read("cpu-mbv3.csv")            # `hwnas profile`'s table
    space = hwnas.space("nb201")                           # or a space file
    lut = hwnas.lut(m, space)                              # expected latency for a loss
    search = hwnas.Search(space, models=[m], objectives=["accuracy", "latency"], seed=1)
    while not search.done():
        archs = search.ask()
        search.tell(archs, [train_and_eval(a) for a in archs])
    search.front()

Every error is a :class:`HwnasError` carrying the CLI's message.
"""

from __future__ import annotations

import json
from os import PathLike
from typing import Any, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _hwnas
from ._hwnas import HwnasError, Space

__all__ = [
    "HwnasError",
    "LatencyModel",
    "LatencyTable",
    "Lut",
    "Prediction",
    "Search",
    "Space",
    "lut",
    "space",
]

SpaceLike = Union[str, "PathLike[str]", Space]


def _spec(space: SpaceLike) -> str:
    return space.spec if isinstance(space, Space) else str(space)


def space(spec: SpaceLike) -> Space:
    """A built-in space (``"nb201"``, ``"mbv3"``) or a space file (``*.toml``)."""
    return spec if isinstance(spec, Space) else _hwnas.space(str(spec))


class Prediction(NamedTuple):
    """One architecture's predicted latency and its interval, ms."""

    ms: float
    low_ms: float
    high_ms: float


class LatencyModel:
    """A device's latency model, as ``hwnas fit`` writes it."""

    held_out_errors: Optional[np.ndarray] = None

    def __init__(self, native: _hwnas.LatencyModel):
        self._native = native

    @classmethod
    def load(cls, path: Union[str, "PathLike[str]"]) -> "LatencyModel":
        """Loads a ``*.model.json`` file."""
        return cls(_hwnas.LatencyModel.load(str(path)))

    @classmethod
    def from_table(cls, path: Union[str, "PathLike[str]"]) -> "LatencyModel":
        """A latency table as a model: the sum of its ops, uncalibrated (``predict --table``)."""
        return cls(_hwnas.LatencyModel.from_table(str(path)))

    @classmethod
    def roofline(cls, device: str = "device") -> "LatencyModel":
        """No measurement: each op from its FLOPs and bytes at nominal rates. The prior of a
        fit to timings when no other device's model is at hand (``fit --networks`` alone)."""
        return cls(_hwnas.LatencyModel.roofline(device))

    def fit_networks(
        self,
        space: SpaceLike,
        archs: Sequence[str],
        latencies_ms: Sequence[float],
        device: str = "device",
        precision: str = "fp32",
    ) -> "LatencyModel":
        """A model of the device that ran ``archs`` in ``latencies_ms`` (whole networks, timed
        by any means), this model its prior: ``hwnas fit --networks --prior``, the same fit.

        The result's ``held_out_errors`` is each timing's relative error when the others
        predict it (in the order given): a timing far off the rest may have been disturbed.
        """
        native, errors = self._native.fit_networks(
            _spec(space), list(archs), [float(v) for v in latencies_ms], device, precision
        )
        model = LatencyModel(native)
        model.held_out_errors = np.array(errors, dtype=np.float64)
        return model

    def suggest(self, space: SpaceLike, candidates: Iterable[str], k: int) -> list[str]:
        """The ``k`` of ``candidates`` whose timing would narrow this model's predictions of
        them most, leaving out the networks it was fitted on (``fit --suggest K
        --candidates``)."""
        return self._native.suggest(_spec(space), list(candidates), k)

    def save(self, path: Union[str, "PathLike[str]"]) -> None:
        """Writes the model file, as ``hwnas fit`` does."""
        self._native.save(str(path))

    @property
    def device(self) -> str:
        return self._native.device

    @property
    def path(self) -> str:
        return str(self._native.path)

    def predict(self, space: SpaceLike, arch: str) -> Prediction:
        """One architecture, as ``hwnas predict --arch`` predicts it (with the interval)."""
        return Prediction(*self._native.predict(_spec(space), arch))

    def predict_batch(self, space: SpaceLike, archs: Union[Iterable[str], np.ndarray]) -> np.ndarray:
        """Latencies in ms, as ``hwnas predict --archs`` gives them.

        ``archs`` is an iterable of encodings, or a 2-D integer array of genomes (one row per
        architecture, one column per gene, as ``Space.genes()`` lists them), the fast path.
        """
        spec = _spec(space)
        if isinstance(archs, np.ndarray) and archs.ndim == 2:
            if archs.size and (archs.min() < 0 or archs.max() > 255):
                raise HwnasError("genome values must be within 0..255")
            genomes = np.ascontiguousarray(archs, dtype=np.uint8)
            raw = self._native._predict_genomes(spec, genomes.tobytes())
        else:
            raw = self._native._predict_archs(spec, list(archs))
        return np.frombuffer(raw, dtype="<f8")

    def __repr__(self) -> str:
        return repr(self._native)


class LatencyTable:
    """A latency table (``hwnas profile``'s CSV), read and checked as the CLI reads it.

    ``meta`` holds the ``# name: value`` lines; ``rows`` one dict per op with the CSV's
    columns (``key``, ``kind``, shapes, ``flops``, ``median_us``, ``p10_us``, ``p90_us``, ...);
    ``column(name)`` one column as a NumPy array (missing values NaN).
    """

    def __init__(self, meta: dict, rows: list[dict]):
        self.meta = meta
        self.rows = rows
        self._by_key = {r["key"]: r for r in rows}

    @classmethod
    def read(cls, path: Union[str, "PathLike[str]"]) -> "LatencyTable":
        meta, rows = _hwnas.read_table(str(path))
        return cls(dict(meta), json.loads(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> dict:
        """The row of an op key."""
        return self._by_key[key]

    def keys(self) -> list[str]:
        return [r["key"] for r in self.rows]

    def column(self, name: str) -> np.ndarray:
        if self.rows and name not in self.rows[0]:
            raise HwnasError(f"no column `{name}`; the columns are {', '.join(self.rows[0])}")
        return np.array(
            [np.nan if r[name] is None else r[name] for r in self.rows], dtype=np.float64
        )


class Lut:
    """``hwnas lut export``'s table: the expected latency of a distribution over choices.

    ``expected_ms(probabilities)`` is a polynomial in the probabilities (one 1-D vector per
    decision, NumPy or PyTorch), so a training loop can add it to its loss and differentiate
    it; for a one-hot choice it equals the model's prediction of that architecture.
    """

    def __init__(self, data: dict):
        self.data = data
        self.space: str = data["space"]
        self.device: str = data["device"]
        self.resolution: int = data["resolution"]
        self.fixed_ms: float = data["fixed_ms"]
        self.decisions: list[dict] = data["decisions"]
        self._terms = []
        for term in data["terms"]:
            shape = [len(self.decisions[d]["choices"]) for d in term["decisions"]]
            table = np.asarray(term["latency_ms"], dtype=np.float64).reshape(shape)
            self._terms.append((term["decisions"], table))

    def expected_ms(self, probabilities: Sequence[Any]) -> Any:
        """Expected latency (ms) under one probability vector per decision."""
        if len(probabilities) != len(self.decisions):
            raise HwnasError(
                f"{len(probabilities)} probability vectors for {len(self.decisions)} decisions"
            )
        total: Any = self.fixed_ms
        for decisions, table in self._terms:
            first = probabilities[decisions[0]]
            # The table in the probabilities' own kind (a torch tensor on their device).
            x = first.new_tensor(table) if hasattr(first, "new_tensor") else table
            for d in reversed(decisions):
                x = x @ probabilities[d]
            total = total + x
        return total

    def one_hot(self, choices: Sequence[int]) -> list[np.ndarray]:
        """The probability vectors of one architecture (a choice index per decision)."""
        out = []
        for decision, c in zip(self.decisions, choices):
            v = np.zeros(len(decision["choices"]))
            v[c] = 1.0
            out.append(v)
        return out

    def latency_ms(self, choices: Sequence[int]) -> float:
        """The latency of one architecture given as a choice index per decision."""
        return float(self.expected_ms(self.one_hot(choices)))


def lut(model: LatencyModel, space: SpaceLike, resolution: int | None = None) -> Lut:
    """The per-choice table of ``model`` for ``space`` (``hwnas lut export``)."""
    return Lut(json.loads(_hwnas.lut_json(model._native, _spec(space), resolution)))


class Search:
    """A multi-objective search driven by ask/tell, set up as ``hwnas search`` is.

    Without ``accuracy`` every accuracy comes from :meth:`tell`; with an ``hwnas search
    --accuracy`` spec (``table:FILE.csv``, ``fit:...``, ``cmd:...``, ``proxy``) the search runs
    on its own at the first :meth:`ask`. With ``state``, every told accuracy is saved to that
    file before :meth:`tell` returns, and a ``Search`` made with the same settings and an
    existing state file goes on from it: the result is that of a search never stopped.
    ``"energy"`` in ``objectives`` and ``max_energy_mj`` need models fitted on tables profiled
    with ``--energy``; the front's members then carry ``energy_mj``.
    A ``Search`` (like a ``LatencyModel``) is used from the thread that made it.
    """

    def __init__(
        self,
        space: SpaceLike,
        models: Sequence[Union[LatencyModel, str, "PathLike[str]"]] = (),
        objectives: Union[str, Sequence[str]] = ("accuracy", "latency"),
        seed: int = 1,
        max_evaluations: int = 1000,
        population: int | None = None,
        strategy: str = "nsga2",
        accuracy: str | None = None,
        max_latency_ms: float | None = None,
        max_mparams: float | None = None,
        max_mflops: float | None = None,
        max_memory_mb: float | None = None,
        min_accuracy: float | None = None,
        local_search: bool = True,
        screening: bool = True,
        state: Union[str, "PathLike[str]", None] = None,
        max_energy_mj: float | None = None,
    ):
        natives = [(m if isinstance(m, LatencyModel) else LatencyModel.load(m))._native for m in models]
        if not isinstance(objectives, str):
            objectives = ",".join(objectives)
        self._native = _hwnas.Search(
            _spec(space),
            natives,
            objectives,
            seed,
            max_evaluations,
            population,
            strategy,
            accuracy,
            max_latency_ms,
            max_mparams,
            max_mflops,
            max_memory_mb,
            min_accuracy,
            local_search,
            screening,
            None if state is None else str(state),
            max_energy_mj,
        )

    def ask(self) -> list[str]:
        """The architectures to evaluate next (canonical encodings); empty when done."""
        return self._native.ask()

    def tell(self, archs: Sequence[str], accuracies: Sequence[float]) -> None:
        """The accuracies of the architectures the last :meth:`ask` gave, in any order."""
        self._native.tell(list(archs), [float(a) for a in accuracies])

    def done(self) -> bool:
        return self._native.done()

    def told(self) -> list[tuple[str, float]]:
        """Every ``(arch, accuracy)`` told so far, in order."""
        return self._native.told()

    def front(self) -> list[dict]:
        """The Pareto front as ``front.json`` lists it (``None`` until done)."""
        text = self._native._front_json()
        return None if text is None else json.loads(text)

    def save(self, out: Union[str, "PathLike[str]"]) -> None:
        """Writes front.csv, front.json, front.svg and history.csv into ``out``."""
        self._native.save(str(out))
