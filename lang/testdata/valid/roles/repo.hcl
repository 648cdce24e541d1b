# The shared definition of a git repository server. A cluster uses it with
#   role "repo" { source = "roles/repo.hcl"  count = 2 }
# and may override count, provider, placement, fencing, vip, or any health,
# data or resource block by name.
role "repo" {
  count = 1

  health "git" {
    type = "tcp"
    port = 9418
  }

  data "repos" {
    path     = "/var/lib/hactl/git"
    mode     = "async"
    interval = "1m"

    backup "local" {
      target   = "dir:///var/backups/hactl/git"
      schedule = "@daily"
    }
  }

  resource "directory" "repos" {
    path = "${node.dir}/var/lib/hactl/git"
  }

  resource "service" "git" {
    name       = "git"
    command    = ["hactl", "serve", "git", "-root", "${node.dir}/var/lib/hactl/git"]
    depends_on = [directory.repos]
  }
}
