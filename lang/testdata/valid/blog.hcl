# A small blog: two web servers behind two load balancers sharing a VIP,
# two mail servers with synchronously replicated mail and a nightly backup,
# and two git repository servers.

variable "domain" {
  type        = string
  default     = "blog.example.org"
  description = "The public name of the blog."
}

variable "admin_email" {
  type    = string
  default = "admin@blog.example.org"
}

variable "backup_host_key" {
  type      = string
  default   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcQNIuXHW6cy7O0OGP9H7rWOXbz4xQ+AcOfzqBzmeUx"
  sensitive = true
}

locals {
  web_port  = 8080
  lb_port   = 8443
  mail_root = "/var/lib/hactl/mail"
  motd      = "Welcome to ${var.domain}"
}

cluster "blog" {
  provider = "local"
  voters   = 3
  witness  = "repo-1"

  objectives {
    rto          = "60s"
    rpo          = "5m"
    availability = "99.9%"
  }
}

provider "local" {
  type = "local"
}

role "web" {
  count = 2

  placement {
    regions = ["local-a", "local-b"]
    spread  = true
  }

  health "http" {
    type      = "http"
    port      = local.web_port
    path      = "/healthz"
    interval  = "5s"
    timeout   = "2s"
    threshold = 3
  }

  fencing {
    method = "provider"
    delay  = "5s"
  }

  resource "directory" "docroot" {
    path = "${node.dir}/srv/www"
    mode = "0755"
  }

  resource "template" "index" {
    path       = "${node.dir}/srv/www/index.html"
    source     = "templates/index.html.tmpl"
    vars       = { domain = var.domain, node = node.name, motd = local.motd }
    depends_on = [directory.docroot]
  }

  resource "file" "config" {
    path    = "${node.dir}/etc/web.conf"
    content = "listen = ${node.address}:${local.web_port}\nroot = ${node.dir}/srv/www\n"
    notify  = [service.web]
  }

  resource "service" "web" {
    name       = "web"
    command    = ["hactl", "serve", "web", "-config", "${node.dir}/etc/web.conf"]
    depends_on = [template.index]
  }
}

role "lb" {
  count = 2

  health "tcp" {
    type = "tcp"
    port = local.lb_port
  }

  vip {
    address        = "127.0.0.100"
    port           = local.lb_port
    failback       = "delayed"
    failback_delay = "2m"
  }

  resource "file" "backends" {
    path = "${node.dir}/etc/lb.conf"
    content = join("\n", [
      for m in cluster.members["web"] : format("backend %s %s:%d", m.name, m.address, local.web_port)
    ])
  }

  resource "service" "lb" {
    name      = "lb"
    command   = ["hactl", "serve", "lb", "-config", "${node.dir}/etc/lb.conf"]
    subscribe = [file.backends]
  }
}

role "mail" {
  count = 2

  health "smtp" {
    type = "smtp"
    port = 2525
  }

  data "spool" {
    path = local.mail_root
    mode = "sync"

    backup "nightly" {
      target     = "sftp://backup@127.0.0.1:2222/blog/mail"
      schedule   = "30 3 * * *"
      keep_last  = 7
      keep_daily = 30
      host_key   = var.backup_host_key
    }
  }

  resource "directory" "spool" {
    path = "${node.dir}${local.mail_root}"
  }

  resource "exec" "aliases" {
    command    = ["hactl-newaliases", "-postmaster", var.admin_email]
    creates    = "${node.dir}/etc/aliases.db"
    depends_on = [directory.spool]
  }

  resource "service" "smtp" {
    name       = "smtp"
    command    = ["hactl", "serve", "smtp", "-spool", "${node.dir}${local.mail_root}"]
    depends_on = [directory.spool, exec.aliases]
  }
}

role "repo" {
  source = "roles/repo.hcl"
  count  = 2
}
