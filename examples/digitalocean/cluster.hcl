# A two-tier site on DigitalOcean: two web droplets behind two load
# balancers that share a reserved IP. Every droplet boots from one base
# snapshot (docs/snapshot.md) and learns its role from its name and tags.
#
#   export DIGITALOCEAN_TOKEN=...            # or: -var do_token=...
#   hactl plan  examples/digitalocean -var image=<snapshot id>
#
# Try it without an account against the emulator:
#   hactl emulate digitalocean --listen 127.0.0.1:8089 --token devtoken &
#   DIGITALOCEAN_TOKEN=devtoken hactl plan examples/digitalocean \
#     -var endpoint=http://127.0.0.1:8089/ -var image=debian-12-x64

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
    type = "http"
    port = 8080
    path = "/healthz"
  }

  fencing {
    method = "provider"
    delay  = "5s"
  }

  resource "file" "index" {
    path    = "${node.dir}/srv/www/index.html"
    content = "<h1>${node.name}</h1>\n"
  }

  resource "service" "web" {
    name    = "web"
    command = ["hactl", "serve", "web", "--root", "${node.dir}/srv/www", "--listen", "${node.address}:8080"]
    subscribe = [file.index]
  }
}

role "lb" {
  count = 2

  placement {
    regions = ["ams3"]
  }

  health "tcp" {
    type = "tcp"
    port = 80
  }

  fencing {
    method = "provider"
  }

  # No address: the provider allocates a reserved IP in the role's region,
  # moved between the two lb droplets with one assign action.
  vip {
    port     = 80
    failback = "never"
  }

  resource "file" "backends" {
    path = "${node.dir}/etc/lb-backends.json"
    content = jsonencode({
      backends = [for m in cluster.members["web"] : "http://${m.address}:8080"]
    })
  }

  resource "service" "lb" {
    name      = "lb"
    command   = ["hactl", "serve", "lb", "--listen", "0.0.0.0:80", "--backends", "${node.dir}/etc/lb-backends.json"]
    subscribe = [file.backends]
  }
}
