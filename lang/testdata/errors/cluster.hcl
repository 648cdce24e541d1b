cluster "c" {
  voters  = 9     # ERROR: Too many voters
  witness = "web-3" # ERROR: Invalid witness

  objectives {
    rto          = "a minute" # ERROR: Invalid objective
    rpo          = "5m"
    availability = "101%" # ERROR: Invalid objective
  }

  objectives { # ERROR: Duplicate objectives block
  }
}

cluster "d" { # ERROR: Duplicate cluster block
}

role "web" {
  count = 2
}
