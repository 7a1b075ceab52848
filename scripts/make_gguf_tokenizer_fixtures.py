#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/tokenizer/: two small tokenizers trained here with Hugging
Face's `tokenizers`, each as the tokenizer.json a checkpoint would hold and as the GGUF
tokenizer metadata llama.cpp's convert_hf_to_gguf.py writes for it, with the reference
encodings `tokenizers` gives (tests/gguf_tokenizer.rs checks `Tokenizer::from_gguf`
against them); plus a few malformed GGUF files.

Run by hand (never by CI), from the repository root:

    python3 scripts/make_gguf_tokenizer_fixtures.py

Needs: tokenizers, transformers (its `generate_merges`, as its Llama converter derives a
SentencePiece model's merges from the piece scores), jinja2 and gguf (llama.cpp's
gguf-py, 0.19).

- `bpe`: byte-level BPE as Llama 3's tokenizer.json (its Split regex and ByteLevel,
  ignore_merges, <|begin_of_text|> added by the post-processor), written as
  `_set_vocab_gpt2` does: model "gpt2", pre "llama-bpe", tokens, token types (added
  special tokens CONTROL, other added tokens USER_DEFINED), merges.
  `bpe_gpt2`, `bpe_qwen2`, `bpe_smollm`, `bpe_default`: its vocabulary and merges under
  those families' pre-tokenizers (pre "gpt2", "qwen2", "smollm"; "default" is llama.cpp's
  fallback regexes, applied in turn), without bos.
- `spm`: SentencePiece-style BPE with byte fallback as Llama 2 / TinyLlama's
  tokenizer.json (<unk> <s> </s>, <0x00>..<0xFF>, then the merged pieces, scored by
  merge order as SentencePiece scores them, then the single characters; Prepend("▁") +
  Replace(" ", "▁") normalizer; merges from the scores), written as
  `_set_vocab_sentencepiece` does: model "llama", tokens, scores, token types
  (UNKNOWN, CONTROL, BYTE, NORMAL), add_space_prefix.
"""

import json
import os
import sys

import gguf
import jinja2
import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers
from transformers.convert_slow_tokenizer import generate_merges

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "gguf", "tokenizer")

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.
Tensor parallelism splits every weight matrix across the ranks of a group.
Each rank holds a shard, multiplies it, and the results are gathered again.
I can't believe it's already done! We'll see, they've said, you'd know.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 12345 3.14159 2.71828 1e-5
def forward(self, x):
    h = self.norm(x)
    for layer in self.layers:
        h = layer(h)  # residual inside
    return self.head(h)

fn main() {
\tlet v: Vec<u32> = (0..10).collect();
\tprintln!("{:?}", v);
}
Le café est naïve, déjà vu, à la française. Über straße, señor, coöperate.
東京は日本の首都です。 北京是中国的首都。 서울은 한국의 수도입니다.
Emoji: 🦀 🎉 🚀 ❤️ 👍 — dashes – and “quotes” ‘single’ … ellipsis.
Hello, world! Hello again, world. Say hello to the world of tokens.
    indented    with    many    spaces
line one
line two

line four after a blank line
The model reads text, turns it into tokens, and writes tokens back into text.
Questions? Answers! Lists: a, b, c; items (1) [2] {3} <4> "five" 'six'.
"""

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe it's 2024, they'll say.",
    "café naïve déjà vu, Über straße",
    "東京は日本の首都です。北京是中国的首都。",
    "🦀🎉 crab party 🚀",
    "def f(x):\n    return x * 2\n\tif y:\n\t\tpass\n",
    "12345 3.14 1000000 007",
    "multiple    spaces   here  and\ttabs\t\there",
    "line one\nline two\n\n\nline five\r\nwindows line",
    "   leading and trailing spaces   ",
    "",
    " ",
    "\n",
    "unseen letters: ξψω жзи ąęł ñ",
    "mixed😀emoji🦀inside words",
    "symbols: @#$%^&*()_+-=[]{}|;':\",./<>?`~",
]

BPE_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
BPE_USER = "<tool_call>"
BPE_TEXTS = TEXTS + [
    "<|begin_of_text|>Hello<|eot_id|> world<|end_of_text|>",
    "call <tool_call>{\"name\": \"f\"}<tool_call> done",
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
]
# Decomposed accents (NFC composes them for Qwen2), digit runs, contractions in capitals.
VARIANT_TEXTS = [
    "cafe\u0301 nai\u0308ve",
    "I'M SURE YOU'LL SEE 1234567890",
    "x=123456;y=7",
]
SPM_TEXTS = TEXTS + [
    "<s>Hello</s> world<s>",
    "a</s>b <unk> c",
]

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_REGEXES = [
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
]

BPE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)
SPM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] | trim "
    "+ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] | trim + ' ' "
    "+ eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles') }}{% endif %}"
    "{% endfor %}"
)
MESSAGES = [
    {"role": "user", "content": "Hello there! "},
    {"role": "assistant", "content": "  Hi, how can I help?"},
    {"role": "user", "content": "Tell me about café 🦀."},
]


def lines():
    return [line for line in CORPUS.splitlines()] * 3


def render(template, bos, eos, add_generation_prompt):
    """As transformers' apply_chat_template(tokenize=False) renders."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=MESSAGES, bos_token=bos, eos_token=eos,
        add_generation_prompt=add_generation_prompt)


def reference(tok, texts, template, bos, eos):
    cases = []
    for text in texts:
        with_special = tok.encode(text, add_special_tokens=True).ids
        without = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": with_special,
            "ids_no_special": without,
            "decoded": tok.decode(with_special, skip_special_tokens=True),
            "decoded_no_special": tok.decode(without, skip_special_tokens=True),
        })
    chat = []
    for gen in [True, False]:
        text = render(template, bos, eos, gen)
        chat.append({
            "add_generation_prompt": gen,
            "text": text,
            "ids": tok.encode(text, add_special_tokens=False).ids,
        })
    return {"cases": cases, "chat": {"messages": MESSAGES, "renders": chat}}


def write_json(name, value):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def writer(name, model):
    w = gguf.GGUFWriter(os.path.join(OUT, name), "llama")
    w.add_name(name)
    if model is not None:
        w.add_tokenizer_model(model)
    return w


def finish(w, tensor=False):
    if tensor:
        # One tiny tensor, as a model file has them (the reader must take both).
        w.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_bpe():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=520, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines(), trainer)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t in BPE_SPECIALS])
    tok.add_tokens([AddedToken(BPE_USER, normalized=False, special=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|>:0 $A:0",
        pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)],
    )
    tok.save(os.path.join(OUT, "bpe.tokenizer.json"))
    data = json.loads(tok.to_str())

    # As convert_hf_to_gguf.py's get_vocab_base / _set_vocab_gpt2.
    n = tok.get_vocab_size(with_added_tokens=True)
    reverse = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in data["added_tokens"]}
    tokens, types = [], []
    for i in range(n):
        tokens.append(reverse[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i]["special"]
                         else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    eos = tok.token_to_id("<|end_of_text|>")
    eot = tok.token_to_id("<|eot_id|>")

    w = writer("bpe.gguf", "gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_eot_token_id(eot)
    w.add_add_bos_token(True)
    w.add_chat_template(BPE_TEMPLATE)
    finish(w, tensor=True)

    ref = reference(tok, BPE_TEXTS, BPE_TEMPLATE, "<|begin_of_text|>", "<|end_of_text|>")
    ref.update({"bos_id": bos, "add_bos": True, "eos_ids": [eos, eot],
                "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                "vocab_size": n})
    write_json("bpe.reference.json", ref)

    # The same vocabulary and merges under the other families' pre-tokenizers (as their
    # tokenizer.json files have them), without bos: only the GGUF and the reference ids.
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    variants = {
        "gpt2": (None, byte_level),
        # llama.cpp's fallback regexes, in turn.
        "default": (None, {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False}
            for r in DEFAULT_REGEXES] + [
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]}),
        "qwen2": ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]}),
        "smollm": (None, {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}),
    }
    for pre, (normalizer, pre_tokenizer) in variants.items():
        d = json.loads(tok.to_str())
        d["normalizer"] = normalizer
        d["pre_tokenizer"] = pre_tokenizer
        d["post_processor"] = None
        d["model"]["ignore_merges"] = False
        variant = Tokenizer.from_str(json.dumps(d))
        w = writer(f"bpe_{pre}.gguf", "gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(bos)
        w.add_eos_token_id(eos)
        w.add_add_bos_token(False)
        w.add_chat_template(BPE_TEMPLATE)
        finish(w)
        ref = reference(variant, BPE_TEXTS + VARIANT_TEXTS, BPE_TEMPLATE,
                        "<|begin_of_text|>", "<|end_of_text|>")
        ref.update({"bos_id": bos, "add_bos": False, "eos_ids": [eos]})
        write_json(f"bpe_{pre}.reference.json", ref)


def make_spm():
    # Train the merges on Metaspace-split words, as SentencePiece's BPE never merges
    # across a "▁" inside a piece.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=420, min_frequency=2, show_progress=False)
    tok.train_from_iterator(lines(), trainer)
    trained = json.loads(tok.to_str())["model"]
    train_merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                    for m in trained["merges"]]

    # SentencePiece's layout: <unk> <s> </s>, the byte pieces, the merged pieces in merge
    # order (score minus the order), then the characters (lower scores).
    pieces = [("<unk>", 0.0, gguf.TokenType.UNKNOWN),
              ("<s>", 0.0, gguf.TokenType.CONTROL),
              ("</s>", 0.0, gguf.TokenType.CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, gguf.TokenType.BYTE) for b in range(256)]
    seen = {p[0] for p in pieces}
    k = 0
    for left, right in train_merges:
        piece = left + right
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, -float(k), gguf.TokenType.NORMAL))
            k += 1
    chars = sorted((t for t in trained["vocab"] if len(t) == 1),
                   key=lambda t: trained["vocab"][t])
    for c in chars:
        if c not in seen:
            seen.add(c)
            pieces.append((c, -float(k), gguf.TokenType.NORMAL))
            k += 1

    # As transformers' Llama converter: the merges ordered by the pieces' scores.
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    scores = {p: s for p, s, _ in pieces}
    merges = generate_merges(vocab, scores)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t in ["<unk>", "<s>", "</s>"]])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    tok.save(os.path.join(OUT, "spm.tokenizer.json"))

    # As convert_hf_to_gguf.py's _set_vocab_sentencepiece.
    w = writer("spm.gguf", "llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([p for p, _, _ in pieces])
    w.add_token_scores([s for _, s, _ in pieces])
    w.add_token_types([t for _, _, t in pieces])
    w.add_add_space_prefix(True)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(SPM_TEMPLATE)
    finish(w)

    ref = reference(tok, SPM_TEXTS, SPM_TEMPLATE, "<s>", "</s>")
    ref.update({"bos_id": 1, "add_bos": True, "eos_ids": [2], "bos_token": "<s>",
                "eos_token": "</s>", "vocab_size": len(pieces)})
    write_json("spm.reference.json", ref)


def make_bad():
    """Malformed tokenizer metadata, each wrong in one way (names say which), on a tiny
    vocabulary that is otherwise whole."""
    tokens = ["a", "b", "ab", "<|end|>"]
    types = [1, 1, 1, 3]
    merges = ["a b"]

    def bpe(name, pre="llama-bpe", model="gpt2"):
        w = writer(name, model)
        if pre is not None:
            w.add_tokenizer_pre(pre)
        return w

    w = bpe("bad_model.gguf", None, "bert")
    w.add_token_list(tokens)
    finish(w)

    w = bpe("bad_no_model.gguf", None, None)
    w.add_token_list(tokens)
    finish(w)

    w = bpe("bad_no_tokens.gguf")
    w.add_token_merges(merges)
    finish(w)

    w = bpe("bad_pre.gguf", "mystery-pre")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    finish(w)

    w = bpe("bad_no_merges.gguf")
    w.add_token_list(tokens)
    finish(w)

    w = bpe("bad_bos.gguf")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens))
    finish(w)

    w = bpe("bad_types.gguf")
    w.add_token_list(tokens)
    w.add_token_types(types[:-1])
    w.add_token_merges(merges)
    finish(w)

    w = bpe("bad_merge.gguf")
    w.add_token_list(tokens)
    w.add_token_merges(merges + ["notatoken b"])
    finish(w)

    w = bpe("bad_add_bos.gguf")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_add_bos_token(True)
    finish(w)

    w = bpe("bad_no_scores.gguf", None, "llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "a", "b", "ab"])
    finish(w)


def main():
    os.makedirs(OUT, exist_ok=True)
    make_bpe()
    make_spm()
    make_bad()
    print("wrote", sorted(os.listdir(OUT)), file=sys.stderr)


if __name__ == "__main__":
    main()
