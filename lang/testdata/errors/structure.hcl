cluster "c" {
  voters = 1
}

provider "do" {
  type  = "digitalocean"
  token = "x"
}

provider "do" { # ERROR: Duplicate provider
  type = "digitalocean"
}

provider "vmware" {
  type = "vsphere" # ERROR: Unknown provider type
}

bogus "x" { # ERROR: Unsupported block type
}

role "web" {
  count  = 0     # ERROR: Invalid count
  colour = "red" # ERROR: Unsupported argument
}

role "web" { # ERROR: Duplicate role
}

role "db" {
  count    = "three" # ERROR: Incorrect attribute value type
  provider = "aws"   # ERROR: Undeclared provider
}

role "Bad-Name" { # ERROR: Invalid role name
}
