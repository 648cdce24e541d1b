# Roles on DigitalOcean and bare metal, with variables, locals and every
# fencing method that takes settings.

variable "do_token" {
  type      = string
  default   = "dop_v1_not_a_real_token"
  sensitive = true
}

variable "regions" {
  type    = list(string)
  default = ["ams3", "fra1"]
}

variable "sizes" {
  type = map(string)
  default = {
    small = "s-1vcpu-1gb"
    large = "s-2vcpu-4gb"
  }
}

locals {
  region_count = length(var.regions)
  vip_address  = cidrhost("10.10.0.0/24", 100)
  big          = lookup(var.sizes, "large", "s-1vcpu-1gb")
}

cluster "prod" {
  provider = "do"
  voters   = 5

  objectives {
    rto          = "2m"
    rpo          = "30s"
    availability = 0.995
  }
}

provider "do" {
  type   = "digitalocean"
  token  = var.do_token
  region = var.regions[0]
}

provider "metal" {
  type  = "baremetal"
  hosts = ["10.0.9.11", "10.0.9.12"]
}

role "api" {
  count = local.region_count + 1

  placement {
    regions = var.regions
    size    = local.big
    image   = "hactl-base-2026"
    spread  = true
  }

  health "ready" {
    type     = "exec"
    command  = ["/usr/local/bin/api-ready", "--quiet"]
    interval = "15s"
    timeout  = "10s"
  }

  vip {
    address  = local.vip_address
    port     = 443
    failback = "immediate"
  }

  resource "file" "env" {
    path    = "${node.dir}/etc/api.env"
    content = "NODE=${upper(node.name)}\nPEERS=${join(",", [for m in cluster.members.api : m.address if m.name != node.name])}\n"
  }
}

role "db" {
  count    = 2
  provider = "metal"

  fencing {
    method        = "ipmi"
    delay         = "10s"
    host          = "10.0.9.200"
    username      = "fence"
    password_file = "/etc/hactl/ipmi.pass"
  }

  data "pg" {
    path     = "/var/lib/postgresql"
    mode     = "async"
    interval = "15s"

    backup "offsite" {
      target     = "sftp://backup@198.51.100.7/pg"
      schedule   = "@every 6h"
      keep_daily = 14
      host_key   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcQNIuXHW6cy7O0OGP9H7rWOXbz4xQ+AcOfzqBzmeUx"
    }
  }
}

role "jump" {
  provider = "metal"

  fencing {
    method   = "redfish"
    endpoint = "https://10.0.9.201"
  }

  vip {
    address = "10.0.9.250"
    note    = "the address is what operators type; a rebuilt jump host takes it over"
  }
}
