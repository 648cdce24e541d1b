package digitalocean

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hactl/hactl/providers"
)

// Config is the typed configuration of a Provider. Zero durations take the
// defaults given per field.
type Config struct {
	// Token is the API token. It is never logged or returned in errors.
	Token string
	// Endpoint is the API base URL (default https://api.digitalocean.com/);
	// point it at a doemu emulator for tests.
	Endpoint string

	// Region, Size, Image, SSHKeys and VPCUUID are the defaults for
	// CreateRequest fields left empty. Image is a snapshot or image id
	// (digits) or a slug; SSHKeys are key ids or fingerprints.
	Region  string
	Size    string
	Image   string
	SSHKeys []string
	VPCUUID string
	// PrivateAddress makes Machine.Address the droplet's private (VPC)
	// IPv4 instead of its public one.
	PrivateAddress bool

	// NoWait makes Create return as soon as DO accepts the droplet (state
	// "starting", no address yet) instead of waiting until it is active.
	NoWait bool

	// PollInterval is how often actions and droplet status are polled
	// (default 2 s).
	PollInterval time.Duration
	// ConsistencyWindow is how long a droplet may be missing from
	// list-by-tag after its create (default 60 s): recently created ids are
	// fetched by id for this long, and after an ambiguous create failure
	// Create looks for the droplet this long before trying again.
	ConsistencyWindow time.Duration
	// OperationTimeout bounds one Fence, PowerOn, AssignVIP or Snapshot
	// when ctx has no earlier deadline (default 10 min).
	OperationTimeout time.Duration

	// RequestTimeout bounds one HTTP attempt, body included (default 30 s).
	RequestTimeout time.Duration
	// RetryDeadline bounds the retries of one idempotent call (default 2 min).
	RetryDeadline time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential backoff
	// (defaults 500 ms and 15 s).
	BackoffMin, BackoffMax time.Duration
	// MaxRateLimitWait is the longest wait for a rate-limit reset before a
	// call fails instead (default 5 min; DO's hourly window can be longer).
	MaxRateLimitWait time.Duration

	// PageSize is the per_page of list calls (default 200, DO's maximum).
	PageSize int

	// HTTPTransport is the underlying transport (default a clone of
	// http.DefaultTransport).
	HTTPTransport http.RoundTripper
	// Logger receives operational logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Endpoint == "" {
		c.Endpoint = "https://api.digitalocean.com/"
	}
	if !strings.HasSuffix(c.Endpoint, "/") {
		c.Endpoint += "/"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PollInterval, 2*time.Second)
	def(&c.ConsistencyWindow, 60*time.Second)
	def(&c.OperationTimeout, 10*time.Minute)
	def(&c.RequestTimeout, 30*time.Second)
	def(&c.RetryDeadline, 2*time.Minute)
	def(&c.BackoffMin, 500*time.Millisecond)
	def(&c.BackoffMax, 15*time.Second)
	def(&c.MaxRateLimitWait, 5*time.Minute)
	if c.PageSize <= 0 || c.PageSize > 200 {
		c.PageSize = 200
	}
	if c.HTTPTransport == nil {
		c.HTTPTransport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Settings understood by New (the provider block's attributes):
//
//	token               the API token; use a variable (token = var.do_token),
//	                    never a literal: the HCL is committed to git
//	token_file          file holding the API token
//	                    (else $DIGITALOCEAN_TOKEN, else $DIGITALOCEAN_ACCESS_TOKEN)
//	endpoint            API base URL (for the emulator)
//	region, size, image defaults for machines
//	ssh_keys            comma-separated key ids or fingerprints
//	vpc_uuid            VPC for new droplets
//	address             "public" (default) or "private"
//	wait_active         "true" (default): Create returns once the droplet is active
//	poll_interval, consistency_window, operation_timeout, request_timeout,
//	retry_deadline, max_rate_limit_wait   Go durations ("2s", "1m")
func configFromSettings(settings map[string]string) (Config, error) {
	var c Config
	for k, v := range settings {
		var err error
		switch k {
		case "token":
			// Meant for token = var.do_token (a variable fed from outside
			// the repository); a literal would be committed to git.
			if c.Token == "" {
				c.Token = strings.TrimSpace(v)
			}
		case "token_file":
			var b []byte
			b, err = os.ReadFile(v)
			if err == nil {
				t := strings.TrimSpace(string(b))
				if t == "" {
					err = fmt.Errorf("file %s is empty", v)
				} else if settings["token"] == "" {
					c.Token = t
				}
			}
		case "endpoint":
			c.Endpoint = v
		case "region":
			c.Region = v
		case "size":
			c.Size = v
		case "image":
			c.Image = v
		case "ssh_keys":
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					c.SSHKeys = append(c.SSHKeys, s)
				}
			}
		case "vpc_uuid":
			c.VPCUUID = v
		case "address":
			switch v {
			case "public", "":
			case "private":
				c.PrivateAddress = true
			default:
				err = fmt.Errorf("want \"public\" or \"private\", got %q", v)
			}
		case "wait_active":
			var b bool
			b, err = strconv.ParseBool(v)
			c.NoWait = !b
		case "poll_interval":
			c.PollInterval, err = time.ParseDuration(v)
		case "consistency_window":
			c.ConsistencyWindow, err = time.ParseDuration(v)
		case "operation_timeout":
			c.OperationTimeout, err = time.ParseDuration(v)
		case "request_timeout":
			c.RequestTimeout, err = time.ParseDuration(v)
		case "retry_deadline":
			c.RetryDeadline, err = time.ParseDuration(v)
		case "max_rate_limit_wait":
			c.MaxRateLimitWait, err = time.ParseDuration(v)
		default:
			// Settings are shared with roles; ignore what is not ours.
		}
		if err != nil {
			return c, fmt.Errorf("digitalocean provider: setting %s: %w", k, err)
		}
	}
	if c.Token == "" {
		c.Token = strings.TrimSpace(os.Getenv("DIGITALOCEAN_TOKEN"))
	}
	if c.Token == "" {
		c.Token = strings.TrimSpace(os.Getenv("DIGITALOCEAN_ACCESS_TOKEN"))
	}
	return c, nil
}

// New is the providers.Factory for type "digitalocean".
func New(settings map[string]string) (providers.Provider, error) {
	c, err := configFromSettings(settings)
	if err != nil {
		return nil, err
	}
	return NewProvider(c)
}

var _ providers.Factory = New

func parseInt(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil
}
