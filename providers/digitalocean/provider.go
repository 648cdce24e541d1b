package digitalocean

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/godo"

	"github.com/hactl/hactl/providers"
)

// Provider is the DigitalOcean provider. Its methods are safe for concurrent
// use.
type Provider struct {
	cfg Config
	c   *godo.Client

	mu        sync.Mutex
	recent    map[string]recentDroplet // slot key → droplet created by this process
	destroyed map[int]time.Time        // droplet id → when this process deleted it
	slotLocks map[string]*sync.Mutex
}

type recentDroplet struct {
	id      int
	cluster string
	at      time.Time
}

var (
	_ providers.Provider    = (*Provider)(nil)
	_ providers.Fencer      = (*Provider)(nil)
	_ providers.PowerOner   = (*Provider)(nil)
	_ providers.VIPAssigner = (*Provider)(nil)
	_ providers.Snapshotter = (*Provider)(nil)
)

// NewProvider builds a provider from a typed Config.
func NewProvider(cfg Config) (*Provider, error) {
	cfg.defaults()
	if cfg.Token == "" {
		return nil, errors.New("digitalocean provider: no API token: set DIGITALOCEAN_TOKEN or the token_file setting")
	}
	tr := &transport{
		base: cfg.HTTPTransport, token: cfg.Token, log: cfg.Logger,
		attemptTimeout: cfg.RequestTimeout, retryDeadline: cfg.RetryDeadline,
		backoffMin: cfg.BackoffMin, backoffMax: cfg.BackoffMax, maxRateWait: cfg.MaxRateLimitWait,
	}
	c, err := godo.New(&http.Client{Transport: tr}, godo.SetBaseURL(cfg.Endpoint), godo.SetUserAgent("hactl"))
	if err != nil {
		return nil, fmt.Errorf("digitalocean provider: endpoint %q: %w", cfg.Endpoint, err)
	}
	return &Provider{cfg: cfg, c: c, recent: map[string]recentDroplet{}, destroyed: map[int]time.Time{},
		slotLocks: map[string]*sync.Mutex{}}, nil
}

// Client returns the underlying godo client (its transport carries the
// provider's retry and rate-limit policy).
func (p *Provider) Client() *godo.Client { return p.c }

// ---- tags

// tagValueRE is compiled on first use: the counted repetition makes a
// large program, and compiling it at init cost every hactl command
// (converge included) 0.7 ms of start-up.
var tagValueRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_-]{1,200}$`) })

func tag(key, value string) string { return key + "-" + value }

func slotTags(cluster, role string, slot, gen int) []string {
	return []string{
		tag(providers.TagCluster, cluster), tag(providers.TagRole, role),
		tag(providers.TagSlot, strconv.Itoa(slot)), tag(providers.TagGeneration, strconv.Itoa(gen)),
	}
}

func slotKey(cluster, role string, slot, gen int) string {
	return fmt.Sprintf("%s/%s/%d/%d", cluster, role, slot, gen)
}

// machineOf converts a droplet; ok is false when it lacks hactl's tags.
func (p *Provider) machineOf(d *godo.Droplet) (providers.Machine, bool) {
	m := providers.Machine{ID: providers.MachineID(strconv.Itoa(d.ID)), Size: d.SizeSlug}
	var haveRole, haveSlot, haveGen bool
	for _, t := range d.Tags {
		switch {
		case strings.HasPrefix(t, providers.TagCluster+"-"):
			m.Cluster = strings.TrimPrefix(t, providers.TagCluster+"-")
		case strings.HasPrefix(t, providers.TagRole+"-"):
			m.Role, haveRole = strings.TrimPrefix(t, providers.TagRole+"-"), true
		case strings.HasPrefix(t, providers.TagSlot+"-"):
			m.Slot, haveSlot = parseInt(strings.TrimPrefix(t, providers.TagSlot+"-"))
		case strings.HasPrefix(t, providers.TagGeneration+"-"):
			m.Generation, haveGen = parseInt(strings.TrimPrefix(t, providers.TagGeneration+"-"))
		}
	}
	if m.Cluster == "" || !haveRole || !haveSlot || !haveGen {
		return m, false
	}
	m.Name = providers.NodeName(m.Role, m.Slot)
	if p.cfg.PrivateAddress {
		m.Address, _ = d.PrivateIPv4()
	} else {
		m.Address, _ = d.PublicIPv4()
	}
	switch d.Status {
	case "new":
		m.State = providers.PowerStarting
	case "active":
		m.State = providers.PowerOn
	case "off", "archive":
		m.State = providers.PowerOff
	default:
		m.State = providers.PowerUnknown
	}
	m.Created, _ = time.Parse(time.RFC3339, d.Created)
	if d.Region != nil {
		m.Region = d.Region.Slug
	}
	if d.Image != nil {
		if d.Image.Slug != "" {
			m.Image = d.Image.Slug
		} else {
			m.Image = strconv.Itoa(d.Image.ID)
		}
	}
	return m, true
}

// ---- errors

func statusOf(err error) int {
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

// ambiguous reports whether a failed call may or may not have been carried
// out: the request failed in transit or the server failed (5xx).
func ambiguous(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rl rateLimitError
	if errors.As(err, &rl) {
		return false
	}
	st := statusOf(err)
	return st == 0 || st >= 500
}

func pendingEvent(err error) bool {
	var er *godo.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == 422 &&
		strings.Contains(strings.ToLower(er.Message), "pending event")
}

// redactedError hides the token in err's text while keeping the chain.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// wrap adds context and scrubs the token from the message.
func (p *Provider) wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	e := fmt.Errorf(format+": %w", append(args, err)...)
	if p.cfg.Token != "" && strings.Contains(e.Error(), p.cfg.Token) {
		return &redactedError{msg: strings.ReplaceAll(e.Error(), p.cfg.Token, "[redacted]"), err: err}
	}
	return e
}

func parseID(id providers.MachineID) (int, error) {
	n, err := strconv.Atoi(string(id))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("digitalocean: machine id %q is not a droplet id: %w", id, providers.ErrNotFound)
	}
	return n, nil
}

func (p *Provider) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.cfg.OperationTimeout)
}

// ---- list

// listTag returns every droplet carrying tag, following pagination.
func (p *Provider) listTag(ctx context.Context, t string) ([]godo.Droplet, error) {
	var all []godo.Droplet
	opt := &godo.ListOptions{Page: 1, PerPage: p.cfg.PageSize}
	for {
		ds, resp, err := p.c.Droplets.ListByTag(ctx, t, opt)
		if err != nil {
			return nil, err
		}
		all = append(all, ds...)
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			break
		}
		cur, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, fmt.Errorf("pagination links: %w", err)
		}
		if cur < opt.Page { // a broken "prev" link: do not loop forever
			cur = opt.Page
		}
		opt.Page = cur + 1
		if opt.Page > 10000 {
			return nil, errors.New("pagination did not end")
		}
	}
	return all, nil
}

// List returns every droplet tagged for cluster, plus droplets this process
// created within ConsistencyWindow that list-by-tag does not show yet,
// minus droplets this process deleted that it still shows.
func (p *Provider) List(ctx context.Context, cluster string) ([]providers.Machine, error) {
	if !tagValueRE().MatchString(cluster) {
		return nil, fmt.Errorf("digitalocean: cluster name %q: only letters, digits, '-' and '_' fit a DO tag", cluster)
	}
	ds, err := p.listTag(ctx, tag(providers.TagCluster, cluster))
	if err != nil {
		return nil, p.wrap(err, "digitalocean: list droplets of cluster %s", cluster)
	}
	now := time.Now()
	seen := map[int]bool{}
	var out []providers.Machine
	p.mu.Lock()
	destroyed := make(map[int]bool, len(p.destroyed))
	for id, at := range p.destroyed {
		if now.Sub(at) > p.cfg.ConsistencyWindow {
			delete(p.destroyed, id)
			continue
		}
		destroyed[id] = true
	}
	var missing []recentDroplet
	p.mu.Unlock()
	for i := range ds {
		d := &ds[i]
		seen[d.ID] = true
		if destroyed[d.ID] {
			continue
		}
		m, ok := p.machineOf(d)
		if !ok || m.Cluster != cluster {
			p.cfg.Logger.Warn("digitalocean: droplet with the cluster tag lacks role/slot/generation tags; ignored", "droplet", d.ID, "name", d.Name)
			continue
		}
		out = append(out, m)
	}
	p.mu.Lock()
	for k, r := range p.recent {
		if now.Sub(r.at) > p.cfg.ConsistencyWindow {
			delete(p.recent, k)
			continue
		}
		if r.cluster == cluster && !seen[r.id] && !destroyed[r.id] {
			missing = append(missing, r)
		}
	}
	p.mu.Unlock()
	for _, r := range missing {
		d, _, err := p.c.Droplets.Get(ctx, r.id)
		if statusOf(err) == http.StatusNotFound {
			continue // failed placement, or deleted elsewhere
		}
		if err != nil {
			return nil, p.wrap(err, "digitalocean: get recently created droplet %d", r.id)
		}
		if m, ok := p.machineOf(d); ok {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Generation < out[j].Generation
	})
	return out, nil
}

// ---- create

func (p *Provider) slotLock(key string) *sync.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.slotLocks[key]
	if l == nil {
		l = &sync.Mutex{}
		p.slotLocks[key] = l
	}
	return l
}

func (p *Provider) findSlot(ctx context.Context, req providers.CreateRequest) (providers.Machine, bool, error) {
	ms, err := p.List(ctx, req.Cluster)
	if err != nil {
		return providers.Machine{}, false, err
	}
	for _, m := range ms {
		if m.Role == req.Role && m.Slot == req.Slot && m.Generation == req.Generation {
			return m, true, nil
		}
	}
	return providers.Machine{}, false, nil
}

// Create makes the droplet for (Cluster, Role, Slot, Generation), or returns
// the one that already exists, and (unless NoWait) waits until it is active
// so the machine has its address. A create whose answer is lost (network error,
// 5xx, possibly after the droplet was made) is not simply re-sent: Create
// looks for the droplet by its tags for up to ConsistencyWindow first.
func (p *Provider) Create(ctx context.Context, req providers.CreateRequest) (providers.Machine, error) {
	for what, v := range map[string]string{"cluster": req.Cluster, "role": req.Role} {
		if !tagValueRE().MatchString(v) {
			return providers.Machine{}, fmt.Errorf("digitalocean: %s name %q: only letters, digits, '-' and '_' fit a DO tag", what, v)
		}
	}
	if req.Slot < 0 || req.Generation < 0 {
		return providers.Machine{}, fmt.Errorf("digitalocean: %s: negative slot or generation", req.Name())
	}
	key := slotKey(req.Cluster, req.Role, req.Slot, req.Generation)
	l := p.slotLock(key)
	l.Lock()
	defer l.Unlock()

	if m, ok, err := p.findSlot(ctx, req); err != nil || ok {
		if err != nil {
			return m, err
		}
		return p.awaitActive(ctx, m, 0)
	}
	cr, err := p.createRequest(req)
	if err != nil {
		return providers.Machine{}, err
	}
	const attempts = 3
	for i := 0; ; i++ {
		d, resp, err := p.c.Droplets.Create(ctx, cr)
		if err == nil {
			createAction := 0
			if resp != nil && resp.Links != nil && len(resp.Links.Actions) > 0 {
				createAction = resp.Links.Actions[0].ID
			}
			p.mu.Lock()
			p.recent[key] = recentDroplet{id: d.ID, cluster: req.Cluster, at: time.Now()}
			p.mu.Unlock()
			p.cfg.Logger.Info("digitalocean: droplet created", "droplet", d.ID, "name", cr.Name, "generation", req.Generation)
			m, _ := p.machineOf(d)
			return p.awaitActive(ctx, m, createAction)
		}
		if !ambiguous(err) || i+1 >= attempts {
			return providers.Machine{}, p.wrap(err, "digitalocean: create droplet %s (cluster %s, generation %d)", cr.Name, req.Cluster, req.Generation)
		}
		p.cfg.Logger.Warn("digitalocean: create failed ambiguously; looking for the droplet before retrying",
			"name", cr.Name, "err", p.wrap(err, "create"))
		m, ok, ferr := p.awaitSlot(ctx, req)
		if ferr != nil {
			return providers.Machine{}, ferr
		}
		if ok {
			return p.awaitActive(ctx, m, 0)
		}
	}
}

// awaitActive waits until a created droplet leaves "new" (unless NoWait):
// the caller's next steps need its address, and a failed placement (the
// create action errors and the droplet vanishes) is reported here instead
// of surfacing later as a machine that is gone.
//
// DO can also answer 404 for a moment right after a create; when the create
// action's id is known (createAction > 0) a 404 counts as failed placement
// once that action has errored, or once it persists for ConsistencyWindow.
func (p *Provider) awaitActive(ctx context.Context, m providers.Machine, createAction int) (providers.Machine, error) {
	if p.cfg.NoWait || m.State != providers.PowerStarting {
		return m, nil
	}
	did, err := parseID(m.ID)
	if err != nil {
		return m, err
	}
	ctx, cancel := p.opCtx(ctx)
	defer cancel()
	start := time.Now()
	for {
		d, _, err := p.c.Droplets.Get(ctx, did)
		if statusOf(err) == http.StatusNotFound && createAction > 0 {
			a, _, aerr := p.c.Actions.Get(ctx, createAction)
			if aerr != nil {
				return providers.Machine{}, p.wrap(aerr, "digitalocean: create %s: droplet %d not found; its create action", m.Name, did)
			}
			if a.Status != "errored" && time.Since(start) < p.cfg.ConsistencyWindow {
				if err := sleep(ctx, p.cfg.PollInterval); err != nil {
					return providers.Machine{}, fmt.Errorf("digitalocean: create %s: droplet %d not found: %w", m.Name, did, err)
				}
				continue
			}
		}
		if statusOf(err) == http.StatusNotFound {
			p.mu.Lock()
			for k, r := range p.recent {
				if r.id == did {
					delete(p.recent, k)
				}
			}
			p.mu.Unlock()
			return providers.Machine{}, fmt.Errorf("digitalocean: create %s: droplet %d vanished while booting (failed placement): %w", m.Name, did, ErrActionErrored)
		}
		if err != nil && ctx.Err() != nil {
			// The deadline passed while asking: the droplet was still new
			// when last seen, which is what the caller needs to know.
			return providers.Machine{}, fmt.Errorf("digitalocean: create %s: droplet %d still new when the deadline passed: %w", m.Name, did, ctx.Err())
		}
		if err != nil {
			return providers.Machine{}, p.wrap(err, "digitalocean: create %s: wait for droplet %d", m.Name, did)
		}
		if d.Status != "new" {
			am, _ := p.machineOf(d)
			return am, nil
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return providers.Machine{}, fmt.Errorf("digitalocean: create %s: droplet %d still new: %w", m.Name, did, err)
		}
	}
}

// awaitSlot polls for the slot's droplet for ConsistencyWindow.
func (p *Provider) awaitSlot(ctx context.Context, req providers.CreateRequest) (providers.Machine, bool, error) {
	deadline := time.Now().Add(p.cfg.ConsistencyWindow)
	for {
		m, ok, err := p.findSlot(ctx, req)
		if err != nil || ok {
			return m, ok, err
		}
		if time.Now().After(deadline) {
			return providers.Machine{}, false, nil
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return providers.Machine{}, false, err
		}
	}
}

func (p *Provider) createRequest(req providers.CreateRequest) (*godo.DropletCreateRequest, error) {
	region, size, img, keys := req.Region, req.Size, req.Image, req.SSHKeys
	if region == "" {
		region = p.cfg.Region
	}
	if size == "" {
		size = p.cfg.Size
	}
	if img == "" {
		img = p.cfg.Image
	}
	if len(keys) == 0 {
		keys = p.cfg.SSHKeys
	}
	if size == "" || img == "" {
		return nil, fmt.Errorf("digitalocean: create %s: size and image are required (set them on the provider or the role)", req.Name())
	}
	if len(req.UserData) > 64*1024 {
		return nil, fmt.Errorf("digitalocean: create %s: user_data is %d bytes, DO allows 64 KiB", req.Name(), len(req.UserData))
	}
	cr := &godo.DropletCreateRequest{
		Name: req.Name(), Region: region, Size: size, UserData: req.UserData, VPCUUID: p.cfg.VPCUUID,
		Tags:       slotTags(req.Cluster, req.Role, req.Slot, req.Generation),
		Monitoring: true,
	}
	if v := req.Settings["vpc_uuid"]; v != "" {
		cr.VPCUUID = v
	}
	if n, ok := parseInt(img); ok {
		cr.Image = godo.DropletCreateImage{ID: n}
	} else {
		cr.Image = godo.DropletCreateImage{Slug: img}
	}
	for _, k := range keys {
		if n, ok := parseInt(k); ok {
			cr.SSHKeys = append(cr.SSHKeys, godo.DropletCreateSSHKey{ID: n})
		} else {
			cr.SSHKeys = append(cr.SSHKeys, godo.DropletCreateSSHKey{Fingerprint: k})
		}
	}
	return cr, nil
}

// ---- destroy

// Destroy deletes the droplet; a droplet that is already gone is not an
// error.
func (p *Provider) Destroy(ctx context.Context, id providers.MachineID) error {
	did, err := parseID(id)
	if err != nil {
		return err
	}
	_, err = p.c.Droplets.Delete(ctx, did)
	if err != nil && statusOf(err) != http.StatusNotFound {
		return p.wrap(err, "digitalocean: destroy droplet %d", did)
	}
	p.mu.Lock()
	p.destroyed[did] = time.Now()
	for k, r := range p.recent {
		if r.id == did {
			delete(p.recent, k)
		}
	}
	p.mu.Unlock()
	p.cfg.Logger.Info("digitalocean: droplet destroyed", "droplet", did)
	return nil
}
