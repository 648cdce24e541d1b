package doemu

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

const tsLayout = "2006-01-02T15:04:05Z"

type regionDef struct {
	slug, name string
}

type sizeDef struct {
	slug                string
	memory, vcpus, disk int
	transfer            float64
	monthly, hourly     float64
	desc                string
}

var regionDefs = []regionDef{
	{"ams3", "Amsterdam 3"}, {"blr1", "Bangalore 1"}, {"fra1", "Frankfurt 1"}, {"lon1", "London 1"},
	{"nyc1", "New York 1"}, {"nyc3", "New York 3"}, {"sfo3", "San Francisco 3"}, {"sgp1", "Singapore 1"},
	{"syd1", "Sydney 1"}, {"tor1", "Toronto 1"},
}

// Prices are DigitalOcean's list prices for Basic droplets as of 2024–2025;
// they only feed the size catalogue.
var sizeDefs = []sizeDef{
	{"s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4, 0.00595, "Basic"},
	{"s-1vcpu-1gb", 1024, 1, 25, 1, 6, 0.00893, "Basic"},
	{"s-1vcpu-2gb", 2048, 1, 50, 2, 12, 0.01786, "Basic"},
	{"s-2vcpu-2gb", 2048, 2, 60, 3, 18, 0.02679, "Basic"},
	{"s-2vcpu-4gb", 4096, 2, 80, 4, 24, 0.03571, "Basic"},
	{"s-4vcpu-8gb", 8192, 4, 160, 5, 48, 0.07143, "Basic"},
}

type image struct {
	id           int
	name, typ    string
	distribution string
	slug         string
	public       bool
	regions      []string
	minDisk      int
	sizeGB       float64
	created      time.Time
	description  string
	tags         []string
	resourceID   int // snapshots: the droplet
}

type droplet struct {
	id          int
	name        string
	region      string
	size        sizeDef
	image       *image
	status      string
	created     time.Time
	visibleAt   time.Time
	tags        []string
	userData    string
	vpc         string
	ipv4, priv  string
	snapshotIDs []int
	pending     *action

	// status lag: until lagUntil, the API shows prevStatus
	prevStatus string
	lagUntil   time.Time

	bootDone bool
	bootErr  error
	bootIP   string

	deleted   bool
	deletedAt time.Time
}

type action struct {
	id           int
	typ          string
	status       string
	started      time.Time
	doneAt       time.Time
	completed    time.Time
	resourceID   int
	resourceType string
	region       string
	fail, stuck  bool
	name         string // snapshot name
	target       int    // assign: droplet id
	ip           string // reserved-IP actions
}

type reservedIP struct {
	ip        string
	region    string
	dropletID int
	pending   *action
}

type sshKey struct {
	id                      int
	name, fingerprint, body string
}

type state struct {
	cfg Config

	nextDroplet, nextAction, nextImage, nextKey int
	nextIP, nextRIP                             netip.Addr

	droplets map[int]*droplet
	actions  map[int]*action
	rips     map[string]*reservedIP
	images   map[int]*image
	keys     map[int]*sshKey
	tags     map[string]string // lower-case → canonical spelling
}

func newState(cfg Config) *state {
	st := &state{
		cfg:         cfg,
		nextDroplet: 3164444, nextAction: 36804636, nextImage: 170000001, nextKey: 512189,
		nextIP: cfg.IPv4Base, nextRIP: cfg.ReservedIPBase,
		droplets: map[int]*droplet{}, actions: map[int]*action{}, rips: map[string]*reservedIP{},
		images: map[int]*image{}, keys: map[int]*sshKey{}, tags: map[string]string{},
	}
	all := make([]string, 0, len(regionDefs))
	for _, r := range regionDefs {
		all = append(all, r.slug)
	}
	base := time.Date(2024, 4, 25, 12, 0, 0, 0, time.UTC)
	for i, d := range []struct{ slug, dist, name string }{
		{"ubuntu-24-04-x64", "Ubuntu", "24.04 (LTS) x64"},
		{"ubuntu-22-04-x64", "Ubuntu", "22.04 (LTS) x64"},
		{"debian-12-x64", "Debian", "12 x64"},
	} {
		id := 161000001 + i
		st.images[id] = &image{id: id, name: d.name, typ: "base", distribution: d.dist, slug: d.slug, public: true,
			regions: all, minDisk: 7, sizeGB: 2.36, created: base, description: d.dist + " " + d.name}
	}
	return st
}

func (st *state) region(slug string) (string, bool) {
	if slug == "" {
		return "nyc3", true
	}
	for _, r := range regionDefs {
		if r.slug == slug {
			return slug, true
		}
	}
	for _, r := range regionDefs {
		if strings.HasPrefix(r.slug, slug) {
			return r.slug, true
		}
	}
	return "", false
}

func sizeBySlug(slug string) (sizeDef, bool) {
	for _, s := range sizeDefs {
		if s.slug == slug {
			return s, true
		}
	}
	return sizeDef{}, false
}

func (st *state) imageByRef(ref string) *image {
	for _, im := range st.images {
		if (im.slug != "" && im.slug == ref) || fmt.Sprint(im.id) == ref {
			return im
		}
	}
	return nil
}

func (st *state) allocIP() string {
	ip := st.nextIP
	st.nextIP = st.nextIP.Next()
	return ip.String()
}

func (st *state) allocRIP() string {
	ip := st.nextRIP
	st.nextRIP = st.nextRIP.Next()
	return ip.String()
}

func defaultVPC(region string) string {
	h := md5.Sum([]byte("vpc-" + region))
	x := fmt.Sprintf("%x", h)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// canonicalTag returns the canonical spelling of name, registering it.
func (st *state) canonicalTag(name string) string {
	if c, ok := st.tags[strings.ToLower(name)]; ok {
		return c
	}
	st.tags[strings.ToLower(name)] = name
	return name
}

func (st *state) newAction(typ, rtype string, rid int, region string, now time.Time) *action {
	st.nextAction++
	a := &action{id: st.nextAction, typ: typ, status: "in-progress", started: now,
		doneAt: now.Add(st.cfg.ActionDelay[typ]), resourceID: rid, resourceType: rtype, region: region}
	st.actions[a.id] = a
	return a
}

// shownStatus is the droplet status the API reports at now.
func (d *droplet) shownStatus(now time.Time) string {
	if d.deleted {
		return "archive"
	}
	if now.Before(d.lagUntil) {
		return d.prevStatus
	}
	return d.status
}

func (d *droplet) setStatus(s string, now time.Time, lag time.Duration) {
	if lag > 0 {
		d.prevStatus, d.lagUntil = d.status, now.Add(lag)
	}
	d.status = s
}

// advance completes every action whose time has come. Callers hold s.mu.
func (s *Server) advance(now time.Time) {
	st := s.st
	ids := make([]int, 0)
	for id, a := range st.actions {
		if a.status == "in-progress" && !a.stuck {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	for _, id := range ids {
		a := st.actions[id]
		if now.Before(a.doneAt) {
			continue
		}
		if a.resourceType == "reserved_ip" {
			s.finishIPAction(a, now)
			continue
		}
		d := st.droplets[a.resourceID]
		if a.typ == "create" {
			if d == nil {
				a.status, a.completed = "errored", now
				continue
			}
			if !a.fail && !d.bootDone {
				continue
			}
			if a.fail || d.bootErr != nil {
				a.status, a.completed = "errored", now
				s.logf("droplet create failed", "droplet", d.id, "err", d.bootErr)
				delete(st.droplets, d.id) // failed placement: the droplet vanishes
				continue
			}
			a.status, a.completed = "completed", now
			d.pending = nil
			d.status = "active"
			if d.bootIP != "" {
				d.ipv4 = d.bootIP
			}
			continue
		}
		if d != nil && d.pending == a {
			d.pending = nil
		}
		if a.fail {
			a.status, a.completed = "errored", now
			continue
		}
		a.status, a.completed = "completed", now
		if d == nil {
			continue
		}
		switch a.typ {
		case "power_off":
			d.setStatus("off", now, st.cfg.StatusLag)
		case "shutdown":
			if a.name != "ignored" {
				d.setStatus("off", now, st.cfg.StatusLag)
			}
		case "power_on", "reboot", "power_cycle":
			d.setStatus("active", now, st.cfg.StatusLag)
		case "snapshot":
			st.nextImage++
			im := &image{id: st.nextImage, name: a.name, typ: "snapshot", regions: []string{d.region},
				minDisk: d.size.disk, sizeGB: 1.57, created: now, resourceID: d.id, distribution: d.image.distribution}
			st.images[im.id] = im
			d.snapshotIDs = append(d.snapshotIDs, im.id)
		}
	}
	// drop archived droplets whose grace has passed
	for id, d := range st.droplets {
		if d.deleted && now.Sub(d.deletedAt) >= st.cfg.KeepDeletedFor {
			delete(st.droplets, id)
		}
	}
}

func (s *Server) finishIPAction(a *action, now time.Time) {
	rip := s.st.rips[a.ip]
	if rip != nil && rip.pending == a {
		rip.pending = nil
	}
	if a.fail || rip == nil {
		a.status, a.completed = "errored", now
		return
	}
	a.status, a.completed = "completed", now
	switch a.typ {
	case "assign_ip":
		if d := s.st.droplets[a.target]; d != nil && !d.deleted {
			rip.dropletID = a.target
		} else {
			a.status = "errored"
		}
	case "unassign_ip":
		rip.dropletID = 0
	}
}

// boot runs Backend.Boot for d outside the lock and records the outcome.
func (s *Server) boot(d Droplet) {
	ip, err := s.cfg.Backend.Boot(context.Background(), d)
	s.mu.Lock()
	cur := s.st.droplets[d.ID]
	gone := cur == nil || cur.deleted
	if !gone {
		cur.bootDone, cur.bootErr, cur.bootIP = true, err, ip
	}
	s.mu.Unlock()
	if gone && err == nil {
		s.cfg.Backend.Destroy(context.Background(), d.ID)
	}
	if err != nil {
		s.cfg.Logger.Warn("backend boot failed", "droplet", d.ID, "err", err)
	}
}

// fingerprint is the MD5 fingerprint DO shows for an OpenSSH public key.
func fingerprint(pub string) (string, error) {
	f := strings.Fields(pub)
	if len(f) < 2 {
		return "", fmt.Errorf("invalid public key")
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return "", fmt.Errorf("invalid public key")
	}
	h := md5.Sum(blob)
	parts := make([]string, len(h))
	for i, b := range h {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":"), nil
}
