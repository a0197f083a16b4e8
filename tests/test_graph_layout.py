"""The layered layout behind the pipelines page: layers, no overlaps, edges left to right,
fewer crossings, disconnected graphs stacked, isolated nodes left out, cycles survived, determinism."""
from __future__ import annotations

import itertools
import re

from lexyjobs.graph_layout import (GraphLayout, PlacedNode, Spacing, acyclic_edges, assign_layers, components,
                                   count_crossings, layout)

SEED_000 = {"collect-keywords": (), "keyword-metrics": ("collect-keywords",),
            "social-metrics": ("collect-keywords",), "ingest-corpus-metrics": ("keyword-metrics", "social-metrics")}


def _overlap(a: PlacedNode, b: PlacedNode) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def _layers(drawing: GraphLayout) -> list[list[str]]:
    """The drawn order: names per column, top to bottom (for one component)."""
    columns: dict[int, list[PlacedNode]] = {}
    for node in drawing.nodes:
        columns.setdefault(node.layer, []).append(node)
    return [[n.name for n in sorted(columns[i], key=lambda n: n.y)] for i in sorted(columns)]


def test_the_seed_chain_has_three_layers_by_longest_path() -> None:
    assert assign_layers(SEED_000) == {"collect-keywords": 0, "keyword-metrics": 1, "social-metrics": 1,
                                       "ingest-corpus-metrics": 2}
    drawing = layout(SEED_000)
    assert _layers(drawing) == [["collect-keywords"], ["keyword-metrics", "social-metrics"],
                                ["ingest-corpus-metrics"]]
    assert {(e.source, e.target) for e in drawing.edges} == {
        ("collect-keywords", "keyword-metrics"), ("collect-keywords", "social-metrics"),
        ("keyword-metrics", "ingest-corpus-metrics"), ("social-metrics", "ingest-corpus-metrics")}


def test_a_layer_is_the_longest_path_not_the_shortest() -> None:
    graph = {"a": (), "b": ("a",), "c": ("b",), "d": ("a", "c")}
    assert assign_layers(graph) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_nodes_never_overlap_and_stay_inside_the_canvas() -> None:
    graph = {"r1": (), "r2": (), "a": ("r1",), "b": ("r1", "r2"), "c": ("r2",), "d": ("a", "b", "c"),
             "e": ("r1",), "f": ("d", "e"), "g": ("r2",), "x": (), "y": ("x",)}
    drawing = layout(graph)
    assert len(drawing.nodes) == len(graph)
    for a, b in itertools.combinations(drawing.nodes, 2):
        assert not _overlap(a, b), (a, b)
    for node in drawing.nodes:
        assert 0 <= node.x and node.x + node.width <= drawing.width
        assert 0 <= node.y and node.y + node.height <= drawing.height


def test_every_edge_runs_left_to_right_from_right_side_to_left_side() -> None:
    graph = {"a": (), "b": ("a",), "c": ("b",), "d": ("a", "c"), "e": ("a",)}
    drawing = layout(graph)
    for edge in drawing.edges:
        source, target = drawing.node(edge.source), drawing.node(edge.target)
        assert target.x > source.x + source.width
        assert edge.points[0] == (source.x + source.width, source.y + source.height / 2)
        assert edge.points[-1] == (target.x, target.y + target.height / 2)
        xs = [x for x, _ in edge.points]
        assert xs == sorted(xs)
        assert edge.path.startswith("M") and "C" in edge.path


def test_a_long_edge_goes_through_free_slots_not_through_nodes() -> None:
    graph = {"a": (), "b": ("a",), "c": ("b",), "d": ("a", "c")}
    drawing = layout(graph)
    long = next(e for e in drawing.edges if (e.source, e.target) == ("a", "d"))
    assert len(long.points) == 6  # start, two dummies (in and out), end
    assert long.path.count("L") == 2 and long.path.count("C") == 3
    for x, y in long.points[1:-1]:
        for node in drawing.nodes:
            inside = node.x <= x <= node.x + node.width and node.y <= y <= node.y + node.height
            assert not inside, (x, y, node)


def test_barycenter_sweeps_remove_crossings_a_name_order_has() -> None:
    # One connected graph whose name order crosses three times. Sweeping down alone cannot fix it
    # (the roots keep their order); the upward sweep moves b to the top and the crossings vanish.
    graph = {"a": (), "b": (), "c": (), "w": ("b",), "x": ("a", "b"), "y": ("a", "c")}
    edges = acyclic_edges(graph)
    assert len(components(graph)) == 1
    assert count_crossings([["a", "b", "c"], ["w", "x", "y"]], edges) == 3
    drawn = _layers(layout(graph))
    assert count_crossings(drawn, edges) == 0
    assert drawn[0] != ["a", "b", "c"]


def test_crossings_are_counted_pairwise_between_adjacent_layers() -> None:
    assert count_crossings([["a", "b"], ["c", "d"]], [("a", "d"), ("b", "c")]) == 1
    assert count_crossings([["a", "b"], ["c", "d"]], [("a", "c"), ("b", "d")]) == 0
    assert count_crossings([["a", "b"], ["c", "d"]], [("a", "c"), ("a", "d")]) == 0


def test_disconnected_graphs_are_stacked_and_isolated_nodes_listed_apart() -> None:
    graph = {"p1": (), "p2": ("p1",), "q1": (), "q2": ("q1",), "q3": ("q2",), "alone": (), "zeta": ()}
    assert components(graph) == [["p1", "p2"], ["q1", "q2", "q3"]]
    drawing = layout(graph)
    assert drawing.isolated == ("alone", "zeta")
    assert {n.name for n in drawing.nodes} == {"p1", "p2", "q1", "q2", "q3"}
    p_bottom = max(n.y + n.height for n in drawing.nodes if n.name.startswith("p"))
    q_top = min(n.y for n in drawing.nodes if n.name.startswith("q"))
    assert q_top >= p_bottom + Spacing().component_gap
    assert drawing.width == 2 * Spacing().margin + 3 * Spacing().node_width + 2 * Spacing().layer_gap


def test_a_graph_without_edges_draws_nothing() -> None:
    drawing = layout({"a": (), "b": ("gone",)})  # an unknown upstream is no edge
    assert drawing.nodes == () and drawing.edges == () and drawing.isolated == ("a", "b")
    assert (drawing.width, drawing.height) == (0, 0)


def test_a_cycle_does_not_hang_and_still_draws_every_node() -> None:
    graph = {"a": ("c",), "b": ("a",), "c": ("b",), "d": ("c",)}
    drawing = layout(graph)
    assert {n.name for n in drawing.nodes} == {"a", "b", "c", "d"}
    assert len(drawing.edges) == 3  # the edge closing the cycle is left out
    for edge in drawing.edges:
        assert drawing.node(edge.target).x > drawing.node(edge.source).x


def test_the_layout_is_deterministic_whatever_the_input_order() -> None:
    graph = {"r1": (), "r2": (), "a": ("r1",), "b": ("r2", "r1"), "c": ("r2",), "d": ("c", "a", "b"),
             "e": ("r1",), "f": ("e", "d")}
    shuffled = {name: tuple(reversed(graph[name])) for name in reversed(list(graph))}
    assert layout(graph) == layout(graph) == layout(shuffled)


def test_path_numbers_are_compact() -> None:
    drawing = layout(SEED_000)
    for edge in drawing.edges:
        assert re.fullmatch(r"[MCL0-9., -]+", edge.path)
        assert ".0" not in edge.path
