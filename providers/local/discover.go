package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Discover is the local provider's "cloud auto-join": it returns a function
// that lists the gossip addresses (local-ipv4:port) of every node directory
// of cluster under stateDir, read from their meta-data.json. Nodes that are
// not running are listed too; joining them fails harmlessly. It reads files
// only (no /proc scan), so it is cheap enough to call on every join retry.
func Discover(stateDir, cluster string, port int) func(ctx context.Context) ([]string, error) {
	nodes := filepath.Join(stateDir, cluster, "nodes")
	return func(ctx context.Context) ([]string, error) {
		ents, err := os.ReadDir(nodes)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("local: discover %s: %w", cluster, err)
		}
		seen := map[string]bool{}
		var out []string
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			md, err := ReadMetaData(filepath.Join(nodes, e.Name()))
			if err != nil || md.Cluster != cluster || seen[md.LocalIPv4] {
				continue
			}
			seen[md.LocalIPv4] = true
			out = append(out, net.JoinHostPort(md.LocalIPv4, strconv.Itoa(port)))
		}
		sort.Strings(out)
		return out, nil
	}
}
