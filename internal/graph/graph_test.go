package graph

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGraph_TopoSort_Order(t *testing.T) {
	g := New()
	g.AddNode("c")
	g.AddEdge("a", "b")
	g.AddEdge("b", "d")
	g.AddEdge("c", "d")
	got, err := g.TopoSort()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"c", "a", "b", "d"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestGraph_TopoSort_Cycle(t *testing.T) {
	g := New()
	g.AddEdge("x", "a")
	g.AddEdge("a", "b")
	g.AddEdge("b", "c")
	g.AddEdge("c", "a")
	_, err := g.TopoSort()
	var ce *CycleError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *CycleError", err)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "a"}, ce.Cycle); diff != "" {
		t.Errorf("cycle (-want +got):\n%s", diff)
	}
	if want := "dependency cycle: a -> b -> c -> a"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestGraph_TopoSort_SelfEdge(t *testing.T) {
	g := New()
	g.AddEdge("a", "a")
	_, err := g.TopoSort()
	var ce *CycleError
	if !errors.As(err, &ce) || !cmp.Equal(ce.Cycle, []string{"a", "a"}) {
		t.Fatalf("err = %v, want cycle a -> a", err)
	}
}
