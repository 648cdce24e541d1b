package serve

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
)

// Static serves the files below Dir over HTTP GET and HEAD. It never serves
// anything outside Dir: a request path with a ".." segment (literal or
// percent-encoded), a backslash or a NUL byte is refused with 400, and a
// symbolic link that points out of Dir is refused with 404, because files are
// opened through os.Root. Refusals are logged at warn level. Directories are
// served only through their index.html; there are no listings.
//
// Dir is opened on every request, so the agent may replace it (for example by
// renaming a fresh checkout over it) while the server runs.
type Static struct {
	Dir string
	Log *slog.Logger
	// Prefix is stripped from the request path before lookup ("/packages/").
	Prefix string
}

var _ http.Handler = (*Static)(nil)

// SecurityHeaders sets the response headers every built-in web response
// carries.
func SecurityHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'self'")
}

// CleanRequestPath returns the slash-separated, root-relative name that
// p (an already percent-decoded URL path) refers to, or ok=false when p
// tries to leave the root or holds bytes no file name should hold.
func CleanRequestPath(p string) (name string, ok bool) {
	if strings.ContainsAny(p, "\\\x00") {
		return "", false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", false
		}
	}
	name = strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		name = "."
	}
	return name, true
}

func (s *Static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := Logger(s.Log)
	SecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(s.Prefix, "/"))
	name, ok := CleanRequestPath(p)
	if !ok {
		log.Warn("refused request path", "path", r.URL.EscapedPath(), "remote", r.RemoteAddr, "reason", "leaves the root or holds forbidden bytes")
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		log.Error("open content root", "dir", s.Dir, "err", err)
		http.Error(w, "content unavailable", http.StatusServiceUnavailable)
		return
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		s.notFound(w, r, name, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.notFound(w, r, name, err)
		return
	}
	if st.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			// A relative redirect cannot be turned into an open redirect
			// by a path such as //evil.example.
			w.Header().Set("Location", path.Base(r.URL.Path)+"/")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		f.Close()
		name = path.Join(name, "index.html")
		f, err = root.Open(name)
		if err != nil {
			s.notFound(w, r, name, err)
			return
		}
		defer f.Close()
		if st, err = f.Stat(); err != nil || st.IsDir() {
			s.notFound(w, r, name, err)
			return
		}
	}
	if !st.Mode().IsRegular() {
		s.notFound(w, r, name, errors.New("not a regular file"))
		return
	}
	if strings.HasSuffix(name, ".html") {
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	http.ServeContent(w, r, name, st.ModTime(), f)
}

func (s *Static) notFound(w http.ResponseWriter, r *http.Request, name string, err error) {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// os.Root reports symlinks leading out of the root (and other
		// oddities) here: log them as refusals.
		Logger(s.Log).Warn("refused request path", "path", r.URL.EscapedPath(), "name", name, "remote", r.RemoteAddr, "err", err)
	}
	http.Error(w, "not found", http.StatusNotFound)
}
