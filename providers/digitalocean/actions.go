package digitalocean

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/digitalocean/godo"

	"github.com/hactl/hactl/providers"
)

// ErrActionErrored is wrapped by errors from operations whose DO action
// ended "errored" (a fence that did not happen, an assign that did not move
// the IP).
var ErrActionErrored = errors.New("action errored")

// maxTries bounds how many times one operation re-issues its action after
// a pending event or an ambiguous failure.
const maxTries = 8

// waitAction polls action id until it leaves in-progress.
func (p *Provider) waitAction(ctx context.Context, id int) (*godo.Action, error) {
	for {
		a, _, err := p.c.Actions.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if a.Status != godo.ActionInProgress {
			return a, nil
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return nil, err
		}
	}
}

// waitDropletIdle waits for the droplet's in-progress actions (the cause of
// "Droplet already has a pending event").
func (p *Provider) waitDropletIdle(ctx context.Context, did int) error {
	as, _, err := p.c.Droplets.Actions(ctx, did, &godo.ListOptions{PerPage: 50})
	if err != nil {
		return err
	}
	return p.waitInProgress(ctx, as)
}

func (p *Provider) waitIPIdle(ctx context.Context, ip string) error {
	as, _, err := p.c.ReservedIPActions.List(ctx, ip, &godo.ListOptions{PerPage: 50})
	if err != nil {
		return err
	}
	return p.waitInProgress(ctx, as)
}

func (p *Provider) waitInProgress(ctx context.Context, as []godo.Action) error {
	waited := false
	for _, a := range as {
		if a.Status == godo.ActionInProgress {
			if _, err := p.waitAction(ctx, a.ID); err != nil {
				return err
			}
			waited = true
		}
	}
	if !waited { // the pending event is not listed yet: give it a moment
		return sleep(ctx, p.cfg.PollInterval)
	}
	return nil
}

// awaitStatus polls the droplet until its status is want. For "off", a
// droplet that is gone (404) also counts.
func (p *Provider) awaitStatus(ctx context.Context, did int, want string) error {
	last := ""
	for {
		d, _, err := p.c.Droplets.Get(ctx, did)
		switch {
		case statusOf(err) == http.StatusNotFound && want == "off":
			return nil
		case statusOf(err) == http.StatusNotFound:
			return fmt.Errorf("droplet %d: %w", did, providers.ErrNotFound)
		case err != nil:
			return err
		case d.Status == want:
			return nil
		}
		last = d.Status
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return fmt.Errorf("status still %q, want %q: %w", last, want, err)
		}
	}
}

// Fence powers the droplet off (the hard power_off action, never the
// best-effort shutdown) and returns nil only once the API shows it "off" or
// gone. An errored power_off is returned as a failure wrapping
// ErrActionErrored: the caller must not treat the machine as fenced.
func (p *Provider) Fence(ctx context.Context, id providers.MachineID) error {
	return p.power(ctx, id, "off")
}

// PowerOn starts a powered-off droplet and returns once it is "active".
func (p *Provider) PowerOn(ctx context.Context, id providers.MachineID) error {
	return p.power(ctx, id, "active")
}

func (p *Provider) power(ctx context.Context, id providers.MachineID, want string) error {
	verb := map[string]string{"off": "fence", "active": "power on"}[want]
	did, err := parseID(id)
	if err != nil {
		return err
	}
	ctx, cancel := p.opCtx(ctx)
	defer cancel()
	for tries := 0; ; tries++ {
		d, _, err := p.c.Droplets.Get(ctx, did)
		if statusOf(err) == http.StatusNotFound {
			if want == "off" {
				return nil // gone is fenced
			}
			return fmt.Errorf("digitalocean: %s droplet %d: %w", verb, did, providers.ErrNotFound)
		}
		if err != nil {
			return p.wrap(err, "digitalocean: %s droplet %d: read status", verb, did)
		}
		if d.Status == want || (want == "off" && d.Status == "archive") {
			return nil
		}
		if tries >= maxTries {
			return fmt.Errorf("digitalocean: %s droplet %d: status still %q after %d attempts", verb, did, d.Status, tries)
		}
		if d.Status == "new" { // the create is still pending
			if err := p.waitDropletIdle(ctx, did); err != nil {
				return p.wrap(err, "digitalocean: %s droplet %d: wait for create", verb, did)
			}
			continue
		}
		var a *godo.Action
		if want == "off" {
			a, _, err = p.c.DropletActions.PowerOff(ctx, did)
		} else {
			a, _, err = p.c.DropletActions.PowerOn(ctx, did)
		}
		switch {
		case err == nil:
			fa, err := p.waitAction(ctx, a.ID)
			if err != nil {
				return p.wrap(err, "digitalocean: %s droplet %d: wait for action %d", verb, did, a.ID)
			}
			if fa.Status != godo.ActionCompleted {
				return fmt.Errorf("digitalocean: %s droplet %d: %s action %d ended %q: %w", verb, did, fa.Type, fa.ID, fa.Status, ErrActionErrored)
			}
			// A completed action does not prove the status changed: read it back.
			if err := p.awaitStatus(ctx, did, want); err != nil {
				return p.wrap(err, "digitalocean: %s droplet %d: not confirmed", verb, did)
			}
			p.cfg.Logger.Info("digitalocean: droplet power state confirmed", "droplet", did, "status", want)
			return nil
		case statusOf(err) == http.StatusNotFound && want == "off":
			return nil
		case statusOf(err) == http.StatusNotFound:
			return fmt.Errorf("digitalocean: %s droplet %d: %w", verb, did, providers.ErrNotFound)
		case pendingEvent(err):
			if err := p.waitDropletIdle(ctx, did); err != nil {
				return p.wrap(err, "digitalocean: %s droplet %d: wait for pending action", verb, did)
			}
		case ambiguous(err):
			// The action may have started: the next round re-reads the
			// status and, if it did start, meets "pending event" and waits.
			p.cfg.Logger.Warn("digitalocean: power action failed ambiguously; re-checking", "droplet", did, "err", p.wrap(err, "power"))
			if err := sleep(ctx, p.cfg.PollInterval); err != nil {
				return p.wrap(err, "digitalocean: %s droplet %d", verb, did)
			}
		default:
			return p.wrap(err, "digitalocean: %s droplet %d", verb, did)
		}
	}
}

// CreateReservedIP reserves a new IP in region and returns it.
func (p *Provider) CreateReservedIP(ctx context.Context, region string) (string, error) {
	if region == "" {
		region = p.cfg.Region
	}
	rip, _, err := p.c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: region})
	if err != nil {
		return "", p.wrap(err, "digitalocean: reserve ip in %s", region)
	}
	return rip.IP, nil
}

// AssignVIP moves reserved IP vip to the droplet with one assign action
// (no unassign first) and returns once the API shows it there.
func (p *Provider) AssignVIP(ctx context.Context, vip string, id providers.MachineID) error {
	if err := reservedIPName(vip); err != nil {
		return err
	}
	did, err := parseID(id)
	if err != nil {
		return err
	}
	ctx, cancel := p.opCtx(ctx)
	defer cancel()
	for tries := 0; ; tries++ {
		rip, _, err := p.c.ReservedIPs.Get(ctx, vip)
		if statusOf(err) == http.StatusNotFound {
			return fmt.Errorf("digitalocean: reserved ip %s: %w", vip, providers.ErrNotFound)
		}
		if err != nil {
			return p.wrap(err, "digitalocean: reserved ip %s", vip)
		}
		if rip.Droplet != nil && rip.Droplet.ID == did && !rip.Locked {
			return nil
		}
		if tries >= maxTries {
			return fmt.Errorf("digitalocean: assign reserved ip %s to droplet %d: not assigned after %d attempts", vip, did, tries)
		}
		if rip.Locked {
			if err := p.waitIPIdle(ctx, vip); err != nil {
				return p.wrap(err, "digitalocean: reserved ip %s: wait for pending action", vip)
			}
			continue
		}
		a, _, err := p.c.ReservedIPActions.Assign(ctx, vip, did)
		switch {
		case err == nil:
			fa, err := p.waitAction(ctx, a.ID)
			if err != nil {
				return p.wrap(err, "digitalocean: assign reserved ip %s: wait for action %d", vip, a.ID)
			}
			if fa.Status != godo.ActionCompleted {
				return fmt.Errorf("digitalocean: assign reserved ip %s to droplet %d: action %d ended %q: %w", vip, did, fa.ID, fa.Status, ErrActionErrored)
			}
			// loop: confirm by reading the IP back
		case statusOf(err) == http.StatusNotFound:
			return fmt.Errorf("digitalocean: assign reserved ip %s: droplet %d: %w", vip, did, providers.ErrNotFound)
		case pendingEvent(err):
			if err := p.waitIPIdle(ctx, vip); err != nil {
				return p.wrap(err, "digitalocean: reserved ip %s: wait for pending action", vip)
			}
			if err := p.waitDropletIdle(ctx, did); err != nil {
				return p.wrap(err, "digitalocean: droplet %d: wait for pending action", did)
			}
		case ambiguous(err):
			if err := sleep(ctx, p.cfg.PollInterval); err != nil {
				return p.wrap(err, "digitalocean: assign reserved ip %s", vip)
			}
		default:
			return p.wrap(err, "digitalocean: assign reserved ip %s to droplet %d", vip, did)
		}
	}
}

// reservedIPName checks that a VIP is named by its address: DigitalOcean
// reserved IPs carry no name or tag, so a role's VIP must name the reserved
// IP it uses (vip { address = ... }); the planner calls a VIP without an
// address by its role's name.
func reservedIPName(vip string) error {
	if _, err := netip.ParseAddr(vip); err != nil {
		return fmt.Errorf("digitalocean: VIP %q is not a reserved IP: set the role's vip address to a reserved IP (reserve one in the region first; DigitalOcean reserved IPs have no names hactl could find them by)", vip)
	}
	return nil
}

// VIPHolder returns the droplet the reserved IP is assigned to, "" when it
// is unassigned. While an assign is in flight it reports what the API shows
// (the old holder or none).
func (p *Provider) VIPHolder(ctx context.Context, vip string) (providers.MachineID, error) {
	if err := reservedIPName(vip); err != nil {
		return "", err
	}
	rip, _, err := p.c.ReservedIPs.Get(ctx, vip)
	if statusOf(err) == http.StatusNotFound {
		return "", fmt.Errorf("digitalocean: reserved ip %s: %w", vip, providers.ErrNotFound)
	}
	if err != nil {
		return "", p.wrap(err, "digitalocean: reserved ip %s", vip)
	}
	if rip.Droplet == nil {
		return "", nil
	}
	return providers.MachineID(strconv.Itoa(rip.Droplet.ID)), nil
}

// Snapshot takes a snapshot of the droplet named name and returns its id
// (usable as an image id in CreateRequest.Image). If the droplet already
// has a snapshot with that name, that one is returned. DO advises powering
// the droplet off first for a consistent disk; Snapshot does not do it.
func (p *Provider) Snapshot(ctx context.Context, id providers.MachineID, name string) (string, error) {
	did, err := parseID(id)
	if err != nil {
		return "", err
	}
	ctx, cancel := p.opCtx(ctx)
	defer cancel()
	if sid, err := p.findSnapshot(ctx, did, name); err != nil || sid != "" {
		return sid, p.wrap(err, "digitalocean: snapshot droplet %d", did)
	}
	start := time.Now().Add(-time.Minute) // tolerate clock skew with the API
	for tries := 0; ; tries++ {
		if tries >= maxTries {
			return "", fmt.Errorf("digitalocean: snapshot droplet %d: no snapshot after %d attempts", did, tries)
		}
		a, _, err := p.c.DropletActions.Snapshot(ctx, did, name)
		if ambiguous(err) {
			// Did it start? Look for a snapshot action begun since we asked.
			as, _, lerr := p.c.Droplets.Actions(ctx, did, &godo.ListOptions{PerPage: 20})
			if lerr == nil {
				for i := range as {
					if as[i].Type == "snapshot" && as[i].StartedAt != nil && as[i].StartedAt.After(start) {
						a, err = &as[i], nil
						break
					}
				}
			}
		}
		switch {
		case err == nil:
			fa, err := p.waitAction(ctx, a.ID)
			if err != nil {
				return "", p.wrap(err, "digitalocean: snapshot droplet %d: wait for action %d", did, a.ID)
			}
			if fa.Status != godo.ActionCompleted {
				return "", fmt.Errorf("digitalocean: snapshot droplet %d: action %d ended %q: %w", did, fa.ID, fa.Status, ErrActionErrored)
			}
			sid, err := p.findSnapshot(ctx, did, name)
			if err != nil {
				return "", p.wrap(err, "digitalocean: snapshot droplet %d", did)
			}
			if sid != "" {
				return sid, nil
			}
			// completed but not listed yet
			if err := sleep(ctx, p.cfg.PollInterval); err != nil {
				return "", err
			}
		case statusOf(err) == http.StatusNotFound:
			return "", fmt.Errorf("digitalocean: snapshot droplet %d: %w", did, providers.ErrNotFound)
		case pendingEvent(err):
			if err := p.waitDropletIdle(ctx, did); err != nil {
				return "", p.wrap(err, "digitalocean: snapshot droplet %d: wait for pending action", did)
			}
		case ambiguous(err):
			if err := sleep(ctx, p.cfg.PollInterval); err != nil {
				return "", err
			}
		default:
			return "", p.wrap(err, "digitalocean: snapshot droplet %d", did)
		}
	}
}

// findSnapshot returns the newest snapshot of droplet did named name.
func (p *Provider) findSnapshot(ctx context.Context, did int, name string) (string, error) {
	best, bestCreated := "", ""
	opt := &godo.ListOptions{Page: 1, PerPage: p.cfg.PageSize}
	for {
		ss, resp, err := p.c.Snapshots.ListDroplet(ctx, opt)
		if err != nil {
			return "", err
		}
		for _, s := range ss {
			if s.ResourceID == strconv.Itoa(did) && s.Name == name && s.Created >= bestCreated {
				best, bestCreated = s.ID, s.Created
			}
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return best, nil
		}
		cur, err := resp.Links.CurrentPage()
		if err != nil {
			return "", err
		}
		opt.Page = max(cur, opt.Page) + 1
	}
}
