"""Rule expressions: a small, safe, Python-like language for segment, tag and column rules.

A rule is written the way an analyst would say it::

    r_score >= 4 and f_score >= 4 and m_score >= 4
    recency_days <= 30 and frequency >= 3 and m_pct >= 0.8
    r_score in (1, 2) and not f_score == 5
    1 <= f_score <= 3
    recency_days is None

Allowed: numbers, strings, ``True``/``False``/``None``, column names, ``and``/``or``/``not``,
comparisons (chained too), ``in``/``not in`` a tuple or list of constants, ``is None``/
``is not None`` and ``+ - * /``. Nothing else parses: no calls, attributes or subscripts.

One parsed expression is used two ways, so the rule cannot mean different things in
different places:

- :meth:`Expr.to_sql` compiles it to a SQLGlot expression (for every engine's dialect);
- :meth:`Expr.evaluate` evaluates it in Python with SQL's three-valued logic, where a
  missing name or a ``None`` value is *unknown* (used to check a scheme's coverage).

Division is always floating point and a division by zero gives NULL (``None``) everywhere.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from rfmflow.core.errors import ExpressionError

Value = int | float | str | bool | None
NameResolver = Callable[[str], exp.Expression]

_COMPARE_SQL: dict[type[ast.cmpop], type[exp.Expression]] = {
    ast.Eq: exp.EQ,
    ast.NotEq: exp.NEQ,
    ast.Lt: exp.LT,
    ast.LtE: exp.LTE,
    ast.Gt: exp.GT,
    ast.GtE: exp.GTE,
}
_COMPARE_TEXT = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITH_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _compare(op: type[ast.cmpop], left: Value, right: Value) -> bool | None:
    if left is None or right is None:
        return None
    try:
        if op is ast.Eq:
            return left == right
        if op is ast.NotEq:
            return left != right
        if op is ast.Lt:
            return left < right  # type: ignore[operator]
        if op is ast.LtE:
            return left <= right  # type: ignore[operator]
        if op is ast.Gt:
            return left > right  # type: ignore[operator]
        return left >= right  # type: ignore[operator]
    except TypeError:
        return None


def _and(values: Sequence[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _or(values: Sequence[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    if any(v is None for v in values):
        return None
    return False


def _truth(value: Value) -> bool | None:
    if value is None:
        return None
    return bool(value)


@dataclass(frozen=True)
class Expr:
    """A validated rule expression. Build one with :func:`parse_expression`."""

    source: str
    _tree: ast.expr
    kind: str = "bool"
    """What it gives: "bool" (a condition), "num", "text" or "null"."""

    @property
    def names(self) -> frozenset[str]:
        """The column names the expression reads."""
        return frozenset(n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name))

    def to_sql(self, resolve: NameResolver) -> exp.Expression:
        """Compile to a SQLGlot expression; ``resolve`` maps a name to its SQL expression."""
        return _Compiler(resolve).visit(self._tree)

    def evaluate(self, values: Mapping[str, Value]) -> Value:
        """Evaluate with SQL semantics: unknown names and ``None`` propagate as unknown."""
        return _Evaluator(values).visit(self._tree)

    def matches(self, values: Mapping[str, Value]) -> bool | None:
        """``True``/``False`` when decided, ``None`` when it depends on unknown values."""
        return _truth(self.evaluate(values))

    def __str__(self) -> str:
        return self.source


def parse_expression(
    source: str | bool,
    *,
    allowed: Sequence[str],
    where: str = "",
    text_names: Sequence[str] = (),
    kinds: Mapping[str, str] | None = None,
    condition: bool = True,
) -> Expr:
    """Parse and validate ``source``; ``allowed`` lists the names it may read.

    Names are numbers unless listed in ``text_names`` (or given a kind in ``kinds``). With
    ``condition`` (segment and tag rules) the expression must be a condition.

    Raises :class:`ExpressionError` naming ``where`` (for example ``segments[2].when``),
    the offending part and the reason.
    """
    prefix = f"{where}: " if where else ""
    if isinstance(source, bool):
        source = "True" if source else "False"
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"{prefix}expected a rule expression (text), got {source!r}")
    text = " ".join(source.split())
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        col = f" at column {err.offset}" if err.offset else ""
        raise ExpressionError(f"{prefix}cannot parse {text!r}{col}: {err.msg}") from None
    validator = _Validator(text, prefix, frozenset(allowed))
    validator.visit(tree)
    known: dict[str, str] = {n: "text" for n in text_names}
    known.update(kinds or {})
    typer = _Typer(validator.fail, known)
    kind = typer.kind(tree)
    if condition and kind != "bool":
        validator.fail(tree, "a rule must be a condition (for example r_score >= 4), not a " + kind)
    return Expr(text, tree, kind)


Kind = str  # "num", "text", "bool" or "null"


class _Typer:
    """Infers the kind of every sub-expression, so that a rule means the same on every engine:
    no arithmetic on text, no comparison of text with numbers, conditions where conditions go."""

    def __init__(self, fail: Callable[[ast.AST, str], None], kinds: Mapping[str, Kind]) -> None:
        self.fail = fail
        self.kinds = kinds

    def kind(self, node: ast.expr) -> Kind:
        if isinstance(node, ast.Constant):
            if node.value is None:
                return "null"
            if isinstance(node.value, bool):
                return "bool"
            return "text" if isinstance(node.value, str) else "num"
        if isinstance(node, ast.Name):
            return self.kinds.get(node.id, "num")
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self.condition(value, "'and'/'or' combine conditions")
            return "bool"
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                self.condition(node.operand, "'not' needs a condition")
                return "bool"
            if self.kind(node.operand) != "num":
                self.fail(node, "a sign needs a number")
            return "num"
        if isinstance(node, ast.BinOp):
            for side in (node.left, node.right):
                if self.kind(side) != "num":
                    self.fail(node, "arithmetic needs numbers")
            return "num"
        if isinstance(node, ast.Compare):
            return self.compare(node)
        return "num"  # pragma: no cover - the validator allows nothing else

    def condition(self, node: ast.expr, reason: str) -> None:
        if self.kind(node) != "bool":
            self.fail(node, f"{reason}; this is not a condition (compare it, e.g. x >= 3)")

    def compare(self, node: ast.Compare) -> Kind:
        op0 = node.ops[0]
        left = self.kind(node.left)
        if isinstance(op0, ast.Is | ast.IsNot):
            return "bool"
        if isinstance(op0, ast.In | ast.NotIn):
            values = node.comparators[0]
            assert isinstance(values, ast.Tuple | ast.List)
            for elt in values.elts:
                if self.kind(elt) not in (left, "null"):
                    self.fail(elt, f"cannot compare {left} with {self.kind(elt)}")
            return "bool"
        kinds = [left, *(self.kind(c) for c in node.comparators)]
        for a, b, op in zip(kinds, kinds[1:], node.ops, strict=False):
            if "null" in (a, b):
                self.fail(node, "compare with None using 'is None' or 'is not None'")
            if a != b:
                self.fail(node, f"cannot compare {a} with {b}")
            if a == "bool" and not isinstance(op, ast.Eq | ast.NotEq):
                self.fail(node, "conditions can only be compared with == or !=")
        return "bool"


class _Validator(ast.NodeVisitor):
    def __init__(self, text: str, prefix: str, allowed: frozenset[str]) -> None:
        self.text = text
        self.prefix = prefix
        self.allowed = allowed

    def fail(self, node: ast.AST, reason: str) -> None:
        part = ast.get_source_segment(self.text, node) or self.text
        raise ExpressionError(f"{self.prefix}{reason} in {self.text!r} (at {part!r})")

    def generic_visit(self, node: ast.AST) -> None:
        allowed_nodes = (
            ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
            ast.Compare, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
            ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
            ast.Is, ast.IsNot, ast.Load,
        )  # fmt: skip
        if not isinstance(node, allowed_nodes):
            what = type(node).__name__.lower()
            reasons = {
                "call": "function calls are not allowed",
                "attribute": "attribute access is not allowed",
                "subscript": "subscripts are not allowed",
                "assign": "assignment is not allowed (use == to compare)",
            }
            self.fail(node, reasons.get(what, f"'{what}' is not allowed"))
        super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("true", "false", "none", "null"):
            self.fail(node, f"unknown name {node.id!r} (write True, False or None)")
        if node.id not in self.allowed:
            close = difflib.get_close_matches(node.id, sorted(self.allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self.allowed))
            self.fail(node, f"unknown name {node.id!r}{hint} (known: {known})")

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, int | float | str | bool) and node.value is not None:
            self.fail(node, f"constant {node.value!r} is not allowed")

    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            right = operands[i + 1]
            if isinstance(op, ast.In | ast.NotIn):
                if len(node.ops) != 1:
                    self.fail(node, "'in' cannot be chained with other comparisons")
                if not isinstance(right, ast.Tuple | ast.List) or not right.elts:
                    self.fail(right, "'in' needs a non-empty tuple or list of constants")
                assert isinstance(right, ast.Tuple | ast.List)
                for elt in right.elts:
                    if isinstance(elt, ast.Constant) and elt.value is None:
                        self.fail(elt, "None cannot be in an 'in' list (SQL never matches it); use 'is None'")
                    if not isinstance(elt, ast.Constant) and not (
                        isinstance(elt, ast.UnaryOp) and isinstance(elt.operand, ast.Constant)
                    ):
                        self.fail(elt, "'in' lists may hold constants only")
                    self.visit(elt)
                self.visit(node.left)
                return
            if isinstance(op, ast.Is | ast.IsNot):
                if len(node.ops) != 1 or not (isinstance(right, ast.Constant) and right.value is None):
                    self.fail(node, "'is' may only compare with None")
                self.visit(node.left)
                return
        for operand in operands:
            self.visit(operand)


def _const(value: Value) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        if value < 0:
            return exp.Neg(this=exp.Literal.number(-value))
        return exp.Literal.number(value)
    return exp.Literal.string(value)


class _Compiler:
    def __init__(self, resolve: NameResolver) -> None:
        self.resolve = resolve

    def visit(self, node: ast.expr) -> exp.Expression:
        if isinstance(node, ast.Constant):
            return _const(node.value)  # type: ignore[arg-type]  # validated: no bytes or complex
        if isinstance(node, ast.Name):
            return exp.Paren(this=self.resolve(node.id))
        if isinstance(node, ast.BoolOp):
            parts = [exp.Paren(this=self.visit(v)) for v in node.values]
            combine = exp.and_ if isinstance(node.op, ast.And) else exp.or_
            return exp.Paren(this=combine(*parts))
        if isinstance(node, ast.UnaryOp):
            inner = self.visit(node.operand)
            if isinstance(node.op, ast.Not):
                return exp.Not(this=exp.Paren(this=inner))
            if isinstance(node.op, ast.USub):
                return exp.Neg(this=exp.Paren(this=inner))
            return inner
        if isinstance(node, ast.BinOp):
            left, right = self.visit(node.left), self.visit(node.right)
            if isinstance(node.op, ast.Div):
                num = exp.Cast(this=left, to=exp.DataType.build("DOUBLE"))
                den = exp.Nullif(this=right, expression=exp.Literal.number(0))
                return exp.Paren(this=exp.Div(this=num, expression=den))
            ops: dict[type[ast.operator], type[exp.Expression]] = {
                ast.Add: exp.Add, ast.Sub: exp.Sub, ast.Mult: exp.Mul,
            }  # fmt: skip
            return exp.Paren(this=ops[type(node.op)](this=left, expression=right))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise AssertionError(f"unvalidated node {type(node).__name__}")  # pragma: no cover

    def compare(self, node: ast.Compare) -> exp.Expression:
        op0 = node.ops[0]
        if isinstance(op0, ast.In | ast.NotIn):
            values = node.comparators[0]
            assert isinstance(values, ast.Tuple | ast.List)
            member = exp.Paren(
                this=exp.In(this=self.visit(node.left), expressions=[self.visit(e) for e in values.elts])
            )
            return exp.Paren(this=exp.Not(this=member)) if isinstance(op0, ast.NotIn) else member
        if isinstance(op0, ast.Is | ast.IsNot):
            test = exp.Paren(this=exp.Is(this=self.visit(node.left), expression=exp.Null()))
            return exp.Paren(this=exp.Not(this=test)) if isinstance(op0, ast.IsNot) else test
        operands = [node.left, *node.comparators]
        parts = [
            _COMPARE_SQL[type(op)](this=self.visit(operands[i]), expression=self.visit(operands[i + 1]))
            for i, op in enumerate(node.ops)
        ]
        # Parenthesised, so that a comparison used as an operand ((a >= 4) == (b >= 4)) keeps
        # its meaning in every dialect.
        return exp.Paren(this=exp.and_(*parts) if len(parts) > 1 else parts[0])


class _Evaluator:
    def __init__(self, values: Mapping[str, Value]) -> None:
        self.values = values

    def visit(self, node: ast.expr) -> Value:
        if isinstance(node, ast.Constant):
            return node.value  # type: ignore[return-value]  # validated: no bytes or complex
        if isinstance(node, ast.Name):
            return self.values.get(node.id)
        if isinstance(node, ast.BoolOp):
            truths = [_truth(self.visit(v)) for v in node.values]
            return _and(truths) if isinstance(node.op, ast.And) else _or(truths)
        if isinstance(node, ast.UnaryOp):
            inner = self.visit(node.operand)
            if isinstance(node.op, ast.Not):
                t = _truth(inner)
                return None if t is None else not t
            if inner is None:
                return None
            if isinstance(node.op, ast.USub):
                return -inner  # type: ignore[operator]
            return inner
        if isinstance(node, ast.BinOp):
            return self.arith(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise AssertionError(f"unvalidated node {type(node).__name__}")  # pragma: no cover

    def arith(self, node: ast.BinOp) -> Value:
        left, right = self.visit(node.left), self.visit(node.right)
        if left is None or right is None:
            return None
        a: Any = left
        b: Any = right
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return None  # the validator rejects arithmetic on text; stay total anyway
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        return None if b == 0 else float(a) / float(b)

    def compare(self, node: ast.Compare) -> Value:
        op0 = node.ops[0]
        if isinstance(op0, ast.In | ast.NotIn):
            left = self.visit(node.left)
            values = node.comparators[0]
            assert isinstance(values, ast.Tuple | ast.List)
            if left is None:
                return None
            found = left in [self.visit(e) for e in values.elts]
            return not found if isinstance(op0, ast.NotIn) else found
        if isinstance(op0, ast.Is | ast.IsNot):
            if isinstance(node.left, ast.Name) and node.left.id not in self.values:
                return None  # an unknown value may or may not be None
            is_none = self.visit(node.left) is None
            return not is_none if isinstance(op0, ast.IsNot) else is_none
        operands = [self.visit(n) for n in (node.left, *node.comparators)]
        return _and([_compare(type(op), operands[i], operands[i + 1]) for i, op in enumerate(node.ops)])
