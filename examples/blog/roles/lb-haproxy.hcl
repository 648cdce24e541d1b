# The load balancer role on Debian's haproxy: same shape as lb.hcl (VIP,
# health check, backends from membership); the package, config template and
# service differ.
role "lb" {
  count = 2

  vip {
    port     = 8000
    failback = "never"
  }

  health "http" {
    type      = "http"
    port      = 8000
    path      = "/healthz"
    interval  = "2s"
    timeout   = "1s"
    threshold = 2
  }

  fencing {
    method = "provider"
    delay  = "2s"
  }

  resource "package" "haproxy" {
    name = "haproxy"
  }

  resource "template" "config" {
    path       = "/etc/haproxy/haproxy.cfg"
    source     = "roles/templates/haproxy.cfg.tmpl"
    vars       = { port = 8000, backends = cluster.members.web }
    depends_on = [package.haproxy]
    notify     = [service.haproxy]
  }

  resource "service" "haproxy" {
    name       = "haproxy"
    enabled    = true
    depends_on = [package.haproxy]
  }
}
