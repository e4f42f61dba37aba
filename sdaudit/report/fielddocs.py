"""Field docstrings of a class (the string literal right under each annotated field), read from
its source: the one place a report field is documented, for the schema and the docs."""

from __future__ import annotations

import ast
import inspect
import textwrap


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: its docstring, joined to one line}`` for every annotated field of ``cls``
    that has one, in declaration order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def field_names(cls: type) -> list[str]:
    """Every annotated field of ``cls``, documented or not, in declaration order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    return [n.target.id for n in body if isinstance(n, ast.AnnAssign)
            and isinstance(n.target, ast.Name)]
