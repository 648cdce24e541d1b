// Package converge_test benchmarks the converge engine in-process on the
// workload of run.sh (20 directories, 200 templated files, 10 symlinks),
// without process start-up: go test -bench . ./bench/converge/
package converge_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge"
	"github.com/hactl/hactl/converge/resources"
)

const tpl = `# managed by the converge benchmark; do not edit
[service]
name = ${name}
port = ${port}
datacenter = ${dc}
listen = 0.0.0.0:${port}
log = /var/log/${name}.log
pidfile = /run/${name}.pid

[upstream]
server ${name}.${dc}.internal:${port}
backup ${name}.backup.${dc}.internal:${port}
`

func workload(b *testing.B) (string, converge.Env) {
	dir := b.TempDir()
	tplPath := filepath.Join(dir, "app.conf.tpl")
	if err := os.WriteFile(tplPath, []byte(tpl), 0o644); err != nil {
		b.Fatal(err)
	}
	var s strings.Builder
	for d := range 20 {
		fmt.Fprintf(&s, "resource \"directory\" \"d%d\" {\n  path = \"/srv/d%d\"\n}\n", d, d)
		for f := range 10 {
			fmt.Fprintf(&s, "resource \"template\" \"f%d_%d\" {\n  path = \"/srv/d%d/f%d.conf\"\n  source = %q\n  vars = { name = \"svc-%d-%d\", port = %d, dc = \"dc1\" }\n}\n",
				d, f, d, f, tplPath, d, f, 8000+d*10+f)
		}
	}
	for l := range 10 {
		fmt.Fprintf(&s, "resource \"symlink\" \"l%d\" {\n  path = \"/srv/link%d\"\n  target = \"/srv/d%d/f0.conf\"\n}\n", l, l, l)
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	return s.String(), converge.Env{Root: root}
}

func BenchmarkEngine_Run_NoOp(b *testing.B) {
	src, env := workload(b)
	decls, diags := converge.ParseResources("bench.hcl", []byte(src))
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	e := converge.NewEngine(resources.Builtin(), env)
	if rep, err := e.Run(b.Context(), decls, nil, converge.Options{}); err != nil || rep.Failed() {
		b.Fatalf("first run: %v %+v", err, rep)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := e.Run(b.Context(), decls, nil, converge.Options{})
		if err != nil || rep.Summary.Unchanged != 230 {
			b.Fatalf("no-op run: %v %+v", err, rep.Summary)
		}
	}
}

func BenchmarkParseResources(b *testing.B) {
	src, _ := workload(b)
	for b.Loop() {
		if _, diags := converge.ParseResources("bench.hcl", []byte(src)); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
	}
}

// BenchmarkEngine_RunCompiled_NoOp is the no-op run of `hactl converge FILE`
// with its compiled form cached: decode the cached form (CompileFlat's, as
// hactl keeps it), then check every resource (no parsing, no HCL decoding).
func BenchmarkEngine_RunCompiled_NoOp(b *testing.B) {
	src, env := workload(b)
	decls, diags := converge.ParseResources("bench.hcl", []byte(src))
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	e := converge.NewEngine(resources.Builtin(), env)
	data, err := e.CompileFlat(decls, nil).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	if rep, err := e.Run(b.Context(), decls, nil, converge.Options{}); err != nil || rep.Failed() {
		b.Fatalf("first run: %v %+v", err, rep)
	}
	b.ResetTimer()
	for b.Loop() {
		c, err := converge.UnmarshalCompiled(data)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := e.RunCompiled(b.Context(), c, nil, converge.Options{})
		if err != nil || rep.Summary.Unchanged != 230 {
			b.Fatalf("no-op run: %v %+v", err, rep.Summary)
		}
	}
}

func BenchmarkUnmarshalCompiled(b *testing.B) {
	src, env := workload(b)
	decls, _ := converge.ParseResources("bench.hcl", []byte(src))
	data, err := converge.NewEngine(resources.Builtin(), env).CompileFlat(decls, nil).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := converge.UnmarshalCompiled(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngine_Run_First is the first run on an empty target: every
// directory, file and symlink made, the files' data and directories synced
// (removing the target between iterations is not timed).
func BenchmarkEngine_Run_First(b *testing.B) {
	src, env := workload(b)
	decls, diags := converge.ParseResources("bench.hcl", []byte(src))
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	e := converge.NewEngine(resources.Builtin(), env)
	for b.Loop() {
		b.StopTimer()
		if err := os.RemoveAll(filepath.Join(env.Root, "srv")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := e.Run(b.Context(), decls, nil, converge.Options{})
		if err != nil || rep.Summary.Changed != 230 {
			b.Fatalf("first run: %v %+v", err, rep.Summary)
		}
	}
}
