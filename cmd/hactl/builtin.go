package main

import (
	"sync"

	"github.com/hactl/hactl/converge/resources"
	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/lab"
	"github.com/hactl/hactl/providers/local"
)

// providerFactories is the one place that lists the providers built into
// this hactl, by type. The local and lab providers boot nodes with a stable copy of
// this binary (under go run the executable disappears when the CLI exits,
// and nodes must outlive it).
func providerFactories(g *globals, stateDir string) map[string]providers.Factory {
	var once sync.Once
	var bin string
	var binErr error
	command := func(nodeDir string) []string {
		once.Do(func() { bin, binErr = local.InstallBinary(stateDir) })
		if binErr != nil {
			g.logger.Error("install hactl binary for local nodes", "err", binErr)
			return nil
		}
		return []string{bin, "agent", "--node-dir", nodeDir}
	}
	return map[string]providers.Factory{
		"local":        local.Factory(local.Config{StateDir: stateDir, Command: command, Logger: g.logger}),
		"lab":          lab.Factory(lab.Config{StateDir: stateDir, Command: command, Logger: g.logger}),
		"digitalocean": digitalocean.New,
	}
}

func init() {
	// The converge engine's kinds are the schemas resource blocks are
	// validated against, everywhere a configuration is loaded.
	resourceSchemas = resources.Builtin()
}
