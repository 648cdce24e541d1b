package doemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// capture is the ResponseWriter dispatch hands to the mux.
type capture struct {
	hdr  http.Header
	body []byte
	resp *response
	buf  bytes.Buffer
	code int
}

func (c *capture) Header() http.Header {
	if c.hdr == nil {
		c.hdr = http.Header{}
	}
	return c.hdr
}
func (c *capture) Write(b []byte) (int, error) { return c.buf.Write(b) }
func (c *capture) WriteHeader(code int)        { c.code = code }

func (s *Server) dispatch(r *http.Request, body []byte) response {
	c := &capture{body: body}
	s.mux.ServeHTTP(c, r)
	if c.resp != nil {
		return *c.resp
	}
	code := c.code
	if code == 0 {
		code = 200
	}
	if code == http.StatusMethodNotAllowed {
		return errResp(405, "method_not_allowed", "Method Not Allowed")
	}
	return response{status: code, body: c.buf.Bytes()}
}

type handler func(r *http.Request, body []byte, now time.Time) response

func (s *Server) handle(pattern string, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c := w.(*capture)
		s.mu.Lock()
		now := s.cfg.Now()
		s.advance(now)
		resp := h(r, c.body, now)
		s.mu.Unlock()
		c.resp = &resp
	})
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.handle("/", func(*http.Request, []byte, time.Time) response { return notFound() })
	s.handle("GET /v2/account", s.getAccount)
	s.handle("GET /v2/account/keys", s.listKeys)
	s.handle("POST /v2/account/keys", s.createKey)
	s.handle("GET /v2/account/keys/{key}", s.getKey)
	s.handle("DELETE /v2/account/keys/{key}", s.deleteKey)
	s.handle("GET /v2/regions", s.listRegions)
	s.handle("GET /v2/sizes", s.listSizes)

	s.handle("GET /v2/droplets", s.listDroplets)
	s.handle("POST /v2/droplets", s.createDroplet)
	s.handle("DELETE /v2/droplets", s.deleteDropletsByTag)
	s.handle("GET /v2/droplets/{id}", s.getDroplet)
	s.handle("DELETE /v2/droplets/{id}", s.deleteDroplet)
	s.handle("GET /v2/droplets/{id}/actions", s.listDropletActions)
	s.handle("POST /v2/droplets/{id}/actions", s.dropletAction)
	s.handle("GET /v2/droplets/{id}/actions/{aid}", s.getDropletAction)
	s.handle("GET /v2/droplets/{id}/snapshots", s.listDropletSnapshots)

	s.handle("GET /v2/actions", s.listActions)
	s.handle("GET /v2/actions/{aid}", s.getAction)

	for _, kind := range []string{"reserved_ip", "floating_ip"} {
		k := kind
		s.handle("GET /v2/"+k+"s", func(r *http.Request, b []byte, now time.Time) response { return s.listRIPs(k, r, now) })
		s.handle("POST /v2/"+k+"s", func(r *http.Request, b []byte, now time.Time) response { return s.createRIP(k, r, b, now) })
		s.handle("GET /v2/"+k+"s/{ip}", func(r *http.Request, b []byte, now time.Time) response { return s.getRIP(k, r, now) })
		s.handle("DELETE /v2/"+k+"s/{ip}", func(r *http.Request, b []byte, now time.Time) response { return s.deleteRIP(r) })
		s.handle("POST /v2/"+k+"s/{ip}/actions", func(r *http.Request, b []byte, now time.Time) response { return s.ripAction(k, r, b, now) })
		s.handle("GET /v2/"+k+"s/{ip}/actions", func(r *http.Request, b []byte, now time.Time) response { return s.listRIPActions(r) })
		s.handle("GET /v2/"+k+"s/{ip}/actions/{aid}", func(r *http.Request, b []byte, now time.Time) response { return s.getRIPAction(r) })
	}

	s.handle("GET /v2/snapshots", s.listSnapshots)
	s.handle("GET /v2/snapshots/{id}", s.getSnapshot)
	s.handle("DELETE /v2/snapshots/{id}", s.deleteImage)
	s.handle("GET /v2/images", s.listImages)
	s.handle("GET /v2/images/{ref}", s.getImage)
	s.handle("DELETE /v2/images/{ref}", s.deleteImage)

	s.handle("GET /v2/tags", s.listTags)
	s.handle("POST /v2/tags", s.createTag)
	s.handle("GET /v2/tags/{name}", s.getTag)
	s.handle("DELETE /v2/tags/{name}", s.deleteTag)
	s.handle("POST /v2/tags/{name}/resources", func(r *http.Request, b []byte, now time.Time) response { return s.tagResources(r, b, true) })
	s.handle("DELETE /v2/tags/{name}/resources", func(r *http.Request, b []byte, now time.Time) response { return s.tagResources(r, b, false) })
}

// ---- account, keys, catalogue

func (s *Server) getAccount(r *http.Request, _ []byte, now time.Time) response {
	return jsonResp(200, obj{"account": obj{
		"droplet_limit": s.st.cfg.DropletLimit, "floating_ip_limit": s.cfg.ReservedIPLimit,
		"reserved_ip_limit": s.cfg.ReservedIPLimit, "volume_limit": 100, "email": "emulator@example.com",
		"uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef", "email_verified": true, "status": "active",
		"status_message": "", "team": obj{"uuid": "5df3e3004a17e242b7c20ca6c9fc25605f0ba9d8", "name": "My Team"},
	}})
}

func keyJSON(k *sshKey) obj {
	return obj{"id": k.id, "name": k.name, "fingerprint": k.fingerprint, "public_key": k.body}
}

func (s *Server) listKeys(r *http.Request, _ []byte, now time.Time) response {
	ids := sortedKeys(s.st.keys)
	out := make([]obj, 0, len(ids))
	for _, id := range ids {
		out = append(out, keyJSON(s.st.keys[id]))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"ssh_keys": items, "links": links, "meta": meta})
}

func (s *Server) createKey(r *http.Request, body []byte, now time.Time) response {
	var req struct{ Name, PublicKey string }
	var raw struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	req.Name, req.PublicKey = raw.Name, raw.PublicKey
	fp, err := fingerprint(req.PublicKey)
	if err != nil || req.Name == "" {
		return unprocessable("Key invalid, key should be of the format `type key [comment]`")
	}
	for _, k := range s.st.keys {
		if k.fingerprint == fp {
			return unprocessable("SSH Key is already in use on your account")
		}
	}
	s.st.nextKey++
	k := &sshKey{id: s.st.nextKey, name: req.Name, fingerprint: fp, body: strings.TrimSpace(req.PublicKey)}
	s.st.keys[k.id] = k
	return jsonResp(201, obj{"ssh_key": keyJSON(k)})
}

func (s *Server) keyByRef(ref string) *sshKey {
	for _, k := range s.st.keys {
		if strconv.Itoa(k.id) == ref || k.fingerprint == ref {
			return k
		}
	}
	return nil
}

func (s *Server) getKey(r *http.Request, _ []byte, now time.Time) response {
	k := s.keyByRef(r.PathValue("key"))
	if k == nil {
		return notFound()
	}
	return jsonResp(200, obj{"ssh_key": keyJSON(k)})
}

func (s *Server) deleteKey(r *http.Request, _ []byte, now time.Time) response {
	k := s.keyByRef(r.PathValue("key"))
	if k == nil {
		return notFound()
	}
	delete(s.st.keys, k.id)
	return response{status: 204}
}

func (s *Server) listRegions(r *http.Request, _ []byte, now time.Time) response {
	out := make([]obj, 0, len(regionDefs))
	for _, rd := range regionDefs {
		out = append(out, s.regionJSON(rd.slug))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"regions": items, "links": links, "meta": meta})
}

func (s *Server) listSizes(r *http.Request, _ []byte, now time.Time) response {
	out := make([]obj, 0, len(sizeDefs))
	for _, sz := range sizeDefs {
		out = append(out, sizeJSON(sz))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"sizes": items, "links": links, "meta": meta})
}

// ---- droplets

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_\-:]+$`)
)

func (s *Server) visibleDroplets(now time.Time) []*droplet {
	var out []*droplet
	for _, d := range s.st.droplets {
		if now.Before(d.visibleAt) {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if strings.EqualFold(x, t) {
			return true
		}
	}
	return false
}

func (s *Server) listDroplets(r *http.Request, _ []byte, now time.Time) response {
	q := r.URL.Query()
	tag, name, typ := q.Get("tag_name"), q.Get("name"), q.Get("type")
	if tag != "" && (name != "" || typ != "") {
		return badRequest("tag_name cannot be combined with name or type")
	}
	out := []obj{}
	for _, d := range s.visibleDroplets(now) {
		if tag != "" && !hasTag(d.tags, tag) {
			continue
		}
		if name != "" && !strings.EqualFold(d.name, name) {
			continue
		}
		if typ == "gpus" {
			continue // the emulator has no GPU droplets
		}
		out = append(out, s.dropletJSON(d, now))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"droplets": items, "links": links, "meta": meta})
}

type createReq struct {
	Name     string            `json:"name"`
	Names    []string          `json:"names"`
	Region   string            `json:"region"`
	Size     string            `json:"size"`
	Image    json.RawMessage   `json:"image"`
	SSHKeys  []json.RawMessage `json:"ssh_keys"`
	UserData string            `json:"user_data"`
	Tags     []string          `json:"tags"`
	VPCUUID  string            `json:"vpc_uuid"`
}

func (s *Server) createDroplet(r *http.Request, body []byte, now time.Time) response {
	var req createReq
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	names := req.Names
	multi := len(names) > 0
	if !multi {
		names = []string{req.Name}
	}
	if len(names) > 10 {
		return unprocessable("You may only create up to 10 droplets at once.")
	}
	for _, n := range names {
		if len(n) > 255 || !nameRE.MatchString(n) {
			return unprocessable("Name Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)")
		}
	}
	if len(req.UserData) > 64*1024 {
		return unprocessable("user_data must be less than 64 KiB")
	}
	region, ok := s.st.region(req.Region)
	if !ok {
		return unprocessable("Region is not available")
	}
	size, ok := sizeBySlug(req.Size)
	if !ok {
		return unprocessable("Size is not available in this region.")
	}
	var ref string
	if len(req.Image) > 0 {
		var str string
		if json.Unmarshal(req.Image, &str) == nil {
			ref = str
		} else {
			var n int
			if json.Unmarshal(req.Image, &n) == nil {
				ref = strconv.Itoa(n)
			}
		}
	}
	img := s.st.imageByRef(ref)
	if img == nil {
		return unprocessable("You specified an invalid image for Droplet creation.")
	}
	if img.typ == "snapshot" && !containsStr(img.regions, region) {
		return unprocessable("Image is not available in the selected region.")
	}
	if img.minDisk > size.disk {
		return unprocessable("Size is too small for the image.")
	}
	for _, k := range req.SSHKeys {
		var ref string
		var str string
		var n int
		switch {
		case json.Unmarshal(k, &str) == nil:
			ref = str
		case json.Unmarshal(k, &n) == nil:
			ref = strconv.Itoa(n)
		}
		if s.keyByRef(ref) == nil {
			return unprocessable("SSH Key is not valid: " + ref)
		}
	}
	for _, t := range req.Tags {
		if len(t) > 255 || !tagRE.MatchString(t) {
			return unprocessable("Tag name " + strconv.Quote(t) + " is invalid")
		}
	}
	live := 0
	for _, d := range s.st.droplets {
		if !d.deleted {
			live++
		}
	}
	if live+len(names) > s.st.cfg.DropletLimit {
		return unprocessable("creating this/these droplet(s) will exceed your droplet limit")
	}
	vpc := req.VPCUUID
	if vpc == "" {
		vpc = defaultVPC(region)
	}
	tags := make([]string, 0, len(req.Tags))
	for _, t := range req.Tags {
		tags = append(tags, s.st.canonicalTag(t))
	}
	var droplets, actions []obj
	for _, n := range names {
		s.st.nextDroplet++
		d := &droplet{id: s.st.nextDroplet, name: n, region: region, size: size, image: img, status: "new",
			created: now, visibleAt: now.Add(s.st.cfg.HideNewFor), tags: append([]string(nil), tags...),
			userData: req.UserData, vpc: vpc, ipv4: s.st.allocIP(), priv: fmt.Sprintf("10.%d.0.%d", 100+len(s.st.droplets)%100, 2+s.st.nextDroplet%250)}
		a := s.st.newAction("create", "droplet", d.id, region, now)
		if a.doneAt.Before(now.Add(s.cfg.BootDelay)) {
			a.doneAt = now.Add(s.cfg.BootDelay)
		}
		d.pending = a
		s.st.droplets[d.id] = d
		switch {
		case s.stickNew > 0:
			s.stickNew--
			a.stuck = true
		case s.failCreate > 0:
			s.failCreate--
			a.fail = true
		default:
			bd := Droplet{ID: d.id, Name: d.name, Tags: d.tags, UserData: d.userData, IPv4: d.ipv4,
				Region: region, Size: size.slug, Image: ref}
			go s.boot(bd)
		}
		s.logf("droplet created", "droplet", d.id, "name", d.name, "tags", d.tags)
		droplets = append(droplets, s.dropletJSON(d, now))
		actions = append(actions, obj{"id": a.id, "rel": "create", "href": absURL(r, fmt.Sprintf("/v2/actions/%d", a.id))})
	}
	links := obj{"actions": actions}
	if multi {
		return jsonResp(202, obj{"droplets": droplets, "links": links})
	}
	return jsonResp(202, obj{"droplet": droplets[0], "links": links})
}

func absURL(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

func containsStr(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (s *Server) dropletByPath(r *http.Request) *droplet {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		return nil
	}
	d := s.st.droplets[id]
	if d == nil || d.deleted {
		return nil
	}
	return d
}

func (s *Server) getDroplet(r *http.Request, _ []byte, now time.Time) response {
	d := s.dropletByPath(r)
	if d == nil || now.Before(d.created.Add(s.st.cfg.GetNotFoundFor)) {
		return notFound()
	}
	return jsonResp(200, obj{"droplet": s.dropletJSON(d, now)})
}

// destroy removes d. Callers hold s.mu; the backend runs under it so "gone"
// in the API means gone on the backend.
func (s *Server) destroy(d *droplet, now time.Time) error {
	if err := s.cfg.Backend.Destroy(context.Background(), d.id); err != nil {
		return err
	}
	for _, rip := range s.st.rips {
		if rip.dropletID == d.id {
			rip.dropletID = 0
		}
	}
	if d.pending != nil && d.pending.status == "in-progress" {
		d.pending.status, d.pending.completed = "errored", now
	}
	if s.st.cfg.KeepDeletedFor > 0 {
		d.deleted, d.deletedAt = true, now
	} else {
		delete(s.st.droplets, d.id)
	}
	s.logf("droplet destroyed", "droplet", d.id)
	return nil
}

func (s *Server) deleteDroplet(r *http.Request, _ []byte, now time.Time) response {
	d := s.dropletByPath(r)
	if d == nil {
		return notFound()
	}
	if err := s.destroy(d, now); err != nil {
		return errResp(500, "server_error", "backend: "+err.Error())
	}
	return response{status: 204}
}

func (s *Server) deleteDropletsByTag(r *http.Request, _ []byte, now time.Time) response {
	tag := r.URL.Query().Get("tag_name")
	if tag == "" {
		return badRequest("tag_name is required")
	}
	if _, ok := s.st.tags[strings.ToLower(tag)]; !ok {
		return notFound()
	}
	for _, d := range s.visibleDroplets(now) {
		if !d.deleted && hasTag(d.tags, tag) {
			if err := s.destroy(d, now); err != nil {
				return errResp(500, "server_error", "backend: "+err.Error())
			}
		}
	}
	return response{status: 204}
}

func (s *Server) actionsWhere(keep func(*action) bool) []obj {
	var as []*action
	for _, a := range s.st.actions {
		if keep(a) {
			as = append(as, a)
		}
	}
	sort.Slice(as, func(i, j int) bool { return as[i].id > as[j].id }) // newest first
	out := make([]obj, 0, len(as))
	for _, a := range as {
		out = append(out, s.actionJSON(a))
	}
	return out
}

func (s *Server) listDropletActions(r *http.Request, _ []byte, now time.Time) response {
	d := s.dropletByPath(r)
	if d == nil {
		return notFound()
	}
	out := s.actionsWhere(func(a *action) bool { return a.resourceType == "droplet" && a.resourceID == d.id })
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"actions": items, "links": links, "meta": meta})
}

func (s *Server) getDropletAction(r *http.Request, _ []byte, now time.Time) response {
	d := s.dropletByPath(r)
	aid, _ := strconv.Atoi(r.PathValue("aid"))
	a := s.st.actions[aid]
	if d == nil || a == nil || a.resourceType != "droplet" || a.resourceID != d.id {
		return notFound()
	}
	return jsonResp(200, obj{"action": s.actionJSON(a)})
}

func (s *Server) dropletAction(r *http.Request, body []byte, now time.Time) response {
	d := s.dropletByPath(r)
	if d == nil {
		return notFound()
	}
	var req struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	switch req.Type {
	case "power_off", "shutdown", "power_on", "reboot", "power_cycle", "snapshot":
	default:
		return unprocessable("Action type " + strconv.Quote(req.Type) + " is not supported by the emulator")
	}
	if d.pending != nil {
		return unprocessable("Droplet already has a pending event.")
	}
	redundant := (d.status == "off" && (req.Type == "power_off" || req.Type == "shutdown")) ||
		(d.status == "active" && req.Type == "power_on")
	if redundant && s.cfg.RedundantActions422 {
		return unprocessable("Droplet is already " + map[bool]string{true: "powered off", false: "powered on"}[d.status == "off"] + ".")
	}
	a := s.st.newAction(req.Type, "droplet", d.id, d.region, now)
	a.name = req.Name
	if n := s.failActions[req.Type]; n > 0 {
		s.failActions[req.Type] = n - 1
		a.fail = true
	}
	if req.Type == "shutdown" && s.shutdownNop > 0 && !a.fail {
		s.shutdownNop--
		a.name = "ignored"
	}
	if !a.fail && !redundant {
		var err error
		switch {
		case req.Type == "power_off" || (req.Type == "shutdown" && a.name != "ignored"):
			err = s.cfg.Backend.PowerOff(context.Background(), d.id)
		case req.Type == "power_on":
			err = s.cfg.Backend.PowerOn(context.Background(), d.id)
		case req.Type == "reboot" || req.Type == "power_cycle":
			if err = s.cfg.Backend.PowerOff(context.Background(), d.id); err == nil {
				err = s.cfg.Backend.PowerOn(context.Background(), d.id)
			}
		}
		if err != nil {
			s.cfg.Logger.Warn("backend action failed", "droplet", d.id, "type", req.Type, "err", err)
			a.fail = true
		}
	}
	if redundant {
		a.doneAt = now
	}
	d.pending = a
	s.advance(now)
	return jsonResp(201, obj{"action": s.actionJSON(a)})
}

func (s *Server) listDropletSnapshots(r *http.Request, _ []byte, now time.Time) response {
	d := s.dropletByPath(r)
	if d == nil {
		return notFound()
	}
	out := []obj{}
	for _, id := range d.snapshotIDs {
		if im := s.st.images[id]; im != nil {
			out = append(out, imageJSON(im))
		}
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"snapshots": items, "links": links, "meta": meta})
}

func (s *Server) listActions(r *http.Request, _ []byte, now time.Time) response {
	items, links, meta := page(r, s.actionsWhere(func(*action) bool { return true }))
	return jsonResp(200, obj{"actions": items, "links": links, "meta": meta})
}

func (s *Server) getAction(r *http.Request, _ []byte, now time.Time) response {
	aid, _ := strconv.Atoi(r.PathValue("aid"))
	a := s.st.actions[aid]
	if a == nil {
		return notFound()
	}
	return jsonResp(200, obj{"action": s.actionJSON(a)})
}

// ---- reserved IPs

func (s *Server) listRIPs(kind string, r *http.Request, now time.Time) response {
	ips := make([]string, 0, len(s.st.rips))
	for ip := range s.st.rips {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool { return ipToInt(ips[i]) < ipToInt(ips[j]) })
	out := make([]obj, 0, len(ips))
	for _, ip := range ips {
		out = append(out, s.ripJSON(s.st.rips[ip], now))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{kind + "s": items, "links": links, "meta": meta})
}

func (s *Server) createRIP(kind string, r *http.Request, body []byte, now time.Time) response {
	var req struct {
		Region    string `json:"region"`
		DropletID int    `json:"droplet_id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	if len(s.st.rips) >= s.cfg.ReservedIPLimit {
		return unprocessable("You have reached the reserved IP limit for your account.")
	}
	var d *droplet
	region := req.Region
	if req.DropletID != 0 {
		d = s.st.droplets[req.DropletID]
		if d == nil || d.deleted {
			return notFound()
		}
		region = d.region
	} else if _, ok := s.st.region(region); !ok || region == "" {
		return unprocessable("Region is not available")
	}
	rip := &reservedIP{ip: s.st.allocRIP(), region: region}
	s.st.rips[rip.ip] = rip
	links := obj{}
	if d != nil {
		a := s.st.newAction("assign_ip", "reserved_ip", 0, region, now)
		a.ip, a.target = rip.ip, d.id
		rip.pending = a
		links["droplets"] = []obj{{"id": d.id, "rel": "droplet", "href": absURL(r, fmt.Sprintf("/v2/droplets/%d", d.id))}}
		links["actions"] = []obj{{"id": a.id, "rel": "assign_ip", "href": absURL(r, fmt.Sprintf("/v2/actions/%d", a.id))}}
	}
	js := s.ripJSON(rip, now)
	s.advance(now)
	return jsonResp(202, obj{kind: js, "links": links})
}

func (s *Server) getRIP(kind string, r *http.Request, now time.Time) response {
	rip := s.st.rips[r.PathValue("ip")]
	if rip == nil {
		return notFound()
	}
	return jsonResp(200, obj{kind: s.ripJSON(rip, now)})
}

func (s *Server) deleteRIP(r *http.Request) response {
	rip := s.st.rips[r.PathValue("ip")]
	if rip == nil {
		return notFound()
	}
	if rip.pending != nil {
		return unprocessable("The reserved IP already has a pending event.")
	}
	delete(s.st.rips, rip.ip)
	return response{status: 204}
}

func (s *Server) ripAction(kind string, r *http.Request, body []byte, now time.Time) response {
	rip := s.st.rips[r.PathValue("ip")]
	if rip == nil {
		return notFound()
	}
	var req struct {
		Type      string `json:"type"`
		DropletID int    `json:"droplet_id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	if rip.pending != nil {
		return unprocessable("The reserved IP already has a pending event.")
	}
	var typ string
	switch req.Type {
	case "assign":
		typ = "assign_ip"
		d := s.st.droplets[req.DropletID]
		if d == nil || d.deleted {
			return notFound()
		}
		if d.region != rip.region {
			return unprocessable("The reserved IP and the Droplet must be in the same region.")
		}
		if d.pending != nil {
			return unprocessable("Droplet already has a pending event.")
		}
		for _, o := range s.st.rips {
			if o != rip && o.dropletID == d.id {
				return unprocessable("The Droplet already has a reserved IP assigned.")
			}
		}
	case "unassign":
		typ = "unassign_ip"
	default:
		return unprocessable("Action type " + strconv.Quote(req.Type) + " is not supported")
	}
	rtype := "reserved_ip"
	if kind == "floating_ip" {
		rtype = "floating_ip"
	}
	a := s.st.newAction(typ, rtype, 0, rip.region, now)
	a.resourceType = "reserved_ip" // one store; rendered per path below
	a.ip, a.target = rip.ip, req.DropletID
	if n := s.failActions[typ]; n > 0 {
		s.failActions[typ] = n - 1
		a.fail = true
	}
	rip.pending = a
	s.advance(now)
	js := s.actionJSON(a)
	js["resource_type"] = rtype
	return jsonResp(201, obj{"action": js})
}

func (s *Server) listRIPActions(r *http.Request) response {
	ip := r.PathValue("ip")
	if s.st.rips[ip] == nil {
		return notFound()
	}
	items, links, meta := page(r, s.actionsWhere(func(a *action) bool { return a.ip == ip }))
	return jsonResp(200, obj{"actions": items, "links": links, "meta": meta})
}

func (s *Server) getRIPAction(r *http.Request) response {
	aid, _ := strconv.Atoi(r.PathValue("aid"))
	a := s.st.actions[aid]
	if a == nil || a.ip != r.PathValue("ip") {
		return notFound()
	}
	return jsonResp(200, obj{"action": s.actionJSON(a)})
}

// ---- snapshots and images

func (s *Server) imagesWhere(keep func(*image) bool) []*image {
	var out []*image
	for _, im := range s.st.images {
		if keep(im) {
			out = append(out, im)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (s *Server) listSnapshots(r *http.Request, _ []byte, now time.Time) response {
	rt := r.URL.Query().Get("resource_type")
	out := []obj{}
	if rt == "" || rt == "droplet" {
		for _, im := range s.imagesWhere(func(im *image) bool { return im.typ == "snapshot" }) {
			out = append(out, snapshotJSON(im))
		}
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"snapshots": items, "links": links, "meta": meta})
}

func (s *Server) getSnapshot(r *http.Request, _ []byte, now time.Time) response {
	id, _ := strconv.Atoi(r.PathValue("id"))
	im := s.st.images[id]
	if im == nil || im.typ != "snapshot" {
		return notFound()
	}
	return jsonResp(200, obj{"snapshot": snapshotJSON(im)})
}

func (s *Server) listImages(r *http.Request, _ []byte, now time.Time) response {
	q := r.URL.Query()
	keep := func(*image) bool { return true }
	switch {
	case q.Get("private") == "true":
		keep = func(im *image) bool { return !im.public }
	case q.Get("type") == "distribution":
		keep = func(im *image) bool { return im.typ == "base" }
	case q.Get("type") == "application":
		keep = func(*image) bool { return false }
	case q.Get("tag_name") != "":
		t := q.Get("tag_name")
		keep = func(im *image) bool { return hasTag(im.tags, t) }
	}
	out := []obj{}
	for _, im := range s.imagesWhere(keep) {
		out = append(out, imageJSON(im))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"images": items, "links": links, "meta": meta})
}

func (s *Server) getImage(r *http.Request, _ []byte, now time.Time) response {
	im := s.st.imageByRef(r.PathValue("ref"))
	if im == nil {
		return notFound()
	}
	return jsonResp(200, obj{"image": imageJSON(im)})
}

func (s *Server) deleteImage(r *http.Request, _ []byte, now time.Time) response {
	ref := r.PathValue("ref")
	if ref == "" {
		ref = r.PathValue("id")
	}
	im := s.st.imageByRef(ref)
	if im == nil || im.typ != "snapshot" {
		return notFound()
	}
	delete(s.st.images, im.id)
	for _, d := range s.st.droplets {
		for i, id := range d.snapshotIDs {
			if id == im.id {
				d.snapshotIDs = append(d.snapshotIDs[:i:i], d.snapshotIDs[i+1:]...)
				break
			}
		}
	}
	return response{status: 204}
}

// ---- tags

func (s *Server) tagJSON(name string, now time.Time) obj {
	var n int
	var last *droplet
	for _, d := range s.visibleDroplets(now) {
		if hasTag(d.tags, name) {
			n++
			last = d
		}
	}
	dr := obj{"count": n, "last_tagged_uri": ""}
	lastURI := ""
	if last != nil {
		lastURI = fmt.Sprintf("https://api.digitalocean.com/v2/droplets/%d", last.id)
		dr["last_tagged"] = s.dropletJSON(last, now)
		dr["last_tagged_uri"] = lastURI
	}
	empty := obj{"count": 0, "last_tagged_uri": ""}
	return obj{"name": name, "resources": obj{"count": n, "last_tagged_uri": lastURI, "droplets": dr,
		"images": empty, "volumes": empty, "volume_snapshots": empty, "databases": empty}}
}

func (s *Server) listTags(r *http.Request, _ []byte, now time.Time) response {
	names := make([]string, 0, len(s.st.tags))
	for _, c := range s.st.tags {
		names = append(names, c)
	}
	sort.Strings(names)
	out := make([]obj, 0, len(names))
	for _, n := range names {
		out = append(out, s.tagJSON(n, now))
	}
	items, links, meta := page(r, out)
	return jsonResp(200, obj{"tags": items, "links": links, "meta": meta})
}

func tagNameError(name string) response {
	b, _ := json.Marshal(obj{"error": "tag name " + strconv.Quote(name) + " is invalid", "messages": nil,
		"root_causes": []string{"name must match ^[a-zA-Z0-9_\\-:]+$ and be at most 255 characters"}})
	return response{status: 400, body: append(b, '\n')}
}

func (s *Server) createTag(r *http.Request, body []byte, now time.Time) response {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	if len(req.Name) > 255 || !tagRE.MatchString(req.Name) {
		return tagNameError(req.Name)
	}
	return jsonResp(201, obj{"tag": s.tagJSON(s.st.canonicalTag(req.Name), now)})
}

func (s *Server) getTag(r *http.Request, _ []byte, now time.Time) response {
	c, ok := s.st.tags[strings.ToLower(r.PathValue("name"))]
	if !ok {
		return notFound()
	}
	return jsonResp(200, obj{"tag": s.tagJSON(c, now)})
}

func (s *Server) deleteTag(r *http.Request, _ []byte, now time.Time) response {
	key := strings.ToLower(r.PathValue("name"))
	if _, ok := s.st.tags[key]; !ok {
		return notFound()
	}
	delete(s.st.tags, key)
	for _, d := range s.st.droplets {
		d.tags = removeTag(d.tags, key)
	}
	return response{status: 204}
}

func removeTag(tags []string, lower string) []string {
	out := tags[:0:0]
	for _, t := range tags {
		if strings.ToLower(t) != lower {
			out = append(out, t)
		}
	}
	return out
}

func (s *Server) tagResources(r *http.Request, body []byte, add bool) response {
	c, ok := s.st.tags[strings.ToLower(r.PathValue("name"))]
	if !ok {
		return notFound()
	}
	var req struct {
		Resources []struct {
			ID   string `json:"resource_id"`
			Type string `json:"resource_type"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return badRequest("invalid JSON: " + err.Error())
	}
	for _, res := range req.Resources {
		if res.Type != "droplet" {
			return unprocessable("resource type " + strconv.Quote(res.Type) + " is not supported by the emulator")
		}
		id, _ := strconv.Atoi(res.ID)
		d := s.st.droplets[id]
		if d == nil || d.deleted {
			return notFound()
		}
		if add && !hasTag(d.tags, c) {
			d.tags = append(d.tags, c)
		}
		if !add {
			d.tags = removeTag(d.tags, strings.ToLower(c))
		}
	}
	return response{status: 204}
}

func sortedKeys[V any](m map[int]V) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}
