# The mail role: `hactl serve mail`, an SMTP server that accepts mail for
# the cluster's domain into a Maildir and answers 250 only once a second
# replica (a peer mail node) has stored the message. Messages can be listed
# and fetched over an authenticated HTTP endpoint. postfix can replace the
# service resource the same way nginx replaces the web server.
role "mail" {
  count = 2

  health "smtp" {
    type      = "smtp"
    port      = 2525
    interval  = "2s"
    timeout   = "1s"
    threshold = 2
  }

  fencing {
    method = "provider"
    delay  = "2s"
  }

  # The Maildir is restored on a rebuilt node before the mail service starts:
  # from the surviving mail node, else from the newest good backup. The
  # backup runs on the lowest live mail slot only.
  data "maildir" {
    path = "/var/mail/blog"
    mode = "sync"

    backup "offsite" {
      target     = var.backup_target
      schedule   = "@every 1m"
      keep_last  = 60
      keep_daily = 7
    }
  }

  resource "directory" "etc" {
    path = "/etc/hactl/mail"
  }

  resource "template" "peers" {
    path       = "/etc/hactl/mail/peers.json"
    content    = jsonencode({ peers = [for m in cluster.members.mail : "http://${m.address}:8025" if m.name != node.name] })
    depends_on = [directory.etc]
  }

  resource "service" "mail" {
    name = "hactl-mail"
    command = [
      "hactl", "serve", "mail",
      "--domain", var.domain,
      "--maildir", "${node.dir}/var/mail/blog",
      "--listen", "${node.address}:2525",
      "--http", "${node.address}:8025",
      "--peers", "${node.dir}/etc/hactl/mail/peers.json",
      "--token-file", "${node.dir}/etc/hactl/secrets/cluster.token",
    ]
    depends_on = [template.peers]
  }
}
