// Package graph is a small directed acyclic graph of string-named nodes:
// add nodes and edges, find cycles (reported as the path that closes them),
// and list dependents. It owns no scheduling and no goroutines; converge
// walks the graph itself. It is not safe for concurrent mutation.
package graph
