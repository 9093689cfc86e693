#!/usr/bin/env python3
"""Reference token ids for SmolLM2's GGUF byte-level BPE vocabulary, built without saeidx.

The tokenizer is rebuilt from the GGUF's `tokenizer.ggml.*` metadata (read with the `gguf`
package) along independent routes:

- reference ("ids"): a BPE assembled with the `tokenizers` library: the GGUF vocabulary and
  merges, the pre-tokenizer of SmolLM2's original tokenizer.json, i.e.
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
  (llama.cpp's `smollm` pre-tokenizer does the same: every digit split off alone, then
  GPT-2's regex), a ByteLevel decoder and every CONTROL token (token_type 3) as a special token.
  Every case must decode back to its text.
- transformers: its GGUF tokenizer converter (`transformers.integrations.gguf`'s
  `convert_gguf_tokenizer`, the code behind `AutoTokenizer.from_pretrained(dir, gguf_file=...)`)
  wrapped in a `PreTrainedTokenizerFast` with the config the GGUF implies. transformers' own
  GGUF reader imports torch, so it is fed gguf-py's metadata in the same key mapping
  (`GGUF_TOKENIZER_MAPPING`). transformers 5.24 knows no `smollm` pre-tokenizer and keeps
  GPT-2's plain ByteLevel regex, so it differs from the reference where two or more whitespace
  characters precede a digit ("x   1": x|ĠĠ|Ġ|1 instead of x|ĠĠĠ|1). Such cases also carry
  "transformers_ids"; they are expected and do not fail the run.
- llama.cpp, with --llama-cpp (needs llama-cpp-python, not in requirements.txt: it builds llama.cpp
  from source): llama.cpp's own tokenizer, `tokenize(text, add_bos=False, special=True)`.
  Any difference from the reference fails the run.

The ids are each tokenizer's default encoding (`add_special_tokens=True`); the script records
whether that adds anything compared with `add_special_tokens=False` (the GGUF says
add_bos_token false). Special-token strings inside the text are matched as the special token.

Usage:
    python tokenizer_reference.py --gguf PATH.gguf --out PATH.json [--dump-tokenizer PATH.json] [--llama-cpp]
"""

import argparse
import hashlib
import json
import sys
from importlib.metadata import version
from pathlib import Path

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

# llama.cpp's token type for control (special) tokens.
CONTROL = 3

CASES = [
    "",
    "Hello, world!",
    "12345",
    "3.14159",
    "1,000,000",
    "In 2024, 7 of 10 people paid $1,234.56 each (about 99.5%).",
    "Café naïve résumé Ångström Straße",
    "東京は日本の首都です。你好，世界！",
    "مرحبا بالعالم",
    "Combining: e\u0301 n\u0303 a\u0308\u0301 vs precomposed é ñ",
    "I love 🦀 and 🐍!",
    "ZWJ: 👨\u200d👩\u200d👧\u200d👦 and 👩🏽\u200d💻",
    "Flags: 🇫🇷🇯🇵 🏳️\u200d🌈",
    " leading space",
    "   three leading spaces",
    "multiple    spaces   inside",
    "tab\tseparated\tvalues\t\t",
    "line one\nline two\n\nline four\n",
    "windows\r\nline endings\r\n",
    " \t mixed whitespace at both ends \n\t ",
    "\u00a0no-break\u2009thin\u3000ideographic spaces",
    "control \x07 bell \x1b[0m escape",
    "<|im_start|>user\nHi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
    "not special: <|im_start <|IM_START|> < |im_end| >",
    "x   1 and  22 and\t\t3",
    "1. First\n\n2. Second\n   3. Third",
    "don't I'M we're they'll she'd you've It's",
    "def add(a, b):\n    return a + b  # sum\n",
    "values = [\n    1,\n    22,\n]\n",
    'fn main() {\n\tprintln!("{}", x[0] != 0x1F);\n}\n',
    "The capital of France is Paris. It is known for the Eiffel Tower and its museums.",
    "The quick brown fox jumps over the lazy dog, while five boxing wizards jump quickly; "
    "meanwhile a curious researcher measured 42 different things before lunch.",
]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def render(fixture):
    """Pretty JSON with one line per case, so diffs of the fixture stay readable."""
    cases = ",\n  ".join(json.dumps(case, ensure_ascii=False) for case in fixture["cases"])
    source = json.dumps(fixture["source"], ensure_ascii=False, indent=2).replace("\n", "\n  ")
    return f'{{\n  "source": {source},\n  "cases": [\n  {cases}\n  ]\n}}\n'


def read_metadata(path):
    """All GGUF key/value metadata as plain Python values."""
    return {name: field.contents() for name, field in gguf.GGUFReader(path).fields.items()}


def tokenizers_tokenizer(metadata):
    """The reference: a byte-level BPE with SmolLM2's pre-tokenizer, assembled with `tokenizers` alone."""
    tokens = metadata["tokenizer.ggml.tokens"]
    alphabet = set(bytes_to_unicode().values())
    foreign = [t for t in tokens if not set(t) <= alphabet]
    if foreign:
        raise SystemExit(f"{len(foreign)} tokens outside the byte-level alphabet, e.g. {foreign[:5]!r}")
    merges = [tuple(m.split(" ")) for m in metadata["tokenizer.ggml.merges"]]
    malformed = [m for m in merges if len(m) != 2]
    if malformed:
        raise SystemExit(f"{len(malformed)} merges are not two space-separated parts, e.g. {malformed[:5]!r}")

    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    control = [t for t, kind in zip(tokens, metadata["tokenizer.ggml.token_type"], strict=True) if kind == CONTROL]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    return tokenizer


def transformers_tokenizer(metadata):
    """transformers' GGUF tokenizer conversion, fed the metadata its reader would give."""
    grouped = {
        group: {name: metadata[f"tokenizer.{key}"] for key, name in renames.items() if f"tokenizer.{key}" in metadata}
        for group, renames in GGUF_TOKENIZER_MAPPING.items()
    }
    tokenizer_dict, tokenizer_config = grouped["tokenizer"], grouped["tokenizer_config"]
    for name in ("bos", "eos", "unknown", "padding"):
        token_id = metadata.get(f"tokenizer.ggml.{name}_token_id")
        key = {"unknown": "unk", "padding": "pad"}.get(name, name) + "_token"
        tokenizer_config[key] = tokenizer_dict["tokens"][token_id] if token_id is not None else None
    backend, extra = convert_gguf_tokenizer(metadata["general.architecture"], tokenizer_dict)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_config, **extra)


def llama_cpp_tokenize(gguf_path):
    """llama.cpp's tokenizer for the GGUF, as a function of text."""
    from llama_cpp import Llama

    llm = Llama(str(gguf_path), vocab_only=True, verbose=False)
    return lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", required=True, type=Path, help="GGUF file with a gpt2 (byte-level BPE) vocabulary")
    parser.add_argument("--out", required=True, type=Path, help="fixture JSON to write")
    parser.add_argument("--dump-tokenizer", type=Path, help="also write the reference tokenizer.json here")
    parser.add_argument("--llama-cpp", action="store_true", help="also compare with llama.cpp (llama-cpp-python)")
    args = parser.parse_args()

    metadata = read_metadata(args.gguf)
    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise SystemExit(f"expected tokenizer.ggml.model 'gpt2', got {metadata.get('tokenizer.ggml.model')!r}")
    bpe = tokenizers_tokenizer(metadata)
    hf = transformers_tokenizer(metadata)
    llama_cpp = llama_cpp_tokenize(args.gguf) if args.llama_cpp else None
    if args.dump_tokenizer:
        args.dump_tokenizer.write_text(bpe.to_str(pretty=True), encoding="utf-8")

    cases, failures, adds_specials = [], [], False
    for text in CASES:
        encoding = bpe.encode(text)
        case = {"text": text, "ids": encoding.ids, "tokens": encoding.tokens}
        adds_specials |= encoding.ids != bpe.encode(text, add_special_tokens=False).ids
        hf_ids = hf(text)["input_ids"]
        adds_specials |= hf_ids != hf(text, add_special_tokens=False)["input_ids"]
        if hf_ids != encoding.ids:
            case["transformers_ids"] = hf_ids
        decoded = bpe.decode(encoding.ids, skip_special_tokens=False)
        if decoded != text:
            failures.append(f"{text!r} decodes to {decoded!r}")
        if llama_cpp and llama_cpp(text) != encoding.ids:
            failures.append(f"llama.cpp gives {llama_cpp(text)} for {text!r}, reference {encoding.ids}")
        cases.append(case)

    versions = ("tokenizers", "transformers", "gguf") + (("llama_cpp_python",) if llama_cpp else ())
    fixture = {
        "source": {
            "gguf": args.gguf.name,
            "gguf_sha256": sha256(args.gguf),
            "tokenizer_model": metadata["tokenizer.ggml.model"],
            "tokenizer_pre": metadata.get("tokenizer.ggml.pre"),
            "vocab_size": len(metadata["tokenizer.ggml.tokens"]),
            "merges": len(metadata["tokenizer.ggml.merges"]),
            "add_bos_token": metadata.get("tokenizer.ggml.add_bos_token"),
            "generator": "scripts/reference/tokenizer_reference.py",
            "ids": "tokenizers BPE, pre-tokenizer Sequence[Digits(individual_digits=True), "
            "ByteLevel(add_prefix_space=False)], default encode; special-token strings in text "
            "are matched as special tokens",
            "transformers_ids": "present only where transformers' GGUF converter (no smollm "
            "pre-tokenizer: plain ByteLevel) differs",
            "default_adds_special_tokens": adds_specials,
            "transformers_disagreements": sum("transformers_ids" in case for case in cases),
            "llama_cpp_checked": bool(llama_cpp),
            "versions": {pkg: version(pkg.replace("_", "-")) for pkg in versions},
        },
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(fixture), encoding="utf-8")

    print(f"wrote {len(cases)} cases to {args.out}")
    print(f"default encoding adds special tokens: {adds_specials}")
    print(f"transformers differs on {fixture['source']['transformers_disagreements']} cases")
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
