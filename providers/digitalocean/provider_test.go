package digitalocean_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
)

func TestProvider_Create_TagsAndIdempotent(t *testing.T) {
	e := newEnv(t, doemu.Config{}, nil)
	ctx := ctxT(t)
	r := req("web", 2, 3)
	r.UserData = "#cloud-config\nhostname: web-2\n"
	m, err := e.p.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "web-2" || m.Role != "web" || m.Slot != 2 || m.Generation != 3 || m.Cluster != "blog" {
		t.Fatalf("machine = %+v", m)
	}
	if m.State != providers.PowerOn || m.Address == "" {
		t.Errorf("Create returned state %q address %q; want an active droplet with its address", m.State, m.Address)
	}
	again, err := e.p.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != m.ID {
		t.Errorf("second Create made %s, want the existing %s", again.ID, m.ID)
	}
	if n := e.count("POST", "/v2/droplets"); n != 1 {
		t.Errorf("POST /v2/droplets sent %d times, want 1", n)
	}
	ds := e.droplets(t)
	if len(ds) != 1 {
		t.Fatalf("emulator holds %d droplets, want 1", len(ds))
	}
	var tags []string
	for _, x := range ds[0]["tags"].([]any) {
		tags = append(tags, x.(string))
	}
	want := []string{"hactl-cluster-blog", "hactl-role-web", "hactl-slot-2", "hactl-gen-3"}
	if d := cmp.Diff(want, tags); d != "" {
		t.Errorf("tags (-want +got):\n%s", d)
	}
	// the request carried user_data, region, size and image
	var body string
	for _, rq := range e.emu.Requests() {
		if rq.Method == "POST" && rq.Path == "/v2/droplets" {
			body = rq.Body
		}
	}
	for _, s := range []string{`"user_data":"#cloud-config\nhostname: web-2\n"`, `"region":"nyc3"`, `"size":"s-1vcpu-1gb"`, `"image":"ubuntu-24-04-x64"`} {
		if !strings.Contains(body, s) {
			t.Errorf("create body lacks %s: %s", s, body)
		}
	}

	ms, err := e.p.List(ctx, "blog")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != m.ID || ms[0].State != providers.PowerOn || ms[0].Address == "" {
		t.Fatalf("List = %+v, want the one active droplet with an address", ms)
	}
	other, err := e.p.List(ctx, "other")
	if err != nil || len(other) != 0 {
		t.Fatalf("List(other) = %v, %v; want empty", other, err)
	}
}

func TestProvider_Create_FromSnapshotWithKeys(t *testing.T) {
	e := newEnv(t, doemu.Config{}, nil)
	ctx := ctxT(t)
	pub := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7a3k1nQ0v4E6lY3j2mY0gq3l1sVw0nC0f5b5X8y1dZ test@example"
	k, _, err := e.p.Client().Keys.Create(ctx, &godoKeyReq{Name: "ops", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	base, err := e.p.Create(ctx, req("base", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := e.p.Snapshot(ctx, base.ID, "hactl-base-1")
	if err != nil {
		t.Fatal(err)
	}
	r := req("web", 1, 1)
	r.Image = snap
	r.SSHKeys = []string{fmt.Sprint(k.ID), k.Fingerprint}
	r.Region = "nyc3"
	m, err := e.p.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if m.Image != snap {
		t.Errorf("image = %q, want snapshot %q", m.Image, snap)
	}
	// unknown key → a definite 422, not retried
	r2 := req("web", 2, 1)
	r2.SSHKeys = []string{"99999999"}
	if _, err := e.p.Create(ctx, r2); err == nil || !strings.Contains(err.Error(), "422") {
		t.Errorf("create with unknown key: err = %v, want a 422", err)
	}
}

func TestProvider_Create_HiddenFromListNotDuplicated(t *testing.T) {
	e := newEnv(t, doemu.Config{HideNewFor: time.Hour}, nil)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	// list-by-tag does not show it, yet List does (GET by id) and a retried
	// Create adopts it.
	ms, err := e.p.List(ctx, "blog")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != m.ID {
		t.Fatalf("List = %+v, want the hidden droplet %s", ms, m.ID)
	}
	again, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != m.ID {
		t.Fatalf("Create of a hidden droplet made a second one: %s vs %s", again.ID, m.ID)
	}
	if n := e.count("POST", "/v2/droplets"); n != 1 {
		t.Errorf("POST /v2/droplets sent %d times, want 1", n)
	}
}

func TestProvider_Create_LostAnswerNotDuplicated(t *testing.T) {
	for _, f := range []doemu.Fault{
		{Method: "POST", Path: "/v2/droplets", Status: 500, AfterCommit: true},
		{Method: "POST", Path: "/v2/droplets", Status: 503, AfterCommit: true},
		{Method: "POST", Path: "/v2/droplets", Truncate: true},
		{Method: "POST", Path: "/v2/droplets", CloseConn: true},
	} {
		t.Run(f.String(), func(t *testing.T) {
			// The droplet is committed, the answer is lost, and list-by-tag
			// does not show it for a while.
			e := newEnv(t, doemu.Config{HideNewFor: 300 * time.Millisecond}, nil)
			e.emu.Inject(f)
			ctx := ctxT(t)
			m, err := e.p.Create(ctx, req("web", 1, 1))
			if err != nil {
				t.Fatal(err)
			}
			if m.Name != "web-1" {
				t.Fatalf("machine = %+v", m)
			}
			if n := len(e.droplets(t)); n != 1 {
				t.Fatalf("emulator holds %d droplets after a lost create answer, want 1", n)
			}
		})
	}
	t.Run("5xx before commit is retried", func(t *testing.T) {
		e := newEnv(t, doemu.Config{}, func(c *digitalocean.Config) { c.ConsistencyWindow = 100 * time.Millisecond })
		e.emu.Inject(doemu.Fault{Method: "POST", Path: "/v2/droplets", Status: 500})
		if _, err := e.p.Create(ctxT(t), req("web", 1, 1)); err != nil {
			t.Fatal(err)
		}
		if n := len(e.droplets(t)); n != 1 {
			t.Fatalf("emulator holds %d droplets, want 1", n)
		}
		if n := e.count("POST", "/v2/droplets"); n != 2 {
			t.Errorf("POST /v2/droplets sent %d times, want 2", n)
		}
	})
}

// A second process (no in-memory cache) finds the droplet once it is listed.
func TestProvider_Create_AcrossProcesses(t *testing.T) {
	e := newEnv(t, doemu.Config{}, nil)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	p2 := newEnvProvider(t, e)
	m2, err := p2.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m2.ID != m.ID {
		t.Fatalf("second process created %s, want the existing %s", m2.ID, m.ID)
	}
}

func newEnvProvider(t *testing.T, e *env) *digitalocean.Provider {
	t.Helper()
	p, err := digitalocean.NewProvider(digitalocean.Config{Token: testToken, Endpoint: e.srv.URL, Size: "s-1vcpu-1gb",
		Image: "ubuntu-24-04-x64", PollInterval: 10 * time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProvider_Create_Concurrent(t *testing.T) {
	e := newEnv(t, doemu.Config{HideNewFor: 200 * time.Millisecond}, nil)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.p.Create(ctx, req("web", 1+i%4, 1)) // 4 slots, 3 callers each
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count("POST", "/v2/droplets"); n != 4 {
		t.Errorf("POST /v2/droplets sent %d times for 4 slots, want 4", n)
	}
}

func TestProvider_List_Pagination(t *testing.T) {
	e := newEnv(t, doemu.Config{DropletLimit: 100}, func(c *digitalocean.Config) { c.PageSize = 7 })
	ctx := ctxT(t)
	for i := 1; i <= 23; i++ {
		if _, err := e.p.Create(ctx, req("web", i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// another cluster's droplet must not show
	if _, err := e.p.Create(ctx, providers.CreateRequest{Cluster: "other", Role: "web", Slot: 1, Generation: 1}); err != nil {
		t.Fatal(err)
	}
	p2 := newEnvProvider(t, e) // no cache: only list-by-tag
	ms, err := p2.List(ctx, "blog")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 23 {
		t.Fatalf("List returned %d machines, want 23", len(ms))
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Name] {
			t.Errorf("%s listed twice", m.Name)
		}
		seen[m.Name] = true
	}
}

func TestProvider_Destroy(t *testing.T) {
	e := newEnv(t, doemu.Config{KeepDeletedFor: time.Hour}, nil)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Destroy(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Destroy(ctx, m.ID); err != nil {
		t.Fatalf("second Destroy (404) = %v, want nil", err)
	}
	// the API still lists it as "archive"; the provider does not
	ms, err := e.p.List(ctx, "blog")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Fatalf("List after Destroy = %+v, want empty", ms)
	}
	if err := e.p.Destroy(ctx, "not-a-droplet"); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Destroy(bad id) = %v, want ErrNotFound", err)
	}
}

func TestProvider_Fence(t *testing.T) {
	e := newEnv(t, doemu.Config{
		BootDelay:   100 * time.Millisecond,
		ActionDelay: map[string]time.Duration{"power_off": 100 * time.Millisecond, "power_on": 50 * time.Millisecond},
		StatusLag:   150 * time.Millisecond,
	}, func(c *digitalocean.Config) { c.NoWait = true })
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m.State != providers.PowerStarting || m.Address != "" {
		t.Fatalf("with NoWait, Create returned state %q address %q; want starting, no address", m.State, m.Address)
	}
	// Fence right away: the create is pending, the fence waits for it.
	if err := e.p.Fence(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if st := e.status(t, m.ID); st != "off" {
		t.Fatalf("status after Fence = %q, want off (fence must be confirmed, status lag included)", st)
	}
	if err := e.p.Fence(ctx, m.ID); err != nil {
		t.Fatalf("second Fence = %v", err)
	}
	if n := e.actionCount("power_off"); n != 1 {
		t.Errorf("%d power_off actions, want 1 (fence is idempotent)", n)
	}
	if err := e.p.PowerOn(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if st := e.status(t, m.ID); st != "active" {
		t.Fatalf("status after PowerOn = %q, want active", st)
	}
	if err := e.p.Destroy(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Fence(ctx, m.ID); err != nil {
		t.Fatalf("Fence of a destroyed droplet = %v, want nil (gone is fenced)", err)
	}
	if err := e.p.PowerOn(ctx, m.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("PowerOn of a destroyed droplet = %v, want ErrNotFound", err)
	}
}

func TestProvider_Fence_ErroredAction(t *testing.T) {
	e := newEnv(t, doemu.Config{}, nil)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	e.emu.FailActions("power_off", 1)
	err = e.p.Fence(ctx, m.ID)
	if !errors.Is(err, digitalocean.ErrActionErrored) {
		t.Fatalf("Fence with an errored power_off = %v, want ErrActionErrored", err)
	}
	if st := e.status(t, m.ID); st != "active" {
		t.Fatalf("status = %q; the droplet was not fenced and must still show active", st)
	}
}

func TestProvider_Fence_LostAnswer(t *testing.T) {
	e := newEnv(t, doemu.Config{ActionDelay: map[string]time.Duration{"power_off": 100 * time.Millisecond}}, nil)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	e.emu.Inject(doemu.Fault{Method: "POST", Path: "/v2/droplets/" + string(m.ID) + "/actions", Status: 502, AfterCommit: true})
	if err := e.p.Fence(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if st := e.status(t, m.ID); st != "off" {
		t.Fatalf("status = %q, want off", st)
	}
}

func TestProvider_Fence_StuckNew(t *testing.T) {
	e := newEnv(t, doemu.Config{}, func(c *digitalocean.Config) { c.NoWait = true })
	e.emu.StickNew(1)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := contextWithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := e.p.Fence(short, m.ID); err == nil {
		t.Fatal("Fence of a droplet stuck in new returned nil; it was never confirmed off")
	}
	// Destroy always works, and then the fence holds.
	if err := e.p.Destroy(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Fence(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
}

func TestProvider_Create_FailedPlacement(t *testing.T) {
	e := newEnv(t, doemu.Config{BootDelay: 50 * time.Millisecond}, nil)
	ctx := ctxT(t)
	e.emu.FailActions("create", 1)
	_, err := e.p.Create(ctx, req("web", 1, 1))
	if !errors.Is(err, digitalocean.ErrActionErrored) {
		t.Fatalf("Create with a failed placement = %v, want ErrActionErrored", err)
	}
	// the executor retries: a new droplet, and only one exists
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := e.p.List(ctx, "blog")
	if err != nil || len(ms) != 1 || ms[0].ID != m.ID {
		t.Fatalf("List after a failed placement and a retry = %+v, %v", ms, err)
	}
}

// DO can answer 404 for a moment after a create; that is not a failed
// placement while the droplet's create action says otherwise.
func TestProvider_Create_TransientNotFound(t *testing.T) {
	e := newEnv(t, doemu.Config{GetNotFoundFor: 300 * time.Millisecond, HideNewFor: time.Second}, nil)
	m, err := e.p.Create(ctxT(t), req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m.State != providers.PowerOn {
		t.Fatalf("state = %q, want on", m.State)
	}
}

func TestProvider_Create_StuckNewTimesOut(t *testing.T) {
	e := newEnv(t, doemu.Config{}, nil)
	e.emu.StickNew(1)
	ctx, cancel := contextWithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	if _, err := e.p.Create(ctx, req("web", 1, 1)); err == nil || !strings.Contains(err.Error(), "still new") {
		t.Fatalf("Create of a droplet stuck in new = %v, want a timeout saying so", err)
	}
}

func (e *env) status(t *testing.T, id providers.MachineID) string {
	t.Helper()
	var out struct {
		Droplet struct {
			Status string `json:"status"`
		} `json:"droplet"`
	}
	if code := getJSON(t, e.srv.URL+"/v2/droplets/"+string(id), &out); code != 200 {
		return fmt.Sprint(code)
	}
	return out.Droplet.Status
}

func (e *env) actionCount(typ string) int {
	n := 0
	for _, r := range e.emu.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/actions") && strings.Contains(r.Body, `"type":"`+typ+`"`) && r.Status == 201 {
			n++
		}
	}
	return n
}

func TestProvider_VIP(t *testing.T) {
	e := newEnv(t, doemu.Config{ActionDelay: map[string]time.Duration{"assign_ip": 100 * time.Millisecond}}, nil)
	ctx := ctxT(t)
	a, err := e.p.Create(ctx, req("lb", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.p.Create(ctx, req("lb", 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	vip, err := e.p.CreateReservedIP(ctx, "nyc3")
	if err != nil {
		t.Fatal(err)
	}
	if h, err := e.p.VIPHolder(ctx, vip); err != nil || h != "" {
		t.Fatalf("holder of a new IP = %q, %v; want unassigned", h, err)
	}
	if err := e.p.AssignVIP(ctx, vip, a.ID); err != nil {
		t.Fatal(err)
	}
	if h, _ := e.p.VIPHolder(ctx, vip); h != a.ID {
		t.Fatalf("holder = %q, want %q", h, a.ID)
	}
	if err := e.p.AssignVIP(ctx, vip, a.ID); err != nil {
		t.Fatal(err)
	}
	e.emu.ResetLog()
	if err := e.p.AssignVIP(ctx, vip, b.ID); err != nil {
		t.Fatal(err)
	}
	if h, _ := e.p.VIPHolder(ctx, vip); h != b.ID {
		t.Fatalf("holder after move = %q, want %q", h, b.ID)
	}
	var bodies []string
	for _, r := range e.emu.Requests() {
		if r.Method == "POST" {
			bodies = append(bodies, strings.TrimSpace(r.Body))
		}
	}
	if d := cmp.Diff([]string{fmt.Sprintf(`{"droplet_id":%s,"type":"assign"}`, b.ID)}, bodies); d != "" {
		t.Errorf("a move is one assign action (-want +got):\n%s", d)
	}
	// an errored assign leaves the IP where it was
	e.emu.FailActions("assign_ip", 1)
	if err := e.p.AssignVIP(ctx, vip, a.ID); !errors.Is(err, digitalocean.ErrActionErrored) {
		t.Fatalf("errored assign = %v, want ErrActionErrored", err)
	}
	if h, _ := e.p.VIPHolder(ctx, vip); h != b.ID {
		t.Fatalf("holder after errored assign = %q, want %q", h, b.ID)
	}
	// an unknown IP
	if err := e.p.AssignVIP(ctx, "192.0.2.250", a.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("assign of an unknown IP = %v, want ErrNotFound", err)
	}
	// destroying the holder unassigns
	if err := e.p.Destroy(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if h, _ := e.p.VIPHolder(ctx, vip); h != "" {
		t.Fatalf("holder after destroying it = %q, want none", h)
	}
}

func TestProvider_Snapshot(t *testing.T) {
	e := newEnv(t, doemu.Config{ActionDelay: map[string]time.Duration{"snapshot": 100 * time.Millisecond}}, nil)
	ctx := ctxT(t)
	m, err := e.p.Create(ctx, req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.p.Snapshot(ctx, m.ID, "hactl-2026-11-22")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := e.p.Snapshot(ctx, m.ID, "hactl-2026-11-22")
	if err != nil || id2 != id {
		t.Fatalf("second Snapshot = %q, %v; want the existing %q", id2, err, id)
	}
	if n := e.actionCount("snapshot"); n != 1 {
		t.Errorf("%d snapshot actions, want 1", n)
	}
	e.emu.FailActions("snapshot", 1)
	if _, err := e.p.Snapshot(ctx, m.ID, "other"); !errors.Is(err, digitalocean.ErrActionErrored) {
		t.Fatalf("errored snapshot = %v, want ErrActionErrored", err)
	}
}

func TestProvider_Token(t *testing.T) {
	t.Run("wrong token: 401, not retried, not leaked", func(t *testing.T) {
		e := newEnv(t, doemu.Config{}, func(c *digitalocean.Config) { c.Token = "dop_v1_WRONGSECRET" })
		_, err := e.p.List(ctxT(t), "blog")
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("List with a wrong token = %v, want a 401", err)
		}
		if strings.Contains(err.Error(), "WRONGSECRET") {
			t.Fatalf("error leaks the token: %v", err)
		}
		if n := e.count("GET", "/v2/droplets"); n != 1 {
			t.Errorf("401 sent %d times, want 1", n)
		}
	})
	t.Run("token echoed by the server is scrubbed", func(t *testing.T) {
		e := newEnv(t, doemu.Config{}, nil)
		e.emu.Inject(doemu.Fault{Method: "POST", Status: 400, Body: `{"id":"bad_request","message":"bad header Authorization: Bearer ` + testToken + `"}`})
		_, err := e.p.Create(ctxT(t), req("web", 1, 1))
		if err == nil || strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "[redacted]") {
			t.Fatalf("error = %v; want the token redacted", err)
		}
	})
	t.Run("read-only token: 403", func(t *testing.T) {
		e := newEnv(t, doemu.Config{ReadOnlyToken: "dop_v1_readonly"}, func(c *digitalocean.Config) { c.Token = "dop_v1_readonly" })
		ctx := ctxT(t)
		if _, err := e.p.List(ctx, "blog"); err != nil {
			t.Fatalf("List with a read-only token = %v", err)
		}
		if _, err := e.p.Create(ctx, req("web", 1, 1)); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("Create with a read-only token = %v, want 403", err)
		}
	})
}

func TestNew_Settings(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "token")
	if err := os.WriteFile(tf, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emu := doemu.New(doemu.Config{Token: testToken})
	srv := newServer(t, emu)
	p, err := digitalocean.New(map[string]string{"token_file": tf, "endpoint": srv, "size": "s-1vcpu-1gb",
		"image": "debian-12-x64", "poll_interval": "10ms", "address": "private"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Create(ctxT(t), req("web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Address, "10.") && m.Address != "" {
		t.Errorf("address = %q, want the private one", m.Address)
	}
	if _, err := digitalocean.New(map[string]string{"token": "x"}); err != nil {
		t.Errorf(`a "token" setting (token = var.do_token) = %v`, err)
	}
	if _, err := digitalocean.New(map[string]string{"token_file": filepath.Join(dir, "missing")}); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("missing token file: %v", err)
	}
	t.Setenv("DIGITALOCEAN_TOKEN", "")
	t.Setenv("DIGITALOCEAN_ACCESS_TOKEN", "")
	if _, err := digitalocean.New(map[string]string{}); err == nil {
		t.Error("New without a token succeeded")
	}
	t.Setenv("DIGITALOCEAN_TOKEN", testToken)
	if _, err := digitalocean.New(map[string]string{"endpoint": srv}); err != nil {
		t.Errorf("New with DIGITALOCEAN_TOKEN = %v", err)
	}
	if _, err := digitalocean.New(map[string]string{"poll_interval": "soon"}); err == nil || !strings.Contains(err.Error(), "poll_interval") {
		t.Errorf("bad duration: %v", err)
	}
}
