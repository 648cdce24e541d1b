# examples/blog: the reference cluster. A blog served by two web nodes behind
# two load balancers sharing a virtual IP, two mail nodes that store every
# accepted message on both, and two repository nodes that serve git. No
# single point of failure: any one node can be lost.
#
#   hactl apply examples/blog      (or: go run ./cmd/hactl demo)

variable "domain" {
  type        = string
  default     = "blog.local"
  description = "The mail domain the cluster accepts mail for."
}

# Where the mail role's Maildir is backed up, outside every node: dir:///path
# or sftp://user@host:22/path (-var backup_target=... at apply reaches the
# nodes with their user-data). "/@state/" is the local provider's state
# directory: each local cluster gets its own backups.
variable "backup_target" {
  type        = string
  default     = "dir:///@state/blog-backups"
  description = "Backup target of the mail role's Maildir."
}

cluster "blog" {
  provider = "local"
  voters   = 3

  objectives {
    rto          = "30s"
    rpo          = "1m"
    availability = "99.9%"
  }
}

role "web" {
  source = "roles/web.hcl"
  count  = 2
}

role "lb" {
  source = "roles/lb.hcl"
  count  = 2
}

role "mail" {
  source = "roles/mail.hcl"
  count  = 2
}

role "repo" {
  source = "roles/repo.hcl"
  count  = 2
}
