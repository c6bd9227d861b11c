"""The static screen: reject proof text that cheats before Lean ever sees it (soundness layer 1).

A proof is the tail of one declaration. It may not open new commands (they could run code, redefine
``#print axioms`` or change the environment), may not use ``sorry``-like escapes, meta-programming,
compiler-trusting evaluation (``native_decide``) or debug/kernel options. Lean 4 keywords and names
are matched as Lean tokenises them, so a forbidden word inside a comment is harmless, while one
hidden by spelling tricks is not:

* comments (``--`` and nested ``/- -/``) are skipped exactly as Lean skips them; an unterminated
  block comment is rejected (it would swallow whatever follows the proof);
* identifiers follow Lean's character classes (ASCII letters, the Greek/letter-like blocks,
  subscripts, ``«...»``), so the screen never joins what Lean splits;
* every component of a dotted name is checked after removing guillemets, NFKC normalisation and
  folding Cyrillic/Greek look-alikes, so ``«sorryAx»`` or ``ѕorry`` is still ``sorry``;
* string, character and name literals (``"..."``, ``'c'``, `` `name ``) are rejected outright:
  competition proofs never need them, and they are how names get assembled at run time;
* invisible and bidirectional-control characters are rejected (the text read must be the text run).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Keywords that start a command or a declaration, or modify one (Lean core, Batteries, Mathlib,
# Aesop). None of them belongs inside a tactic proof.
COMMAND_KEYWORDS = frozenset(
    """
theorem lemma def abbrev axiom axioms example instance structure class inductive coinductive opaque
mutual namespace section end variable universe universes export attribute import private protected
noncomputable partial unsafe nonrec local scoped omit include deriving where
macro macro_rules syntax declare_syntax_cat elab elab_rules notation notation3 infix infixl infixr
prefix postfix initialize builtin_initialize run_cmd run_elab run_meta run_tac by_elab
irreducible_def alias register_simp_attr register_label_attr register_option register_builtin_option
library_note add_decl_doc assert_not_exists proof_wanted suppress_compilation unseal seal
compile_inductive compile_def initialize_simps_projections mk_iff_of_inductive_prop unif_hint
declare_aesop_rule_sets add_aesop_rules erase_aesop_rules declare_config_elab
declare_command_config_elab simproc dsimproc simproc_decl dsimproc_decl builtin_simproc
builtin_dsimproc builtin_simproc_decl grind_pattern init_quot sudo
""".split()
)

# Names that close a goal without a proof.
SORRY_NAMES = frozenset({"sorry", "admit", "sorryAx"})
# `stop` discards the rest of a proof (Lean core: `repeat sorry`); it is only a tactic at the start of
# one, elsewhere it may be a variable. Lean's sorry warning and the axiom check catch it too.
STOP = "stop"
# Tactics that close the goal with `sorry` when they find no counterexample (Mathlib's `slim_check`,
# renamed `plausible`): they never prove anything, and Lean's sorry checks would reject them anyway.
ADMITTING_TACTICS = frozenset({"slim_check", "plausible"})
# Names that make Lean trust compiled code instead of the kernel (allowed with allow_native).
# `bv_decide` / `bv_check` check their SAT certificate with `Lean.ofReduceBool` (Lean >= v4.12), so
# they belong here; the axiom check rejects them as well.
NATIVE_NAMES = frozenset(
    {
        "native_decide",
        "ofReduceBool",
        "ofReduceNat",
        "reduceBool",
        "reduceNat",
        "trustCompiler",
        "bv_decide",
        "bv_decide?",
        "bv_check",
    }
)
# `native` is the config flag of `decide +native` / `decide (config := {native := true})`; elsewhere a name.
NATIVE_FLAG = "native"
# Attributes and constants that swap the kernel's view of a definition for foreign code.
FOREIGN_NAMES = frozenset({"implemented_by", "extern", "csimp", "export"})
# Search tactics that may close a goal with a hidden sorry (apply? in Lean 4.9).
SEARCH_TACTICS = frozenset({"apply?"})
# Namespaces whose use means meta-programming or I/O.
META_ROOTS = frozenset({"Lean", "IO", "EIO", "BaseIO", "System", "Elab", "Meta"})

# Options a proof may set locally with `set_option ... in`; everything else (debug.*, kernel.*,
# compiler.*, backward.*, trace.*, ...) is rejected.
ALLOWED_OPTIONS = frozenset(
    {
        "maxHeartbeats",
        "maxRecDepth",
        "maxSynthPendingDepth",
        "synthInstance.maxHeartbeats",
        "synthInstance.maxSize",
        "exponentiation.threshold",
        "push_neg.use_distrib",
        "autoImplicit",
        "relaxedAutoImplicit",
    }
)
ALLOWED_OPTION_PREFIXES = ("pp.", "linter.")

_GREEK_LOWER = "\u03b1-\u03ba\u03bc-\u03c9"  # without lambda
_GREEK_UPPER = "\u0391-\u039f\u03a1\u03a2\u03a4-\u03a9"  # without Pi and Sigma
_LETTER_LIKE = _GREEK_LOWER + _GREEK_UPPER + "\u03ca-\u03fb\u1f00-\u1ffe\u2100-\u214f\U0001d49c-\U0001d59f"
_SUBSCRIPT = "\u2080-\u2089\u2090-\u209c\u1d62-\u1d6a"
_ID_FIRST = "A-Za-z_" + _LETTER_LIKE
_ID_REST = _ID_FIRST + "0-9'!?" + _SUBSCRIPT
_PART = f"(?:«[^»]*»|[{_ID_FIRST}][{_ID_REST}]*)"
_IDENT = re.compile(f"{_PART}(?:\\.{_PART})*")
_ID_FIRST_RE = re.compile(f"[{_ID_FIRST}«]")
_SPACE = re.compile(r"[ \t\r\n]+")
_DIGITS = re.compile(r"[0-9]+")
_COMMENT_MARK = re.compile(r"/-|-/")
_FOREIGN_LETTER = {"Lu", "Ll", "Lt", "Lo"}  # letters; modifier letters (ᶜ, ᵀ, ᵥ) are Mathlib notation
_COMMENT_MAY_FOLLOW = re.compile(f"[\\s{_ID_REST}()\\[\\]{{}}⟨⟩,;]")
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)

# Latin look-alikes from other scripts (a small, practical subset of Unicode's confusables).
_CONFUSABLES = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "һ": "h",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "х": "x",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ɡ": "g",
        "ı": "i",
        "ο": "o",
        "α": "a",
        "ν": "v",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "ι": "i",
        "κ": "k",
        "χ": "x",
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "Х": "X",
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
    }
)


@dataclass(frozen=True)
class Token:
    kind: str  # ident | number | symbol
    text: str  # as written
    parts: tuple[str, ...]  # ident: normalised dotted components; else ()
    pos: int  # offset in the proof


class ScreenReject(Exception):
    """Raised inside the tokeniser; carries the reason, where, and the rule (see ``RULES``)."""

    def __init__(self, reason: str, pos: int, rule: str = "lexical"):
        super().__init__(reason)
        self.reason = reason
        self.pos = pos
        self.rule = rule


# The rule each rejection comes from (scripts/screen_real_proofs.py counts rejections per rule).
RULES = ("sorry", "admitting", "command", "set_option", "foreign", "search", "native", "meta", "lexical", "invisible")


def normalize_name(part: str) -> str:
    """How a name component is compared: guillemets removed, NFKC, look-alikes folded."""
    if part.startswith("«") and part.endswith("»"):
        part = part[1:-1]
    return unicodedata.normalize("NFKC", part).translate(_CONFUSABLES)


def _split_parts(ident: str) -> tuple[str, ...]:
    parts, i = [], 0
    while i < len(ident):
        if ident[i] == "«":
            j = ident.index("»", i) + 1
        else:
            j = ident.find(".", i)
            j = len(ident) if j < 0 else j
        parts.append(normalize_name(ident[i:j]))
        i = j + 1  # skip the dot
    return tuple(parts)


def tokenize(text: str) -> tuple[list[Token], ScreenReject | None]:
    """Lean-compatible tokens of ``text`` with comments dropped, up to the first lexical rejection
    (a literal, an unterminated comment, ...), which is returned beside them."""
    tokens: list[Token] = []
    try:
        _tokenize_into(text, tokens)
    except ScreenReject as exc:
        return tokens, exc
    return tokens, None


def _tokenize_into(text: str, tokens: list[Token]) -> None:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i = _SPACE.match(text, i).end()
        elif text.startswith("--", i) or text.startswith("/-", i):
            if i > 0 and not _COMMENT_MAY_FOLLOW.match(text[i - 1]):
                # Lean might read the symbol before it and the "-" or "/" as one token (`<--x` is
                # `<-` then `-x`), so the screen cannot be sure this is a comment.
                raise ScreenReject(f"comment glued to the symbol {text[i - 1]!r} (ambiguous)", i)
            if text[i] == "-":
                j = text.find("\n", i)
                i = n if j < 0 else j + 1
            else:
                i = _skip_block_comment(text, i)
        elif _ID_FIRST_RE.match(c):
            m = _IDENT.match(text, i)
            if m is None:  # a « that never closes
                raise ScreenReject("unterminated «name»", i)
            tokens.append(Token("ident", m.group(), _split_parts(m.group()), i))
            i = m.end()
        elif c.isascii() and c.isdigit():
            m = _DIGITS.match(text, i)
            tokens.append(Token("number", m.group(), (), i))
            i = m.end()
        elif c == '"':
            raise ScreenReject("string literal (a proof needs none; strings are how names get assembled)", i)
        elif c == "`":
            raise ScreenReject("name literal or syntax quotation (meta-programming)", i)
        elif c == "'":
            if text.startswith("''", i):  # the image notation `f '' s`
                tokens.append(Token("symbol", "''", (), i))
                i += 2
            elif text.startswith("⁻¹", i - 2):  # the preimage notation `f ⁻¹' s`
                tokens.append(Token("symbol", "'", (), i))
                i += 1
            else:
                raise ScreenReject("character literal", i)
        elif c == "#" and i + 1 < n and _ID_FIRST_RE.match(text[i + 1]):
            m = _IDENT.match(text, i + 1)
            raise ScreenReject(f"command `#{m.group() if m else text[i + 1]}`", i, "command")
        elif text.startswith("@[", i):
            raise ScreenReject("attribute `@[...]`", i, "command")
        elif not c.isascii() and unicodedata.category(c) in _FOREIGN_LETTER and c not in "λΠΣ":
            raise ScreenReject(f"letter {c!r} that Lean does not read as part of a name (a look-alike?)", i)
        else:
            tokens.append(Token("symbol", c, (), i))
            i += 1


def _skip_block_comment(text: str, start: int) -> int:
    """End of the nested block comment opening at ``start`` (Lean nests ``/- -/``)."""
    depth, i = 0, start
    for m in _COMMENT_MARK.finditer(text, start):
        if m.start() < i:  # "/-/" : the "-" already belongs to the opening mark
            continue
        depth += 1 if m.group() == "/-" else -1
        i = m.end()
        if depth == 0:
            return i
    raise ScreenReject("unterminated block comment (it would hide what follows the proof)", start)


def _option_allowed(name: str) -> bool:
    return name in ALLOWED_OPTIONS or name.startswith(ALLOWED_OPTION_PREFIXES)


def _starts_tactic(tokens: list[Token], k: int, text: str) -> bool:
    """Whether token ``k`` stands where a tactic starts: first on its line, or after ``by``, ``;``,
    ``<;>``, ``|`` or a ``·`` bullet. After ``=>`` it may be a tactic (``| inl h => stop``) or a term
    (``fun stop => stop``): left to Lean, whose sorry warning and axiom check reject the tactic."""
    if k == 0 or "\n" in text[tokens[k - 1].pos : tokens[k].pos]:
        return True
    prev = tokens[k - 1].text
    if prev in ("by", ";", "|", "·", "•"):
        return True
    return prev == ">" and k >= 2 and tokens[k - 2].text == ";"


def _native_flag(tokens: list[Token], k: int) -> bool:
    """``+native`` or ``native :=`` (a config field), not a variable named ``native``."""
    after = "".join(t.text for t in tokens[k + 1 : k + 3])
    return (k > 0 and tokens[k - 1].text == "+") or after == ":="


def _check_tokens(tokens: list[Token], allow_native: bool, text: str) -> None:
    for k, tok in enumerate(tokens):
        if tok.kind != "ident":
            continue
        parts, whole = tok.parts, ".".join(tok.parts)
        if (
            len(parts) == 1
            and whole in COMMAND_KEYWORDS
            and not (whole == "scoped" and k and tokens[k - 1].parts == ("open",))
        ):
            raise ScreenReject(f"new command or declaration (`{tok.text}`)", tok.pos, "command")
        for part in parts:
            if part in SORRY_NAMES:
                raise ScreenReject(f"uses `{part}`", tok.pos, "sorry")
            if part in ADMITTING_TACTICS:
                raise ScreenReject(
                    f"uses `{part}` (closes the goal with sorry when it finds no counterexample)", tok.pos, "admitting"
                )
            if part in FOREIGN_NAMES or part.startswith("unsafe"):
                raise ScreenReject(f"uses `{part}` (foreign or unsafe code)", tok.pos, "foreign")
            if part in SEARCH_TACTICS:
                raise ScreenReject(f"uses `{part}` (can close goals with a hidden sorry)", tok.pos, "search")
            if part in NATIVE_NAMES and not allow_native:
                raise ScreenReject(
                    f"uses `{part}` (trusts the compiler; set allow_native to accept)", tok.pos, "native"
                )
        if whole == STOP and _starts_tactic(tokens, k, text):
            raise ScreenReject("uses `stop` (discards the rest of the proof with sorry)", tok.pos, "sorry")
        if whole == NATIVE_FLAG and not allow_native and _native_flag(tokens, k):
            raise ScreenReject("uses `native` (trusts the compiler; set allow_native to accept)", tok.pos, "native")
        rooted = parts[1:] if parts[0] == "_root_" and len(parts) > 1 else parts  # `_root_.Lean.Elab...`
        if rooted[0] in META_ROOTS:
            raise ScreenReject(f"meta-programming or I/O (`{tok.text}`)", tok.pos, "meta")
        if whole == "set_option":
            _check_set_option(tokens, k)
        elif whole == "open":
            _check_open(tokens, k)


def _check_set_option(tokens: list[Token], k: int) -> None:
    """Only the tactic form ``set_option <allowed name> <value> in`` may appear."""
    pos = tokens[k].pos
    if k + 1 >= len(tokens) or tokens[k + 1].kind != "ident":
        raise ScreenReject("malformed `set_option`", pos, "set_option")
    name = ".".join(tokens[k + 1].parts)
    if not _option_allowed(name):
        raise ScreenReject(
            f"`set_option {name}` (only {sorted(ALLOWED_OPTIONS)} and pp.*/linter.* may be set)", pos, "set_option"
        )
    if k + 3 >= len(tokens) or tokens[k + 3].parts != ("in",):
        raise ScreenReject(f"`set_option {name}` without `in` is a new command", pos, "command")


def _check_open(tokens: list[Token], k: int) -> None:
    """Only the tactic form ``open A B in`` may appear (a bare ``open`` is a new command)."""
    for tok in tokens[k + 1 :]:
        if tok.kind == "ident" and tok.parts == ("in",):
            return
        if tok.kind != "ident" and tok.text not in "()→":
            break
    raise ScreenReject("`open` without `in` is a new command", tokens[k].pos, "command")


@dataclass(frozen=True)
class ScreenResult:
    """Why the screen refused a proof."""

    rule: str  # one of RULES
    reason: str  # with the proof line
    pos: int  # offset in the proof


def screen_result(proof: str, *, allow_native: bool = False) -> ScreenResult | None:
    """None when ``proof`` passes, else the rule and the reason it is rejected."""
    m = _INVISIBLE.search(proof)
    if m:
        reason = f"invisible or control character U+{ord(m.group()):04X}"
        return ScreenResult("invisible", _where(proof, m.start(), reason), m.start())
    tokens, lexical = tokenize(proof)
    try:
        _check_tokens(tokens, allow_native, proof)
    except ScreenReject as exc:
        return ScreenResult(exc.rule, _where(proof, exc.pos, exc.reason), exc.pos)
    if lexical is not None:
        return ScreenResult(lexical.rule, _where(proof, lexical.pos, lexical.reason), lexical.pos)
    return None


def screen(proof: str, *, allow_native: bool = False) -> str | None:
    """None when ``proof`` passes, else the reason it is rejected (with its line)."""
    result = screen_result(proof, allow_native=allow_native)
    return result.reason if result else None


def _where(text: str, pos: int, reason: str) -> str:
    return f"{reason} (proof line {text.count(chr(10), 0, pos) + 1})"
