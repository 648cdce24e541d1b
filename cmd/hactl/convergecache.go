package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// compileCache keeps a bare resource file's compiled (parsed and decoded)
// form between `hactl converge FILE` runs. Decoding a file is a pure
// function of its bytes, its name (source ranges), the evaluation context
// (node facts only: a bare file has no variables and no functions) and the
// hactl build (kinds' schemas); the key hashes all four, so a hit is exactly
// what parsing would give. It is only a cache: any problem reading it means
// parsing, any problem writing it is logged and ignored.
type compileCache struct {
	path string
	key  [sha256.Size]byte
	ok   bool // a key could be made
}

func newCompileCache(root, file string, src []byte, evalCtx *hcl.EvalContext) *compileCache {
	c := &compileCache{path: filepath.Join(root, "var/lib/hactl/converge-cache")}
	exe, err := os.Executable()
	if err != nil || evalCtx.Functions != nil {
		return c
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return c
	}
	vars, err := converge.AppendValue(nil, cty.ObjectVal(evalCtx.Variables))
	if err != nil {
		return c
	}
	h := sha256.New()
	for _, part := range [][]byte{
		[]byte("hactl converge-cache 2"),
		[]byte(exe + "\x00" + strconv.FormatInt(fi.Size(), 10) + "\x00" + strconv.FormatInt(fi.ModTime().UnixNano(), 10)),
		[]byte(file), src, vars,
	} {
		h.Write([]byte(strconv.Itoa(len(part)) + ":"))
		h.Write(part)
	}
	h.Sum(c.key[:0])
	c.ok = true
	return c
}

// load returns the cached compilation, or nil on a miss.
func (c *compileCache) load(g *globals) *converge.Compiled {
	if !c.ok {
		return nil
	}
	data, err := os.ReadFile(c.path)
	if err != nil || len(data) < len(c.key) || !bytes.Equal(data[:len(c.key)], c.key[:]) {
		return nil
	}
	comp, err := converge.UnmarshalCompiled(data[len(c.key):])
	if err != nil {
		g.logger.Warn("converge cache unreadable; parsing instead", "path", c.path, "err", err)
		return nil
	}
	g.logger.Debug("converge cache hit: not parsing", "path", c.path)
	return comp
}

// store writes comp under the key, atomically; a compilation with a failed
// declaration is not stored.
func (c *compileCache) store(g *globals, comp *converge.Compiled) {
	if !c.ok || !comp.OK() {
		return
	}
	data, err := comp.MarshalBinary()
	if err == nil {
		err = writeCacheFile(c.path, append(c.key[:], data...))
	}
	if err != nil {
		g.logger.Debug("converge cache not written", "path", c.path, "err", err)
	}
}

// writeCacheFile writes data to path through a private temporary file
// renamed into place (mode 0600: decoded values may hold secrets).
func writeCacheFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	t, err := os.CreateTemp(filepath.Dir(path), ".converge-cache-*")
	if err != nil {
		return err
	}
	defer os.Remove(t.Name())
	if _, err := t.Write(data); err != nil {
		t.Close()
		return err
	}
	if err := t.Close(); err != nil {
		return err
	}
	return os.Rename(t.Name(), path)
}
