"""Expert dispatch for the ports' MoE layers with no host synchronisation.

A loop over experts needs each expert's token count on the host (`.tolist()`), which stops the
GPU in every layer and, when an expert gets no tokens, leaves its parameters out of the
graph. Under ZeRO-3 and FSDP2 ranks that route differently then fetch or reduce different
parameters and hang. Here the choices are sorted by expert on the device, the group
boundaries come from `searchsorted` (no sync), and one grouped matmul per projection
(`torch.nn.functional.grouped_mm`) runs every expert on its tokens; every expert's weight is
an input of that matmul, so every expert takes part in every forward and backward.

    dispatch = dispatch_by_expert(indices, num_experts)      # (N, k) choices -> order and offsets
    x = hidden_states[dispatch.token_of_slot]                 # (S, K), grouped by expert
    y = grouped_linear(x, weight_EKN, dispatch.offsets)       # (S, N)
    out = zeros.index_add(0, dispatch.token_of_slot, y * dispatch.scores[:, None])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ExpertDispatch:
    """Where the N*k (token, slot) choices of a router go, grouped by expert (all on the router's device).

    slot_order: positions in the flattened (N*k) choices, sorted by expert (stable).
    token_of_slot: the token of each choice, in that order.
    offsets: (E,) int32, the end of each expert's group in that order (cumulative counts).
    scores: the router score of each choice, in that order.
    """

    slot_order: torch.Tensor
    token_of_slot: torch.Tensor
    offsets: torch.Tensor
    scores: torch.Tensor


def dispatch_by_expert(indices: torch.Tensor, scores: torch.Tensor, num_experts: int) -> ExpertDispatch:
    """Groups a router's `(N, k)` choices by expert, without a host sync."""
    top_k = indices.shape[1]
    sorted_experts, slot_order = indices.flatten().sort(stable=True)
    boundaries = torch.arange(num_experts, device=indices.device, dtype=sorted_experts.dtype)
    offsets = torch.searchsorted(sorted_experts, boundaries, right=True).to(torch.int32)
    return ExpertDispatch(slot_order=slot_order, token_of_slot=slot_order // top_k, offsets=offsets,
                          scores=scores.flatten()[slot_order])


def compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype expert matmuls should run in: the autocast dtype when autocast is on for the weight's device
    (grouped_mm is not covered by autocast, so it would run in the weights' float32), else the weight's own."""
    device_type = weight.device.type
    if torch.is_autocast_enabled(device_type) and weight.is_floating_point():
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


def grouped_mm_runs(inputs: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `F.grouped_mm` runs these operands: on CPU, or on CUDA (SM80+) in bf16 (what torch 2.13 documents),
    with rows of a multiple of 16 bytes (its backward needs that for every operand)."""
    if inputs.dtype != weight.dtype:
        return False
    if inputs.device.type == "cuda":
        if weight.dtype != torch.bfloat16 or torch.cuda.get_device_capability(weight.device) < (8, 0):
            return False
    elif inputs.device.type != "cpu":
        return False
    itemsize = weight.element_size()
    return all(size * itemsize % 16 == 0 for size in weight.shape[1:])


def grouped_linear(inputs: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """`inputs` (S, K), grouped by expert with group ends `offsets` (E,), times each group's `weight[e]` (E, K, N) -> (S, N).

    Falls back to a loop over all experts (one host sync for the offsets) where grouped_mm does not run.
    """
    inputs = inputs.to(weight.dtype)
    if grouped_mm_runs(inputs, weight):
        return F.grouped_mm(inputs, weight, offs=offsets)
    starts = [0, *offsets.tolist()]
    return torch.cat([inputs[starts[e] : starts[e + 1]] @ weight[e] for e in range(weight.shape[0])], dim=0)
