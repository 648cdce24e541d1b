# The load balancer role: `hactl serve lb`, an HTTP reverse proxy with active
# health checks of the web backends (taken from cluster membership through
# the template below), passive ejection and retries of idempotent requests.
# The role's VIP is a loopback address on local nodes (bound by one holder
# at a time) and a reserved IP on DigitalOcean. lb-haproxy.hcl is the same
# role with Debian's haproxy.
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

  resource "directory" "etc" {
    path = "/etc/hactl/lb"
  }

  # The backend list follows membership: the agent re-renders it when a web
  # node joins or leaves, and the balancer re-reads it when it changes.
  resource "template" "backends" {
    path       = "/etc/hactl/lb/backends.json"
    content    = jsonencode({ backends = [for m in cluster.members.web : "http://${m.address}:8080"] })
    depends_on = [directory.etc]
  }

  resource "service" "lb" {
    name       = "hactl-lb"
    command    = ["hactl", "serve", "lb", "--listen", "${node.address}:8000", "--backends", "${node.dir}/etc/hactl/lb/backends.json"]
    depends_on = [template.backends]
  }
}
