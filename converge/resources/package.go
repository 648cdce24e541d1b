package resources

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func packageKind() converge.Kind {
	return converge.Kind{
		Name: "package",
		Spec: hcldec.ObjectSpec{
			"name":    reqStr("name"),
			"version": optStr("version"),
			"ensure":  strDefault("ensure", "present"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			ensure := o.str("ensure")
			if err := oneOf("ensure", ensure, "present", "absent"); err != nil {
				return nil, err
			}
			name := o.str("name")
			if name == "" || strings.HasPrefix(name, "-") || strings.ContainsAny(name, " \t=/") {
				return nil, fmt.Errorf("name: %q is not a package name", name)
			}
			family := env.OSFamily
			if family == "" {
				family = converge.DetectOSFamily()
			}
			var b pkgBackend
			switch family {
			case "debian":
				b = apt{}
			case "redhat":
				b = dnf{}
			default:
				return nil, fmt.Errorf("no package manager for OS family %q (supported: debian, redhat)", family)
			}
			return &Package{env: env, name: name, version: o.str("version"), absent: ensure == "absent", b: b}, nil
		},
	}
}

// pkgBackend drives one system package manager.
type pkgBackend interface {
	// installed returns the installed version, or "" when not installed.
	installed(ctx context.Context, name string) (string, error)
	install(ctx context.Context, name, version string) error
	remove(ctx context.Context, name string) error
}

// Package is a system package. On local nodes (a root other than "/")
// the packages are the host's, shared by every node, so hactl never
// installs or removes them there: the resource only checks, and fails
// with an explanation when the host does not already satisfy it.
type Package struct {
	env     converge.Env
	name    string
	version string
	absent  bool
	b       pkgBackend
	change  string
}

var _ converge.Changer = (*Package)(nil)

// Change implements converge.Changer.
func (p *Package) Change() string { return p.change }

// CheckApply implements converge.Resource.
func (p *Package) CheckApply(ctx context.Context, apply bool) (bool, error) {
	have, err := p.b.installed(ctx, p.name)
	if err != nil {
		return false, err
	}
	switch {
	case p.absent && have == "":
		return true, nil
	case p.absent:
		p.change = "remove " + have
	case have == "":
		p.change = "install"
		if p.version != "" {
			p.change += " " + p.version
		}
	case p.version != "" && have != p.version:
		p.change = fmt.Sprintf("version %s -> %s", have, p.version)
	default:
		return true, nil
	}
	if p.env.Local() {
		return false, fmt.Errorf("package %s needs to %s, but local nodes share the host's packages and hactl does not change them: do it on the host, or run on a real machine", p.name, p.change)
	}
	if !apply {
		return false, nil
	}
	if p.absent {
		return false, p.b.remove(ctx, p.name)
	}
	return false, p.b.install(ctx, p.name, p.version)
}

type apt struct{}

func (apt) installed(ctx context.Context, name string) (string, error) {
	out, err := run(ctx, nil, "", "dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", name)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return "", nil // unknown package
	}
	if err != nil {
		return "", err
	}
	status, version, _ := strings.Cut(strings.TrimSpace(out), " ")
	if status != "installed" {
		return "", nil
	}
	return version, nil
}

var aptEnv = []string{"DEBIAN_FRONTEND=noninteractive"}

func (apt) install(ctx context.Context, name, version string) error {
	arg := name
	if version != "" {
		arg += "=" + version
	}
	_, err := run(ctx, aptEnv, "", "apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends", arg)
	return err
}

func (apt) remove(ctx context.Context, name string) error {
	_, err := run(ctx, aptEnv, "", "apt-get", "remove", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", name)
	return err
}

type dnf struct{}

func (dnf) installed(ctx context.Context, name string) (string, error) {
	out, err := run(ctx, nil, "", "rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

func (dnf) install(ctx context.Context, name, version string) error {
	arg := name
	if version != "" {
		arg += "-" + version
	}
	_, err := run(ctx, nil, "", "dnf", "install", "-y", "-q", arg)
	return err
}

func (dnf) remove(ctx context.Context, name string) error {
	_, err := run(ctx, nil, "", "dnf", "remove", "-y", "-q", name)
	return err
}
