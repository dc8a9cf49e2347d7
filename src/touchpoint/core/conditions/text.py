"""The text form of conditions: a hand-written tokenizer and recursive-descent parser.

People write `features.views_7d >= 3 and traits.plan == 'pro'` in YAML; this
module turns it into the canonical dict form. It never evaluates anything as
Python. Grammar (precedence: `not` > `and` > `or`):

    condition  := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | "true" | "false" | comparison
    comparison := FIELD ( ("=="|"!="|">"|">="|"<"|"<="|"contains"|"starts_with"
                           |"ends_with"|"before"|"after") literal
                        | "in" list | ("not" "in" | "not_in") list | "exists"
                        | ("within"|"older_than") (DURATION | NUMBER) )
    literal    := STRING | NUMBER | "true" | "false" | "null" | list
    list       := "[" (literal ("," literal)*)? "]"

Errors are `DefinitionError(path, "<reason> at column N")` (`line L, column N`
when the text spans several lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from touchpoint.core.conditions.operands import (
    MAX_DEPTH,
    CanonicalSpec,
    check_field,
    check_operand,
)
from touchpoint.core.errors import DefinitionError

KEYWORDS = frozenset(
    {
        "and", "or", "not", "in", "contains", "starts_with", "ends_with", "exists",
        "within", "older_than", "before", "after", "true", "false", "null", "not_in",
    }
)  # fmt: skip
_SYMBOL_OPERATORS = {"==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_WORD_OPERATORS = frozenset({"contains", "starts_with", "ends_with", "before", "after"})
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "/": "/", "0": "\0"}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NUMBER_START = frozenset("-0123456789")  # ASCII only: str.isdigit() takes "²" and "٣"
_UNIT = re.compile(r"[A-Za-z]+")
_DURATION_UNITS = frozenset({"ms", "s", "m", "h", "d", "w"})
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical unit: its kind, its value, and where it starts and ends in the text."""

    kind: str  # word, keyword, string, number, duration, symbol, punct, end
    value: Any
    start: int
    end: int


class _Source:
    """The text being read, and how to describe a position in it."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path

    def where(self, offset: int) -> str:
        if "\n" not in self.text:
            return f"column {offset + 1}"
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return f"line {line}, column {column}"

    def error(self, reason: str, offset: int, hint: str = "") -> DefinitionError:
        suffix = f"; {hint}" if hint else ""
        return DefinitionError(self.path, f"{reason} at {self.where(offset)}{suffix}")


def tokenize(text: str, path: str = "condition") -> list[Token]:
    """Split a text condition into tokens, ending with an `end` token."""
    source = _Source(text, path)
    tokens: list[Token] = []
    position = 0
    length = len(text)
    while position < length:
        space = _SPACE.match(text, position)
        if space:
            position = space.end()
            continue
        char = text[position]
        if char in "'\"":
            token = _read_string(source, position)
        elif char in _NUMBER_START and _NUMBER.match(text, position):
            token = _read_number(source, position)
        elif match := _WORD.match(text, position):
            word = match.group()
            kind = "keyword" if word in KEYWORDS else "word"
            token = Token(kind, word, position, match.end())
        elif text.startswith((">=", "<=", "==", "!="), position):
            token = Token("symbol", text[position : position + 2], position, position + 2)
        elif char in "<>":
            token = Token("symbol", char, position, position + 1)
        elif char in "()[],":
            token = Token("punct", char, position, position + 1)
        elif char == "=":
            raise source.error("unexpected '='", position, "compare with '=='")
        else:
            raise source.error(f"unexpected character {char!r}", position)
        tokens.append(token)
        position = token.end
    tokens.append(Token("end", None, length, length))
    return tokens


def _read_string(source: _Source, start: int) -> Token:
    text = source.text
    quote = text[start]
    parts: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == quote:
            return Token("string", "".join(parts), start, position + 1)
        if char == "\\":
            if position + 1 >= len(text):
                break
            code = text[position + 1]
            if code == "u":
                digits = text[position + 2 : position + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise source.error("a \\u escape needs four hex digits", position)
                parts.append(chr(int(digits, 16)))
                position += 6
                continue
            if code not in _ESCAPES:
                raise source.error(f"unknown escape '\\{code}'", position)
            parts.append(_ESCAPES[code])
            position += 2
            continue
        parts.append(char)
        position += 1
    raise source.error("unterminated string starting", start)


def _read_number(source: _Source, start: int) -> Token:
    text = source.text
    match = _NUMBER.match(text, start)
    assert match is not None
    literal = match.group()
    unit = _UNIT.match(text, match.end())
    if unit is None:
        try:
            number: int | float = int(literal) if literal.lstrip("-").isdigit() else float(literal)
        except ValueError:  # more digits than Python converts (4,300)
            raise source.error(f"the number {literal[:20]}… is too long", start) from None
        return Token("number", number, start, match.end())
    if unit.group() not in _DURATION_UNITS or "-" in literal or "e" in literal.lower():
        raise source.error(
            f"{text[start : unit.end()]!r} is not a duration such as 30d, 24h, 15m or 10s", start
        )
    return Token("duration", text[start : unit.end()], start, unit.end())


class _Parser:
    """Recursive descent over the token list, building canonical dicts."""

    def __init__(self, source: _Source, tokens: list[Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, kind: str, value: Any) -> bool:
        token = self.tokens[self.index]
        return token.kind == kind and token.value == value

    def unexpected(self, token: Token, expected: str = "") -> DefinitionError:
        hint = f"expected {expected}" if expected else ""
        if token.kind == "end":
            return self.source.error("unexpected end of condition", token.start, hint)
        shown = self.source.text[token.start : token.end]
        return self.source.error(f"unexpected token {shown!r}", token.start, hint)

    def expect_punct(self, value: str) -> Token:
        token = self.advance()
        if token.kind != "punct" or token.value != value:
            raise self.unexpected(token, f"{value!r}")
        return token

    # -- grammar ------------------------------------------------------------------------

    def parse(self) -> CanonicalSpec:
        if self.peek().kind == "end":
            raise self.source.error("empty condition", 0)
        result = self.or_expr()
        token = self.peek()
        if token.kind != "end":
            raise self.unexpected(token)
        return result

    def or_expr(self) -> CanonicalSpec:
        items = [self.and_expr()]
        while self.at("keyword", "or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else {"or": items}

    def and_expr(self) -> CanonicalSpec:
        items = [self.not_expr()]
        while self.at("keyword", "and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else {"and": items}

    def not_expr(self) -> CanonicalSpec:
        token = self.peek()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.source.error(f"conditions may nest at most {MAX_DEPTH} levels", token.start)
        try:
            if token.kind == "keyword" and token.value == "not":
                self.advance()
                return {"not": self.not_expr()}
            if token.kind == "punct" and token.value == "(":
                self.advance()
                inner = self.or_expr()
                self.expect_punct(")")
                return inner
            if token.kind == "keyword" and token.value in ("true", "false"):
                self.advance()
                return bool(token.value == "true")
            if token.kind == "word":
                return self.comparison()
            raise self.unexpected(token, "a field, 'not', '(' or true/false")
        finally:
            self.depth -= 1

    def comparison(self) -> dict[str, Any]:
        field_token = self.advance()
        try:
            field = check_field(field_token.value)
        except ValueError as error:
            raise self.source.error(str(error), field_token.start) from None
        token = self.advance()
        if token.kind == "symbol":
            op = _SYMBOL_OPERATORS[token.value]
            return self.operand(field, op, self.literal)
        if token.kind == "keyword":
            if token.value == "in":
                return self.operand(field, "in", self.list_literal)
            if token.value == "not_in":
                return self.operand(field, "not_in", self.list_literal)
            if token.value == "not":
                following = self.advance()
                if following.kind != "keyword" or following.value != "in":
                    raise self.unexpected(following, "'in' after 'not'")
                return self.operand(field, "not_in", self.list_literal)
            if token.value in _WORD_OPERATORS:
                return self.operand(field, str(token.value), self.literal)
            if token.value == "exists":
                return {"field": field, "exists": True}
            if token.value in ("within", "older_than"):
                return self.operand(field, str(token.value), self.duration)
        raise self.unexpected(token, f"an operator after {field_token.value!r}")

    def operand(self, field: str, op: str, read: Any) -> dict[str, Any]:
        start = self.peek().start
        value = read()
        try:
            canonical = check_operand(op, value)
        except ValueError as error:
            raise self.source.error(str(error), start) from None
        return {"field": field, op: canonical}

    def literal(self) -> Any:
        token = self.peek()
        if token.kind in ("string", "number"):
            self.advance()
            return token.value
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            self.advance()
            return {"true": True, "false": False, "null": None}[token.value]
        if token.kind == "punct" and token.value == "[":
            return self.list_literal()
        raise self.unexpected(token, "a value (a quoted string, a number, true/false/null, a list)")

    def list_literal(self) -> list[Any]:
        token = self.peek()
        if token.kind != "punct" or token.value != "[":
            raise self.unexpected(token, "a list such as ['a', 'b']")
        self.advance()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.source.error(f"lists may nest at most {MAX_DEPTH} levels", token.start)
        items: list[Any] = []
        if self.at("punct", "]"):
            self.advance()
        else:
            while True:
                items.append(self.literal())
                separator = self.advance()
                if separator.kind == "punct" and separator.value == "]":
                    break
                if separator.kind != "punct" or separator.value != ",":
                    raise self.unexpected(separator, "',' or ']'")
        self.depth -= 1
        return items

    def duration(self) -> Any:
        token = self.peek()
        if token.kind in ("duration", "number"):
            self.advance()
            return token.value
        raise self.unexpected(token, "a duration such as 30d, 24h or 15m")


def parse_text(text: str, *, path: str = "condition") -> CanonicalSpec:
    """Parse a text condition into its canonical form (a dict, or True/False).

    Raises DefinitionError(path, "<reason> at column N") for anything it cannot read.
    """
    source = _Source(text, path)
    return _Parser(source, tokenize(text, path)).parse()
