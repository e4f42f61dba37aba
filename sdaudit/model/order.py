"""Node order: a graph's nodes in a valid topological order (onnx.checker requires one).

Converters (onnxruntime's float16 converter among them) append Cast nodes at the end of the
node list, after the nodes that read them; ONNX Runtime accepts that, onnx.checker does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sdaudit.errors import ModelError

if TYPE_CHECKING:
    import onnx


def _subgraph_reads(node: onnx.NodeProto) -> Iterator[str]:
    """Names a node's subgraphs (If, Loop, Scan bodies) read, their own outputs included."""
    from onnx import AttributeProto

    for attr in node.attribute:
        graphs = ([attr.g] if attr.type == AttributeProto.GRAPH else
                  list(attr.graphs) if attr.type == AttributeProto.GRAPHS else [])
        for graph in graphs:
            for inner in graph.node:
                yield from (name for name in inner.input if name)
                yield from _subgraph_reads(inner)


def is_sorted(graph: onnx.GraphProto) -> bool:
    """Whether every node comes after the producers of what it reads."""
    produced = {node_out for node in graph.node for node_out in node.output if node_out}
    seen: set[str] = set()
    for node in graph.node:
        for name in [*node.input, *_subgraph_reads(node)]:
            if name in produced and name not in seen:
                return False
        seen.update(o for o in node.output if o)
    return True


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Reorder ``graph``'s nodes in place into a topological order (stable: nodes already in
    order keep it). ModelError on a cycle. Post-condition: :func:`is_sorted`."""
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer[out] = i
    deps: list[set[int]] = []
    for i, node in enumerate(nodes):
        reads = {*node.input, *_subgraph_reads(node)}
        deps.append({producer[r] for r in reads if r in producer and producer[r] != i})
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    import heapq

    missing = [len(d) for d in deps]
    ready = [i for i, m in enumerate(missing) if m == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)  # the lowest index first: the original order where it is valid
        order.append(i)
        for j in users[i]:
            missing[j] -= 1
            if missing[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = next(nodes[i] for i, m in enumerate(missing) if m > 0)
        raise ModelError(f"the graph has a cycle through node {stuck.name or stuck.op_type!r}",
                         "re-export the model")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
    if not is_sorted(graph):  # pragma: no cover - the sort's post-condition
        from sdaudit.errors import InternalError

        raise InternalError("sort_nodes left the graph unsorted")
