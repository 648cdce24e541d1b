cluster "c" {
  provider = "nowhere" # ERROR: Undeclared provider
  witness  = "db-1"    # ERROR: Invalid witness

  objectives {
    availability = 1.5 # ERROR: Invalid objective
  }
}

role "web" {
  count = 3
}
