cluster "c" {
}

role "web" {
  count = 2

  health "http" {
    type = "http"
    port = 70000 # ERROR: Invalid port
  }

  health "http" { # ERROR: Duplicate health check
    type = "tcp"
    port = 80
  }

  health "gopher" {
    type = "gopher" # ERROR: Unknown health check type
  }

  health "noport" { # ERROR: Missing health check port
    type = "tcp"
  }

  health "nocmd" { # ERROR: Missing health check command
    type = "exec"
  }

  health "slow" {
    type      = "exec"
    command   = ["true"]
    interval  = "ten seconds" # ERROR: Invalid duration
    threshold = 0             # ERROR: Invalid threshold
  }

  health "noty" { # ERROR: Missing required argument
    port = 1
  }

  fencing {
    method = "shoot" # ERROR: Unknown fencing method
    delay  = "-5s"   # ERROR: Invalid duration
  }

  placement {
    regions = "nyc1" # ERROR: Incorrect attribute value type
  }

  placement { # ERROR: Duplicate placement block
  }

  vip {
    address  = "10.0.0.300" # ERROR: Invalid VIP address
    failback = "sometimes"  # ERROR: Unknown failback policy
  }

  data "db" {
    path = "var/lib/db" # ERROR: Invalid data path
    mode = "eventual"   # ERROR: Unknown replication mode

    backup "b" {
      target   = "ftp://host/x" # ERROR: Invalid backup target
      schedule = "every day"    # ERROR: Invalid backup schedule
    }

    backup "b" { # ERROR: Duplicate backup
      target   = "dir:///backups"
      schedule = "@daily"
    }

    backup "remote" { # ERROR: Unpinned SFTP host key
      target    = "sftp://u@backup.example:22/x"
      schedule  = "@hourly"
      keep_last = -1 # ERROR: Invalid retention
    }

    backup "pinned" {
      target   = "sftp://u@backup.example/x"
      schedule = "@hourly"
      host_key = "not a key" # ERROR: Invalid host key
    }
  }

  data "db" { # ERROR: Duplicate data block
    path = "/srv/db"
  }

  resource "file" "a" {
  }

  resource "file" "a" { # ERROR: Duplicate resource
  }

  resource "file" "index.html" { # ERROR: Invalid resource name
  }
}

role "solo" {
  vip { # ERROR: VIP on a single-node role
    address = "10.0.0.1"
  }

  fencing { # ERROR: Missing fencing setting
    method = "ipmi"
  }
}

role "noted" {
  vip {
    address = "10.0.0.2"
    note    = "clients pin this address; the role is rebuilt elsewhere on failure"
  }
}
