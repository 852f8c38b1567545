"""A Jinja2 sandbox with a budget: user templates (judge questions, task prompt templates) cannot pin a CPU or fill
memory from one render.

    bounded_environment(**options) -> BoundedSandbox    # ImmutableSandboxedEnvironment + the limits below
    TemplateLimitError                                  # raised when a render exceeds a limit (a TemplateRuntimeError)

Jinja's own sandbox stops attribute escapes but not work: `{% for i in range(100000) %}{% for j in range(1000) %}`
runs 10^8 iterations and `{{ 'x' * 1000000000 }}` allocates a gigabyte. Every render here carries a budget of steps
(loop iterations, calls, filters, operators) and a wall-clock deadline checked at each step; sequences made by `*`,
`+`, `~`, `%`, filters and method calls are sized before they are built; the output is capped while it is produced.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.environment import Environment, Template
from jinja2.exceptions import TemplateRuntimeError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RANGE = 10_000  # items of one range() (Jinja's own MAX_RANGE is 100,000)
MAX_STEPS = 200_000  # loop iterations + calls + filters + intercepted operators in one render
MAX_SEQUENCE = 1_000_000  # characters or items of a string/list built by an operator, filter or method
MAX_NUMBER_ARG = 100_000  # integer arguments of filters and methods (widths, counts, truncate lengths)
MAX_OUTPUT = 2_000_000  # characters one render may produce
MAX_EXPONENT_BITS = 4_096  # size of a number built by `**`
RENDER_SECONDS = 2.0  # wall clock of one render

_BUDGET_ATTR = "_rubricon_budget"
_ITER_FILTER = "rubricon_budget_iter"
_CONCAT_FILTER = "rubricon_budget_concat"
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{5,})|%[-#0 +]*\d*\.(\*|\d{5,})")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\d{5,}[^{}]*\}")


class TemplateLimitError(TemplateRuntimeError):
    """A render went over one of the budgets; the message names the limit and how to stay under it."""


class _Budget:
    __slots__ = ("deadline", "seconds", "steps")

    def __init__(self, seconds: float) -> None:
        self.steps = 0
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(
                f"the template does too much work (over {MAX_STEPS:,} loop iterations and calls); "
                "loop over fewer items"
            )
        if self.steps % 256 == 0 and time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the template took longer than {self.seconds:g} s to render")


def _budget(context: Context) -> _Budget:
    budget = getattr(context, _BUDGET_ATTR, None)
    if budget is None:  # a context made outside BoundedTemplate.render (macros' callers, generate())
        budget = _Budget(RENDER_SECONDS)
        setattr(context, _BUDGET_ATTR, budget)
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set | frozenset) else 0


def _check_size(size: int, what: str) -> None:
    if size > MAX_SEQUENCE:
        raise TemplateLimitError(f"{what} would be {size:,} long; the limit is {MAX_SEQUENCE:,}")


def _check_args(args: Iterable[Any], what: str) -> None:
    for arg in args:
        if isinstance(arg, bool):
            continue
        if isinstance(arg, int) and abs(arg) > MAX_NUMBER_ARG:
            raise TemplateLimitError(f"{what}: the number {arg} is too large (limit {MAX_NUMBER_ARG:,})")
        _check_size(_size(arg), what)
        if isinstance(arg, str) and (_PRINTF_WIDTH.search(arg) or _FORMAT_WIDTH.search(arg)):
            raise TemplateLimitError(f"{what}: a format width or precision above 9999 is not allowed")


def _check_growth(name: str, value: Any, args: tuple[Any, ...]) -> None:
    """Estimate results that grow with the input times an argument (replace, join, indent) before building them."""
    if name in ("format", "format_map") and isinstance(value, str):
        _check_args((value,), f"{name}()")
    elif name == "replace" and isinstance(value, str) and len(args) >= 2 and isinstance(args[0], str):
        new = str(args[1])
        count = value.count(args[0]) if args[0] else len(value) + 1
        _check_size(len(value) + count * len(new), f"{name}()")
    elif name == "join" and isinstance(value, str | list | tuple) and args:
        sep = value if isinstance(value, str) and not isinstance(args[0], str) else args[0]
        seq = args[0] if sep is value else value
        if isinstance(sep, str) and isinstance(seq, list | tuple | str):
            _check_size(len(seq) * len(sep), f"{name}()")
    elif name in ("indent", "center", "ljust", "rjust", "zfill", "wordwrap", "expandtabs") and isinstance(value, str):
        width = next((a for a in args if isinstance(a, int) and not isinstance(a, bool)), 0)
        _check_size(len(value) + (value.count("\n") + 1) * width, f"{name}()")


class _BudgetIter:
    def __init__(self, budget: _Budget, iterable: Any) -> None:
        self._budget = budget
        self._it = iter(iterable)

    def __iter__(self) -> _BudgetIter:
        return self

    def __next__(self) -> Any:
        self._budget.step()
        return next(self._it)


@pass_context
def _budget_iter(context: Context, iterable: Any) -> Any:
    budget = _budget(context)
    budget.step()
    if isinstance(iterable, list | tuple | dict | str | range):
        return _SizedBudgetIter(budget, iterable)
    return _BudgetIter(budget, iterable)


class _SizedBudgetIter(_BudgetIter):
    def __init__(self, budget: _Budget, iterable: Any) -> None:
        super().__init__(budget, iterable)
        self._len = len(iterable)

    def __len__(self) -> int:
        return self._len


@pass_context
def _budget_concat(context: Context, parts: list[Any]) -> str:
    _budget(context).step()
    texts = [str(p) for p in parts]
    _check_size(sum(len(t) for t in texts), "a string joined with '~'")
    return "".join(texts)


def _bounded_range(*args: int) -> range:  # named range in templates' globals
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise TemplateLimitError(f"range() of {len(rng):,} items; the limit is {MAX_RANGE:,}")
    return rng


class BoundedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        return self.render_bounded(dict(*args, **kwargs), seconds=RENDER_SECONDS)

    def render_bounded(self, variables: dict[str, Any], *, seconds: float) -> str:
        """Render with a fresh budget of `seconds` wall clock and MAX_OUTPUT characters."""
        ctx = self.new_context(variables)
        budget = _Budget(seconds)
        setattr(ctx, _BUDGET_ATTR, budget)
        out: list[str] = []
        size = 0
        try:
            for chunk in self.root_render_func(ctx):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateLimitError(f"the template renders more than {MAX_OUTPUT:,} characters")
                budget.step()
                out.append(chunk)
        except TemplateLimitError:
            raise
        except Exception:
            self.environment.handle_exception()
        return "".join(out)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose renders have a step budget, a deadline and size limits."""

    template_class = BoundedTemplate
    intercepted_binops = frozenset({"*", "+", "**", "%", "//"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # generates text in bulk; no template of ours needs it
        self.filters = {name: self._guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[_ITER_FILTER] = _budget_iter
        self.filters[_CONCAT_FILTER] = _budget_concat

    @staticmethod
    def _guard_filter(name: str, func: Any) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # Filters receive (context|eval_ctx|env)? value, *args: the first plain value is the filtered data,
            # which may be large (a completion); the arguments after it are what the template author chose.
            plain = [a for a in args if not isinstance(a, Context | EvalContext | Environment)]
            value, extra = (plain[0], tuple(plain[1:])) if plain else (None, ())
            _check_args((*extra, *kwargs.values()), f"filter '{name}'")
            _check_growth(name, value, extra + tuple(kwargs.values()))
            return func(*args, **kwargs)

        for attr in ("jinja_pass_arg",):
            if hasattr(func, attr):
                setattr(guarded, attr, getattr(func, attr))
        guarded.__name__ = getattr(func, "__name__", name)
        return guarded

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        # Route every loop's iterable and every `~` through the budget: the compiled code has no other hook there.
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _ITER_FILTER, [], [], None, None, lineno=loop.lineno)
        for concat in list(tree.find_all(nodes.Concat)):
            parts = nodes.List(list(concat.nodes), lineno=concat.lineno)
            replacement = nodes.Filter(parts, _CONCAT_FILTER, [], [], None, None, lineno=concat.lineno)
            _replace_node(tree, concat, replacement)
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _budget(context).step()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int):
                    _check_size(len(seq) * max(times, 0), "a repeated string or list")
        elif operator == "+" and _size(left) and _size(right):
            _check_size(len(left) + len(right), "a concatenated string or list")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_EXPONENT_BITS:
                raise TemplateLimitError(f"{left} ** {right} is too large a number")
        elif operator == "%" and isinstance(left, str):
            _check_args((left,), "'%' formatting")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget(__context).step()
        name = getattr(__obj, "__name__", "")
        if isinstance(__obj, LoopContext) and args:
            # A recursive loop's `loop(children)` iterates its argument outside the For node's iterable.
            args = (_budget_iter(__context, args[0]), *args[1:])
        elif __obj is not _bounded_range:  # range() measures itself: its argument may be large with a step
            _check_args((*args, *kwargs.values()), f"{name or 'call'}()")
            # str.format reaches us wrapped by the sandbox (its formatter); the string is on the wrapped method.
            owner = getattr(__obj, "__self__", None)
            if owner is None:
                owner = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
            _check_growth(name, owner, args)
        return super().call(__context, __obj, *args, **kwargs)


def _replace_node(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    for parent in (tree, *tree.find_all(nodes.Node)):
        for field in parent.fields:
            value = getattr(parent, field, None)
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return


def bounded_environment(**options: Any) -> BoundedSandbox:
    return BoundedSandbox(**options)
