"""A small interpreter of Go's text/template with Helm's functions, to render our chart here.

Stand-in, not Helm: no Helm binary can be installed on the machines this suite runs on (Debian
12 does not package it; PyPI and npm ship no Helm engine for Python 3.11 that we depend on).
It implements what our own templates use: text with ``{{- -}}`` trimming, comments, pipelines,
``if/else if/else``, ``range`` (lists and maps, sorted keys), ``with``, ``define``/``include``,
variables, and the Helm/Sprig functions in :data:`FUNCTIONS`. Anything else raises
:class:`TemplateError`, so a template that needs more fails the tests instead of rendering
wrong. Printing follows Go: ``nil`` prints as nothing, numbers as Go's ``%v`` of a float64
(Helm reads numbers as float64, so 1000000 prints as ``1e+06``), maps via ``toYaml`` only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml


class TemplateError(Exception):
    """A template that this stand-in cannot parse, or that failed (``fail``, ``required``)."""


# ---- lexing ---------------------------------------------------------------------------------
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)
    |(?P<op>[()|,]|:=|=)|(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    |(?P<field>(?:\.[A-Za-z0-9_]+)+|\.)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))""", re.X)


def _split(source: str) -> list[tuple[str, str]]:
    """Text and action pieces, with Go's whitespace trimming applied."""
    pieces: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(("action", m.group(2).strip()))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = source[pos:]
    pieces.append(("text", tail.lstrip() if trim_next else tail))
    return pieces


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot parse {expr!r} at {expr[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


# ---- parsing --------------------------------------------------------------------------------
@dataclass
class Node:
    kind: str  # text, out, if, range, with, assign
    value: Any = None
    branches: list[tuple[Any, list[Node]]] = field(default_factory=list)
    otherwise: list[Node] = field(default_factory=list)


def _parse_pipeline(tokens: list[tuple[str, str]]) -> list[list[Any]]:
    """A pipeline: commands separated by ``|``; a command is a list of operands."""
    commands: list[list[Any]] = [[]]
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "op" and text == "|":
            commands.append([])
        elif kind == "op" and text == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(tokens):
                    raise TemplateError("unbalanced parenthesis")
                depth += {"(": 1, ")": -1}.get(tokens[j][1], 0) if tokens[j][0] == "op" else 0
                j += 1
            commands[-1].append(("pipe", _parse_pipeline(tokens[i + 1:j - 1])))
            i = j
            continue
        elif kind in ("str", "raw", "num", "var", "field", "ident"):
            commands[-1].append((kind, text))
        else:
            raise TemplateError(f"unexpected {text!r}")
        i += 1
    if any(not c for c in commands):
        raise TemplateError("empty command in pipeline")
    return commands


def parse(source: str, defines: dict[str, list[Node]]) -> list[Node]:
    """The node tree of ``source``; ``define`` blocks go into ``defines``."""
    root: list[Node] = []
    stack: list[tuple[Node | None, list[Node], str]] = [(None, root, "root")]
    for kind, text in _split(source):
        body = stack[-1][1]
        if kind == "text":
            if text:
                body.append(Node("text", text))
            continue
        if text.startswith("/*"):
            continue
        head, _, rest = text.partition(" ")
        if head in ("if", "with"):
            node = Node(head, branches=[(_parse_pipeline(_tokens(rest)), [])])
            body.append(node)
            stack.append((node, node.branches[0][1], head))
        elif head == "range":
            m = re.match(r"(\$\w+)(?:\s*,\s*(\$\w+))?\s*:=\s*(.*)$", rest, re.S)
            names = [n for n in (m.group(1), m.group(2)) if n] if m else []
            node = Node("range", value=names,
                        branches=[(_parse_pipeline(_tokens(m.group(3) if m else rest)), [])])
            body.append(node)
            stack.append((node, node.branches[0][1], "range"))
        elif head == "define":
            name = json.loads(rest.strip())
            defines[name] = []
            stack.append((None, defines[name], "define"))
        elif head == "else":
            node, _, what = stack.pop()
            if node is None:
                raise TemplateError("else outside if/range/with")
            if rest.startswith("if "):
                node.branches.append((_parse_pipeline(_tokens(rest[3:])), []))
                stack.append((node, node.branches[-1][1], what))
            else:
                stack.append((node, node.otherwise, what))
        elif head == "end":
            if len(stack) == 1:
                raise TemplateError("end without a block")
            stack.pop()
        elif head in ("template", "block", "break", "continue"):
            raise TemplateError(f"{head!r} is not supported by this stand-in; use include")
        elif m := re.match(r"(\$\w+)\s*(:=|=)\s*(.*)$", text, re.S):
            body.append(Node("assign", value=(m.group(1), m.group(2),
                                              _parse_pipeline(_tokens(m.group(3))))))
        else:
            body.append(Node("out", value=_parse_pipeline(_tokens(text))))
    if len(stack) != 1:
        raise TemplateError(f"unclosed {stack[-1][2]}")
    return root


# ---- values and printing --------------------------------------------------------------------
def truthy(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


def go_number(value: float | int) -> str:
    """Go's ``%v`` of a float64: shortest digits, exponent form from 1e+06 and below 1e-04."""
    number = Decimal(repr(float(value))).normalize()
    if number == 0:
        return "0"
    exponent = number.adjusted()
    if -4 <= exponent < 6:
        return format(number, "f")
    sign, digits, _ = number.as_tuple()
    text = "".join(map(str, digits))
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def go_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_number(value)
    if isinstance(value, str):
        return value
    raise TemplateError(f"printing a {type(value).__name__} directly; use toYaml")


def to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False).rstrip("\n")


def _indent(width: Any, text: Any) -> str:
    pad = " " * int(width)
    return pad + go_str(text).replace("\n", "\n" + pad)


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        value = next(values)
        return json.dumps(go_str(value)) if m.group(0) == "%q" else go_str(value)

    return re.sub(r"%[svdq%]", one, fmt)


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(message)
    return value


def _fail(message: str) -> Any:
    raise TemplateError(message)


def _and(*args: Any) -> Any:
    for arg in args:
        if not truthy(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if truthy(arg):
            return arg
    return args[-1]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "quote": lambda *a: " ".join(json.dumps(go_str(x), ensure_ascii=False)
                                 for x in a if x is not None),
    "squote": lambda *a: " ".join(f"'{go_str(x)}'" for x in a if x is not None),
    "default": lambda d, v=None: v if truthy(v) else d,
    "required": _required,
    "fail": _fail,
    "toYaml": to_yaml,
    "toJson": lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")),
    "toString": go_str,
    "indent": _indent,
    "nindent": lambda w, t: "\n" + _indent(w, t),
    "b64enc": lambda s: base64.b64encode(go_str(s).encode()).decode(),
    "sha256sum": lambda s: hashlib.sha256(go_str(s).encode()).hexdigest(),
    "trunc": lambda n, s: go_str(s)[: int(n)] if int(n) >= 0 else go_str(s)[int(n):],
    "trimSuffix": lambda suf, s: go_str(s).removesuffix(suf),
    "trimPrefix": lambda pre, s: go_str(s).removeprefix(pre),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "contains": lambda sub, s: sub in go_str(s),
    "printf": _printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "gt": lambda a, b: a > b,
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
    "empty": lambda v: not truthy(v),
    "len": len,
    "int": lambda v: int(float(v or 0)),
    "list": lambda *a: list(a),
    "dict": lambda *a: dict(zip(a[::2], a[1::2], strict=True)),
    "hasKey": lambda d, k: k in d,
    "join": lambda sep, items: sep.join(go_str(i) for i in items),
}


# ---- evaluation -----------------------------------------------------------------------------
class Renderer:
    """Render templates sharing one set of ``define`` blocks (as Helm does for a chart)."""

    def __init__(self) -> None:
        self.defines: dict[str, list[Node]] = {}
        self.functions = dict(FUNCTIONS, include=self._include)

    def load(self, source: str) -> list[Node]:
        return parse(source, self.defines)

    def render(self, nodes: list[Node], data: Any) -> str:
        return self._exec(nodes, data, [{"$": data}])

    def _include(self, name: str, data: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template {name!r}")
        return self.render(self.defines[name], data)

    def _exec(self, nodes: list[Node], dot: Any, scopes: list[dict[str, Any]]) -> str:
        out: list[str] = []
        scopes = [*scopes, {}]
        for node in nodes:
            if node.kind == "text":
                out.append(node.value)
            elif node.kind == "out":
                out.append(go_str(self._pipeline(node.value, dot, scopes)))
            elif node.kind == "assign":
                name, op, pipe = node.value
                value = self._pipeline(pipe, dot, scopes)
                if op == ":=":
                    scopes[-1][name] = value
                else:
                    for scope in reversed(scopes):
                        if name in scope:
                            scope[name] = value
                            break
                    else:
                        raise TemplateError(f"undefined variable {name}")
            elif node.kind in ("if", "with"):
                for pipe, body in node.branches:
                    value = self._pipeline(pipe, dot, scopes)
                    if truthy(value):
                        out.append(self._exec(body, value if node.kind == "with" else dot,
                                              scopes))
                        break
                else:
                    out.append(self._exec(node.otherwise, dot, scopes))
            elif node.kind == "range":
                out.append(self._range(node, dot, scopes))
        return "".join(out)

    def _range(self, node: Node, dot: Any, scopes: list[dict[str, Any]]) -> str:
        pipe, body = node.branches[0]
        value = self._pipeline(pipe, dot, scopes)
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is None:
            items = []
        else:
            raise TemplateError(f"range over {type(value).__name__}")
        if not items:
            return self._exec(node.otherwise, dot, scopes)
        parts = []
        for key, item in items:
            names = node.value
            bound = {names[-1]: item} if len(names) == 1 else {}
            if len(names) == 2:
                bound = {names[0]: key, names[1]: item}
            parts.append(self._exec(body, item, [*scopes, bound]))
        return "".join(parts)

    def _pipeline(self, commands: list[list[Any]], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        result: Any = None
        for index, command in enumerate(commands):
            extra = [result] if index else []
            result = self._command(command, dot, scopes, extra)
        return result

    def _command(self, command: list[Any], dot: Any, scopes: list[dict[str, Any]],
                 extra: list[Any]) -> Any:
        kind, text = command[0]
        if kind == "ident" and text not in ("true", "false", "nil"):
            if text not in self.functions:
                raise TemplateError(f"function {text!r} is not supported by this stand-in")
            args = [self._operand(op, dot, scopes) for op in command[1:]] + extra
            return self.functions[text](*args)
        if len(command) > 1 or extra:
            raise TemplateError(f"{text!r} is not a function")
        return self._operand(command[0], dot, scopes)

    def _operand(self, operand: tuple[str, Any], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind, text = operand
        if kind == "str":
            return json.loads(text)
        if kind == "raw":
            return text[1:-1]
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[text]
        if kind == "pipe":
            return self._pipeline(text, dot, scopes)
        if kind == "field":
            return _walk(dot, text.split(".")[1:] if text != "." else [], text)
        name, *path = text.split(".")
        for scope in reversed(scopes):
            if name in scope:
                return _walk(scope[name], path, text)
        raise TemplateError(f"undefined variable {name}")


def _walk(value: Any, path: list[str], text: str) -> Any:
    for part in path:
        if value is None:
            raise TemplateError(f"nil pointer evaluating {text}")
        if not isinstance(value, dict):
            raise TemplateError(f"can't evaluate field {part} in {text}")
        value = value.get(part)
    return value
