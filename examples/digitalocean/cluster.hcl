# A two-tier site on DigitalOcean: two web droplets behind two load
# balancers that share a reserved IP. Every droplet boots from one base
# snapshot (docs/snapshot.md) and learns its role from its name and tags.
#
#   export DIGITALOCEAN_TOKEN=...            # or: -var do_token=...
#   hactl plan  examples/digitalocean -var image=<snapshot id>
#
# The lb VIP is a reserved IP: reserve one in the region once
# (doctl compute reserved-ip create --region ams3) and pass it as reserved_ip.
# The nodes get the provider settings (endpoint, token) in their user-data
# secrets, so the cluster fences and rebuilds lost droplets by itself.
#
# Try it without an account against the emulator (droplets are local nodes):
#   hactl emulate digitalocean --listen 127.0.0.1:8089 --token devtoken &
#   export DIGITALOCEAN_TOKEN=devtoken
#   curl -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" -d '{"region":"ams3"}' \
#     http://127.0.0.1:8089/v2/reserved_ips          # -> 127.15.0.10
#   hactl apply examples/digitalocean -var endpoint=http://127.0.0.1:8089/ \
#     -var reserved_ip=127.15.0.10
#   curl http://127.15.0.10:8000/

variable "do_token" {
  type        = string
  default     = ""
  sensitive   = true
  description = "API token; empty means $DIGITALOCEAN_TOKEN."
}

variable "endpoint" {
  type    = string
  default = "https://api.digitalocean.com/"
}

# Agents evaluate this file with the variable values of the apply that
# created them, and get the provider settings (endpoint, token) in user-data
# secrets.
variable "reserved_ip" {
  type        = string
  description = "The reserved IP the lb role's VIP is (reserved beforehand, in the region); required on DigitalOcean."
}

variable "image" {
  type        = string
  default     = "debian-12-x64"
  description = "The base snapshot's id (or an image slug)."
}

cluster "site" {
  provider = "do"
  voters   = 3

  objectives {
    rto          = "120s"
    rpo          = "5m"
    availability = "99.9%"
  }
}

provider "do" {
  type     = "digitalocean"
  token    = var.do_token
  endpoint = var.endpoint
  region   = "ams3"
  size     = "s-1vcpu-1gb"
  image    = var.image
}

role "web" {
  count = 2

  placement {
    regions = ["ams3"]
    size    = "s-1vcpu-1gb"
  }

  health "http" {
    type      = "http"
    port      = 8080
    path      = "/healthz"
    interval  = "2s"
    timeout   = "1s"
    threshold = 2
  }

  fencing {
    method = "provider"
    delay  = "2s"
  }

  resource "directory" "www" {
    path = "/srv/www"
  }

  resource "file" "index" {
    path       = "/srv/www/index.html"
    content    = "<h1>served by ${node.name}</h1>\n"
    depends_on = [directory.www]
  }

  resource "service" "web" {
    name       = "web"
    command    = ["hactl", "serve", "web", "--root", "${node.dir}/srv/www", "--listen", "${node.address}:8080"]
    depends_on = [file.index]
  }
}

role "lb" {
  count = 2

  placement {
    regions = ["ams3"]
  }

  health "tcp" {
    type = "tcp"
    port = 8000
  }

  fencing {
    method = "provider"
  }

  # A reserved IP, moved between the two lb droplets with one assign action
  # by the agent the cluster log names as its holder.
  vip {
    address  = var.reserved_ip
    port     = 8000
    failback = "never"
  }

  resource "directory" "etc" {
    path = "/etc/hactl/lb"
  }

  # The backend list follows membership: re-rendered when a web node joins
  # or leaves.
  resource "template" "backends" {
    path       = "/etc/hactl/lb/backends.json"
    content    = jsonencode({ backends = [for m in cluster.members.web : "http://${m.address}:8080"] })
    depends_on = [directory.etc]
  }

  resource "service" "lb" {
    name       = "lb"
    command    = ["hactl", "serve", "lb", "--listen", "${node.address}:8000", "--backends", "${node.dir}/etc/hactl/lb/backends.json"]
    depends_on = [template.backends]
  }
}
