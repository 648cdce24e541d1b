package serve

import (
	"crypto/subtle"
	"fmt"
	"os"
	"strings"
)

// ReadToken reads a cluster token from path: the file's content with
// surrounding white space removed. An empty token is an error, so a service
// never runs with authentication silently switched off.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("read token file %s: file is empty", path)
	}
	return t, nil
}

// TokenEqual compares a presented token with the expected one in constant
// time. An empty expected token never matches.
func TokenEqual(got, want string) bool {
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
