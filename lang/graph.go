package lang

import "sort"

// findCycles returns one cycle per strongly connected component of the
// graph that has a loop, as a path of names starting at the component's
// member that comes first in nodes (the path does not repeat the start).
// edges[a] lists the nodes a points to. The result is deterministic for a
// given nodes order and sorted edge lists.
func findCycles(nodes []string, edges map[string][]string) [][]string {
	pos := make(map[string]int, len(nodes))
	for i, n := range nodes {
		pos[n] = i
	}
	// Tarjan's algorithm, iterative-free recursion is fine: graphs are the
	// size of a role's resources or the locals of a configuration.
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var sccs [][]string
	next := 0
	var strong func(v string)
	strong = func(v string) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range edges[v] {
			if _, known := pos[w]; !known {
				continue
			}
			if _, seen := index[w]; !seen {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var scc []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			sccs = append(sccs, scc)
		}
	}
	for _, n := range nodes {
		if _, seen := index[n]; !seen {
			strong(n)
		}
	}
	var cycles [][]string
	for _, scc := range sccs {
		in := map[string]bool{}
		for _, n := range scc {
			in[n] = true
		}
		sort.Slice(scc, func(i, j int) bool { return pos[scc[i]] < pos[scc[j]] })
		start := scc[0]
		if len(scc) == 1 {
			self := false
			for _, w := range edges[start] {
				self = self || w == start
			}
			if self {
				cycles = append(cycles, []string{start})
			}
			continue
		}
		// Shortest path from start back to start inside the component.
		prev := map[string]string{}
		queue := []string{start}
		found := false
		for len(queue) > 0 && !found {
			v := queue[0]
			queue = queue[1:]
			for _, w := range edges[v] {
				if !in[w] {
					continue
				}
				if w == start {
					prev[start] = v
					found = true
					break
				}
				if _, seen := prev[w]; !seen {
					prev[w] = v
					queue = append(queue, w)
				}
			}
		}
		path := []string{}
		for v := prev[start]; v != start; v = prev[v] {
			path = append(path, v)
		}
		path = append(path, start)
		for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
			path[i], path[j] = path[j], path[i]
		}
		cycles = append(cycles, path)
	}
	sort.Slice(cycles, func(i, j int) bool { return pos[cycles[i][0]] < pos[cycles[j][0]] })
	return cycles
}
