package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
)

// List is a set of target base URLs (load-balancer backends, replication
// peers) given as URL-or-FILE specs. A spec starting with http:// or https://
// is one static URL; any other spec is the path of a JSON file of the form
//
//	{"backends": ["http://127.0.1.1:8080", ...]}
//
// ("peers" is accepted as the key too). Any spec with "://" is a URL, so
// "ftp://x" is an error rather than a file name. The agent rewrites the file
// from cluster membership; Targets reads it on every call and takes it over
// when its content changed. A missing file is an empty list, not an error, because the
// agent may write it after the service started.
//
// A List is safe for concurrent use.
type List struct {
	static []string

	mu    sync.Mutex
	files []*listFile
}

type listFile struct {
	path string
	last []byte // content of the last good read
	urls []string
}

// NewList parses specs. It fails on a malformed URL; files are read lazily.
func NewList(specs []string) (*List, error) {
	l := &List{}
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if IsURL(s) {
			u, err := ParseTarget(s)
			if err != nil {
				return nil, err
			}
			l.static = append(l.static, u)
			continue
		}
		l.files = append(l.files, &listFile{path: s})
	}
	return l, nil
}

// IsURL reports whether s is a URL (it has a scheme) rather than a file.
func IsURL(s string) bool {
	return strings.Contains(s, "://")
}

// ParseTarget validates an http(s) base URL and returns it without a
// trailing slash.
func ParseTarget(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("target %q: want an http:// or https:// URL with a host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("target %q: credentials, query and fragment are not allowed", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Targets returns the current targets: the static URLs followed by the
// content of each file, without duplicates. When a file cannot be read or
// parsed, its last good content is kept and the error is returned alongside
// the (still usable) list.
func (l *List) Targets() ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, f := range l.files {
		if err := f.refresh(); err != nil {
			errs = append(errs, err)
		}
	}
	seen := map[string]bool{}
	var out []string
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, u := range l.static {
		add(u)
	}
	for _, f := range l.files {
		for _, u := range f.urls {
			add(u)
		}
	}
	return out, errors.Join(errs...)
}

func (f *listFile) refresh() error {
	// The file is small and read once per check: comparing its content
	// catches every change, even two same-sized writes within one tick of
	// the file system's clock.
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		f.urls, f.last = nil, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("target file: %w", err)
	}
	if f.last != nil && bytes.Equal(b, f.last) {
		return nil
	}
	urls, err := parseListFile(b)
	if err != nil {
		return fmt.Errorf("target file %s: %w", f.path, err)
	}
	f.urls, f.last = urls, b
	return nil
}

func parseListFile(b []byte) ([]string, error) {
	var doc struct {
		Backends []string `json:"backends"`
		Peers    []string `json:"peers"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	var out []string
	for _, s := range append(doc.Backends, doc.Peers...) {
		u, err := ParseTarget(s)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}
