# The repository role: `hactl serve repo`, git over smart HTTP (the real
# `git http-backend`) for the cluster's repositories, plus a directory of
# packages. A push succeeds only once a peer repo node has it too. A git
# daemon can replace the service resource.
role "repo" {
  count = 2

  health "http" {
    type      = "tcp"
    port      = 8090
    interval  = "2s"
    timeout   = "1s"
    threshold = 2
  }

  fencing {
    method = "provider"
    delay  = "2s"
  }

  data "git" {
    path = "/var/lib/hactl/git"
    mode = "sync"
  }

  resource "directory" "git" {
    path = "/var/lib/hactl/git"
  }

  resource "directory" "packages" {
    path = "/srv/packages"
  }

  resource "directory" "etc" {
    path = "/etc/hactl/repo"
  }

  resource "template" "peers" {
    path       = "/etc/hactl/repo/peers.json"
    content    = jsonencode({ peers = [for m in cluster.members.repo : "http://${m.address}:8090" if m.name != node.name] })
    depends_on = [directory.etc]
  }

  resource "service" "repo" {
    name = "hactl-repo"
    command = [
      "hactl", "serve", "repo",
      "--repos", "${node.dir}/var/lib/hactl/git",
      "--init", "blog.git",
      "--packages", "${node.dir}/srv/packages",
      "--listen", "${node.address}:8090",
      "--peers", "${node.dir}/etc/hactl/repo/peers.json",
      "--token-file", "${node.dir}/etc/hactl/secrets/cluster.token",
      "--anonymous-read",
    ]
    depends_on = [directory.git, directory.packages, template.peers]
  }
}
