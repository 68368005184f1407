"""Full-batch gradient descent on a finite network, measuring how far its NTK moves ("lazy training").

The loss is that of kernel-math.md §4 and of the kernel-flow solver: L = (1/(2N))·Σᵢ‖f(xᵢ) − yᵢ‖²
("points", Jacot et al. 2018) or 1/(2N·k) ("entries", neural-tangents), so that step t of gradient
descent at learning rate η corresponds to time t of :class:`ntkdsl.flow.KernelFlow` at the same η.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..layers.arrays import to_numpy
from ..layers.branching import walk


@dataclass
class TrainRecord:
    """What :func:`train` measured.

    Attributes:
        steps: the recorded step indices, (R,): 0, every ``record_every`` steps, and the last.
        loss: the loss before each step and after the last, (steps + 1,); shorter when training
            diverged (it stops at the first non-finite loss, with a warning).
        train_outputs: f on the training inputs at the recorded steps, (R, N, k).
        probe_outputs: f on the probe inputs at the recorded steps, (R, P, k), or None.
        ntk_drift: ‖Θ_t − Θ_0‖_F / ‖Θ_0‖_F on the training inputs (Θ the output-averaged empirical
            NTK, (N, N)) at the recorded steps, (R,).
        learning_rate: η.
        loss_normalization: "points" or "entries".
    """

    steps: np.ndarray
    loss: np.ndarray
    train_outputs: np.ndarray
    probe_outputs: Optional[np.ndarray]
    ntk_drift: np.ndarray
    learning_rate: float
    loss_normalization: str


def _targets(y, n: int, k: int) -> np.ndarray:
    a = np.asarray(y, dtype=np.float64)
    if a.shape[:1] != (n,) or a.size != n * k:
        raise ValueError(f"y has shape {a.shape}; the network has {k} output(s) for {n} inputs: need ({n}, {k})"
                         + (f" or ({n},)" if k == 1 else ""))
    if not np.all(np.isfinite(a)):
        raise ValueError("y holds NaN or infinite values")
    return a.reshape(n, k)


def _check_options(learning_rate, steps, record_every, loss_normalization) -> int:
    if loss_normalization not in ("points", "entries"):
        raise ValueError(f"loss_normalization must be 'points' or 'entries', not {loss_normalization!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, not {learning_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer ≥ 0, not {steps!r}")
    if record_every is None:
        return max(1, int(steps) // 10)
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise ValueError(f"record_every must be an integer ≥ 1, not {record_every!r}")
    return int(record_every)


def train(fnet, x, y, learning_rate: float = 1.0, steps: int = 100, probe=None,
          record_every: Optional[int] = None, loss_normalization: str = "points", mask=None,
          probe_mask=None) -> TrainRecord:
    """Train ``fnet`` in place by full-batch gradient descent on the squared loss.

    Args:
        fnet: the :class:`~ntkdsl.sampler.FiniteNetwork`; its ``params`` are updated in place.
        x: training inputs, (N, *input_shape).
        y: targets, (N, k) (or (N,) for one output).
        learning_rate: η > 0.
        steps: the number of gradient steps.
        probe: inputs whose outputs are recorded, or None.
        record_every: record outputs and the NTK drift every this many steps (and at the last);
            None: about ten times over the run (every max(1, steps // 10) steps).
        loss_normalization: "points" (1/(2N)) or "entries" (1/(2N·k)).
        mask, probe_mask: position masks of ``x`` and ``probe``, booleans (N, *S), True = masked (as
            ``fnet.apply``; :mod:`ntkdsl.masks`); None: nothing masked. The forward and backward passes of
            every step are the masked network's (masked positions zeroed, their cotangents 0).

    Returns:
        A :class:`TrainRecord`.

    Raises:
        ValueError: shapes that do not fit the network (masks included), or an invalid option.
        StructureSpecError: masks for a network with a layer that cannot take them (located).
    """
    every = _check_options(learning_rate, steps, record_every, loss_normalization)
    x = fnet._inputs(x)
    n, k = x.shape[0], fnet.output_width
    y = fnet.xp.asarray(_targets(to_numpy(y), n, k))
    keep = fnet._keep(mask, x, "mask", "x")
    probe = None if probe is None else fnet._inputs(probe, "probe")
    if probe is None and probe_mask is not None:
        raise ValueError("probe_mask goes with probe (the masks of its points)")
    normaliser = n * (k if loss_normalization == "entries" else 1)
    norm = fnet.xp.linalg.norm

    theta0 = fnet.ntk(x, mask1=mask)
    scale = float(norm(theta0))
    loss = np.empty(steps + 1)
    recorded, train_out, probe_out, drift = [], [], [], []
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported once, below
        for t in range(steps + 1):
            out, caches = fnet._forward(x, keep=keep)
            f = out.reshape(n, k)
            residual = f - y
            loss[t] = float(0.5 * (residual**2).sum() / normaliser)
            diverged = not np.isfinite(loss[t])
            if diverged:
                warnings.warn(f"gradient descent diverged at step {t}: the learning rate {learning_rate} is probably "
                              f"above the stable limit 2N/λ_max(Θ) (kernel-math.md §4); stopped there",
                              RuntimeWarning, stacklevel=3)
                loss = loss[:t + 1]
            if t % every == 0 or t == steps or diverged:
                recorded.append(t)
                train_out.append(to_numpy(f))
                if probe is not None:
                    probe_out.append(to_numpy(fnet.apply(probe, mask=probe_mask)))
                moved = t > 0 and scale > 0  # at step 0 the NTK is theta0 itself: no second evaluation
                drift.append(float(norm(fnet.ntk(x, mask1=mask) - theta0)) / scale if moved else 0.0)
            if t == steps or diverged:
                break
            g = (residual / normaliser).reshape((n, 1) + out.shape[1:])  # ∂L/∂f: one cotangent per input (m = 1)
            # one backward pass through every layer (inside branches too); updates wait until it
            # is over, since each layer's pull-back reads the parameters before the step
            steps_ = [(p, layer.param_grads(p, cache, gl))
                      for layer, p, cache, gl in walk(fnet.ir.layers, fnet.params, caches, g, need_input=False)]
            for p, grads in steps_:
                for name, d in grads.items():
                    p[name] -= learning_rate * d
    return TrainRecord(
        steps=np.array(recorded),
        loss=loss,
        train_outputs=np.stack(train_out),
        probe_outputs=np.stack(probe_out) if probe is not None else None,
        ntk_drift=np.array(drift),
        learning_rate=float(learning_rate),
        loss_normalization=loss_normalization,
    )
