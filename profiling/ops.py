"""Which traced aten ops cost MACs, which are elementwise, which are free (docs/DESIGN.md, "kMAC/px accounting").

Every op a traced pass uses must be in exactly one of three tables, and an op in none of
them is *unsupported*: :func:`profiling.profile_codec` with ``strict=True`` raises and
names it, the commands print a warning line. fvcore's own ignore list is deliberately not
used: it silently drops ``aten::relu``, ``aten::clamp``, ``aten::max`` and ``aten::floor``,
which are elementwise work this project reports (rule 5), and it would drop any new
MAC-bearing op nobody thought of.

* :data:`MAC_OPS` (= :data:`COUNTED_OPS`): multiply-accumulates of conv, transposed conv,
  linear, matmul and einsum (rule 1), one handle each. A transposed conv pays per *input*
  position: C_in x C_out/groups x k_h x k_w x h_in x w_in, as in fvcore and
  ``torch.utils.flop_counter``.
* :data:`ELEMENTWISE_OPS`: no MACs; each costs one op per element of the largest tensor it
  reads or writes (activations, GDN's sqrt and divide, rounding, pooling, interpolation,
  norms, reductions). Reported as elementwise kOPs/px.
* :data:`SHAPE_OPS`: no arithmetic at all: layout (view, permute, pixel shuffle, channel
  shuffle by reshape/transpose), copies, padding, indexing, constructors, dtype moves, size
  queries.

``FREE_OPS`` is the union of the last two: ops that are free as far as the gate goes.
"""
from __future__ import annotations

from collections import Counter
from math import prod
from typing import Any, Callable

from fvcore.nn.jit_handles import einsum_flop_jit, get_shape

__all__ = [
    "MAC_OPS", "COUNTED_OPS", "ELEMENTWISE_OPS", "SHAPE_OPS", "FREE_OPS", "op_handles",
    "MAC_KEY", "ELEMENTWISE_KEY", "UncountableOpError",
]

#: Prefixes of the keys the handles put in fvcore's per-operator Counters.
MAC_KEY = "mac:"
ELEMENTWISE_KEY = "ew:"

Handle = Callable[[list[Any], list[Any]], Counter]


class UncountableOpError(RuntimeError):
    """A MAC op whose shapes the trace does not know: its cost cannot be computed."""


def _shape(value, op: str) -> list[int]:
    shape = get_shape(value)
    if shape is None:
        raise UncountableOpError(f"{op}: an operand has no complete shape in the trace, so its MACs cannot be counted")
    return list(shape)


def _ivalue(value):
    return value.toIValue()


# --------------------------------------------------------------------------------------- MACs
def _conv_macs(x: list[int], w: list[int], out: list[int], transposed: bool) -> int:
    # w is (C_out, C_in/groups, *k) for a conv and (C_in, C_out/groups, *k) for a transposed
    # conv, so batch x prod(w) x spatial covers grouped and depthwise convs too.
    spatial = (x if transposed else out)[2:]
    return x[0] * prod(w) * prod(spatial)


def _conv_handle(transposed_arg: int | None, fixed_transposed: bool = False) -> Handle:
    """``transposed_arg``: index of the ``transposed`` flag among the op's inputs, or None
    when the op's name fixes it (conv2d vs conv_transpose2d)."""

    def handle(inputs, outputs):
        op = "convolution"
        x, w, out = _shape(inputs[0], op), _shape(inputs[1], op), _shape(outputs[0], op)
        transposed = bool(_ivalue(inputs[transposed_arg])) if transposed_arg is not None else fixed_transposed
        if len(x) == len(w) - 1:  # unbatched input (C, *spatial)
            x, out = [1] + x, [1] + out
        return Counter({MAC_KEY + ("conv_transpose" if transposed else "conv"): _conv_macs(x, w, out, transposed)})

    return handle


def _linear(inputs, outputs):
    x, w = _shape(inputs[0], "linear"), _shape(inputs[1], "linear")
    return Counter({MAC_KEY + "linear": prod(x) * w[0]})


def _mm(a_idx: int, name: str) -> Handle:
    def handle(inputs, outputs):
        a, b = _shape(inputs[a_idx], name), _shape(inputs[a_idx + 1], name)
        return Counter({MAC_KEY + name: prod(a) * b[-1]})

    return handle


def _matmul(inputs, outputs):
    a, b = _shape(inputs[0], "matmul"), _shape(inputs[1], "matmul")
    a = [1] + a if len(a) == 1 else a
    b = b + [1] if len(b) == 1 else b
    batch_a, batch_b = a[:-2], b[:-2]
    n = max(len(batch_a), len(batch_b))
    batch_a = [1] * (n - len(batch_a)) + batch_a
    batch_b = [1] * (n - len(batch_b)) + batch_b
    batch = [max(i, j) for i, j in zip(batch_a, batch_b)]
    return Counter({MAC_KEY + "matmul": prod(batch) * a[-2] * a[-1] * b[-1]})


def _einsum(inputs, outputs):
    return Counter({MAC_KEY + "einsum": int(einsum_flop_jit(inputs, outputs))})


#: op -> handle returning Counter({"mac:<kind>": MACs}).
MAC_OPS: dict[str, Handle] = {
    "aten::_convolution": _conv_handle(6),
    "aten::convolution": _conv_handle(6),
    "aten::conv1d": _conv_handle(None, False),
    "aten::conv2d": _conv_handle(None, False),
    "aten::conv3d": _conv_handle(None, False),
    "aten::conv_transpose1d": _conv_handle(None, True),
    "aten::conv_transpose2d": _conv_handle(None, True),
    "aten::conv_transpose3d": _conv_handle(None, True),
    "aten::linear": _linear,
    "aten::addmm": _mm(1, "addmm"),
    "aten::mm": _mm(0, "mm"),
    "aten::bmm": _mm(0, "bmm"),
    "aten::baddbmm": _mm(1, "baddbmm"),
    "aten::matmul": _matmul,
    "aten::einsum": _einsum,
}
COUNTED_OPS: frozenset[str] = frozenset(MAC_OPS)


# -------------------------------------------------------------------------------- elementwise
def _with_inplace(*names: str) -> set[str]:
    return {f"aten::{n}" for n in names} | {f"aten::{n}_" for n in names}


#: No MACs; one op per element of the largest tensor touched (rule 5).
ELEMENTWISE_OPS: frozenset[str] = frozenset(
    _with_inplace(
        # arithmetic
        "add", "sub", "rsub", "mul", "div", "neg", "reciprocal", "pow", "square", "sqrt", "rsqrt",
        "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "abs", "sign", "sgn",
        "fmod", "remainder", "floor_divide", "addcmul", "addcdiv", "lerp",
        # rounding (quantization), clipping
        "round", "floor", "ceil", "trunc", "frac", "clamp", "clamp_min", "clamp_max", "clip",
        "hardtanh",
        # activations
        "relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu",
        "mish", "sigmoid", "hardsigmoid", "hardswish", "tanh", "softplus", "softsign", "logsigmoid",
        "threshold",
        # special functions (entropy models)
        "erf", "erfc", "erfinv", "sin", "cos", "atan", "lgamma",
        # comparisons, selection, logic
        "maximum", "minimum", "fmax", "fmin", "eq", "ne", "lt", "le", "gt", "ge",
        "logical_and", "logical_or", "logical_not", "logical_xor", "bitwise_and", "bitwise_or",
        "bitwise_not", "bitwise_xor", "__and__", "__or__", "__xor__", "where", "masked_fill",
        "isnan", "isinf", "isfinite", "nan_to_num",
    )
    | {
        f"aten::{n}"
        for n in (
            # max/min are elementwise (binary) or reductions; both cost one op per element read
            "max", "min", "amax", "amin", "argmax", "argmin", "sum", "mean", "prod", "var", "std",
            "norm", "linalg_vector_norm", "logsumexp", "cumsum", "cumprod", "softmax", "log_softmax",
            "_softmax", "_log_softmax",
            # scale-table lookup of the entropy models (binary search per element)
            "searchsorted", "bucketize",
            # pooling and interpolation: no MACs under rule 1
            "avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d",
            "max_pool2d_with_indices", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
            "adaptive_avg_pool3d", "adaptive_max_pool2d", "upsample_nearest1d", "upsample_nearest2d",
            "upsample_nearest3d", "upsample_bilinear2d", "upsample_bicubic2d", "upsample_linear1d",
            "upsample_trilinear3d", "_upsample_nearest_exact2d", "_upsample_bilinear2d_aa",
            "_upsample_bicubic2d_aa", "grid_sampler", "grid_sampler_2d", "affine_grid_generator",
            # normalization layers: a MAC only if it is a conv/linear (rule 1)
            "batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
            # randomness (training-path noise, should not appear in coding passes)
            "uniform_", "normal_", "rand_like", "randn_like", "bernoulli_", "dropout", "dropout_",
            "feature_dropout", "alpha_dropout",
        )
    }
)

#: No arithmetic: layout, copies, padding, indexing, constructors, casts, size queries.
SHAPE_OPS: frozenset[str] = frozenset(
    f"aten::{n}"
    for n in (
        # views and layout
        "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "squeeze_",
        "unsqueeze", "unsqueeze_", "permute", "transpose", "transpose_", "t", "expand", "expand_as",
        "contiguous", "alias", "as_strided", "movedim", "moveaxis", "swapaxes", "unfold",
        "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "flip", "roll",
        "rot90", "repeat", "repeat_interleave", "tile", "im2col", "col2im",
        # joining, splitting, indexing
        "cat", "concat", "concatenate", "stack", "hstack", "vstack", "chunk", "split",
        "split_with_sizes", "tensor_split", "unsafe_split", "unsafe_chunk", "unbind", "narrow",
        "select", "slice", "index", "index_select", "gather", "scatter", "scatter_", "index_put",
        "index_put_", "index_copy", "index_copy_", "masked_select", "masked_scatter", "take",
        "nonzero", "diagonal", "tril", "triu", "diag", "diag_embed", "meshgrid",
        # padding (memory only)
        "constant_pad_nd", "pad", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
        "replication_pad1d", "replication_pad2d", "replication_pad3d", "circular_pad2d",
        # copies, casts, autograd plumbing
        "to", "type_as", "detach", "detach_", "clone", "copy_", "lift_fresh", "lift_fresh_copy",
        "lift", "float", "double", "int", "long", "bool", "half", "cpu", "cuda", "requires_grad_",
        # constructors
        "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "empty", "empty_like",
        "empty_strided", "new_zeros", "new_ones", "new_full", "new_empty", "new_empty_strided",
        "arange", "linspace", "logspace", "eye", "tensor", "scalar_tensor", "fill_", "zero_",
        "zeros_", "ones_",
        # scalars and sizes
        "size", "numel", "dim", "stride", "Int", "Float", "Bool", "ScalarImplicit", "item",
        "__getitem__", "len", "is_floating_point", "result_type",
    )
)

FREE_OPS: frozenset[str] = ELEMENTWISE_OPS | SHAPE_OPS

_overlap = (COUNTED_OPS & FREE_OPS) | (ELEMENTWISE_OPS & SHAPE_OPS)
assert not _overlap, f"ops classified twice: {sorted(_overlap)}"


def _numel(value) -> int:
    # 0-d tensors are sizes turned into tensors by the tracer (``c // 2`` on a shape):
    # shape arithmetic, not elementwise work.
    shape = get_shape(value)
    return prod(shape) if shape else 0


def _elementwise_handle(op: str) -> Handle:
    key = ELEMENTWISE_KEY + op.split("::", 1)[1]

    def handle(inputs, outputs):
        n = max([_numel(v) for v in list(inputs) + list(outputs)] + [0])
        return Counter({key: n}) if n else Counter()

    return handle


def _free_handle(inputs, outputs):
    return Counter()


def op_handles() -> dict[str, Handle]:
    """Handles for every classified op, for ``JitModelAnalysis.set_op_handle``."""
    handles: dict[str, Handle] = {op: _free_handle for op in SHAPE_OPS}
    handles.update({op: _elementwise_handle(op) for op in ELEMENTWISE_OPS})
    handles.update(MAC_OPS)
    return handles
