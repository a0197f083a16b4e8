"""A layered drawing of a dependency graph (a small Sugiyama), pure and deterministic, for the
panel's server-side SVG.

1. Edges that would close a cycle are left out (stored jobs cannot form one, but a drawing must
   never hang on bad data).
2. Each node's layer is the longest path to it from a root, so every edge points to a higher layer.
3. An edge that spans several layers gets a placeholder ("dummy") in every layer it crosses, so
   ordering sees it and the edge is drawn through a free slot instead of across a node.
4. Nodes within a layer are ordered by the barycenter of their neighbours, sweeping down and up a
   few times; the ordering with the fewest crossings wins.
5. Layers become columns (x), positions within a layer become rows (y, each column centred).
   Weakly connected graphs are laid out separately and stacked; nodes without any edge are not
   drawn but returned in ``isolated``.

The graph maps each node to its upstream nodes (``lexyjobs.pipelines.Graph``); upstreams that
are not keys of the mapping are ignored."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

Graph = Mapping[str, Sequence[str]]  # node -> its upstream nodes
Edge = tuple[str, str]               # (upstream, downstream)
Point = tuple[float, float]
SWEEPS = 4


@dataclass(frozen=True)
class Spacing:
    """Sizes in SVG user units."""

    node_width: float = 224
    node_height: float = 48
    layer_gap: float = 60       # horizontal room between columns, where edges curve
    row_gap: float = 18         # vertical room between nodes of a column
    component_gap: float = 36   # between stacked graphs
    margin: float = 8


@dataclass(frozen=True)
class PlacedNode:
    name: str
    layer: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class PlacedEdge:
    source: str                  # upstream node
    target: str                  # downstream node
    points: tuple[Point, ...]    # from the source's right side, through dummies, to the target's left side
    path: str                    # SVG path data: cubic curves between columns, lines through dummies


@dataclass(frozen=True)
class GraphLayout:
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    isolated: tuple[str, ...]    # nodes without any edge (not drawn), sorted
    width: float
    height: float

    def node(self, name: str) -> PlacedNode:
        return next(n for n in self.nodes if n.name == name)


def acyclic_edges(graph: Graph) -> list[Edge]:
    """The graph's edges (upstream, downstream), sorted, without self-loops, unknown upstreams and
    the edges a depth-first walk (in name order) finds closing a cycle."""
    edges = sorted({(u, v) for v, ups in graph.items() for u in ups if u in graph and u != v})
    children: dict[str, list[str]] = {}
    for u, v in edges:
        children.setdefault(u, []).append(v)
    state: dict[str, int] = {}  # 1 = on the walk's current path, 2 = finished
    back: set[Edge] = set()
    for start in sorted(graph):
        if start in state:
            continue
        state[start] = 1
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(children.get(start, [])))]
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(children.get(child, []))))
    return [edge for edge in edges if edge not in back]


def assign_layers(graph: Graph) -> dict[str, int]:
    """Layer of every node: the length of the longest path to it from a root (roots are 0)."""
    edges = acyclic_edges(graph)
    indegree = {node: 0 for node in graph}
    children: dict[str, list[str]] = {}
    for u, v in edges:
        indegree[v] += 1
        children.setdefault(u, []).append(v)
    layer = {node: 0 for node in graph}
    ready = deque(sorted(node for node, n in indegree.items() if n == 0))
    while ready:
        node = ready.popleft()
        for child in children.get(node, []):
            layer[child] = max(layer[child], layer[node] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return layer


def components(graph: Graph) -> list[list[str]]:
    """The weakly connected groups of nodes that have at least one edge, each sorted, ordered by
    their first name."""
    neighbours: dict[str, set[str]] = {}
    for u, v in acyclic_edges(graph):
        neighbours.setdefault(u, set()).add(v)
        neighbours.setdefault(v, set()).add(u)
    seen: set[str] = set()
    found = []
    for start in sorted(neighbours):
        if start in seen:
            continue
        group, queue = [], deque([start])
        seen.add(start)
        while queue:
            node = queue.popleft()
            group.append(node)
            for other in sorted(neighbours[node] - seen):
                seen.add(other)
                queue.append(other)
        found.append(sorted(group))
    return found


def count_crossings(layers: Sequence[Sequence[object]], edges: Iterable[tuple[object, object]]) -> int:
    """Pairs of edges that cross between adjacent layers (edges join consecutive layers)."""
    position = {node: (i, j) for i, layer in enumerate(layers) for j, node in enumerate(layer)}
    between: dict[int, list[tuple[int, int]]] = {}
    for u, v in edges:
        (lu, pu), (lv, pv) = position[u], position[v]
        between.setdefault(min(lu, lv), []).append((pu, pv) if lu < lv else (pv, pu))
    total = 0
    for pairs in between.values():
        for i, (a1, b1) in enumerate(pairs):
            total += sum(1 for a2, b2 in pairs[i + 1:] if (a1 - a2) * (b1 - b2) < 0)
    return total


def layout(graph: Graph, spacing: Spacing = Spacing()) -> GraphLayout:
    """Place every node that has an edge, and every edge; see the module docstring."""
    layer = assign_layers(graph)
    edges = acyclic_edges(graph)
    nodes: list[PlacedNode] = []
    placed_edges: list[PlacedEdge] = []
    top, width = spacing.margin, 0.0
    for group in components(graph):
        members = set(group)
        group_edges = [(u, v) for u, v in edges if u in members]
        columns, routes = _proper_layers(group, group_edges, layer)
        columns = _order(columns, routes)
        height, slots = _place(columns, top, spacing)
        for i, column in enumerate(columns):
            for slot in column:
                if isinstance(slot, str):
                    x, y = slots[slot]
                    nodes.append(PlacedNode(slot, i, x, y, spacing.node_width, spacing.node_height))
        placed_edges.extend(_edge(u, v, layer, slots, spacing) for u, v in group_edges)
        width = max(width, 2 * spacing.margin + len(columns) * spacing.node_width
                    + (len(columns) - 1) * spacing.layer_gap)
        top += height + spacing.component_gap
    drawn = {node.name for node in nodes}
    height = top - spacing.component_gap + spacing.margin if nodes else 0.0
    return GraphLayout(tuple(nodes), tuple(placed_edges), tuple(sorted(set(graph) - drawn)), width, height)


# ---------------------------------------------------------------- internals

Dummy = tuple[str, str, int]   # (upstream, downstream, layer): one slot of a long edge
Slot = str | Dummy


def _proper_layers(group: list[str], edges: list[Edge], layer: dict[str, int]
                   ) -> tuple[list[list[Slot]], list[tuple[Slot, Slot]]]:
    """Columns of slots (names sorted, dummies after them) and the unit-length edges between them."""
    depth = max(layer[node] for node in group) + 1
    columns: list[list[Slot]] = [[] for _ in range(depth)]
    for node in group:
        columns[layer[node]].append(node)
    routes: list[tuple[Slot, Slot]] = []
    for u, v in edges:
        chain: list[Slot] = [u, *((u, v, k) for k in range(layer[u] + 1, layer[v])), v]
        for slot in chain[1:-1]:
            columns[slot[2]].append(slot)  # type: ignore[index]
        routes.extend(zip(chain, chain[1:]))
    return columns, routes


def _order(columns: list[list[Slot]], routes: list[tuple[Slot, Slot]]) -> list[list[Slot]]:
    """Barycenter sweeps (down, then up); keeps the ordering with the fewest crossings."""
    ups: dict[Slot, list[Slot]] = {}
    downs: dict[Slot, list[Slot]] = {}
    for u, v in routes:
        downs.setdefault(u, []).append(v)
        ups.setdefault(v, []).append(u)
    current = [list(column) for column in columns]
    best, fewest = [list(c) for c in current], count_crossings(current, routes)
    for _ in range(SWEEPS):
        for i in range(1, len(current)):
            current[i] = _by_barycenter(current[i], current[i - 1], ups)
        for i in range(len(current) - 2, -1, -1):
            current[i] = _by_barycenter(current[i], current[i + 1], downs)
        crossings = count_crossings(current, routes)
        if crossings < fewest:
            best, fewest = [list(c) for c in current], crossings
        if fewest == 0:
            break
    return best


def _by_barycenter(column: list[Slot], fixed: list[Slot], neighbours: dict[Slot, list[Slot]]) -> list[Slot]:
    """``column`` sorted by the mean position of each slot's neighbours in ``fixed``; a slot
    without neighbours there keeps its place (ties keep the current order: a stable sort)."""
    where = {slot: i for i, slot in enumerate(fixed)}

    def key(item: tuple[int, Slot]) -> float:
        index, slot = item
        seen = [where[n] for n in neighbours.get(slot, []) if n in where]
        return sum(seen) / len(seen) if seen else float(index)
    return [slot for _, slot in sorted(enumerate(column), key=key)]


def _place(columns: list[list[Slot]], top: float, spacing: Spacing) -> tuple[float, dict[Slot, Point]]:
    """Top-left corner of every slot (columns centred vertically) and the group's height."""
    pitch = spacing.node_height + spacing.row_gap
    rows = max(len(column) for column in columns)
    slots: dict[Slot, Point] = {}
    for i, column in enumerate(columns):
        x = spacing.margin + i * (spacing.node_width + spacing.layer_gap)
        offset = (rows - len(column)) * pitch / 2
        for j, slot in enumerate(column):
            slots[slot] = (x, round(top + offset + j * pitch, 1))
    return rows * pitch - spacing.row_gap, slots


def _edge(u: str, v: str, layer: dict[str, int], slots: dict[Slot, Point], spacing: Spacing) -> PlacedEdge:
    """The edge from ``u``'s right side to ``v``'s left side, straight through its dummies."""
    mid = spacing.node_height / 2
    ux, uy = slots[u]
    points: list[Point] = [(ux + spacing.node_width, uy + mid)]
    for k in range(layer[u] + 1, layer[v]):
        x, y = slots[(u, v, k)]
        points.extend([(x, y + mid), (x + spacing.node_width, y + mid)])
    vx, vy = slots[v]
    points.append((vx, vy + mid))
    return PlacedEdge(u, v, tuple(points), _path(points))


def _path(points: list[Point]) -> str:
    """Cubic curves between columns (horizontal tangents at both ends), lines across dummies."""
    parts = [f"M{_n(points[0][0])},{_n(points[0][1])}"]
    for i in range(1, len(points)):
        (x1, y1), (x2, y2) = points[i - 1], points[i]
        if i % 2:  # from a right side to the next column's left side
            dx = (x2 - x1) / 2
            parts.append(f"C{_n(x1 + dx)},{_n(y1)} {_n(x2 - dx)},{_n(y2)} {_n(x2)},{_n(y2)}")
        else:      # across a dummy slot
            parts.append(f"L{_n(x2)},{_n(y2)}")
    return " ".join(parts)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")
