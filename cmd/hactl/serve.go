package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hactl/hactl/roles/serve"
	"github.com/hactl/hactl/roles/serve/lb"
	"github.com/hactl/hactl/roles/serve/mail"
	"github.com/hactl/hactl/roles/serve/repo"
	"github.com/hactl/hactl/roles/serve/web"
)

func newServeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve web|lb|mail|repo [flags]",
		Short: "Run one of the built-in services of the reference cluster",
		Long: `Serve runs a built-in service in the foreground until it is interrupted
(SIGINT/SIGTERM), then shuts it down gracefully. The agent's supervisor starts
these on local nodes; on real machines a Debian package (nginx, haproxy,
postfix, git-http-backend) can take their place. See docs/services.md.`,
	}
	cmd.AddCommand(newServeWebCmd(g), newServeLBCmd(g), newServeMailCmd(g), newServeRepoCmd(g))
	return cmd
}

func newServeWebCmd(g *globals) *cobra.Command {
	var cfg web.Config
	cmd := &cobra.Command{
		Use:   "web --root DIR [--listen ADDR]",
		Short: "Serve a static content directory, with GET /healthz",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = g.logger
			s, err := web.New(cfg)
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Root, "root", "", "content directory (must hold index.html to be healthy)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address to listen on")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}

func newServeLBCmd(g *globals) *cobra.Command {
	cfg := lb.DefaultConfig()
	var files, static []string
	cmd := &cobra.Command{
		Use:   "lb --listen ADDR (--backends FILE-or-URL | --backend URL)...",
		Short: "Load-balance HTTP over health-checked backends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = g.logger
			cfg.Backends = append(append([]string(nil), files...), static...)
			b, err := lb.New(cfg)
			if err != nil {
				return err
			}
			return b.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8000", "address to listen on (the role's VIP)")
	f.StringArrayVar(&files, "backends", nil, `backends: a JSON file {"backends":[URL...]} re-read when it changes, or a URL (repeatable)`)
	f.StringArrayVar(&static, "backend", nil, "a static backend base URL (repeatable)")
	f.DurationVar(&cfg.CheckInterval, "check-interval", cfg.CheckInterval, "period of active health checks (GET /healthz) and backend-file re-reads")
	f.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "timeout of one health check")
	f.IntVar(&cfg.Fall, "fall", cfg.Fall, "consecutive failed checks that eject a backend")
	f.IntVar(&cfg.Rise, "rise", cfg.Rise, "consecutive successful checks that readmit a backend")
	f.DurationVar(&cfg.CoolDown, "cool-down", cfg.CoolDown, "how long a backend stays out after a connection error or 5xx")
	return cmd
}

func newServeMailCmd(g *globals) *cobra.Command {
	cfg := mail.DefaultConfig()
	var tokenFile, maxSize string
	cmd := &cobra.Command{
		Use:   "mail --domain D --maildir DIR --token-file FILE --peers URL-or-FILE [flags]",
		Short: "Accept SMTP mail for one domain into a replicated Maildir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = g.logger
			n, err := parseSize(maxSize)
			if err != nil {
				return fmt.Errorf("--max-size: %w", err)
			}
			cfg.MaxSize = n
			if cfg.Token, err = serve.ReadToken(tokenFile); err != nil {
				return err
			}
			s, err := mail.New(cfg)
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:2525", "SMTP address to listen on")
	f.StringVar(&cfg.HTTPListen, "http", "127.0.0.1:8025", "address of the HTTP endpoint (messages, replication)")
	f.StringVar(&cfg.Domain, "domain", "", "the mail domain to accept (others get 550)")
	f.StringVar(&cfg.Maildir, "maildir", "", "Maildir directory (tmp/, new/, cur/ are created)")
	f.StringVar(&maxSize, "max-size", strconv.FormatInt(cfg.MaxSize, 10), "largest message accepted, in bytes (suffix K, M or G allowed)")
	f.StringArrayVar(&cfg.Peers, "peers", nil, `peer mail nodes' HTTP endpoints: a URL or a JSON file {"peers":[URL...]} (repeatable)`)
	f.IntVar(&cfg.MinAcks, "min-acks", cfg.MinAcks, "peers that must store a message before it is acknowledged")
	f.DurationVar(&cfg.ReplicateTimeout, "replicate-timeout", cfg.ReplicateTimeout, "how long to wait for peer acknowledgements before answering 451")
	f.StringVar(&tokenFile, "token-file", "", "file holding the cluster token (HTTP authentication and replication)")
	f.StringVar(&cfg.Hostname, "hostname", "", "name in the SMTP greeting and Received headers (default: the host name)")
	for _, n := range []string{"domain", "maildir", "token-file"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newServeRepoCmd(g *globals) *cobra.Command {
	cfg := repo.DefaultConfig()
	var tokenFile, maxBody string
	cmd := &cobra.Command{
		Use:   "repo --repos DIR --token-file FILE --peers URL-or-FILE [flags]",
		Short: "Serve git over smart HTTP (pushes replicated before success) and packages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = g.logger
			n, err := parseSize(maxBody)
			if err != nil {
				return fmt.Errorf("--max-push-size: %w", err)
			}
			cfg.MaxBody = n
			if cfg.Token, err = serve.ReadToken(tokenFile); err != nil {
				return err
			}
			s, err := repo.New(cfg)
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8090", "address to listen on")
	f.StringVar(&cfg.Repos, "repos", "", "directory of bare repositories, served at /<name>")
	f.StringVar(&cfg.Packages, "packages", "", "directory served read-only at /packages/")
	f.StringArrayVar(&cfg.Init, "init", nil, "create this bare repository below --repos if missing (repeatable)")
	f.StringArrayVar(&cfg.Peers, "peers", nil, `peer repository servers: a URL or a JSON file {"peers":[URL...]} (repeatable)`)
	f.IntVar(&cfg.MinAcks, "min-acks", cfg.MinAcks, "peers that must accept a push before it succeeds")
	f.DurationVar(&cfg.PushTimeout, "push-timeout", cfg.PushTimeout, "time limit of one replication push to one peer")
	f.StringSliceVar(&cfg.Protect, "protect", cfg.Protect, "refs that may be neither deleted nor force-updated (comma-separated, repeatable)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the cluster token (push password, replication)")
	f.StringVar(&maxBody, "max-push-size", strconv.FormatInt(cfg.MaxBody, 10), "largest chunked request body (a big push) spooled to disk, in bytes (K, M, G allowed)")
	f.BoolVar(&cfg.AnonymousRead, "anonymous-read", cfg.AnonymousRead, "allow clones, fetches and package downloads without the token")
	for _, n := range []string{"repos", "token-file"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

// parseSize parses a byte count with an optional K, M or G suffix (powers
// of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a positive byte count such as 10485760 or 10M", s)
	}
	return n * mult, nil
}
