package graph

import (
	"fmt"
	"slices"
	"strings"
)

// Graph is a directed graph. An edge from A to B means "A before B" (B
// depends on A). The zero value is not usable; call New.
type Graph struct {
	nodes []string
	index map[string]int
	out   map[string][]string // A -> nodes that depend on A
	in    map[string][]string // B -> nodes B depends on
}

// New returns an empty graph.
func New() *Graph {
	return &Graph{index: map[string]int{}, out: map[string][]string{}, in: map[string][]string{}}
}

// AddNode adds n; adding an existing node does nothing. Nodes keep the
// order in which they were first added, and every listing follows it.
func (g *Graph) AddNode(n string) {
	if _, ok := g.index[n]; ok {
		return
	}
	g.index[n] = len(g.nodes)
	g.nodes = append(g.nodes, n)
}

// Has reports whether n is a node.
func (g *Graph) Has(n string) bool { _, ok := g.index[n]; return ok }

// AddEdge adds the edge from -> to ("from before to"), adding missing
// nodes. Duplicate edges are ignored; a self edge is kept (it is a cycle).
func (g *Graph) AddEdge(from, to string) {
	g.AddNode(from)
	g.AddNode(to)
	if slices.Contains(g.out[from], to) {
		return
	}
	g.out[from] = append(g.out[from], to)
	g.in[to] = append(g.in[to], from)
}

// Nodes returns every node in insertion order. The slice is a copy.
func (g *Graph) Nodes() []string { return slices.Clone(g.nodes) }

// Dependents returns the nodes that depend directly on n (edges n -> x).
func (g *Graph) Dependents(n string) []string { return slices.Clone(g.out[n]) }

// Dependencies returns the nodes n depends on directly (edges x -> n).
func (g *Graph) Dependencies(n string) []string { return slices.Clone(g.in[n]) }

// CycleError names one cycle of the graph, as the path that closes it.
type CycleError struct {
	Cycle []string // first element repeated at the end
}

func (e *CycleError) Error() string {
	return "dependency cycle: " + strings.Join(e.Cycle, " -> ")
}

// TopoSort returns the nodes in an order where every edge points forward,
// ties broken by insertion order, or a *CycleError naming one cycle.
func (g *Graph) TopoSort() ([]string, error) {
	if c := g.findCycle(); c != nil {
		return nil, &CycleError{Cycle: c}
	}
	indeg := make(map[string]int, len(g.nodes))
	for _, n := range g.nodes {
		indeg[n] = len(g.in[n])
	}
	var ready, order []string
	for _, n := range g.nodes {
		if indeg[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		slices.SortFunc(ready, func(a, b string) int { return g.index[a] - g.index[b] })
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, d := range g.out[n] {
			indeg[d]--
			if indeg[d] == 0 {
				ready = append(ready, d)
			}
		}
	}
	return order, nil
}

// FindCycle returns one cycle as a closed path (first node repeated at the
// end), or nil when the graph is acyclic: TopoSort's check without the
// ordering, for callers that order the work themselves.
func (g *Graph) FindCycle() []string { return g.findCycle() }

// findCycle returns one cycle as a closed path, or nil. It is an iterative
// depth-first search, so deep graphs cannot overflow the stack.
func (g *Graph) findCycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := make(map[string]int, len(g.nodes))
	parent := map[string]string{}
	type frame struct {
		n string
		i int
	}
	for _, start := range g.nodes {
		if color[start] != white {
			continue
		}
		stack := []frame{{n: start}}
		color[start] = grey
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.i >= len(g.out[top.n]) {
				color[top.n] = black
				stack = stack[:len(stack)-1]
				continue
			}
			next := g.out[top.n][top.i]
			top.i++
			switch color[next] {
			case white:
				color[next] = grey
				parent[next] = top.n
				stack = append(stack, frame{n: next})
			case grey:
				// next is on the stack: walk back from top.n to next.
				path := []string{next}
				for c := top.n; c != next; c = parent[c] {
					path = append(path, c)
				}
				slices.Reverse(path[1:])
				return append(path, next)
			}
		}
	}
	return nil
}

// String renders the edges, one "a -> b" per line, for debugging.
func (g *Graph) String() string {
	var b strings.Builder
	for _, n := range g.nodes {
		for _, d := range g.out[n] {
			fmt.Fprintf(&b, "%s -> %s\n", n, d)
		}
	}
	return b.String()
}
