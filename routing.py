"""Expert routing: which experts each dataset's tokens use, and what that says about the mixture.

This is steps 2-4 of the algorithm in docs/method.md, as small functions over tensors:

    routers = find_routers(model)                    # the MoE routers, in layer order
    with RoutingCapture(routers) as capture:         # hooks live only inside the block
        model(input_ids, attention_mask=mask)
        counts = capture.histogram(mask.bool())      # (L, E) (token, slot) pairs per expert
    g = representations(histograms, "last")          # histograms: (k, L, E), one per dataset
    delta = redundancy(g, "cos", "mean")             # (k,) how redundant each dataset is

`mixture.py` turns delta into new weights.

The capture counts the experts the model *actually* used: it reads the top-k
indices each router returns (the very tensor the block hands to its experts),
and never recomputes a top-k from logits. Recomputing is wrong for routers with
group-limited routing or a score-correction bias (DeepSeek-V3).

No accelerate, no files: the caller all-reduces histograms across ranks.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

Distance = Literal["cos", "l2", "inv-l2"]
Aggregation = Literal["mean", "min", "max"]
Layers = Literal["last", "all"]

SUPPORTED_MODELS = (
    "transformers-5 MoE models that declare router_logits recording (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, "
    "DeepSeek-V3, GPT-OSS, ...) and routemix's own ports `llama_moe` and `moduleformer`"
)


# --------------------------------------------------------------------------------------------------
# Finding the routers


def _router_recorders(model: nn.Module, keys: tuple[str, ...] = ("router_logits",)) -> list:
    """The `keys` entries of `_can_record_outputs` declared by the classes of the model's modules.

    That covers the model, its base model and the sub-models of a composite model.
    """
    recorders = []
    for module in model.modules():
        declared = getattr(type(module), "_can_record_outputs", None) or {}
        for key in keys:
            entry = declared.get(key)
            for recorder in entry if isinstance(entry, list) else [entry]:
                if recorder is not None and recorder not in recorders:
                    recorders.append(recorder)
    return recorders


def other_routers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Routers that choose something other than MLP experts, declared as `attention_router_logits` in
    `_can_record_outputs` (ModuleFormer's attention-head routers). Not counted by probes; frozen with
    the MoE routers by `freeze_routers`, as the paper froze every gate."""
    recorders = _router_recorders(model, ("attention_router_logits",))
    return [(name, module) for name, module in model.named_modules()
            if any(_is_recorded_router(name, module, recorder) for recorder in recorders)]


def freeze_routers(model: nn.Module, routers: list[tuple[str, nn.Module]]) -> None:
    """Stop the gradient to `routers` and to the model's `other_routers`: the paper froze every gate, so that
    routing stays a stable representation of the data while the experts learn."""
    for _, router in list(routers) + other_routers(model):
        router.requires_grad_(False)


def _is_recorded_router(name: str, module: nn.Module, recorder) -> bool:
    """Whether `module` (called `name`) is what `recorder` (an OutputRecorder, a class or a class name) records.

    Mirrors transformers' own matching in `utils/output_capturing.py`: by class, or by a
    class-name suffix of the module path, optionally restricted to a `layer_name`.
    """
    if isinstance(recorder, type):
        return isinstance(module, recorder)
    if isinstance(recorder, str):
        return name.endswith(recorder)
    target_class = getattr(recorder, "target_class", None)
    class_name = getattr(recorder, "class_name", None)
    matches = (target_class is not None and isinstance(module, target_class)) or (
        class_name is not None and name.endswith(class_name)
    )
    layer_name = getattr(recorder, "layer_name", None)
    if matches and layer_name is not None:
        matches = f".{layer_name.strip('.')}." in f".{name}."
    return matches


def find_routers(model: nn.Module, pattern: str | None = None, *, pattern_name: str = "pattern") -> list[tuple[str, nn.Module]]:
    """The MoE routers of `model` as `(module name, module)` pairs, in layer order.

    By default the routers are the modules that transformers itself records as
    `router_logits` (`_can_record_outputs` on the model or its base model); no
    modeling file is patched. `pattern` is a regular expression searched in module
    names instead, for custom models; error messages call it `pattern_name` (a caller's
    command-line flag, say).

    A router must return a tuple whose last element holds the selected expert
    indices (`(logits, scores, indices)` in every supported family); the capture
    checks this on the first forward.

    Raises:
        ValueError: when no router is found, naming the model class and what is supported.
    """
    if pattern is not None:
        regex = re.compile(pattern)
        routers = [(name, module) for name, module in model.named_modules() if name and regex.search(name)]
        if not routers:
            raise ValueError(
                f"{pattern_name} {pattern!r} matches no module name of {type(model).__name__}; "
                "list them with `[name for name, _ in model.named_modules()]`"
            )
        return routers
    recorders = _router_recorders(model)
    routers = [
        (name, module)
        for name, module in model.named_modules()
        if any(_is_recorded_router(name, module, recorder) for recorder in recorders)
    ]
    if not routers:
        raise ValueError(
            f"{type(model).__name__} has no recognisable MoE routers. routemix supports {SUPPORTED_MODELS}. "
            f"For another MoE model pass {pattern_name}, a regular expression that matches the names of "
            "its router modules (each must return a tuple ending with the selected expert indices)."
        )
    return routers


def num_experts_of(router: nn.Module) -> int | None:
    """The number of experts a router chooses from, from its `num_experts` attribute (None if it has none)."""
    num_experts = getattr(router, "num_experts", None)
    return int(num_experts) if num_experts is not None else None


# --------------------------------------------------------------------------------------------------
# Capturing what the routers chose


def selected_experts(router_name: str, router: nn.Module, output) -> torch.Tensor:
    """The expert indices in a router's output: the last element of its tuple, as `(tokens, top_k)` int64.

    Raises:
        TypeError: when the output carries no integer indices (e.g. a router that returns only logits).
    """
    indices = output[-1] if isinstance(output, (tuple, list)) else output
    if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.is_complex():
        returned = type(output).__name__ if not isinstance(output, torch.Tensor) else f"a {output.dtype} tensor"
        raise TypeError(
            f"router {router_name!r} ({type(router).__name__}) returned {returned}, not a tuple ending with the "
            "selected expert indices. routemix counts the experts the model actually used and cannot take them "
            f"from logits. Supported: {SUPPORTED_MODELS}; with a router name pattern, match modules whose output "
            "ends with the top-k expert indices."
        )
    top_k = indices.shape[-1] if indices.dim() >= 2 else 1
    return indices.detach().reshape(-1, top_k).long()


class RoutingCapture:
    """Records the experts each router selects, while the `with` block is active.

    Hooks are installed on `__enter__` and removed on `__exit__`, so forwards
    outside a probe pay nothing. After one or more forwards, `histogram(token_mask)`
    counts the recorded choices and forgets them.

    Args:
        routers: `(name, module)` pairs from `find_routers`, in layer order.
    """

    def __init__(self, routers: list[tuple[str, nn.Module]]):
        if not routers:
            raise ValueError("RoutingCapture needs at least one router")
        self.routers = list(routers)
        self.num_experts = [num_experts_of(module) for _, module in self.routers]
        self._pending: list[list[torch.Tensor]] = [[] for _ in self.routers]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> RoutingCapture:
        if self.active:
            raise RuntimeError("RoutingCapture is already active")
        for layer, (_, module) in enumerate(self.routers):
            self._handles.append(module.register_forward_hook(self._recorder(layer)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._pending = [[] for _ in self.routers]

    def _recorder(self, layer: int):
        name, module = self.routers[layer]

        def record(_module: nn.Module, _args, output) -> None:
            self._pending[layer].append(selected_experts(name, module, output))
            if self.num_experts[layer] is None and isinstance(output, (tuple, list)):
                self.num_experts[layer] = output[0].shape[-1]  # the logits' last dimension

        return record

    def histogram(self, token_mask: torch.Tensor) -> torch.LongTensor:
        """Counts of (token, slot) pairs per expert over the forwards since the last call: `(L, E)` int64.

        Args:
            token_mask: which tokens count (padding must not), aligned with `input_ids`
                of shape `(B, T)`: routers see the batch flattened row-major. After several
                forwards, pass their masks flattened and concatenated in forward order.
                Packed rows need no special care here: every token of every row is routed
                (but run the model with `use_cache=False`, or transformers ignores the packing
                boundaries in `position_ids` in eval mode).

        The result stays on the routers' device. All layers are counted by a single
        `torch.bincount`, so there is no host synchronisation per layer.
        """
        mask = token_mask.reshape(-1).to(torch.bool)
        return self.histograms(torch.where(mask, 0, -1), 1)[0]

    def histograms(self, dataset_ids: torch.Tensor, num_datasets: int) -> torch.LongTensor:
        """Counts per dataset over the forwards since the last call: `(num_datasets, L, E)` int64.

        `dataset_ids` gives each token's dataset (0 .. num_datasets - 1) or -1 for a token that does not
        count (padding), aligned with `input_ids` like `histogram`'s mask: one packed training batch
        holds examples of several datasets, and each token counts for its own (`--probe-source train`).
        One `torch.bincount` over all datasets and layers; the result stays on the routers' device.
        """
        if any(not pending for pending in self._pending):
            idle = [self.routers[layer][0] for layer, pending in enumerate(self._pending) if not pending]
            raise RuntimeError(f"no routing recorded since the last histogram() for {idle}; run a forward first")
        if len(set(self.num_experts)) != 1:
            raise ValueError(f"routers choose among different numbers of experts per layer: {self.num_experts}")
        num_layers, num_experts = len(self.routers), self.num_experts[0]
        device = self._pending[0][0].device
        ids = dataset_ids.reshape(-1).to(device=device, dtype=torch.long)
        per_dataset = num_layers * num_experts
        dropped_bin = num_datasets * per_dataset  # one extra bin collects the tokens that do not count
        counted = (ids >= 0) & (ids < num_datasets)
        offset = torch.where(counted, ids * per_dataset, dropped_bin)
        bins = []
        for layer, pending in enumerate(self._pending):
            indices = torch.cat([chunk.to(device) for chunk in pending])
            if indices.shape[0] != ids.numel():
                raise ValueError(
                    f"router {self.routers[layer][0]!r} routed {indices.shape[0]} tokens since the last histogram() "
                    f"but token_mask has {ids.numel()}"
                )
            bins.append(torch.where(counted[:, None], offset[:, None] + indices + layer * num_experts, dropped_bin).reshape(-1))
        self._pending = [[] for _ in self.routers]
        counts = torch.bincount(torch.cat(bins), minlength=dropped_bin + 1)
        if counts.numel() != dropped_bin + 1:
            raise ValueError(f"a router returned an expert index >= its number of experts ({num_experts})")
        return counts[:dropped_bin].reshape(num_datasets, num_layers, num_experts)


class PeriodCounts:
    """Routing histograms per dataset, summed over the training forwards since the last `take()`
    (`--probe-source train`): the routing of every training token, at no extra forward.

        trained = PeriodCounts(capture, num_datasets)
        with trained.counting(dataset_ids):   # each token's dataset over the step's forwards, in forward order; -1: none
            ...the step's forwards (and backwards)...
        histograms, tokens = trained.take()   # (k, L, E) on the routers' device and (k,) counted tokens; then zero

    The counts are this process's own; the caller all-reduces them and passes the sums to `carry_over`.
    They are part of a checkpoint (`state_dict`), since a checkpoint can fall in the middle of a period.
    """

    def __init__(self, capture: RoutingCapture, num_datasets: int):
        self.capture, self.num_datasets = capture, num_datasets
        self.histograms: torch.Tensor | None = None
        self.tokens = [0] * num_datasets
        self.previous: torch.Tensor | None = None  # the last period's summed histograms, after carry_over

    def carry_over(self, histograms: torch.Tensor, tokens: list[int]) -> tuple[torch.Tensor, list[int], list[int]]:
        """The period's histograms summed over all ranks, with every dataset that had no token this period (a
        small weight, a short period) given its counts from the last period that had some; returns them, those
        datasets' indices, and the indices of datasets that have never had a token (their counts stay zero: the
        caller must not read them as routing that differs from everything). Remembers the result for the next
        period (in `state_dict`: the same on every rank)."""
        histograms = histograms.clone()
        empty = [i for i, n in enumerate(tokens) if n == 0]
        stale = [i for i in empty if self.previous is not None and int(self.previous[i].sum()) > 0]
        for i in stale:
            histograms[i] = self.previous[i].to(histograms.device)
        self.previous = histograms.cpu()
        return histograms, stale, [i for i in empty if i not in stale]

    @contextmanager
    def counting(self, dataset_ids: torch.Tensor):
        with self.capture:
            yield
            counts = self.capture.histograms(dataset_ids, self.num_datasets)
        self.histograms = counts if self.histograms is None else self.histograms + counts
        ids = dataset_ids.reshape(-1)
        ids = ids[(ids >= 0) & (ids < self.num_datasets)].cpu()
        self.tokens = [a + b for a, b in zip(self.tokens, torch.bincount(ids, minlength=self.num_datasets).tolist())]

    def take(self) -> tuple[torch.Tensor, list[int]]:
        if self.histograms is None:
            raise RuntimeError("no training forward was counted since the last update")
        histograms, tokens = self.histograms, self.tokens
        self.histograms, self.tokens = None, [0] * self.num_datasets
        return histograms, tokens

    def state_dict(self) -> dict:
        as_list = lambda t: None if t is None else t.cpu().tolist()
        return {"histograms": as_list(self.histograms), "tokens": self.tokens, "previous": as_list(self.previous)}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        histograms, previous = state["histograms"], state.get("previous")
        self.histograms = None if histograms is None else torch.tensor(histograms, dtype=torch.long, device=device)
        self.previous = None if previous is None else torch.tensor(previous, dtype=torch.long)
        self.tokens = list(state["tokens"])


# --------------------------------------------------------------------------------------------------
# From histograms to new weights


def representations(histograms: torch.Tensor, layers: Layers = "last") -> torch.Tensor:
    """Routing representations g: `(k, L, E)` counts -> `(k, D)` float64.

    Each dataset's counts are normalised to sum 1 per layer (a layer without counts
    stays zero). `last` keeps the last MoE layer (D = E, the paper), `all`
    concatenates every layer (D = L * E).
    """
    counts = histograms.to(torch.float64)
    totals = counts.sum(dim=-1, keepdim=True)
    normalised = counts / torch.where(totals > 0, totals, torch.ones_like(totals))
    if layers == "last":
        return normalised[:, -1, :]
    if layers == "all":
        return normalised.reshape(normalised.shape[0], -1)
    raise ValueError(f"layers must be 'last' or 'all', got {layers!r}")


def pairwise(g: torch.Tensor, distance: Distance) -> torch.Tensor:
    """The `(k, k)` matrix that `redundancy` aggregates: cosine similarities for `cos`, Euclidean distances
    for `l2` and `inv-l2`.

    A zero representation has cosine similarity 0 with everything.
    """
    g = g.to(torch.float64)
    if distance == "cos":
        norms = g.norm(dim=-1)
        unit = g / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
        return unit @ unit.T
    if distance in ("l2", "inv-l2"):
        return (g[:, None, :] - g[None, :, :]).pow(2).sum(dim=-1).sqrt()
    raise ValueError(f"distance must be 'cos', 'l2' or 'inv-l2', got {distance!r}")


def reverse_ranks(values: torch.Tensor) -> torch.Tensor:
    """Give the r-th smallest value the r-th largest value (the paper's inverse hypothesis).

    Ties are deterministic and order-free: tied entries (equal to 12 decimals) share
    the mean of the values their positions receive, so permuting the input permutes
    the output.
    """
    order = torch.argsort(values, stable=True)
    ascending = values[order]
    reversed_values = torch.empty_like(values)
    reversed_values[order] = ascending.flip(0)
    _, group = torch.unique(torch.round(values, decimals=12), return_inverse=True)
    group_sums = torch.zeros(int(group.max()) + 1, dtype=values.dtype).index_add_(0, group, reversed_values)
    group_sizes = torch.bincount(group).to(values.dtype)
    return (group_sums / group_sizes)[group]


def redundancy(g: torch.Tensor, distance: Distance = "cos", agg: Aggregation = "mean") -> torch.Tensor:
    """delta_i, how redundant dataset i is relative to the others j != i: `(k, D)` -> `(k,)` float64.

    cos: 1 - agg_j cos(g_i, g_j); l2: agg_j ||g_i - g_j||; inv-l2: the l2 deltas with their ranks reversed.
    """
    k = g.shape[0]
    if k < 2:
        raise ValueError(f"redundancy needs at least 2 datasets, got {k}")
    matrix = pairwise(g, distance)
    others = matrix[~torch.eye(k, dtype=torch.bool)].reshape(k, k - 1)
    if agg == "mean":
        aggregated = others.mean(dim=1)
    elif agg == "min":
        aggregated = others.min(dim=1).values
    elif agg == "max":
        aggregated = others.max(dim=1).values
    else:
        raise ValueError(f"agg must be 'mean', 'min' or 'max', got {agg!r}")
    if distance == "cos":
        return 1.0 - aggregated
    if distance == "inv-l2":
        return reverse_ranks(aggregated)
    return aggregated


def redundancy_noise(batch_histograms: torch.Tensor, num_batches: list[int], layers: Layers = "last",
                     distance: Distance = "cos", agg: Aggregation = "mean") -> torch.Tensor:
    """How far sampling noise alone moves each dataset's redundancy away from the mean redundancy: the jackknife
    standard error of `delta_i - mean(delta)` over the probe's batches, `(k, B, L, E)` counts -> `(k,)` float64.

    The rule acts on delta minus its mean (a shift that all datasets share moves no weight), so that is what the
    error is of. Each dataset's batches are a sample of its own; the multi-sample jackknife leaves out one batch of
    one dataset at a time, recomputes delta from the pooled counts of the rest, and adds up over datasets:

        var_i = sum_j (n_j - 1) / n_j * sum_b (u_i^(j, -b) - mean_b u_i^(j, -b))^2,   u = delta - mean(delta)

    `num_batches[j]` says how many of the B slots of dataset j hold a batch (a short dev set fills fewer). A dataset
    with one batch cannot show its own noise and adds nothing; the caller says so. Batches of any size are fine:
    leaving one out changes the pooled counts by what that batch held.
    """
    counts = batch_histograms.to(torch.float64)
    k = counts.shape[0]
    pooled = counts.sum(dim=1)  # (k, L, E)

    def centred(histograms: torch.Tensor) -> torch.Tensor:
        delta = redundancy(representations(histograms, layers), distance, agg)
        return delta - delta.mean()

    variance = torch.zeros(k, dtype=torch.float64)
    for j, n in enumerate(num_batches):
        if n < 2:
            continue
        replicates = []
        for b in range(n):
            held_out = pooled.clone()
            held_out[j] -= counts[j, b]
            replicates.append(centred(held_out))
        replicates = torch.stack(replicates)  # (n, k)
        variance += (n - 1) / n * (replicates - replicates.mean(dim=0)).pow(2).sum(dim=0)
    return variance.sqrt()
