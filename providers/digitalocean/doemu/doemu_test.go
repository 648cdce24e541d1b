package doemu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/providers/digitalocean/doemu"
)

const tok = "emu-token"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	t   *testing.T
	emu *doemu.Server
	srv *httptest.Server
	clk *clock
	gc  *godo.Client
}

func newHarness(t *testing.T, cfg doemu.Config) *harness {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)}
	cfg.Token = tok
	cfg.Now = clk.Now
	emu := doemu.New(cfg)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	gc, err := godo.New(&http.Client{Transport: bearerRT{}}, godo.SetBaseURL(srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, emu: emu, srv: srv, clk: clk, gc: gc}
}

type bearerRT struct{}

func (bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return http.DefaultTransport.RoundTrip(r)
}

// do sends a raw request and decodes the JSON body into a generic map.
func (h *harness) do(method, path, body string) (int, http.Header, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, _ := http.NewRequest(method, h.srv.URL+path, rd)
	r.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			m = map[string]any{"_raw": string(raw)}
		}
	}
	return resp.StatusCode, resp.Header, m
}

func (h *harness) create(name string, tags ...string) *godo.Droplet {
	h.t.Helper()
	d, _, err := h.gc.Droplets.Create(context.Background(), &godo.DropletCreateRequest{Name: name, Region: "nyc3",
		Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}, Tags: tags, UserData: "#!/bin/sh\n"})
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func statusCode(err error) int {
	var er *godo.ErrorResponse
	if errors.As(err, &er) {
		return er.Response.StatusCode
	}
	return 0
}

func TestServer_Auth(t *testing.T) {
	h := newHarness(t, doemu.Config{})
	r, _ := http.NewRequest("GET", h.srv.URL+"/v2/account", nil)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 401 || body["id"] != "unauthorized" || body["message"] != "Unable to authenticate you." {
		t.Fatalf("no token: %d %v", resp.StatusCode, body)
	}
	for _, hd := range []string{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", "X-Request-Id"} {
		if resp.Header.Get(hd) == "" {
			t.Errorf("401 lacks header %s", hd)
		}
	}
	acct, _, err := h.gc.Account.Get(context.Background())
	if err != nil || acct.DropletLimit != 25 || acct.Status != "active" {
		t.Fatalf("account = %+v, %v", acct, err)
	}
}

func TestServer_Droplet_Lifecycle(t *testing.T) {
	h := newHarness(t, doemu.Config{BootDelay: 10 * time.Second, ActionDelay: map[string]time.Duration{"power_off": 5 * time.Second}})
	ctx := context.Background()
	code, _, body := h.do("POST", "/v2/droplets", `{"name":"web-1","region":"nyc3","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64","ssh_keys":null,"tags":null}`+"\n")
	if code != 202 {
		t.Fatalf("create: %d %v", code, body)
	}
	d := body["droplet"].(map[string]any)
	if d["status"] != "new" || len(d["networks"].(map[string]any)["v4"].([]any)) != 0 || d["next_backup_window"] != nil {
		t.Fatalf("new droplet = %v", d)
	}
	href := body["links"].(map[string]any)["actions"].([]any)[0].(map[string]any)["href"].(string)
	if !strings.HasPrefix(href, h.srv.URL+"/v2/actions/") {
		t.Fatalf("create action href %q is not absolute", href)
	}
	id := int(d["id"].(float64))
	a, _, err := h.gc.DropletActions.GetByURI(ctx, href)
	if err != nil || a.Status != "in-progress" || a.Type != "create" || a.CompletedAt != nil {
		t.Fatalf("create action = %+v, %v", a, err)
	}
	// a second action while the create is pending
	if _, _, err := h.gc.DropletActions.PowerOff(ctx, id); statusCode(err) != 422 || !strings.Contains(err.Error(), "pending event") {
		t.Fatalf("power_off during create = %v, want 422 pending event", err)
	}
	h.clk.Add(10 * time.Second)
	var got *godo.Droplet
	deadline := time.Now().Add(30 * time.Second)
	for { // the backend boot runs in a goroutine
		got, _, err = h.gc.Droplets.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == "active" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ip, _ := got.PublicIPv4(); got.Status != "active" || ip == "" {
		t.Fatalf("after boot: status %q ip %q", got.Status, ip)
	}
	if a, _, _ := h.gc.Actions.Get(ctx, a.ID); a.Status != "completed" || a.CompletedAt == nil {
		t.Fatalf("create action after boot = %+v", a)
	}
	off, _, err := h.gc.DropletActions.PowerOff(ctx, id)
	if err != nil || off.Status != "in-progress" {
		t.Fatalf("power_off = %+v, %v", off, err)
	}
	if got, _, _ := h.gc.Droplets.Get(ctx, id); got.Status != "active" {
		t.Fatalf("status while power_off in progress = %q", got.Status)
	}
	h.clk.Add(5 * time.Second)
	if a, _, _ := h.gc.DropletActions.Get(ctx, id, off.ID); a.Status != "completed" {
		t.Fatalf("power_off after its delay = %+v", a)
	}
	if got, _, _ := h.gc.Droplets.Get(ctx, id); got.Status != "off" {
		t.Fatalf("status after power_off = %q", got.Status)
	}
	if _, err := h.gc.Droplets.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.gc.Droplets.Delete(ctx, id); statusCode(err) != 404 {
		t.Fatalf("second delete = %v, want 404", err)
	}
	if _, _, err := h.gc.Droplets.Get(ctx, id); statusCode(err) != 404 {
		t.Fatalf("get after delete = %v, want 404", err)
	}
}

func TestServer_Pagination(t *testing.T) {
	h := newHarness(t, doemu.Config{DropletLimit: 100})
	for i := range 45 {
		h.create("web-"+strconv.Itoa(i), "hactl-cluster-blog")
	}
	h.create("other", "hactl-cluster-other")
	pages := func(path string) []string {
		_, _, body := h.do("GET", path, "")
		p, _ := body["links"].(map[string]any)["pages"].(map[string]any)
		var keys []string
		for k := range p {
			keys = append(keys, k)
		}
		if body["meta"].(map[string]any)["total"].(float64) != 45 {
			t.Errorf("%s: meta.total = %v, want 45", path, body["meta"])
		}
		return sortStrings(keys)
	}
	for path, want := range map[string][]string{
		"/v2/droplets?tag_name=hactl-cluster-blog&per_page=20&page=1": {"last", "next"},
		"/v2/droplets?tag_name=hactl-cluster-blog&per_page=20&page=2": {"first", "last", "next", "prev"},
		"/v2/droplets?tag_name=hactl-cluster-blog&per_page=20&page=3": {"first", "prev"},
		"/v2/droplets?tag_name=hactl-cluster-blog&per_page=500":       nil,
	} {
		if d := cmp.Diff(want, pages(path)); d != "" {
			t.Errorf("%s links (-want +got):\n%s", path, d)
		}
	}
	// godo's README loop collects every droplet exactly once
	seen := map[int]bool{}
	opt := &godo.ListOptions{PerPage: 20}
	for {
		ds, resp, err := h.gc.Droplets.ListByTag(context.Background(), "hactl-cluster-blog", opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if seen[d.ID] {
				t.Fatalf("droplet %d on two pages", d.ID)
			}
			seen[d.ID] = true
		}
		if resp.Links == nil || resp.Links.IsLastPage() {
			break
		}
		p, err := resp.Links.CurrentPage()
		if err != nil {
			t.Fatal(err)
		}
		opt.Page = p + 1
	}
	if len(seen) != 45 {
		t.Fatalf("collected %d droplets, want 45", len(seen))
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestServer_Create_Errors(t *testing.T) {
	h := newHarness(t, doemu.Config{DropletLimit: 1})
	for _, tc := range []struct{ body, msg string }{
		{`{"name":"bad name","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64"}`, "valid hostname"},
		{`{"name":"web-1","size":"huge","image":"ubuntu-24-04-x64"}`, "Size"},
		{`{"name":"web-1","size":"s-1vcpu-1gb","image":"nope"}`, "invalid image"},
		{`{"name":"web-1","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64","ssh_keys":[12345]}`, "SSH Key"},
		{`{"name":"web-1","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64","tags":["a=b"]}`, "Tag"},
		{`{"name":"web-1","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64","user_data":"` + strings.Repeat("x", 65*1024) + `"}`, "64 KiB"},
	} {
		code, _, body := h.do("POST", "/v2/droplets", tc.body)
		if code != 422 || body["id"] != "unprocessable_entity" || !strings.Contains(body["message"].(string), tc.msg) {
			t.Errorf("%.60s: %d %v, want 422 mentioning %q", tc.body, code, body, tc.msg)
		}
	}
	h.create("web-1")
	code, _, body := h.do("POST", "/v2/droplets", `{"name":"web-2","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64"}`)
	if code != 422 || body["message"] != "creating this/these droplet(s) will exceed your droplet limit" {
		t.Errorf("over the limit: %d %v", code, body)
	}
	code, _, body = h.do("GET", "/v2/droplets/999", "")
	if code != 404 || body["id"] != "not_found" {
		t.Errorf("absent droplet: %d %v", code, body)
	}
	code, _, body = h.do("POST", "/v2/tags", `{"name":"a=b"}`)
	if code != 400 || body["error"] == nil {
		t.Errorf("bad tag name: %d %v, want 400 with an \"error\" string", code, body)
	}
}

func TestServer_HideNewFor(t *testing.T) {
	h := newHarness(t, doemu.Config{HideNewFor: 5 * time.Second})
	d := h.create("web-1", "hactl-cluster-blog")
	ctx := context.Background()
	ds, _, err := h.gc.Droplets.ListByTag(ctx, "hactl-cluster-blog", nil)
	if err != nil || len(ds) != 0 {
		t.Fatalf("list right after create = %d droplets, %v; want it hidden", len(ds), err)
	}
	if _, _, err := h.gc.Droplets.Get(ctx, d.ID); err != nil {
		t.Fatalf("get by id while hidden = %v, want found", err)
	}
	h.clk.Add(5 * time.Second)
	ds, _, _ = h.gc.Droplets.ListByTag(ctx, "hactl-cluster-blog", nil)
	if len(ds) != 1 {
		t.Fatalf("list after the window = %d droplets, want 1", len(ds))
	}
}

func TestServer_Faults(t *testing.T) {
	ctx := context.Background()
	t.Run("429 window", func(t *testing.T) {
		h := newHarness(t, doemu.Config{})
		h.emu.Inject(doemu.Fault{Path: "/v2/account", Status: 429, ResetAfter: 30 * time.Second})
		for i, path := range []string{"/v2/account", "/v2/droplets"} {
			code, hdr, body := h.do("GET", path, "")
			reset, _ := strconv.ParseInt(hdr.Get("Ratelimit-Reset"), 10, 64)
			if code != 429 || body["id"] != "too_many_requests" || hdr.Get("Ratelimit-Remaining") != "0" ||
				reset != h.clk.Now().Add(30*time.Second).Unix() || hdr.Get("Retry-After") != "" {
				t.Fatalf("request %d in the window: %d %v %v", i, code, hdr, body)
			}
		}
		h.clk.Add(30 * time.Second)
		if code, hdr, _ := h.do("GET", "/v2/droplets", ""); code != 200 || hdr.Get("Ratelimit-Remaining") == "0" {
			t.Fatalf("after the reset: %d remaining %s", code, hdr.Get("Ratelimit-Remaining"))
		}
		rs := h.emu.Requests()
		if len(rs) != 3 || !rs[1].RateWait || rs[0].RateWait || rs[0].Fault == "" {
			t.Fatalf("request log does not tell the injected 429 from the window: %+v", rs)
		}
	})
	t.Run("burst 429 has retry-after", func(t *testing.T) {
		h := newHarness(t, doemu.Config{})
		h.emu.Inject(doemu.Fault{Status: 429, ResetAfter: 3 * time.Second, RetryAfter: 3})
		if _, hdr, _ := h.do("GET", "/v2/droplets", ""); hdr.Get("Retry-After") != "3" {
			t.Fatalf("retry-after = %q", hdr.Get("Retry-After"))
		}
	})
	t.Run("after commit", func(t *testing.T) {
		h := newHarness(t, doemu.Config{})
		h.emu.Inject(doemu.Fault{Method: "POST", Path: "/v2/droplets", Status: 503, AfterCommit: true})
		_, _, err := h.gc.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "web-1", Size: "s-1vcpu-1gb",
			Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}})
		if statusCode(err) != 503 || !strings.Contains(err.Error(), "Service Unavailable") {
			t.Fatalf("create = %v, want 503 with a text body", err)
		}
		ds, _, _ := h.gc.Droplets.List(ctx, nil)
		if len(ds) != 1 {
			t.Fatalf("%d droplets after a 503-after-commit, want 1", len(ds))
		}
	})
	t.Run("bodies", func(t *testing.T) {
		h := newHarness(t, doemu.Config{})
		h.emu.Inject(doemu.Fault{Path: "/v2/account", EmptyBody: true})
		if _, _, err := h.gc.Account.Get(ctx); err == nil || err.Error() != "EOF" {
			t.Errorf("empty body: %v, want EOF", err)
		}
		h.emu.Inject(doemu.Fault{Path: "/v2/account", Truncate: true})
		if _, _, err := h.gc.Account.Get(ctx); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
			t.Errorf("truncated body: %v, want unexpected EOF", err)
		}
		if _, _, err := h.gc.Account.Get(ctx); err != nil {
			t.Errorf("faults are used up, yet: %v", err)
		}
	})
	t.Run("errored actions and stuck creates", func(t *testing.T) {
		h := newHarness(t, doemu.Config{})
		h.emu.FailActions("create", 1)
		d := h.create("web-1")
		if _, _, err := h.gc.Droplets.Get(ctx, d.ID); statusCode(err) != 404 {
			t.Fatalf("failed placement: get = %v, want 404", err)
		}
		h.emu.StickNew(1)
		d = h.create("web-2")
		h.clk.Add(time.Hour)
		if got, _, _ := h.gc.Droplets.Get(ctx, d.ID); got.Status != "new" {
			t.Fatalf("stuck droplet status = %q", got.Status)
		}
		if _, err := h.gc.Droplets.Delete(ctx, d.ID); err != nil {
			t.Fatalf("delete of a stuck droplet = %v", err)
		}
		d = waitActive(t, h, h.create("web-3"))
		h.emu.IgnoreShutdown(1)
		a, _, err := h.gc.DropletActions.Shutdown(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != "completed" {
			t.Fatalf("shutdown action = %q", a.Status)
		}
		if got, _, _ := h.gc.Droplets.Get(ctx, d.ID); got.Status != "active" {
			t.Fatalf("ignored shutdown: status %q, want still active", got.Status)
		}
		h.emu.FailActions("power_off", 1)
		a, _, _ = h.gc.DropletActions.PowerOff(ctx, d.ID)
		if a.Status != "errored" {
			t.Fatalf("failed power_off = %q", a.Status)
		}
	})
	t.Run("admin endpoint", func(t *testing.T) {
		h := newHarness(t, doemu.Config{})
		if code, _, body := h.do("POST", "/_emu/faults", `{"path":"/v2/account","status":500,"delay":"1ms"}`); code != 204 {
			t.Fatalf("program fault: %d %v", code, body)
		}
		if code, _, _ := h.do("POST", "/_emu/faults", `{"delay":"soon"}`); code != 400 {
			t.Fatalf("bad duration accepted: %d", code)
		}
		if _, _, err := h.gc.Account.Get(ctx); statusCode(err) != 500 {
			t.Fatalf("account = %v, want the programmed 500", err)
		}
		if code, _, body := h.do("GET", "/_emu/requests", ""); code != 200 || len(body["requests"].([]any)) != 1 {
			t.Fatalf("request log: %d %v", code, body)
		}
	})
}

func waitActive(t *testing.T, h *harness, d *godo.Droplet) *godo.Droplet {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _, err := h.gc.Droplets.Get(context.Background(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == "active" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("droplet %d never active", d.ID)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServer_ReservedIPs(t *testing.T) {
	h := newHarness(t, doemu.Config{ActionDelay: map[string]time.Duration{"assign_ip": 3 * time.Second}})
	ctx := context.Background()
	a := waitActive(t, h, h.create("lb-1"))
	b := waitActive(t, h, h.create("lb-2"))
	code, _, body := h.do("POST", "/v2/reserved_ips", `{"droplet_id":`+strconv.Itoa(a.ID)+`}`)
	rip := body["reserved_ip"].(map[string]any)
	links := body["links"].(map[string]any)
	if code != 202 || rip["droplet"] != nil || rip["locked"] != true || links["actions"] == nil || links["droplets"] == nil {
		t.Fatalf("create with droplet_id: %d %v", code, body)
	}
	ip := rip["ip"].(string)
	if _, _, err := h.gc.ReservedIPActions.Assign(ctx, ip, b.ID); statusCode(err) != 422 {
		t.Fatalf("assign while locked = %v, want 422", err)
	}
	h.clk.Add(3 * time.Second)
	got, _, err := h.gc.ReservedIPs.Get(ctx, ip)
	if err != nil || got.Droplet == nil || got.Droplet.ID != a.ID || got.Locked {
		t.Fatalf("after the assign: %+v, %v", got, err)
	}
	act, _, err := h.gc.ReservedIPActions.Assign(ctx, ip, b.ID)
	if err != nil || act.Type != "assign_ip" || act.ResourceType != "reserved_ip" {
		t.Fatalf("move = %+v, %v", act, err)
	}
	if got, _, _ := h.gc.ReservedIPs.Get(ctx, ip); got.Droplet.ID != a.ID || !got.Locked {
		t.Fatalf("during the move the old holder shows, locked: %+v", got)
	}
	h.clk.Add(3 * time.Second)
	if got, _, _ := h.gc.ReservedIPs.Get(ctx, ip); got.Droplet.ID != b.ID {
		t.Fatalf("after the move: %+v", got)
	}
	// floating_ips is the same store
	if fip, _, err := h.gc.FloatingIPs.Get(ctx, ip); err != nil || fip.Droplet.ID != b.ID {
		t.Fatalf("floating ip view = %+v, %v", fip, err)
	}
	other, _, err := h.gc.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "x", Region: "ams3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
	if err != nil {
		t.Fatal(err)
	}
	waitActive(t, h, other)
	if _, _, err := h.gc.ReservedIPActions.Assign(ctx, ip, other.ID); statusCode(err) != 422 {
		t.Fatalf("assign across regions = %v, want 422", err)
	}
	if _, err := h.gc.Droplets.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := h.gc.ReservedIPs.Get(ctx, ip); got.Droplet != nil {
		t.Fatalf("deleting the holder leaves the IP on it: %+v", got)
	}
}

func TestServer_TagsAndSnapshots(t *testing.T) {
	h := newHarness(t, doemu.Config{})
	ctx := context.Background()
	d := waitActive(t, h, h.create("web-1"))
	if _, _, err := h.gc.Tags.Create(ctx, &godo.TagCreateRequest{Name: "Blue"}); err != nil {
		t.Fatal(err)
	}
	res := &godo.TagResourcesRequest{Resources: []godo.Resource{{ID: strconv.Itoa(d.ID), Type: godo.DropletResourceType}}}
	if _, err := h.gc.Tags.TagResources(ctx, "Blue", res); err != nil {
		t.Fatal(err)
	}
	tag, _, err := h.gc.Tags.Get(ctx, "blue")
	if err != nil || tag.Name != "Blue" || tag.Resources.Count != 1 {
		t.Fatalf("tag = %+v, %v (names are case-stable)", tag, err)
	}
	if _, err := h.gc.Tags.UntagResources(ctx, "Blue", &godo.UntagResourcesRequest{Resources: res.Resources}); err != nil {
		t.Fatal(err)
	}
	if ds, _, _ := h.gc.Droplets.ListByTag(ctx, "Blue", nil); len(ds) != 0 {
		t.Fatalf("untagged droplet still listed by tag")
	}
	if _, _, err := h.gc.DropletActions.Snapshot(ctx, d.ID, "base-1"); err != nil {
		t.Fatal(err)
	}
	ss, _, err := h.gc.Snapshots.ListDroplet(ctx, nil)
	if err != nil || len(ss) != 1 || ss[0].Name != "base-1" || ss[0].ResourceID != strconv.Itoa(d.ID) {
		t.Fatalf("snapshots = %+v, %v", ss, err)
	}
	img, _, err := h.gc.Images.GetByID(ctx, mustAtoi(ss[0].ID))
	if err != nil || img.Type != "snapshot" || img.Public {
		t.Fatalf("snapshot as image = %+v, %v", img, err)
	}
	user, _, _ := h.gc.Images.ListUser(ctx, nil)
	if len(user) != 1 {
		t.Fatalf("user images = %d, want 1", len(user))
	}
	nd, _, err := h.gc.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "web-2", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{ID: img.ID}})
	if err != nil || nd.Image.ID != img.ID {
		t.Fatalf("create from snapshot = %+v, %v", nd, err)
	}
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

func TestProcessBackend(t *testing.T) {
	dir := t.TempDir()
	be := &doemu.ProcessBackend{Dir: dir, Command: func(dir string, d doemu.Droplet) []string {
		return []string{"/bin/sh", "-c", `echo $$ > pid; exec sleep 600`}
	}}
	t.Cleanup(func() { be.Close() })
	ctx := context.Background()
	if _, err := be.Boot(ctx, doemu.Droplet{ID: 7, Name: "web-1", UserData: "#cloud-config\n", IPv4: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	ddir := filepath.Join(dir, "droplet-7")
	ud, _ := os.ReadFile(filepath.Join(ddir, "user-data"))
	if string(ud) != "#cloud-config\n" {
		t.Fatalf("user-data = %q", ud)
	}
	pid := func() int {
		var n int
		deadline := time.Now().Add(30 * time.Second)
		for n == 0 && time.Now().Before(deadline) {
			b, _ := os.ReadFile(filepath.Join(ddir, "pid"))
			n, _ = strconv.Atoi(string(bytes.TrimSpace(b)))
			time.Sleep(5 * time.Millisecond)
		}
		return n
	}
	p := pid()
	if p == 0 || syscall.Kill(p, 0) != nil {
		t.Fatalf("droplet process %d not running", p)
	}
	if err := be.PowerOff(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(p, 0) == nil {
		t.Fatalf("process %d alive after PowerOff", p)
	}
	os.Remove(filepath.Join(ddir, "pid"))
	if err := be.PowerOn(ctx, 7); err != nil {
		t.Fatal(err)
	}
	p2 := pid()
	if p2 == 0 || p2 == p || syscall.Kill(p2, 0) != nil {
		t.Fatalf("after PowerOn: pid %d (before %d)", p2, p)
	}
	if err := be.Destroy(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(p2, 0) == nil {
		t.Fatalf("process %d alive after Destroy", p2)
	}
	if _, err := os.Stat(ddir); !os.IsNotExist(err) {
		t.Fatalf("droplet dir still there: %v", err)
	}
	if err := be.Destroy(ctx, 7); err != nil {
		t.Fatalf("second Destroy = %v", err)
	}
}
