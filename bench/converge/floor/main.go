// Command floor is the speed floor of the converge benchmark: the least work
// any tool must do for the workload. It renders the benchmark template for
// each file with plain string replacement, reads the current file, compares,
// and writes only when different; it makes missing directories and checks
// symlinks with readlink. No graph, no reports, no backups, no confinement.
//
// Usage: floor TEMPLATE TARGET
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const dirs, perDir, links = 20, 10, 10

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: floor TEMPLATE TARGET")
		os.Exit(2)
	}
	tpl, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	target := os.Args[2]
	for d := range dirs {
		dir := filepath.Join(target, "srv", "d"+strconv.Itoa(d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fail(err)
		}
		for f := range perDir {
			r := strings.NewReplacer("${name}", fmt.Sprintf("svc-%d-%d", d, f), "${port}", strconv.Itoa(8000+d*perDir+f), "${dc}", "dc1")
			want := []byte(r.Replace(string(tpl)))
			p := filepath.Join(dir, fmt.Sprintf("f%d.conf", f))
			if have, err := os.ReadFile(p); err == nil && bytes.Equal(have, want) {
				continue
			}
			if err := os.WriteFile(p, want, 0o644); err != nil {
				fail(err)
			}
		}
	}
	for l := range links {
		p := filepath.Join(target, "srv", fmt.Sprintf("link%d", l))
		want := filepath.Join(target, "srv", "d"+strconv.Itoa(l), "f0.conf")
		if have, err := os.Readlink(p); err == nil && have == want {
			continue
		}
		os.Remove(p)
		if err := os.Symlink(want, p); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}
