package resources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func groupKind() converge.Kind {
	return converge.Kind{
		Name: "group",
		Spec: hcldec.ObjectSpec{
			"name":   reqStr("name"),
			"gid":    optNum("gid"),
			"system": optBool("system"),
			"ensure": strDefault("ensure", "present"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			ensure := o.str("ensure")
			if err := oneOf("ensure", ensure, "present", "absent"); err != nil {
				return nil, err
			}
			if err := validAccount(o.str("name")); err != nil {
				return nil, err
			}
			gid, err := o.intp("gid")
			if err != nil {
				return nil, err
			}
			return &Group{env: env, name: o.str("name"), gid: gid, system: o.boolean("system"), absent: ensure == "absent"}, nil
		},
	}
}

// Group is a local group, managed with groupadd/groupmod/groupdel. It only
// checks on local nodes.
type Group struct {
	env    converge.Env
	name   string
	gid    *int
	system bool
	absent bool
	change string
}

var _ converge.Changer = (*Group)(nil)

// Change implements converge.Changer.
func (g *Group) Change() string { return g.change }

// CheckApply implements converge.Resource.
func (g *Group) CheckApply(ctx context.Context, apply bool) (bool, error) {
	f, err := getent(ctx, "group", g.name)
	if err != nil {
		return false, err
	}
	var argv []string
	switch {
	case g.absent && f == nil:
		return true, nil
	case g.absent:
		g.change, argv = "delete", []string{"groupdel", g.name}
	case f == nil:
		g.change, argv = "create", []string{"groupadd"}
		if g.gid != nil {
			argv = append(argv, "-g", strconv.Itoa(*g.gid))
		}
		if g.system {
			argv = append(argv, "-r")
		}
		argv = append(argv, g.name)
	case g.gid != nil && len(f) > 2 && f[2] != strconv.Itoa(*g.gid):
		g.change = "gid " + f[2] + " -> " + strconv.Itoa(*g.gid)
		argv = []string{"groupmod", "-g", strconv.Itoa(*g.gid), g.name}
	default:
		return true, nil
	}
	if g.env.Local() {
		return false, fmt.Errorf("group %s needs to %s, but local nodes share the host's accounts and hactl does not change them", g.name, g.change)
	}
	if !apply {
		return false, nil
	}
	if os.Geteuid() != 0 {
		return false, errors.New("managing groups needs root")
	}
	_, err = run(ctx, nil, "", argv...)
	return false, err
}
