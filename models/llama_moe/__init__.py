"""LLaMA-MoE v1 for transformers 5; importing this package registers `model_type` "llama_moe" with the Auto classes.

    import models.llama_moe
    model = AutoModelForCausalLM.from_pretrained("llama-moe/LLaMA-MoE-v1-3_5B-2_8")  # no trust_remote_code
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_llama_moe import LlamaMoEConfig
from .modeling_llama_moe import LlamaMoEForCausalLM, LlamaMoEModel, LlamaMoEPreTrainedModel, LlamaMoETopKGate

# exist_ok makes a second import (or a re-import under another module name) a no-op instead of an error.
AutoConfig.register(LlamaMoEConfig.model_type, LlamaMoEConfig, exist_ok=True)
AutoModel.register(LlamaMoEConfig, LlamaMoEModel, exist_ok=True)
AutoModelForCausalLM.register(LlamaMoEConfig, LlamaMoEForCausalLM, exist_ok=True)

__all__ = ["LlamaMoEConfig", "LlamaMoEForCausalLM", "LlamaMoEModel", "LlamaMoEPreTrainedModel", "LlamaMoETopKGate"]
