"""Hand-built tokenizer.json files: a BPE vocabulary learned on a small corpus, in the styles the families publish
(SentencePiece-style Llama with byte fallback, GPT-2 ByteLevel as SmolLM2, Qwen2 ByteLevel, Llama-3 ByteLevel; the last
for the bench model, learned on a larger text)."""

import heapq
import re
from collections import Counter, defaultdict

# Words the conformance prompts and chat templates use, so the learned merges make multi-character tokens.
CORPUS = """
How many red objects are there? How many blue cubes are in the image? What color is the large sphere?
Describe the image. Answer the question. Is there a small green cylinder left of the metal cube?
USER: ASSISTANT: system user assistant You are a helpful assistant. Assistant: User:
SUMMARY CAPTION REASONING CONCLUSION The answer is 3. There are 2 red objects and 1 blue object.
"""

METASPACE = "\u2581"


def bytes_to_unicode() -> list[tuple[int, str]]:
    """GPT-2's reversible byte -> printable character table, in GPT-2 vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    table = [(b, chr(b)) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            table.append((b, chr(256 + extra)))
            extra += 1
    return table


def learn_merges(words: list[list[str]], count: int) -> list[tuple[str, str]]:
    """Plain BPE training: the most frequent pair merged first, ties broken by the pair's text so the result is
    deterministic. Pair counts are kept up to date for the words each merge touches (a heap of counts, stale
    entries skipped), so a large corpus and thousands of merges take seconds."""
    freq = Counter(tuple(w) for w in words)
    symbols = [list(w) for w in freq]
    weight = list(freq.values())
    pairs: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, word in enumerate(symbols):
        for pair in zip(word, word[1:]):
            pairs[pair] += weight[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < count:
        n, best = heapq.heappop(heap)
        if pairs.get(best, 0) != -n:
            continue
        merges.append(best)
        changed = set()
        for i in sorted(where.pop(best)):
            word, out, j = symbols[i], [], 0
            while j < len(word):
                if j + 1 < len(word) and (word[j], word[j + 1]) == best:
                    out.append(word[j] + word[j + 1])
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            if len(out) == len(word):
                continue
            for pair in zip(word, word[1:]):
                pairs[pair] -= weight[i]
                changed.add(pair)
            for pair in zip(out, out[1:]):
                pairs[pair] += weight[i]
                where[pair].add(i)
                changed.add(pair)
            symbols[i] = out
        for pair in changed:
            if pairs[pair] > 0:
                heapq.heappush(heap, (-pairs[pair], pair))
            else:
                del pairs[pair]
    return merges


def added(token_id: int, content: str, special: bool = True) -> dict:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": not special,
        "special": special,
    }


def bpe_model(vocab: dict[str, int], merges: list[tuple[str, str]], **extra) -> dict:
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": extra.pop("unk_token", None),
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": extra.pop("fuse_unk", False),
        "byte_fallback": extra.pop("byte_fallback", False),
        "ignore_merges": extra.pop("ignore_merges", False),
        "vocab": vocab,
        "merges": [f"{a} {b}" for a, b in merges],
    }


def extend_vocab(vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)


def llama_tokenizer(extra_special: list[str], merge_count: int = 96) -> dict:
    """Llama/SentencePiece-BPE style as llava-1.5 ships it: <unk> <s> </s>, 256 <0xNN> byte-fallback pieces,
    Metaspace pre-tokenizer (prepend_scheme "first", no split), <s> added by a TemplateProcessing post-processor."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in [METASPACE] + [chr(c) for c in range(0x21, 0x7F)]:
        vocab[ch] = len(vocab)
    words = [list(METASPACE + w) for w in CORPUS.split()]
    merges = learn_merges(words, merge_count)
    extend_vocab(vocab, merges)
    specials = [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")]
    # As converted checkpoints do, tokens added after training live in added_tokens only, not in the BPE vocab.
    for i, tok in enumerate(extra_special):
        specials.append(added(len(vocab) + i, tok))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": specials,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": METASPACE, "prepend_scheme": "first", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": METASPACE}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": bpe_model(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True),
    }


GPT2_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def byte_level_words(text: str, split: re.Pattern = GPT2_SPLIT) -> list[list[str]]:
    table = dict(bytes_to_unicode())
    return [[table[b] for b in piece.encode()] for piece in split.findall(text)]


def byte_level_vocab(
    leading_special: list[str], merge_count: int, text: str = CORPUS, split: re.Pattern = GPT2_SPLIT
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {tok: i for i, tok in enumerate(leading_special)}
    for _, ch in bytes_to_unicode():
        vocab[ch] = len(vocab)
    merges = learn_merges(byte_level_words(text, split), merge_count)
    extend_vocab(vocab, merges)
    return vocab, merges


def byte_level_tokenizer(
    leading_special: list[str],
    trailing_special: list[str],
    pre_tokenizer: dict,
    normalizer,
    merge_count: int = 96,
    text: str = CORPUS,
    split: re.Pattern = GPT2_SPLIT,
) -> dict:
    vocab, merges = byte_level_vocab(leading_special, merge_count, text, split)
    specials = [added(vocab[tok], tok) for tok in leading_special]
    for i, tok in enumerate(trailing_special):
        specials.append(added(len(vocab) + i, tok))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": specials,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": bpe_model(vocab, merges),
    }


def smollm2_tokenizer(trailing_special: list[str]) -> dict:
    """SmolLM2 (GPT-2 ByteLevel BPE, individual digits); special tokens <|endoftext|> <|im_start|> <|im_end|> first."""
    pre = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    return byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], trailing_special, pre, None)


QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def qwen2_tokenizer(trailing_special: list[str]) -> dict:
    """Qwen2 ByteLevel BPE: NFC normalizer, regex Split then ByteLevel without regex; specials after the vocabulary."""
    pre = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    return byte_level_tokenizer([], trailing_special, pre, {"type": "NFC"})


def token_id(tokenizer: dict, content: str) -> int:
    for tok in tokenizer["added_tokens"]:
        if tok["content"] == content:
            return tok["id"]
    return tokenizer["model"]["vocab"][content]


def vocab_size(tokenizer: dict) -> int:
    return max(len(tokenizer["model"]["vocab"]), 1 + max(t["id"] for t in tokenizer["added_tokens"]))


LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# LLAMA3_PATTERN in Python's re, which has no \p classes: a letter is [^\W\d_], a number \d.
LLAMA3_SPLIT = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\w\r\n]|_)?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def llama3_tokenizer(text: str, merge_count: int, trailing_special: list[str]) -> dict:
    """Llama-3's style (tiktoken-like ByteLevel BPE: its regex Split, digits in runs of up to three, ByteLevel without
    regex; the special tokens after the BPE vocabulary, as at 128000 and up), its merges learned on `text`."""
    pre = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    return byte_level_tokenizer([], trailing_special, pre, None, merge_count, text, LLAMA3_SPLIT)
