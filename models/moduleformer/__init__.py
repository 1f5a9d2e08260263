"""ModuleFormer (MoLM) for transformers 5; importing this package registers `model_type` "moduleformer" with the Auto classes.

    import models.moduleformer
    model = AutoModelForCausalLM.from_pretrained("ibm/MoLM-700M-4B")  # no trust_remote_code
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_moduleformer import ModuleFormerConfig
from .modeling_moduleformer import (
    ModuleFormerAttentionRouter,
    ModuleFormerForCausalLM,
    ModuleFormerMLPRouter,
    ModuleFormerModel,
    ModuleFormerPreTrainedModel,
)

# exist_ok makes a second import (or a re-import under another module name) a no-op instead of an error.
AutoConfig.register(ModuleFormerConfig.model_type, ModuleFormerConfig, exist_ok=True)
AutoModel.register(ModuleFormerConfig, ModuleFormerModel, exist_ok=True)
AutoModelForCausalLM.register(ModuleFormerConfig, ModuleFormerForCausalLM, exist_ok=True)

__all__ = [
    "ModuleFormerAttentionRouter",
    "ModuleFormerConfig",
    "ModuleFormerForCausalLM",
    "ModuleFormerMLPRouter",
    "ModuleFormerModel",
    "ModuleFormerPreTrainedModel",
]
