"""Fuzz suite over the public API and the CLI (issue 12, item 7).

Every case calls one public entry point with inputs drawn by hypothesis (shapes, dtypes, betas
including 0, negative, NaN, inf, 1e-300 and 1e39, counts 0, negative, huge, bools, strings,
NaN/inf energies, corrupted and crafted files) and classifies the outcome:

* ``error``: a clear library error (``ValueError``/``TypeError`` or a gibbsebm exception with
  a message, raised by gibbsebm itself; the CLI returning a non-zero exit code);
* ``ok``: a result that passes the entry point's sanity check (finite, right shape) or that
  came with a warning;
* failures: ``uncaught`` (any other exception, e.g. a ``RuntimeError`` from deep inside torch),
  ``silent`` (NaN/inf/wrong-shaped result without a warning) and ``hang`` (over the per-case
  timeout).

The default run is bounded (a few examples per entry point, derandomized, about a minute);
``-m fuzz`` runs the long profile. ``python tests/test_fuzz.py --report [--examples N]`` runs
every target and prints the table recorded in ``docs/reliability.md``.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import tempfile
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gibbsebm
import gibbsebm.interop.arviz  # noqa: F401 - heavy imports before any alarm can cut one
from gibbsebm.energies import Gaussian, Ising2D

# in the tests extra (pyproject.toml); skipped, not an import error, where it is missing
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# runs here are deliberately short: these tests are about files, resume and checks,
# not about the quality of the draws (tests/test_sampling_warnings.py covers that)
pytestmark = [
    pytest.mark.filterwarnings("ignore::gibbsebm.diagnostics.SamplingWarning"),
    pytest.mark.filterwarnings("ignore:num_warmup=.*:UserWarning"),
]

try:  # arviz imports scipy.signal lazily: an alarm inside that import poisons it
    import arviz  # noqa: F401
    import scipy.signal  # noqa: F401
except ImportError:  # pragma: no cover
    pass

torch.set_num_threads(1)

#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = float(os.environ.get("GIBBSEBM_FUZZ_TIMEOUT", "20"))
#: Examples per entry point: default run and ``-m fuzz``.
DEFAULT_EXAMPLES = 12
LONG_EXAMPLES = int(os.environ.get("GIBBSEBM_FUZZ_EXAMPLES", "60"))

FAILURES = ("uncaught", "silent", "hang")
COUNTS: dict[str, Counter] = defaultdict(Counter)
DETAILS: dict[str, list[str]] = defaultdict(list)


class _CliError(Exception):
    """A non-zero exit status of the CLI (classified as a clear error)."""


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` cannot swallow it."""


def _alarm(signum, frame):  # pragma: no cover - timing dependent
    raise _Hang()


_HERE = os.path.abspath(__file__)
_PKG = os.path.dirname(os.path.abspath(gibbsebm.__file__))


def _is_library_error(exc: BaseException) -> bool:
    """A clear error: a ValueError/TypeError or a gibbsebm exception, raised by gibbsebm."""
    if not str(exc):
        return False
    lib_type = type(exc).__module__.startswith("gibbsebm")
    if not (lib_type or isinstance(exc, (ValueError, TypeError))):
        return False
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if last is None:
        return True
    last = os.path.abspath(last)
    # raised by the library itself, or by the call (a wrong keyword) in this file
    return last.startswith(_PKG) or last == _HERE


def _finite(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return bool(torch.isfinite(x).all()) if x.dtype.is_floating_point else True
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x).all())
    if isinstance(x, (float, int)):
        return math.isfinite(x)
    return True


def run_case(target: str, fn: Callable[[], Any], check: Callable[[Any], bool]) -> str:
    """Run one case under the timeout, classify it and record the outcome."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    detail = ""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn()
            except _Hang:
                outcome, detail = "hang", f"over {CASE_TIMEOUT} s"
            except SystemExit as exc:
                # argparse's usage errors: the CLI's exit status, as a shell sees it
                ok = isinstance(exc.code, int)
                outcome = ("error" if exc.code else "ok") if ok else "uncaught"
                detail = "" if ok else f"SystemExit({exc.code!r})"
            except Exception as exc:  # noqa: BLE001 - classifying is the point
                if _is_library_error(exc):
                    outcome = "error"
                else:
                    outcome = "uncaught"
                    detail = "".join(traceback.format_exception(exc)[-3:])
            else:
                warned = any(
                    not issubclass(w.category, (DeprecationWarning, FutureWarning)) for w in caught
                )
                try:
                    good = check(result)
                except _CliError:
                    good = None
                except Exception as exc:  # noqa: BLE001
                    good, detail = False, f"check failed: {exc!r}"
                if good is None:
                    outcome = "error"
                elif good or warned:
                    outcome = "ok"
                else:
                    outcome = "silent"
                    detail = detail or f"result {result!r:.300}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    COUNTS[target][outcome] += 1
    if outcome in FAILURES:
        DETAILS[target].append(f"{outcome}: {detail}")
    return outcome


# --------------------------------------------------------------------------- input pools
BETAS = [1.0, 0.5, 2.0, 0.0, -1.0, math.nan, math.inf, 1e-300, 1e39, True, "a", None]
COUNTS_POOL = [0, -1, 1, 2, 3, 10**12, True, "3", 2.5, None]
DTYPES = [torch.float32, torch.float64]


def _log_energy(y):
    return 0.5 * (torch.log(y) ** 2).sum(-1)


def _energy(kind: str, dim: int, dtype: torch.dtype) -> tuple[Any, dict]:
    """(energy, Gibbs keyword arguments) of a named kind."""
    ev = {"event_shape": (dim,)}
    if kind == "gauss":
        return Gaussian(torch.zeros(dim, dtype=dtype)), {}
    if kind == "ising":
        return Ising2D(2), {}
    if kind == "scalar":
        return (lambda y: (y**2).sum()), ev
    if kind == "nan":
        return (lambda y: torch.full(y.shape[:1], math.nan, dtype=y.dtype)), ev
    if kind == "inf":
        return (lambda y: torch.full(y.shape[:1], math.inf, dtype=y.dtype)), ev
    if kind == "halfnan":
        return _log_energy, ev
    if kind == "offset":
        g = Gaussian(torch.zeros(dim, dtype=dtype))
        return (lambda y: g(y) + 1e30), ev
    if kind == "const":
        return (lambda y: torch.zeros(y.shape[:1], dtype=y.dtype)), ev
    if kind == "int":
        return (lambda y: (y**2).sum(-1).long()), ev
    raise AssertionError(kind)


# the valid kinds appear several times so that hypothesis reaches the inner code as often as
# the boundary checks
ENERGY_KINDS = (
    ["gauss"] * 4
    + ["ising"] * 2
    + ["scalar", "nan", "inf", "halfnan", "halfnan", "offset", "int", "const"]
)


def _pick(data, field: str, bad: str | None, good: list, bad_pool: list) -> Any:
    """A valid value, or (when ``field`` is the one corrupted field) one from ``bad_pool``."""
    pool = bad_pool if field == bad else good
    return data.draw(st.sampled_from(pool), label=field)


def _draw_dist(
    data, bad: str | None = None, discrete: bool | None = None, extra_kinds=("halfnan",)
) -> Any:
    """A distribution; at most the field named ``bad`` (energy, dim, dtype, beta) is odd."""
    if discrete is None:
        discrete = data.draw(st.sampled_from([False, False, True]), label="discrete")
    good_kinds = ["ising"] if discrete else ["gauss", *extra_kinds]
    bad_kinds = ["scalar", "nan", "inf", "offset", "int", "const", *extra_kinds]
    kind = _pick(data, "energy", bad, good_kinds, bad_kinds)
    dim = _pick(data, "dim", bad, [1, 2, 3], [1, 7])
    dtype = _pick(data, "dtype", bad, DTYPES, DTYPES)
    energy, kw = _energy(kind, dim, dtype)
    beta = _pick(data, "beta", bad, [1.0, 0.5, 2.0], BETAS)
    return gibbsebm.Gibbs(energy, beta, **kw)


# --------------------------------------------------------------------------- targets
def _check_gibbs(d) -> bool:
    return isinstance(d, gibbsebm.Gibbs) and bool((d.beta > 0).all()) and _finite(d.beta)


def target_gibbs(data) -> str:
    bad = data.draw(st.sampled_from([None, "energy", "beta", "beta", "dtype"]), label="bad")
    return run_case("Gibbs", lambda: _draw_dist(data, bad), _check_gibbs)


SAMPLE_OPTIONS = {
    "step_size": [1e-3, 0.1, 0.0, -1.0, math.nan, math.inf, 1e30, "x"],
    "num_steps": [1, 3, 0, -1, 10**12, True],
    "bogus_option": [1],
}


def _check_samples(s) -> bool:
    return isinstance(s, gibbsebm.Samples) and _finite(s.draws)


CONTINUOUS = ["ula", "mala", "hmc", "nuts", "pt"]
DISCRETE = ["gwg", "dmala", "metropolis", "block_gibbs", "pt"]


def target_sample(data) -> str:
    fields = [
        "energy",
        "beta",
        "dtype",
        "method",
        "num_chains",
        "num_samples",
        "num_warmup",
        "thin",
        "option",
    ]
    bad = data.draw(st.sampled_from([None, None, *fields]), label="bad")

    def call():
        discrete = data.draw(st.sampled_from([False, False, True]), label="discrete")
        d = _draw_dist(data, bad, discrete)
        ok_methods = DISCRETE if discrete else CONTINUOUS
        method = _pick(data, "method", bad, ok_methods, [None, "bogus", *DISCRETE, *CONTINUOUS])
        kw = dict(
            num_chains=_pick(data, "num_chains", bad, [1, 2, 3], COUNTS_POOL),
            num_samples=_pick(data, "num_samples", bad, [3, 5], [0, -1, 10**12, "5", True]),
            num_warmup=_pick(data, "num_warmup", bad, [0, 5, 10], [-1, 10**12, 2.5]),
            thin=_pick(data, "thin", bad, [1, 2], [0, -1, 10**15, None]),
        )
        if bad == "option":
            name = data.draw(st.sampled_from(sorted(SAMPLE_OPTIONS)), label="option")
            kw[name] = data.draw(st.sampled_from(SAMPLE_OPTIONS[name]), label="value")
        if method == "pt":
            kw["kernel"] = "gwg" if discrete else "mala"
        return gibbsebm.sample(d, method, seed=0, progress=False, **kw)

    return run_case("sample", call, _check_samples)


LOGZ_OPTIONS = {
    "num_chains": [16, 16, 16, 2, 0, 1, -1, 10**12, True],
    "num_steps": [2, 8, 8, 8, 0, -1, 10**12],
    "num_samples": [16, 0, -1],
    "bogus_option": [1],
}


def _check_logz(est) -> bool:
    if not _finite(est.log_z):
        return False
    return _finite(est.stderr) or not est.trusted


def target_log_partition(data) -> str:
    from gibbsebm.partition.api import METHODS

    bad = data.draw(st.sampled_from([None, None, "energy", "beta", "dtype", "method", "option"]))

    def call():
        discrete = data.draw(st.sampled_from([False, False, True]), label="discrete")
        d = _draw_dist(data, bad, discrete)  # NaN on part of the space included
        method = _pick(
            data, "method", bad, ["ais", "bdmc", "importance", "exact"], [*METHODS, "bogus"]
        )
        kw = {"num_chains": 16} if method in ("ais", "bdmc") else {}
        if method == "ais":
            kw["num_steps"] = 8
        if bad == "option":
            name = data.draw(st.sampled_from(sorted(LOGZ_OPTIONS)), label="option")
            kw[name] = data.draw(st.sampled_from(LOGZ_OPTIONS[name]), label="value")
        return gibbsebm.log_partition(d, method=method, seed=0, progress=False, **kw)

    return run_case("log_partition", call, _check_logz)


def target_free_energy(data) -> str:
    bad = data.draw(st.sampled_from([None, None, "energy", "y", "beta", "latent"]), label="bad")

    def call():
        dim = data.draw(st.integers(1, 3), label="dim")
        dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
        kind = _pick(data, "energy", bad, ["zy"], ["nan", "inf", "scalar", "y only"])
        energies = {
            "zy": lambda y, z: 0.5 * ((y - z) ** 2).sum(-1),
            "nan": lambda y, z: torch.full(y.shape[:1], math.nan, dtype=y.dtype),
            "inf": lambda y, z: torch.full(y.shape[:1], math.inf, dtype=y.dtype),
            "scalar": lambda y, z: ((y - z) ** 2).sum(),
            "y only": lambda y: (y**2).sum(-1),
        }
        n = data.draw(st.sampled_from([1, 4, 0]), label="n")
        y = torch.randn(n, dim, dtype=dtype, generator=torch.Generator().manual_seed(0))
        if bad == "y" and n:
            y[0, 0] = data.draw(st.sampled_from([math.nan, math.inf, 1e30]), label="y value")
        beta = _pick(data, "beta", bad, [1.0, 0.5], BETAS)
        latent = _pick(
            data,
            "latent",
            bad,
            [torch.linspace(-1, 1, 5, dtype=dtype)[:, None].expand(5, dim).contiguous()],
            [None, torch.zeros(0, dim), "x", torch.full((3, dim), math.nan)],
        )
        return gibbsebm.free_energy(energies[kind], y, beta, latent=latent)

    # +inf is the right free energy of an energy that is +inf for every z (zero density)
    return run_case(
        "free_energy",
        call,
        lambda f: not bool((torch.isnan(f.value) | (f.value == -math.inf)).any()),
    )


def _energies(data, n_max: int = 30) -> tuple[Any, Any]:
    n = data.draw(st.sampled_from([0, 1, 5, n_max]), label="n")
    k = data.draw(st.sampled_from([1, 2, 3]), label="classes")
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, "numpy", "list"]))
    g = torch.Generator().manual_seed(1)
    e = torch.randn(n, k, generator=g, dtype=torch.float64)
    # labels mostly the lowest-energy class, so that a temperature can be fitted
    labels = torch.where(
        torch.rand(n, generator=g) < 0.7, e.argmin(-1), torch.randint(0, k, (n,), generator=g)
    )
    bad = data.draw(
        st.sampled_from(["", "", "", "", "nan", "inf", "label", "shape", "1e30"]), label="bad"
    )
    if bad == "nan" and n:
        e[0, 0] = math.nan
    elif bad == "inf" and n:
        e[0, 0] = math.inf
    elif bad == "1e30":
        e = e * 1e30
    elif bad == "label" and n:
        labels[0] = k + 3
    elif bad == "shape":
        labels = labels[:-1] if n else torch.zeros(2, dtype=torch.long)
    if dtype == "numpy":
        return e.numpy(), labels.numpy()
    if dtype == "list":
        return e.tolist(), labels.tolist()
    return e.to(dtype), labels


def target_fit_beta(data) -> str:
    from gibbsebm.calibration import fit_beta

    def call():
        e, y = _energies(data)
        kw = {}
        if data.draw(st.booleans(), label="max_iter"):
            kw["max_iter"] = data.draw(st.sampled_from(COUNTS_POOL), label="max_iter value")
        return fit_beta(e, y, **kw)

    return run_case("fit_beta", call, lambda f: _finite(f.beta) and f.beta > 0)


def target_ece(data) -> str:
    from gibbsebm.calibration import expected_calibration_error, probabilities

    def call():
        e, y = _energies(data)
        p = probabilities(e) if data.draw(st.booleans(), label="from energies") else e
        bad = data.draw(st.sampled_from([None, None, "n_bins", "n_bootstrap", "ci_level"]))
        return expected_calibration_error(
            p,
            y,
            n_bins=_pick(data, "n_bins", bad, [15, 3], [1, 0, -1, 10**9, True, "a"]),
            n_bootstrap=_pick(data, "n_bootstrap", bad, [20, 0], [-1, 10**9, True, 2.5]),
            ci_level=_pick(data, "ci_level", bad, [0.95], [0.0, 1.0, math.nan, "x"]),
        )

    return run_case("expected_calibration_error", call, lambda r: _finite(r.value))


def target_probabilities(data) -> str:
    from gibbsebm.calibration import probabilities

    def call():
        e, _ = _energies(data)
        beta = data.draw(st.sampled_from(BETAS), label="beta")
        return probabilities(e, beta)

    def check(p):
        t = torch.as_tensor(np.asarray(p)) if not isinstance(p, torch.Tensor) else p
        return _finite(t) and (t.numel() == 0 or bool(((t >= 0) & (t <= 1)).all()))

    return run_case("probabilities", call, check)


def _saved_samples(folder: Path) -> Path:
    path = folder / "ok.pt"
    if not path.exists():
        d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)))
        s = gibbsebm.sample(
            d, "mala", num_chains=2, num_samples=3, num_warmup=2, seed=0, progress=False
        )
        s.save(path)
    return path


class _Marker:
    """A crafted pickle: unpickling it writes a marker file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


def _crafted_file(data, folder: Path) -> tuple[Path, Path]:
    good = _saved_samples(folder)
    raw = good.read_bytes()
    marker = folder / "marker"
    marker.unlink(missing_ok=True)
    kind = data.draw(
        st.sampled_from(["flip", "truncate", "empty", "random", "pickle", "torch_pickle", "dir"]),
        label="file",
    )
    path = folder / f"case_{kind}.pt"
    if path.is_dir():
        path.rmdir()
    path.unlink(missing_ok=True)
    if kind == "flip":
        i = data.draw(st.integers(0, len(raw) - 1), label="byte")
        b = bytearray(raw)
        b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif kind == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(data.draw(st.binary(min_size=1, max_size=512), label="bytes"))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(_Marker(str(marker))))
    elif kind == "torch_pickle":
        torch.save({"x": _Marker(str(marker))}, path)
    else:
        path.mkdir()
    return path, marker


def target_samples_load(data, folder: Path) -> str:
    path, marker = _crafted_file(data, folder)

    def check(s):
        return not marker.exists() and isinstance(s, gibbsebm.Samples) and _finite(s.draws)

    out = run_case("Samples.load", lambda: gibbsebm.Samples.load(path), check)
    if marker.exists():  # code ran from a file: always a failure
        COUNTS["Samples.load"]["uncaught"] += 1
        DETAILS["Samples.load"].append(f"crafted pickle executed: {path.name}")
    return out


def target_checkpoint(data, folder: Path) -> str:
    path, marker = _crafted_file(data, folder)
    d = gibbsebm.Gibbs(Gaussian(torch.zeros(2)))

    def call():
        return gibbsebm.sample(
            d,
            "mala",
            num_chains=2,
            num_samples=3,
            num_warmup=2,
            seed=0,
            progress=False,
            checkpoint=path,
        )

    out = run_case("sample(checkpoint=)", call, _check_samples)
    if marker.exists():
        COUNTS["sample(checkpoint=)"]["uncaught"] += 1
        DETAILS["sample(checkpoint=)"].append(f"crafted pickle executed: {path.name}")
    return out


def target_cli(data, folder: Path) -> str:
    from gibbsebm.cli import main

    n = [0]

    def call():
        cmd = data.draw(st.sampled_from(["sample", "logz", "calibrate", "demo", "bogus"]))
        n[0] += 1
        out = folder / f"cli{COUNTS['cli'].total()}_{n[0]}"
        args = [cmd, "--output-dir", str(out)]
        if cmd in ("sample", "logz"):
            energy = data.draw(st.sampled_from(["gaussian", "ising", "bogus"]), label="energy")
            args += ["--energy", energy, "--no-progress", "--no-plots"]
            args += ["--param", "dim=2" if energy != "ising" else "L=2"]
            pools = {
                "--beta": ["1", "0", "-1", "nan", "inf", "1e-300", "1e39", "x"],
                "--dtype": ["float32", "float64", "int8"],
                "--seed": ["0", "-1", "x"],
            }
            if cmd == "sample":
                pools.update(
                    {
                        "--method": ["mala", "hmc", "nuts", "gwg", "metropolis", "bogus"],
                        "--num-chains": ["2", "0", "-1", "x", "1000000000000"],
                        "--num-samples": ["3", "0", "-3"],
                        "--num-warmup": ["3", "0", "-3"],
                        "--thin": ["1", "0", "1000000000000000"],
                    }
                )
                args += ["--num-chains", "2", "--num-samples", "3", "--num-warmup", "3"]
            else:
                pools.update(
                    {
                        "--method": ["exact", "ais", "bdmc", "importance", "bogus"],
                        "--option": ["num_chains=16", "num_steps=0", "num_chains=-1", "x"],
                        "--level": ["0.95", "0", "1", "nan"],
                    }
                )
                args += ["--option", "num_chains=16"]
            chosen = data.draw(st.lists(st.sampled_from(sorted(pools)), unique=True, max_size=3))
            for flag in chosen:
                args += [flag, data.draw(st.sampled_from(pools[flag]), label=flag)]
        elif cmd == "calibrate":
            e, y = _energies(data)
            ef, yf = folder / f"e{n[0]}.npy", folder / f"y{n[0]}.npy"
            np.save(ef, np.asarray(e, dtype=np.float64))
            np.save(yf, np.asarray(y))
            args += ["--energies", str(ef), "--labels", str(yf)]
            for flag, pool in (
                ("--n-bins", ["15", "0", "-1"]),
                ("--bootstrap", ["20", "0", "-5", "1000000000"]),
            ):
                if data.draw(st.booleans(), label=flag):
                    args += [flag, data.draw(st.sampled_from(pool), label=flag + " value")]
        elif cmd == "demo":
            args += data.draw(st.sampled_from([["--seed=x"], ["--bogus"], ["--seed=-1", "-h"]]))
        return main(args)

    def check(code):
        if not isinstance(code, int):
            return False
        if code:  # a non-zero status with its one line on stderr is a clear error
            raise _CliError()
        return True

    return run_case("cli", call, check)


TARGETS: dict[str, Callable] = {
    "Gibbs": target_gibbs,
    "sample": target_sample,
    "log_partition": target_log_partition,
    "free_energy": target_free_energy,
    "fit_beta": target_fit_beta,
    "expected_calibration_error": target_ece,
    "probabilities": target_probabilities,
    "Samples.load": target_samples_load,
    "sample(checkpoint=)": target_checkpoint,
    "cli": target_cli,
}
_NEEDS_FOLDER = {"Samples.load", "sample(checkpoint=)", "cli"}


def fuzz(name: str, max_examples: int, folder: Path, *, strict: bool = True) -> None:
    """Run one target ``max_examples`` times (derandomized); assert no failure if ``strict``."""
    target = TARGETS[name]

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=(hypothesis.Phase.explicit, hypothesis.Phase.generate),  # no shrinking: slow cases
    )
    @given(st.data())
    def inner(data):
        out = target(data, folder) if name in _NEEDS_FOLDER else target(data)
        if strict:
            assert out not in FAILURES, f"{name}: {out}\n" + "\n".join(DETAILS[name][-1:])

    inner()


#: Safe files (checksums, weights-only loading, ``gibbsebm.CorruptFileError``) are issue 12
#: item 1, built on another branch; until it is merged, the file targets are expected to fail.
_SAFE_FILES = hasattr(gibbsebm, "CorruptFileError")
_FILE_TARGETS = {"Samples.load", "sample(checkpoint=)"}


def _params(long: bool) -> list:
    marks = [pytest.mark.fuzz] if long else []
    out = []
    for name in TARGETS:
        m = list(marks)
        if name in _FILE_TARGETS and not _SAFE_FILES:
            m.append(pytest.mark.xfail(reason="safe files (issue 12 item 1) not merged yet"))
        out.append(pytest.param(name, marks=m, id=name))
    return out


@pytest.mark.parametrize("name", _params(False))
def test_fuzz(name, tmp_path):
    fuzz(name, DEFAULT_EXAMPLES, tmp_path)


@pytest.mark.parametrize("name", _params(True))
def test_fuzz_long(name, tmp_path):
    fuzz(name, LONG_EXAMPLES, tmp_path)


def report(examples: int) -> str:
    """Run every target (no shrinking, no stop on failure) and return a Markdown table."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in TARGETS:
            folder = Path(tmp) / name.replace("(", "").replace(")", "").replace("=", "")
            folder.mkdir()
            fuzz(name, examples, folder, strict=False)
    cols = ["error", "ok", "uncaught", "silent", "hang"]
    lines = [
        "| entry point | inputs | " + " | ".join(cols) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in cols) + " |",
    ]
    total = Counter()
    for name in TARGETS:
        c = COUNTS[name]
        total.update(c)
        lines.append(f"| `{name}` | {c.total()} | " + " | ".join(str(c[k]) for k in cols) + " |")
    lines.append(
        f"| **all** | **{total.total()}** | " + " | ".join(f"**{total[k]}**" for k in cols) + " |"
    )
    for name, ds in DETAILS.items():
        for d in ds[:5]:
            lines.append(f"\n<!-- {name}: {d.strip()[:400]} -->")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", action="store_true", help="run every target, print the table")
    ap.add_argument("--examples", type=int, default=LONG_EXAMPLES)
    ap.add_argument(
        "--update-docs",
        action="store_true",
        help="regenerate the docs' fuzz table instead (python scripts/regenerate_docs.py "
        "--only fuzz_table, which runs this report and writes docs/generated/fuzz_table.md)",
    )
    ns = ap.parse_args()
    if ns.update_docs:
        import subprocess
        import sys

        root = Path(__file__).resolve().parents[1]
        cmd = [sys.executable, str(root / "scripts" / "regenerate_docs.py"), "--only", "fuzz_table"]
        raise SystemExit(subprocess.call(cmd, cwd=root))
    if ns.report:
        warnings.simplefilter("ignore")
        table = report(ns.examples)
        print(table)
