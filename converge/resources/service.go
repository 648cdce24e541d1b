package resources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hactl/hactl/converge"
	"github.com/hactl/hactl/converge/supervise"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func serviceKind() converge.Kind {
	return converge.Kind{
		Name: "service",
		Spec: hcldec.ObjectSpec{
			"name":    reqStr("name"),
			"ensure":  strDefault("ensure", "running"),
			"enabled": optBool("enabled"),
			"command": optList("command"),
			"env":     optMap("env"),
			"cwd":     optStr("cwd"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			ensure := o.str("ensure")
			if err := oneOf("ensure", ensure, "running", "stopped"); err != nil {
				return nil, err
			}
			name := o.str("name")
			if name == "" || strings.ContainsAny(name, "/ \t") || strings.HasPrefix(name, "-") {
				return nil, fmt.Errorf("name: %q is not a service name", name)
			}
			s := &Service{env: env, name: name, running: ensure == "running", enabled: o.boolp("enabled")}
			if env.Supervisor == nil {
				return s, nil
			}
			cwd := env.Root
			if c := o.str("cwd"); c != "" {
				p, err := env.Path(c)
				if err != nil {
					return nil, fmt.Errorf("cwd: %w", err)
				}
				cwd = p
			}
			s.spec = supervise.Spec{Name: name, Command: o.list("command"), Env: o.strMap("env"), Dir: cwd}
			if s.running && len(s.spec.Command) == 0 {
				return nil, errors.New("command is required on local nodes (the supervisor runs it)")
			}
			return s, nil
		},
	}
}

// Service is a long-running daemon. With env.Supervisor set (local nodes)
// the supervisor runs `command`; otherwise systemd does, through
// systemctl, and `command`, `env` and `cwd` are ignored (ship the unit file
// with a file resource that notifies the service).
type Service struct {
	env     converge.Env
	name    string
	running bool
	enabled *bool
	spec    supervise.Spec

	started bool // (re)started by CheckApply in this run: no refresh needed
	change  string
}

var (
	_ converge.Refresher = (*Service)(nil)
	_ converge.Changer   = (*Service)(nil)
)

// Change implements converge.Changer.
func (s *Service) Change() string { return s.change }

// CheckApply implements converge.Resource.
func (s *Service) CheckApply(ctx context.Context, apply bool) (bool, error) {
	if s.env.Supervisor != nil {
		return s.checkSupervised(apply)
	}
	return s.checkSystemd(ctx, apply)
}

// Refresh implements converge.Refresher: restart, unless CheckApply just
// started the service or it is meant to be stopped.
func (s *Service) Refresh(ctx context.Context) error {
	if s.started || !s.running {
		return nil
	}
	if sv := s.env.Supervisor; sv != nil {
		return sv.Restart(s.name)
	}
	_, err := run(ctx, nil, "", "systemctl", "restart", s.name)
	return err
}

func (s *Service) checkSupervised(apply bool) (bool, error) {
	sv := s.env.Supervisor
	st, ok := sv.Status(s.name)
	if !s.running {
		if !ok && !sv.Stale(s.name) {
			return true, nil
		}
		s.change = "stop"
		if !apply {
			return false, nil
		}
		_, err := sv.Stop(s.name)
		return false, err
	}
	switch {
	case ok && st.Spec.Equal(s.spec):
		return true, nil
	case !ok && sv.Adoptable(s.spec):
		// Left running by an earlier agent or run, exactly as declared:
		// take it over without a restart.
		if apply {
			if _, err := sv.Ensure(s.spec); err != nil {
				return false, err
			}
		}
		return true, nil
	case ok:
		s.change = "restart with new command, env or cwd"
	case sv.Stale(s.name):
		s.change = "restart process left by an earlier agent"
	default:
		s.change = "start"
	}
	if !apply {
		return false, nil
	}
	_, err := sv.Ensure(s.spec)
	s.started = true
	return false, err
}

// systemdRunning reports whether systemd is the init system here.
func systemdRunning() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func (s *Service) checkSystemd(ctx context.Context, apply bool) (bool, error) {
	if !systemdRunning() {
		return false, fmt.Errorf("service %s: systemd is not running on this machine (no /run/systemd/system) and no supervisor was given", s.name)
	}
	var changes []string
	code, err := exitCode(ctx, nil, "", "systemctl", "is-active", "--quiet", s.name)
	if err != nil {
		return false, err
	}
	active := code == 0
	if active != s.running {
		verb := "start"
		if !s.running {
			verb = "stop"
		}
		changes = append(changes, verb)
		if apply {
			if _, err := run(ctx, nil, "", "systemctl", verb, s.name); err != nil {
				return false, err
			}
			s.started = s.running
		}
	}
	if s.enabled != nil {
		code, err := exitCode(ctx, nil, "", "systemctl", "is-enabled", "--quiet", s.name)
		if err != nil {
			return false, err
		}
		if (code == 0) != *s.enabled {
			verb := "enable"
			if !*s.enabled {
				verb = "disable"
			}
			changes = append(changes, verb)
			if apply {
				if _, err := run(ctx, nil, "", "systemctl", verb, s.name); err != nil {
					return false, err
				}
			}
		}
	}
	if len(changes) == 0 {
		return true, nil
	}
	s.change = joinChanges(changes)
	return false, nil
}
