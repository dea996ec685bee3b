"""Export a trained BitNetLM to the Hugging Face packed format of
microsoft/bitnet-b1.58-2B-4T (docs FORMATS.md section 3.5), and load such a folder
back into BitNetLM without transformers.

Per quantized linear (out, in):
    weight        uint8 (out/4, in): packed row r, bits 2i..2i+1 hold original row
                  r + i*out/4 as code = w + 1  (w in {-1, 0, +1})
    weight_scale  bf16 (1,): beta = mean|W| (multiplies the output: autobitlinear)
Embedding and norms are bf16.  No lm_head (tied).
"""

import json
import os

import torch

from bitnet_model import BitNetLM, ternarize
from data_tok import BOS, EOS, EOT


def pack_ternary(codes):
    """codes: integer tensor (out, in) in {-1,0,1} -> uint8 (out/4, in)."""
    out = codes.shape[0]
    assert out % 4 == 0, "out_features must be a multiple of 4"
    r = out // 4
    c = (codes.to(torch.int16) + 1).to(torch.uint8)
    packed = torch.zeros((r, codes.shape[1]), dtype=torch.uint8)
    for i in range(4):
        packed |= c[i * r:(i + 1) * r] << (2 * i)
    return packed


def unpack_ternary(packed):
    """uint8 (out/4, in) -> float32 (out, in) in {-1,0,1}."""
    parts = [((packed >> (2 * i)) & 3).to(torch.float32) - 1.0 for i in range(4)]
    return torch.cat(parts, dim=0)


def hf_config(cfg, tok):
    """config.json, same keys and order as the conformance kit's."""
    return {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "hidden_act": "relu2",
        "max_position_embeddings": cfg["max_position_embeddings"],
        "initializer_range": 0.02,
        "rms_norm_eps": cfg["rms_norm_eps"],
        "use_cache": True,
        "bos_token_id": tok.token_to_id(BOS),
        "eos_token_id": tok.token_to_id(EOS),
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": "offline",
        },
        "torch_dtype": "bfloat16",
        "rope_theta": float(cfg["rope_theta"]),
    }


@torch.no_grad()
def export_hf(model, tok, out_dir):
    """Write model.safetensors, config.json and generation_config.json (the tokenizer
    files are written by data_tok.write_tokenizer_files)."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    cfg = model.cfg
    for n in ("hidden_size", "intermediate_size"):
        assert cfg[n] % 128 == 0, f"{n} must be a multiple of 128 for the engine's I2_S layout"
    assert cfg["hidden_size"] == cfg["num_attention_heads"] * cfg["head_dim"]
    t = {"model.embed_tokens.weight": model.embed_tokens.weight.detach().cpu().to(torch.bfloat16)}
    for name, m in model.norms():
        t[name + ".weight"] = m.weight.detach().cpu().to(torch.bfloat16)
    for name, m in model.bitlinears():
        assert m.in_features % 128 == 0 and m.out_features % 4 == 0, name
        codes, beta = ternarize(m.weight.detach().cpu())
        t[name + ".weight"] = pack_ternary(codes)
        t[name + ".weight_scale"] = beta.reshape(1).to(torch.bfloat16)
    t = {k: v.contiguous() for k, v in t.items()}
    save_file(t, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(cfg, tok), f, indent=2)
    gen = {"bos_token_id": tok.token_to_id(BOS),
           "eos_token_id": [tok.token_to_id(EOS), tok.token_to_id(EOT)],
           "do_sample": False}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


def load_exported(out_dir, device="cpu"):
    """Build a BitNetLM from an exported folder: the ternary codes and bf16 scales,
    embedding and norms exactly as stored (computation in float32)."""
    from safetensors.torch import load_file

    with open(os.path.join(out_dir, "config.json")) as f:
        hc = json.load(f)
    cfg = {k: hc[k] for k in ("vocab_size", "hidden_size", "intermediate_size",
                              "num_hidden_layers", "num_attention_heads",
                              "num_key_value_heads", "rms_norm_eps", "rope_theta",
                              "max_position_embeddings")}
    cfg["head_dim"] = hc["hidden_size"] // hc["num_attention_heads"]
    t = load_file(os.path.join(out_dir, "model.safetensors"))
    model = BitNetLM(cfg)
    with torch.no_grad():
        model.embed_tokens.weight.copy_(t["model.embed_tokens.weight"].float())
        for name, m in model.norms():
            m.weight.copy_(t[name + ".weight"].float())
        for name, m in model.bitlinears():
            codes = unpack_ternary(t[name + ".weight"])
            assert codes.shape == m.weight.shape, name
            m.weight.copy_(codes * t[name + ".weight_scale"].float())
            m.frozen_codes = codes.to(device)
            m.frozen_scale = t[name + ".weight_scale"].float().reshape(()).to(device)
    return model.to(device).eval()
