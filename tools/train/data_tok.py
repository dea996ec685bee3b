"""Data split and the byte-level BPE tokenizer (Llama 3 pre-tokenizer, Llama 3
special-token names at the end of the vocabulary), written like the conformance
kit's tokenizer.json / tokenizer_config.json."""

import json
import os

# Llama 3 pre-tokenizer regex (docs FORMATS.md section 4.1).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Appended after the BPE tokens, in this order (as in the kit: 4091.. for 4096).
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                  "<|start_header_id|>", "<|end_header_id|>"]
BOS, EOS, EOT = SPECIAL_TOKENS[0], SPECIAL_TOKENS[1], SPECIAL_TOKENS[2]

# The 2B4T chat template, exactly as in the conformance kit.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + '<|eot_id|>' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '<|eot_id|>' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}")


def paragraph_cut(text, frac):
    """Index just after the first paragraph break ("\\n\\n") at or after frac*len(text)."""
    i = text.find("\n\n", int(frac * len(text)))
    return len(text) if i < 0 else i + 2


def split_text(text, test_frac=0.10, dev_frac=0.05):
    """train | dev | test.  test = the last test_frac of the text (starting at the
    next paragraph break); dev = the last dev_frac of what precedes it (used only
    to pick the checkpoint); train = the rest.  The tokenizer sees train+dev."""
    cut_test = paragraph_cut(text, 1.0 - test_frac)
    head, test = text[:cut_test], text[cut_test:]
    cut_dev = paragraph_cut(head, 1.0 - dev_frac)
    return head[:cut_dev], head[cut_dev:], test


def train_tokenizer(text, vocab_size):
    """Train a byte-level BPE of vocab_size tokens in all (BPE + 5 specials at the end).
    Returns a tokenizers.Tokenizer."""
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS), min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    # Paragraphs as training units: identical pre-tokens to the whole text (a
    # paragraph break always ends a pre-token) and deterministic.
    tok.train_from_iterator(split_paragraphs(text), trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    # Llama 3 style: a pre-token that is already a vocabulary entry is emitted whole.
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def split_paragraphs(text):
    """Split after every "\\n\\n" (the break stays with the paragraph before it)."""
    out, start = [], 0
    while True:
        i = text.find("\n\n", start)
        if i < 0:
            break
        out.append(text[start:i + 2])
        start = i + 2
    if start < len(text):
        out.append(text[start:])
    return out


def encode_with_starts(tok, text):
    """Token ids of text (no BOS) and the token indices where paragraphs start."""
    paras = split_paragraphs(text)
    encs = tok.encode_batch(paras, add_special_tokens=False)
    ids, starts = [], []
    for e in encs:
        starts.append(len(ids))
        ids.extend(e.ids)
    return ids, starts


def write_tokenizer_files(tok, out_dir, model_max_length):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {
        "bos_token": BOS,
        "eos_token": EOS,
        "add_bos_token": True,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": model_max_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
