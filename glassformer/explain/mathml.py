"""A small LaTeX-to-MathML translator, so the HTML trace shows typeset equations with no network and no
JavaScript (every current browser renders MathML Core).

The equations of the trace are written once, in the subset of LaTeX below; Markdown keeps the LaTeX
(``$$...$$``, which GitHub and most viewers render) and HTML gets this translation.

    letters, digits, operators     x, 12, + - = ( ) [ ] , ; : / | < > !
    sub/superscripts               x_i  x^2  W_{Q}^{h}  x_{i}^{2}
    groups                         {...}
    \\frac{a}{b}  \\sqrt{a}  \\hat{x}  \\mathrm{text}  \\text{words}  \\operatorname{softmax}  \\mathbb{R}
    greek and symbols              \\alpha ... \\omega, \\Phi, \\top, \\cdot, \\odot, \\times, \\sum, \\le,
                                   \\ge, \\to, \\infty, \\in, \\ldots, \\cdots, \\max, \\exp, \\log, \\quad, \\,
                                   \\lor, \\land, \\lfloor, \\rfloor, \\bmod

An unknown command raises InputError, so a typo in an equation fails loudly instead of rendering wrong.
"""

from __future__ import annotations

import re

from html import escape

from glassformer.errors import InputError

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ",
    "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Pi": "Π", "Sigma": "Σ",
    "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
OPERATORS = {
    "cdot": "⋅", "odot": "⊙", "times": "×", "sum": "∑", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "in": "∈", "ldots": "…", "cdots": "⋯", "vdots": "⋮",
    "approx": "≈", "ne": "≠", "neq": "≠", "pm": "±", "mid": "∣", "oplus": "⊕", "circ": "∘", "prod": "∏",
    "lor": "∨", "land": "∧", "lfloor": "⌊", "rfloor": "⌋", "bmod": "mod",
}
IDENTIFIERS = {"top": "⊤", "infty": "∞", "ell": "ℓ", "partial": "∂", "nabla": "∇"}
FUNCTIONS = ("max", "min", "exp", "log", "sin", "cos", "tanh", "arg", "mean", "var")
SPACES = {"quad": "1em", "qquad": "2em", ",": "0.17em", ";": "0.28em", ":": "0.22em", " ": "0.25em", "!": "0em"}
FONTS = {"mathrm": "normal", "mathbf": "bold", "mathit": "italic", "operatorname": "normal"}
BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ"}
ACCENTS = {"hat": "^", "tilde": "~", "bar": "¯", "vec": "→"}
PLAIN_OPERATORS = set("+-=()[],;:/|<>!'*.")


class _Parser:
    def __init__(self, tex: str):
        self.tex, self.i = tex, 0

    def error(self, message: str) -> InputError:
        return InputError(f"cannot typeset {self.tex!r}: {message} at character {self.i}")

    def peek(self) -> str:
        return self.tex[self.i] if self.i < len(self.tex) else ""

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.i += 1

    def parse_row(self, until: str = "") -> str:
        """A sequence of atoms, each with optional sub/superscripts, until ``until`` or the end."""
        items = []
        while True:
            self.skip_spaces()
            c = self.peek()
            if c == "" or (until and c == until):
                break
            if c in "_^":
                raise self.error(f"{c!r} with nothing before it")
            base = self.parse_atom()
            items.append(self.scripts(base))
        return items[0] if len(items) == 1 else f"<mrow>{''.join(items)}</mrow>"

    def scripts(self, base: str) -> str:
        sub = sup = None
        while True:
            self.skip_spaces()
            c = self.peek()
            if c == "_" and sub is None:
                self.i += 1
                sub = self.parse_argument()
            elif c == "^" and sup is None:
                self.i += 1
                sup = self.parse_argument()
            else:
                break
        if sub is not None and sup is not None:
            return f"<msubsup>{base}{sub}{sup}</msubsup>"
        if sub is not None:
            return f"<msub>{base}{sub}</msub>"
        if sup is not None:
            return f"<msup>{base}{sup}</msup>"
        return base

    def parse_argument(self) -> str:
        """A {group} or a single atom (what follows _ ^ and command arguments)."""
        self.skip_spaces()
        if self.peek() == "{":
            return self.parse_group()
        if self.peek() == "":
            raise self.error("missing argument")
        return self.parse_atom()

    def parse_group(self) -> str:
        if self.peek() != "{":
            raise self.error("expected '{'")
        self.i += 1
        row = self.parse_row(until="}")
        if self.peek() != "}":
            raise self.error("unclosed '{'")
        self.i += 1
        return row if row.startswith("<mrow>") else f"<mrow>{row}</mrow>"

    def raw_group(self) -> str:
        """The literal text of a {group} (for \\text and \\mathrm)."""
        self.skip_spaces()
        if self.peek() != "{":
            raise self.error("expected '{'")
        end = self.tex.find("}", self.i)
        if end < 0:
            raise self.error("unclosed '{'")
        text, self.i = self.tex[self.i + 1 : end], end + 1
        return re.sub(r"\\([_%#&$ ])", r"\1", text)  # TeX escapes read literally: \mathrm{resid\_mid} -> resid_mid

    def parse_atom(self) -> str:
        c = self.peek()
        if c == "{":
            return self.parse_group()
        if c == "\\":
            return self.parse_command()
        if c.isdigit() or (c == "." and self.tex[self.i + 1 : self.i + 2].isdigit()):
            start = self.i
            while self.peek().isdigit() or self.peek() == ".":
                self.i += 1
            return f"<mn>{self.tex[start:self.i]}</mn>"
        self.i += 1
        if c.isalpha():
            return f"<mi>{escape(c)}</mi>"
        if c in PLAIN_OPERATORS:
            op = {"-": "−", "*": "∗", "'": "′"}.get(c, c)
            return f"<mo>{escape(op)}</mo>"
        raise self.error(f"unexpected character {c!r}")

    def parse_command(self) -> str:
        self.i += 1  # the backslash
        start = self.i
        while self.peek().isalpha():
            self.i += 1
        name = self.tex[start:self.i]
        if not name:  # \, \; \: \! \{ \} \\_
            c = self.peek()
            self.i += 1
            if c in SPACES:
                return f'<mspace width="{SPACES[c]}"/>'
            if c in "{}_%#&":
                return f"<mo>{escape(c)}</mo>"
            raise self.error(f"unknown command '\\{c}'")
        if name in GREEK:
            return f"<mi>{GREEK[name]}</mi>"
        if name in OPERATORS:
            return f"<mo>{OPERATORS[name]}</mo>"
        if name in IDENTIFIERS:
            return f"<mi>{IDENTIFIERS[name]}</mi>"
        if name in FUNCTIONS:
            return f'<mi mathvariant="normal">{name}</mi>'
        if name in SPACES:
            return f'<mspace width="{SPACES[name]}"/>'
        if name == "frac":
            return f"<mfrac>{self.parse_argument()}{self.parse_argument()}</mfrac>"
        if name == "sqrt":
            return f"<msqrt>{self.parse_argument()}</msqrt>"
        if name in FONTS:
            text = self.raw_group().replace("\\_", "_")  # \mathrm{resid\_mid}: the underscore, not a backslash
            return f'<mi mathvariant="{FONTS[name]}">{escape(text)}</mi>'
        if name == "text":
            text = escape(self.raw_group()).replace(" ", "\u00a0")  # non-breaking: MathML would drop edge spaces
            return f"<mtext>{text}</mtext>"
        if name == "mathbb":
            text = self.raw_group()
            return f"<mi>{BLACKBOARD.get(text, escape(text))}</mi>"
        if name in ACCENTS:
            return f'<mover accent="true">{self.parse_argument()}<mo>{ACCENTS[name]}</mo></mover>'
        if name in ("left", "right", "big", "Big", "bigl", "bigr"):
            self.skip_spaces()
            c = self.peek()
            self.i += 1
            if c == "\\":  # \left\{ etc.
                c = self.peek()
                self.i += 1
            return "" if c == "." else f'<mo stretchy="true">{escape(c)}</mo>'
        raise self.error(f"unknown command '\\{name}'")


def to_mathml(tex: str, display: bool = True) -> str:
    """``<math>`` markup for the LaTeX ``tex`` (the subset in the module docstring)."""
    parser = _Parser(tex)
    body = parser.parse_row()
    if parser.i != len(tex):
        raise parser.error("unmatched '}'")
    mode = ' display="block"' if display else ""
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML"{mode}>{body}</math>'
