"""The ``ntkdsl`` command line: compile, eval, check.

User mistakes (a bad spec, a missing file, inputs of the wrong shape) print a one-screen message
on stderr and exit with status 2; no Python traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import List, Optional

import numpy as np

from .. import progress
from .._version import __version__
from .._files import protecting, write_npz, write_text
from ..api import CompiledNetwork
from ..codegen.spatial_output import output_pixels
from .inputs import load_graphs, load_masks, load_network, load_points, read_spec, require_gpu
from ..errors import SpecError, UserError
from . import flow as flow_cli
from . import sample as sampler_cli
from ..frontend import parse
from ..lowering import lower, lower_all, select_network

USER_ERROR = 2
INPUTS = ("spec", "x1", "x2", "graph1", "graph2", "mask1", "mask2", "train", "test")  # arguments of every command that name input files


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    progress.set_default(getattr(args, "progress", None))
    try:
        with protecting(getattr(args, name, None) for name in INPUTS):  # no output replaces an input
            return args.run(args)
    except SpecError as exc:
        print(exc.format(), file=sys.stderr)
        return USER_ERROR
    except UserError as exc:
        print(f"ntkdsl: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except FloatingPointError as exc:  # a numerical dual refused at the inputs' variances (arraycode/support.py)
        print(f"ntkdsl: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `ntkdsl sample ... | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit-time flush does not fail again
        return 141
    finally:
        progress.set_default(None)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ntkdsl", description="Compile .ntk network specs into NNGP/NTK kernel evaluators.")
    p.add_argument("--version", action="version", version=f"ntkdsl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="what to do (ntkdsl COMMAND -h for its options)")

    c = sub.add_parser("compile", help="emit the kernel evaluator (Python), the recursion (LaTeX) or the canonical IR")
    c.add_argument("spec", help="a .ntk file")
    c.add_argument("--network", help="which network, when the file defines several")
    c.add_argument("--emit", choices=("python", "latex", "ir"), default="python",
                   help="python: the kernel evaluator module (default); latex: the derived recursion; "
                        "ir: the canonical network text")
    c.add_argument("-o", "--out", help="write here (atomically) instead of stdout")
    c.add_argument("--backend", choices=("numpy", "numba", "cupy"), default="numpy",
                   help="array module of the emitted Python: numpy, numba (fused CPU kernels) or cupy (GPU)")
    c.set_defaults(run=_compile)

    e = sub.add_parser("eval", help="evaluate the NNGP and NTK kernels on inputs stored as .npy")
    e.add_argument("spec", help="a .ntk file")
    e.add_argument("--x1", required=True, help="inputs: .npy array of shape (N1, *input shape), an .npz holding "
                                               "one array, or FILE.npz:NAME")
    e.add_argument("--x2", help="second inputs, as --x1, of shape (N2, *input shape); default: x1")
    e.add_argument("--graph1", metavar="FILE", help="networks with aggregate: each --x1 point's graph, (N1, V, V) "
                   "adjacency floats or (N1, E, 2) integer [sender, receiver] edge lists (.npy, or .npz with 'graph')")
    e.add_argument("--graph2", metavar="FILE", help="as --graph1, for the --x2 points")
    e.add_argument("--mask1", metavar="FILE", help="position masks of the --x1 points, booleans (N1, *S) with True = "
                   "masked (neural-tangents' convention; .npy, or .npz with 'mask'); per-position layers only")
    e.add_argument("--mask2", metavar="FILE", help="as --mask1, for the --x2 points")
    e.add_argument("--network", help="which network, when the file defines several")
    e.add_argument("--layout", choices=("auto", "full"), default="auto",
                   help="full: every pixel pair of a readout = none network's output, (N1, N2, *S, *S) "
                        "(default auto: the pixel diagonal, (N1, N2, *S))")
    e.add_argument("--diagonal", action="store_true", help="only K(x, x) of each --x1 point (arrays nngp and ntk of "
                   "shape (N1,)), in O(N1) time and memory; no --x2, no tiles")
    e.add_argument("-o", "--out", help=".npz to write with arrays nngp and ntk (atomically)")
    e.add_argument("--backend", choices=("auto", "numpy", "numba", "cupy"), default="auto",
                   help="evaluator: auto (fused numba kernels for large inputs when installed), numpy, numba, cupy")
    e.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the kernels (default %(default)s)")
    e.add_argument("--batch-size", type=_positive, help="evaluate in tiles of at most this many x this many points "
                   "(default: tiles only when the estimate exceeds half the available memory)")
    e.add_argument("--memory-budget", type=_size, metavar="SIZE",
                   help="memory one request (or one --memmap tile) may use, e.g. 512M or 4G (default: half the "
                        "available memory); larger requests run in tiles, or fail with a message")
    e.add_argument("--memmap", metavar="DIR", help="stream the kernels tile by tile into DIR/nngp.npy and DIR/ntk.npy "
                   "(memory-mapped .npy; for results larger than memory); resumes an interrupted run in DIR")
    progress.add_option(e, "over the tiles of large requests")
    e.add_argument("--zarr", metavar="STORE", help="compute on a dask cluster, one task per tile, into the zarr store "
                   "STORE (arrays nngp, ntk); resumes an interrupted run in STORE (pip install 'ntkdsl[dask]')")
    e.add_argument("--scheduler", metavar="ADDRESS", help="with --zarr: the dask scheduler, e.g. tcp://host:8786 "
                   "(default: a local cluster of this machine's cores)")
    e.add_argument("--tile", type=_positive, metavar="N", help="with --zarr: tiles of N x N points (default 2048 or "
                   "fewer, to fit the memory budget)")
    e.set_defaults(run=_eval)

    a = sub.add_parser("activations", help="list the activation catalog: σ, its dual kernels, exact or numerical")
    a.add_argument("name", nargs="?", help="show only this activation (or those whose names contain NAME)")
    a.set_defaults(run=_activations)

    k = sub.add_parser("check", help="parse and verify every network of a spec and summarise it")
    k.add_argument("spec", help="a .ntk file")
    k.add_argument("--network", help="which network (default: every network of the file)")
    k.add_argument("--n", type=_positive, default=10_000, metavar="N",
                   help="estimate memory and time for N x N points (default %(default)s; a static model, nothing is run)")
    k.set_defaults(run=_check)
    flow_cli.register(sub)
    sampler_cli.register(sub)
    return p


def _output(text: str, out: Optional[str]) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        write_text(out, text)
    except OSError as exc:
        raise UserError(f"cannot write {out!r}: {exc.strerror or exc}") from None


def _compile(args) -> int:
    net = load_network(args)
    if args.emit == "python":
        text = net.to_python(backend=args.backend)
        if args.backend == "numba":
            from ..codegen.fused import fusable

            reason = fusable(net.program)
            if reason:
                print(f"ntkdsl: note: not fusable ({reason}); emitting the NumPy module", file=sys.stderr)
    else:
        text = {"latex": net.to_latex, "ir": net.to_ntk}[args.emit]()
    _output(text, args.out)
    return 0


def _eval(args) -> int:
    net = load_network(args)
    shape = net.ir.input_shape
    x1 = load_points(args.x1, shape, "--x1")
    x2 = load_points(args.x2, shape, "--x2") if args.x2 else None
    graphs = {**load_graphs(args, net, x1, x2), **load_masks(args, net, x1, x2)}
    if args.diagonal:
        return _eval_diagonal(args, net, x1, x2, graphs)
    if args.zarr is not None:
        return _eval_distributed(args, net, x1, x2, graphs)
    if args.scheduler is not None or args.tile is not None:
        raise UserError("--scheduler and --tile go with --zarr STORE (the dask cluster's output)")
    if args.memmap is not None:
        return _eval_to_disk(args, net, x1, x2, graphs)
    if args.backend == "cupy":
        require_gpu()
    try:
        k = net.kernels(x1, x2, backend=args.backend, dtype=args.dtype, to_numpy=True, batch_size=args.batch_size,
                        memory_budget=args.memory_budget, progress=args.progress, **graphs)
    except (ImportError, MemoryError) as exc:
        raise UserError(str(exc)) from None
    return _report(args, k, f"network {net.name}: kernels of shape {k.nngp.shape}", pairs_diagonal=x2 is None)


def _report(args, k, heading: str, note: str = "", pairs_diagonal: bool = False) -> int:
    """``eval``'s result: written to ``-o FILE`` (.npz of nngp and ntk; ``note`` after the shape in the
    message), or ``heading`` and each kernel's min, max and mean printed (with ``pairs_diagonal`` also
    those of its diagonal K(x_i, x_i), a self request's)."""
    if args.out:
        try:
            write_npz(args.out, nngp=k.nngp, ntk=k.ntk)
        except OSError as exc:
            raise UserError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}: nngp, ntk of shape {k.nngp.shape}{note}")
        return 0
    print(heading)
    for name, a in (("nngp", k.nngp), ("ntk", k.ntk)):
        print(f"  {name:5s} min {a.min():.6g}  max {a.max():.6g}  mean {a.mean():.6g}")
        if pairs_diagonal:
            diag = np.diagonal(a, axis1=0, axis2=1)  # (N,), or (*S, N) for a network with readout = none
            print(f"        diagonal {diag.min():.6g} .. {diag.max():.6g}")
    return 0


def _eval_diagonal(args, net: CompiledNetwork, x1, x2, graphs: dict) -> int:
    """``eval --diagonal``: Σ(x, x) and Θ(x, x) of each --x1 point (``net.kernels(x1, diagonal=True)``)."""
    if x2 is not None:
        raise UserError("--diagonal evaluates K(x, x) for each --x1 point alone; it takes no --x2")
    tiled = [option for option, value in (("--batch-size", args.batch_size), ("--memory-budget", args.memory_budget),
                                          ("--memmap", args.memmap), ("--zarr", args.zarr), ("--tile", args.tile),
                                          ("--scheduler", args.scheduler)) if value is not None]
    if tiled:
        raise UserError(f"--diagonal evaluates its N1 values in one piece (O(N1) memory); {tiled[0]} does not apply")
    if args.backend == "cupy":
        require_gpu()
    try:
        k = net.kernels(x1, backend=args.backend, dtype=args.dtype, to_numpy=True, progress=args.progress,
                        diagonal=True, graph1=graphs.get("graph1"), mask1=graphs.get("mask1"))
    except (ImportError, MemoryError) as exc:
        raise UserError(str(exc)) from None
    return _report(args, k, f"network {net.name}: K(x, x) of {len(x1)} points", note=" (K(x, x) per point)")


def _eval_to_disk(args, net: CompiledNetwork, x1, x2, graphs: dict) -> int:
    """``eval --memmap DIR``: tiles streamed to DIR/nngp.npy and DIR/ntk.npy (ntkdsl.streaming)."""
    from ..streaming import MANIFEST, ResumeMismatchError

    if args.out:
        raise UserError("--memmap DIR writes DIR/nngp.npy and DIR/ntk.npy; it cannot be combined with -o/--out")
    if args.backend == "cupy":
        raise UserError("--memmap streams CPU tiles; use --backend auto, numpy or numba with it")
    if os.path.exists(args.memmap) and not os.path.isdir(args.memmap):
        raise UserError(f"--memmap {args.memmap!r} is a file, not a directory")
    try:
        k = net.kernels_to_disk(x1, x2, args.memmap, batch_size=args.batch_size, backend=args.backend,
                                dtype=args.dtype, memory_budget=args.memory_budget, progress=args.progress, **graphs)
    except ResumeMismatchError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"\nntkdsl: interrupted; the finished tiles are in {args.memmap}: run the same command again to resume",
              file=sys.stderr)
        raise
    except (ImportError, MemoryError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write to {args.memmap!r}: {exc.strerror or exc}; finished tiles are kept in "
                        f"{os.path.join(args.memmap, MANIFEST)} and a rerun resumes") from None
    print(f"wrote {os.path.join(args.memmap, 'nngp.npy')} and {os.path.join(args.memmap, 'ntk.npy')}: "
          f"{k.nngp.dtype} arrays of shape {k.nngp.shape} (load with numpy.load(..., mmap_mode='r'))")
    return 0


def _eval_distributed(args, net: CompiledNetwork, x1, x2, graphs: dict) -> int:
    """``eval --zarr STORE``: tiles computed on a dask cluster into a zarr store (ntkdsl.distributed)."""
    from .. import distributed
    from ..streaming import ResumeMismatchError

    if args.out or args.memmap:
        raise UserError("--zarr STORE writes the arrays nngp and ntk into STORE; it cannot be combined with -o or --memmap")
    if args.backend == "cupy":
        raise UserError("--zarr runs CPU tiles on the workers; use --backend auto, numpy or numba with it")
    try:
        client = distributed.connect(args.scheduler)
    except ImportError as exc:
        raise UserError(str(exc)) from None
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"cannot reach the dask scheduler at {args.scheduler!r}: {exc}") from None
    try:
        print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)
        k = distributed.kernels(net, x1, x2, args.zarr, client, tile=args.tile, dtype=args.dtype,
                                backend=args.backend, progress=args.progress, **graphs)
    except ResumeMismatchError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"\nntkdsl: interrupted; the finished tiles are in {args.zarr}: run the same command again to resume",
              file=sys.stderr)
        raise
    except OSError as exc:
        raise UserError(f"cannot write to {args.zarr!r}: {exc.strerror or exc}; finished tiles are kept and a rerun "
                        "resumes") from None
    finally:
        client.close()
    print(f"wrote {args.zarr}: arrays nngp and ntk, {k.nngp.dtype}, shape {k.nngp.shape} "
          "(open with dask.array.from_zarr or zarr.open)")
    return 0


def _activations(args) -> int:
    import shutil

    from ..activations.catalog import matching, text_table
    from ..activations.registry import REGISTRY

    names = None if args.name is None else matching(args.name)
    if names == []:
        known = ", ".join(sorted(row.name for row in REGISTRY))
        raise UserError(f"no activation named {args.name!r}; the catalog has: {known}")
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 100
    sys.stdout.write(text_table(names, max(width, 40)))
    return 0


def _check(args) -> int:
    text = read_spec(args.spec)
    module = parse(text, args.spec)
    if args.network is not None:
        nets = [lower(module, args.network)]
    else:
        nets = lower_all(module)
        if not nets:
            select_network(module, None)  # raises the "file defines no network" error
    for net in nets:
        print(_summary(CompiledNetwork(net, text, args.spec), args.n))  # verifies and derives
    return 0


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _size(text: str) -> int:
    """'512M', '4G', '1.5G', '1000000' (bytes) -> bytes; binary units, an optional trailing 'B'."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    try:
        n = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        n = 0
    if not 1 <= n < 2**63:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 4G, got {text!r}")
    return int(n)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _unit_variance(net: CompiledNetwork) -> List[str]:
    """Whether the spec's own numbers overflow float64 already for an input of variance 1: the one-point
    chain x = (1, ..., 1) (Σ⁰(x, x) = 1) of a vector network, microseconds a layer; image networks
    are not evaluated by check."""
    if len(net.ir.input_shape) != 1:
        return []
    try:
        net._evaluate(np.ones((1, net.ir.input_dim)), None, "numpy", None, True)
    except FloatingPointError as exc:  # KernelOverflowError, or a numerical dual refusing the variance
        first, *rest = str(exc).replace("of x1[0] ", "").splitlines()
        return [f"  unit-variance input (Σ⁰(x, x) = 1): not finite: {first}", *("  " + line for line in rest)]
    return ["  unit-variance input (Σ⁰(x, x) = 1): finite kernels at every layer"]


def _summary(net: CompiledNetwork, n: int = 10_000) -> str:
    from ..codegen.report import report
    from ..symbolic.layout import layout_report
    from ..tiling import memory_budget

    ir = net.ir
    shape = ir.input_dim if len(ir.input_shape) == 1 else list(ir.input_shape)
    lines = [f"network {ir.name}: input {shape}, {ir.parameterization} parameterization, "
             f"{len(ir.layers)} layers, output width {ir.output_width}"]
    for step in net.program.steps[1:]:
        span = step.layer.span
        where = f"{span.line}:{span.col}" if span else "-"
        lines.append(f"  {step.index:3d}  {where:>7s}  {step.label}")
        if step.context:
            lines.append(f"                in {step.context}")
        if step.note:
            lines.append(f"                dual: {step.note}")
    lines += layout_report(net.program)
    lines += _unit_variance(net)
    lines += report(net.program, n, memory_budget())  # ntkdsl/codegen/report.py: nothing is run
    pixels = output_pixels(net.program)
    if pixels:  # readout = none
        lines.append(f"  kernels: nngp and ntk, each a float64 N1 x N2 x {' x '.join(map(str, pixels))} array "
                     f"({16 * math.prod(pixels)} bytes per input pair): per output pixel, its {ir.output_width} channels share it")
    else:
        lines.append(f"  kernels: nngp and ntk, each a float64 N1 x N2 array (16 bytes per input pair); "
                     f"the {ir.output_width} outputs share it (K ⊗ I_k)")
    return "\n".join(lines)
