cluster "c" {
  voters = 4 # WARNING: Even number of voters

  objectives {
    rpo = "1m"
  }
}

role "web" {
  count = 3

  health "slow" { # WARNING: Health check timeout exceeds interval
    type     = "tcp"
    port     = 80
    interval = "1s"
    timeout  = "3s"
  }

  fencing { # WARNING: No fencing
    method = "none"
  }

  vip {
    failback_delay = "1m" # WARNING: Unused failback delay
  }

  data "db" { # WARNING: Replication interval exceeds RPO
    path     = "/srv/db"
    interval = "10m"
  }
}

role "single" {
  data "x" { # WARNING: Replication without a peer
    path = "/srv/x"
    mode = "sync"
  }
}
